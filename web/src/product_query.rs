//! What `GET /products` was asked for: words to search, a category, filters,
//! an order and where in the list (`after=` / `before=` a cursor, `last=1`,
//! or the first page), read from the URL and written back to it in one
//! canonical form, so Back, reload, a shared link and the cache key all
//! name the same page. `page=N` from old links still works (the service
//! pages by number up to 10,000 products deep).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use shop_proto::inventory::v1 as pb;
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;
use crate::extract::{number_or_blank, parse_price};
use crate::pager::{self, Position};

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
    /// The page after this cursor (a list's `next_cursor`).
    pub after: Option<String>,
    /// The page before this cursor (a list's `previous_cursor`).
    pub before: Option<String>,
    /// `1`: the last page.
    pub last: Option<String>,
    /// Old links' 1-based page number, up to 10,000 products deep; a cursor wins over it.
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
    /// Where the page is in the list.
    pub position: Position,
    /// An old link's page number (1 unless one was given without a cursor).
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
            position: Position::First,
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
        let position = Position::parse(raw.after, raw.before, raw.last)?;
        // A cursor wins over a page number, as in the service.
        let page = if position == Position::First { raw.page.unwrap_or(1) } else { 1 };
        Ok(Self {
            q,
            category,
            sort,
            in_stock,
            min_price_minor,
            max_price_minor,
            position,
            page,
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
        let (after, before, last) = self.position.cursors();
        pb::ListProductsRequest {
            page: self.page,
            after,
            before,
            last,
            page_size: self.page_size,
            query: self.q.clone(),
            category_id,
            sort: self.sort.to_proto().into(),
            in_stock_only: self.in_stock,
            min_price_minor: self.min_price_minor,
            max_price_minor: self.max_price_minor,
            ..Default::default()
        }
    }

    /// The query string of this list without its position (for the
    /// pager): only what differs from the defaults, in one order, so one
    /// list has one URL.
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

    /// This page's URL: the list's, then its position (or an old link's
    /// page number); the cache key too.
    pub fn url(&self) -> String {
        if self.position == Position::First && self.page != 1 {
            let rest = self.without_page();
            let separator = if rest.is_empty() { "" } else { "&" };
            return format!("/products?{rest}{separator}page={}", self.page);
        }
        pager::href("/products", &self.without_page(), &self.position)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ProductQuery {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(raw) = axum::extract::Query::<ProductQueryParams>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::BadRequest("page and page_size must be whole numbers, e.g. ?page_size=50".into()))?;
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
        let query = parse("after=i5.i9&sort=newest&q=earl+grey&in_stock=on&min_price=4,5&category=black-tea")?;
        assert_eq!(
            query.url(),
            "/products?q=earl+grey&category=black-tea&sort=newest&in_stock=1&min_price=4.50&after=i5.i9"
        );
        assert_eq!(parse(&query.url()["/products?".len()..])?, query);
        assert_eq!(parse("q=tea&sort=relevance")?.url(), "/products?q=tea");
        assert_eq!(parse("last=1&page_size=5")?.url(), "/products?page_size=5&last=1");
        assert_eq!(parse("before=t61.i2&last=0")?.url(), "/products?before=t61.i2");
        assert_eq!(parse("page=2")?.url(), "/products?page=2", "an old link's page");
        assert_eq!(parse("page=2&after=i7")?.url(), "/products?after=i7", "a cursor wins over a page");
        assert_eq!(ProductQuery::default().url(), "/products");
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
        assert_eq!(field_of("after=i1&before=i2").as_deref(), Some("before"));
        assert_eq!(field_of("after=%3Cscript%3E").as_deref(), Some("after"));
        assert!(matches!(parse("category=..%2F"), Err(AppError::NotFound(_))));
    }
}
