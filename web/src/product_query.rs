//! What `GET /products` was asked for: words to search, a category, filters,
//! an order and a page, read from the URL and written back to it, so Back,
//! reload and a shared link show the same list.

use std::fmt::Write as _;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use shop_proto::inventory::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;
use crate::extract::{number_or_blank, parse_price};

/// The longest search the inventory service takes.
const MAX_QUERY_CHARS: usize = 200;

/// How a list is ordered; the names are the URL's (`sort=price-low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Sort {
    /// Best match first (the default with a search).
    Relevance,
    /// The default without a search.
    Newest,
    PriceLow,
    PriceHigh,
    Name,
}

impl Sort {
    pub const ALL: [Sort; 5] = [Sort::Relevance, Sort::Newest, Sort::PriceLow, Sort::PriceHigh, Sort::Name];

    pub fn name(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::Newest => "newest",
            Sort::PriceLow => "price-low",
            Sort::PriceHigh => "price-high",
            Sort::Name => "name",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Relevance => "Best match",
            Sort::Newest => "Newest",
            Sort::PriceLow => "Price: low to high",
            Sort::PriceHigh => "Price: high to low",
            Sort::Name => "Name: A to Z",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|sort| sort.name() == name)
    }

    fn to_proto(self) -> pb::ProductSort {
        match self {
            Sort::Relevance => pb::ProductSort::Relevance,
            Sort::Newest => pb::ProductSort::Newest,
            Sort::PriceLow => pb::ProductSort::PriceLowFirst,
            Sort::PriceHigh => pb::ProductSort::PriceHighFirst,
            Sort::Name => pb::ProductSort::Name,
        }
    }
}

/// The query string as sent; every field optional, blanks ignored (a form
/// sends its empty fields).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQueryParams {
    /// Words to look for in names and descriptions; near spellings match too.
    pub q: Option<String>,
    /// A category's slug, e.g. `green-tea`.
    pub category: Option<String>,
    /// `relevance` (default with `q`), `newest` (default otherwise), `price-low`, `price-high` or `name`.
    pub sort: Option<String>,
    /// `1` (or `on`, `true`): only products in stock.
    pub in_stock: Option<String>,
    /// Lowest price, e.g. `5` or `4,50`.
    pub min_price: Option<String>,
    /// Highest price.
    pub max_price: Option<String>,
    /// 1-based page number (default 1).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub page: Option<u32>,
    /// Products per page, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub page_size: Option<u32>,
}

/// A product list request, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductQuery {
    /// The search words, trimmed ("" for none).
    pub q: String,
    /// The category's slug ("" for any).
    pub category: String,
    pub sort: Sort,
    pub in_stock: bool,
    /// In minor units.
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    pub page: u32,
    pub page_size: u32,
}

impl Default for ProductQuery {
    fn default() -> Self {
        Self {
            q: String::new(),
            category: String::new(),
            sort: Sort::Newest,
            in_stock: false,
            min_price_minor: None,
            max_price_minor: None,
            page: 1,
            page_size: 20,
        }
    }
}

fn blank_to_none(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn price(field: &'static str, text: Option<String>) -> Result<Option<i64>, AppError> {
    blank_to_none(text)
        .map(|text| parse_price(&text).map_err(|_| AppError::field(field, "must be an amount like 5 or 4.50")))
        .transpose()
}

impl ProductQuery {
    pub fn parse(raw: ProductQueryParams) -> Result<Self, AppError> {
        let q = blank_to_none(raw.q).unwrap_or_default();
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(AppError::field("q", "must be at most 200 characters"));
        }
        if q.chars().any(char::is_control) {
            return Err(AppError::field("q", "must not contain control characters"));
        }
        let category = blank_to_none(raw.category).unwrap_or_default();
        if category.len() > 80 || !category.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(AppError::NotFound("There is no such category.".into()));
        }
        let sort = match blank_to_none(raw.sort) {
            None if q.is_empty() => Sort::Newest,
            None => Sort::Relevance,
            Some(name) => Sort::parse(&name)
                .ok_or_else(|| AppError::field("sort", "must be relevance, newest, price-low, price-high or name"))?,
        };
        let in_stock = match blank_to_none(raw.in_stock).as_deref() {
            None | Some("0" | "false" | "off") => false,
            Some("1" | "true" | "on") => true,
            Some(_) => return Err(AppError::field("in_stock", "must be 1 or 0")),
        };
        let min_price_minor = price("min_price", raw.min_price)?;
        let max_price_minor = price("max_price", raw.max_price)?;
        if let (Some(min), Some(max)) = (min_price_minor, max_price_minor)
            && min > max
        {
            return Err(AppError::field("max_price", "must not be below the lowest price"));
        }
        if raw.page_size.is_some_and(|size| size == 0 || size > 100) {
            return Err(AppError::field("page_size", "must be between 1 and 100"));
        }
        if raw.page == Some(0) {
            return Err(AppError::field("page", "must be 1 or more"));
        }
        Ok(Self {
            q,
            category,
            sort,
            in_stock,
            min_price_minor,
            max_price_minor,
            page: raw.page.unwrap_or(1),
            page_size: raw.page_size.unwrap_or(20),
        })
    }

    /// Whether anything narrows the list (a search or a filter).
    pub fn is_narrowed(&self) -> bool {
        !self.q.is_empty()
            || !self.category.is_empty()
            || self.in_stock
            || self.min_price_minor.is_some()
            || self.max_price_minor.is_some()
    }

    /// The list request for inventory; `category_id` is the slug's.
    pub fn to_request(&self, category_id: i64) -> pb::ListProductsRequest {
        pb::ListProductsRequest {
            page: self.page,
            page_size: self.page_size,
            query: self.q.clone(),
            category_id,
            sort: self.sort.to_proto().into(),
            in_stock_only: self.in_stock,
            min_price_minor: self.min_price_minor,
            max_price_minor: self.max_price_minor,
            exclude_product_id: 0,
        }
    }

    /// The query string of this list without its page (for the pager and
    /// the cache key): only what differs from the defaults, in one order,
    /// so one list has one URL.
    pub fn without_page(&self) -> String {
        let default_sort = if self.q.is_empty() { Sort::Newest } else { Sort::Relevance };
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !self.q.is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        if !self.category.is_empty() {
            pairs.push(("category", self.category.clone()));
        }
        if self.sort != default_sort {
            pairs.push(("sort", self.sort.name().to_owned()));
        }
        if self.in_stock {
            pairs.push(("in_stock", "1".to_owned()));
        }
        if let Some(min) = self.min_price_minor {
            pairs.push(("min_price", crate::views::money(min)));
        }
        if let Some(max) = self.max_price_minor {
            pairs.push(("max_price", crate::views::money(max)));
        }
        if self.page_size != 20 {
            pairs.push(("page_size", self.page_size.to_string()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    /// This list's URL at `page`.
    pub fn url(&self, page: u32) -> String {
        let mut url = String::from("/products");
        let rest = self.without_page();
        let mut separator = '?';
        if !rest.is_empty() {
            let _ = write!(url, "?{rest}");
            separator = '&';
        }
        if page != 1 {
            let _ = write!(url, "{separator}page={page}");
        }
        url
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ProductQuery {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(raw) = axum::extract::Query::<ProductQueryParams>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::BadRequest("page and page_size must be whole numbers, e.g. ?page=2".into()))?;
        Self::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ProductQuery, AppError> {
        ProductQuery::parse(serde_urlencoded::from_str(query).map_err(|e| AppError::BadRequest(e.to_string()))?)
    }

    #[test]
    fn defaults_depend_on_a_search() -> Result<(), AppError> {
        assert_eq!(parse("")?, ProductQuery::default());
        assert_eq!(parse("q=++")?, ProductQuery::default());
        assert_eq!(parse("q=tea")?.sort, Sort::Relevance);
        assert_eq!(parse("q=tea&sort=")?.sort, Sort::Relevance);
        assert_eq!(parse("sort=price-high")?.sort, Sort::PriceHigh);
        Ok(())
    }

    #[test]
    fn a_list_has_one_url() -> Result<(), AppError> {
        let query = parse("sort=newest&q=earl+grey&in_stock=on&min_price=4,5&category=black-tea&page=3")?;
        assert_eq!(
            query.url(3),
            "/products?q=earl+grey&category=black-tea&sort=newest&in_stock=1&min_price=4.50&page=3"
        );
        assert_eq!(parse(&query.url(3)["/products?".len()..])?, query);
        assert_eq!(parse("q=tea&sort=relevance")?.url(1), "/products?q=tea");
        assert_eq!(ProductQuery::default().url(2), "/products?page=2");
        assert_eq!(ProductQuery::default().url(1), "/products");
        Ok(())
    }

    #[test]
    fn bad_values_name_their_field() {
        let field_of = |query: &str| match parse(query) {
            Err(AppError::Invalid(errors)) => errors.first().map(|e| e.field.clone()),
            _ => None,
        };
        assert_eq!(field_of("sort=cheapest").as_deref(), Some("sort"));
        assert_eq!(field_of("min_price=abc").as_deref(), Some("min_price"));
        assert_eq!(field_of("min_price=9&max_price=5").as_deref(), Some("max_price"));
        assert_eq!(field_of("in_stock=maybe").as_deref(), Some("in_stock"));
        assert_eq!(field_of("page_size=500").as_deref(), Some("page_size"));
        assert_eq!(field_of(&format!("q={}", "a".repeat(201))).as_deref(), Some("q"));
        assert_eq!(field_of("q=%07").as_deref(), Some("q"));
        assert!(matches!(parse("category=..%2F"), Err(AppError::NotFound(_))));
    }
}
