//! The catalogue: browsing for everyone; creating, editing and deleting for
//! admins. Reads go through the [`Catalog`](crate::catalog::Catalog)'s cache;
//! every write forgets what it changed.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shop_proto::inventory::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Fill, Pages};
use crate::error::{AppError, FieldError};
use crate::extract::{Id, Input, Product, number_or_blank, parse_price};
use crate::negotiate::Want;
use crate::product_query::{ProductQuery, ProductQueryParams, Sort};
use crate::views::ProductView;

const LIST: Pages = Pages::new("products/index.html", "products/_list.html");
const CARD: Pages = Pages::new("products/show.html", "products/_card.html");
const NEW: Pages = Pages::new("products/new.html", "products/_new_form.html");
const ADDED: Pages = Pages::new("products/new.html", "products/_created.html");
const EDIT: Pages = Pages::new("products/edit.html", "products/_edit_form.html");
const DELETED: Pages = Pages::new("products/show.html", "products/_deleted.html");

/// A product as sent by an admin. On create, `name` and a price are
/// required; on update, only what is sent changes.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ProductInput {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Price in minor units (cents).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub price_minor: Option<i64>,
    /// The price as typed in a form, e.g. "19.99"; used when `price_minor` is absent.
    pub price: Option<String>,
    /// Stock on hand at creation.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub stock: Option<i64>,
    /// On update: added to the stock (negative to write off).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub stock_delta: Option<i64>,
    /// The product's categories (a form sends one `category_ids` per ticked
    /// box). On update, absent means unchanged; `[]` clears them.
    pub category_ids: Option<Vec<i64>>,
    /// Set by the form's category boxes, so that ticking none clears them.
    #[serde(default, skip_serializing)]
    #[schema(ignore)]
    pub categories_sent: Option<String>,
}

impl ProductInput {
    fn price_minor(&self) -> Result<Option<i64>, AppError> {
        match (&self.price_minor, self.price.as_deref().map(str::trim)) {
            (Some(minor), _) => Ok(Some(*minor)),
            (None, Some(text)) if !text.is_empty() => parse_price(text).map(Some),
            _ => Ok(None),
        }
    }

    /// The categories to set: as sent, or none when a form's boxes were all
    /// left unticked; `None` leaves them as they are.
    fn categories(&self) -> Option<Vec<i64>> {
        self.category_ids.clone().or_else(|| self.categories_sent.as_ref().map(|_| Vec::new()))
    }

    /// What was typed, to show the form again.
    fn values(&self) -> BTreeMap<String, String> {
        let price = self.price.clone().or_else(|| self.price_minor.map(crate::views::money));
        [
            ("name", self.name.clone()),
            ("description", self.description.clone()),
            ("price", price),
            ("stock", self.stock.map(|s| s.to_string())),
            ("stock_delta", self.stock_delta.map(|s| s.to_string())),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value?)))
        .collect()
    }
}

/// The form has one price field, whichever form the service named.
fn on_form(error: AppError) -> AppError {
    match error {
        AppError::Invalid(errors) => AppError::Invalid(
            errors
                .into_iter()
                .map(|e| FieldError::new(if e.field == "price_minor" { "price" } else { e.field.as_str() }, e.message))
                .collect(),
        ),
        other => other,
    }
}

/// The catalogue a page at a time: everything, newest first, or what a
/// search and filters found, in the order asked. Pages are reached by
/// cursor: `next` / `previous` (and `first`, `last`) are the URLs of the
/// pages around this one, `next_cursor` / `previous_cursor` the cursors
/// they carry; `total` is counted up to 1,000 (`total_is_lower_bound` past
/// that). The page's own search form is a plain GET form with these same
/// parameters.
#[utoipa::path(get, path = "/products", tag = "products", params(ProductQueryParams),
    responses((status = 200, description = "A page of products", body = crate::views::ProductList),
              (status = 400, description = "A malformed page size or number", body = crate::error_page::ProblemBody),
              (status = 404, description = "No such category", body = crate::error_page::ProblemBody),
              (status = 422, description = "A malformed filter or cursor, or a page number past 10,000 products (the problem names the field)", body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, query: ProductQuery, headers: HeaderMap) -> Result<Response, AppError> {
    if ctx.want == Want::Json {
        let (list, lookup) = ctx.state.catalog.search(&ctx.services(), &query).await?;
        return Ok(ctx.show_cached(LIST, "list", &list, lookup));
    }
    // Focus moves to a list the pager brought, not away from the search
    // box being typed in or a filter being chosen.
    let focus_list =
        !matches!(headers.get("hx-trigger").and_then(|v| v.to_str().ok()), Some("product-filters" | "product-list"));
    // Rendered once per list (its cache key; the categories are retired with it).
    let key = format!("{}:{focus_list}", ctx.state.catalog.list_key(&query).await);
    ctx.render_kept(LIST, &key, || async {
        let (list, lookup) = ctx.state.catalog.search(&ctx.services(), &query).await?;
        let categories = ctx.state.catalog.categories(&ctx.services()).await?;
        let context = minijinja::context! {
            list => minijinja::value::Serde(&list),
            categories => minijinja::value::Serde(&categories),
            sorts => Sort::ALL.iter().map(|sort| (sort.name(), sort.label())).collect::<Vec<_>>(),
            min_price => list.query.min_price_minor.map(crate::views::money),
            max_price => list.query.max_price_minor.map(crate::views::money),
            self_url => list.query.url(),
            count => crate::pager::count_text(list.total, list.total_is_lower_bound, "product", "products"),
            focus_list => focus_list,
        };
        let mut fill = Fill::new(context, lookup);
        if ctx.want == Want::Partial
            && let Ok(url) = HeaderValue::from_str(&list.query.url())
        {
            // The list's own URL, not the form's (which lists its empty fields).
            fill.headers.push((HeaderName::from_static("hx-push-url"), url));
        }
        Ok(fill)
    })
    .await
}

/// One product, with its pictures, categories and (on its page) a few
/// others from its first category.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    if ctx.want == Want::Json {
        let (product, lookup) = ctx.state.catalog.product_json(&ctx.services(), id).await?;
        return Ok(Ctx::json_cached(product, lookup));
    }
    // Rendered once per version of the product lists: every change to a
    // product (Catalog::forget, forget_all) moves it on.
    let key = format!("product:{id}:v{}", ctx.state.cache.list_version().await);
    ctx.render_kept(CARD, &key, || async {
        let (product, lookup) = ctx.state.catalog.product(&ctx.services(), id).await?;
        // Related products are a nicety: the product shows without them (and
        // is not kept so).
        let (related, keep) = match ctx.state.catalog.related(&ctx.services(), &product, 4).await {
            Ok(related) => (related, true),
            Err(error) => {
                tracing::warn!(product_id = id, %error, "related products unavailable");
                (Vec::new(), false)
            }
        };
        let context = minijinja::context! {
            product => minijinja::value::Serde(&product),
            related => minijinja::value::Serde(&related),
        };
        Ok(Fill { keep, ..Fill::new(context, lookup) })
    })
    .await
}

/// The form for a new product (admins).
pub async fn new_form(ctx: Ctx) -> Result<Response, AppError> {
    ctx.admin()?;
    let categories = ctx.state.catalog.categories(&ctx.services()).await?;
    Ok(ctx.render(
        NEW,
        minijinja::context! {
            values => BTreeMap::<String, String>::new(),
            errors => BTreeMap::<String, String>::new(),
            categories => minijinja::value::Serde(&categories),
            selected => Vec::<i64>::new(),
        },
    ))
}

/// Adds a product (admins).
#[utoipa::path(post, path = "/products", tag = "products", request_body = ProductInput,
    responses((status = 201, description = "Created; `Location` names it", body = ProductView),
              (status = 401, body = crate::error_page::ProblemBody), (status = 403, body = crate::error_page::ProblemBody),
              (status = 422, description = "A field is invalid", body = crate::error_page::ProblemBody)))]
pub async fn create(ctx: Ctx, Input(input): Input<ProductInput>) -> Result<Response, AppError> {
    ctx.admin()?;
    let product = match add(&ctx, &input).await {
        Ok(product) => product,
        Err(error) => {
            let categories = ctx.state.catalog.categories(&ctx.services()).await.unwrap_or_default();
            let context = minijinja::context! {
                categories => minijinja::value::Serde(&categories),
                selected => input.categories().unwrap_or_default(),
            };
            return ctx.form_again(NEW, on_form(error), input.values(), context);
        }
    };
    ctx.state.catalog.forget_lists().await;
    if ctx.want == Want::Partial {
        // The new-product form stays open on the list: it says what was added.
        let mut response = ctx.show(ADDED, "product", &product);
        *response.status_mut() = StatusCode::CREATED;
        response.headers_mut().insert("hx-trigger", HeaderValue::from_static("product-list-changed"));
        return Ok(response);
    }
    let message = format!("Added {} at €{}.", product.name, product.price);
    ctx.created(&format!("/products/{}", product.id), &product, message).await
}

async fn add(ctx: &Ctx, input: &ProductInput) -> Result<ProductView, AppError> {
    let request = pb::CreateProductRequest {
        name: input.name.clone().unwrap_or_default(),
        description: input.description.clone().unwrap_or_default(),
        price_minor: input.price_minor()?.ok_or_else(|| AppError::field("price", "is required"))?,
        stock: input.stock.unwrap_or(0),
        category_ids: input.categories().unwrap_or_default(),
    };
    let created = ctx.services().inventory().create_product(request).await?.into_inner();
    created.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))
}

/// The form editing a product (admins), swapped over its card; its page
/// also manages the product's pictures.
pub async fn edit_form(ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    ctx.admin()?;
    let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
    let values = BTreeMap::from([
        ("name", product.name.clone()),
        ("description", product.description.clone()),
        ("price", product.price.clone()),
    ]);
    let selected: Vec<i64> = product.categories.iter().map(|c| c.id).collect();
    let context = edit_context(&ctx, &product, selected).await;
    Ok(ctx
        .render(EDIT, minijinja::context! { values => values, errors => BTreeMap::<String, String>::new(), ..context }))
}

/// What the edit page shows beside the form's values: the product, every
/// category and the ones ticked.
async fn edit_context(ctx: &Ctx, product: &ProductView, selected: Vec<i64>) -> minijinja::Value {
    let categories = ctx.state.catalog.categories(&ctx.services()).await.unwrap_or_default();
    minijinja::context! {
        product => minijinja::value::Serde(product),
        categories => minijinja::value::Serde(&categories),
        selected => selected,
        image_values => BTreeMap::<String, String>::new(),
        image_errors => BTreeMap::<String, String>::new(),
    }
}

/// Changes a product (admins). Only the fields sent change; stock moves by
/// `stock_delta`, never to an absolute value. The edit form posts to the
/// same URL.
#[utoipa::path(put, path = "/products/{id}", tag = "products", request_body = ProductInput,
    params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody),
              (status = 409, description = "Stock would go below zero", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update(ctx: Ctx, Id(id, _): Id<Product>, Input(input): Input<ProductInput>) -> Result<Response, AppError> {
    ctx.admin()?;
    let product = match change(&ctx, id, &input).await {
        Ok(product) => product,
        Err(error) if ctx.is_html() => {
            let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
            let selected = input.categories().unwrap_or_else(|| product.categories.iter().map(|c| c.id).collect());
            let context = edit_context(&ctx, &product, selected).await;
            return ctx.form_again(EDIT, on_form(error), input.values(), context);
        }
        Err(error) => return Err(error),
    };
    ctx.state.catalog.forget(id).await;
    let message = format!("Saved {}.", product.name);
    ctx.done((CARD, "product", &product), &format!("/products/{id}"), message).await
}

async fn change(ctx: &Ctx, id: i64, input: &ProductInput) -> Result<ProductView, AppError> {
    let request = pb::UpdateProductRequest {
        id,
        name: input.name.clone(),
        description: input.description.clone(),
        price_minor: input.price_minor()?,
        // A form's empty "add to stock" is no change; JSON may say 0.
        stock_delta: input.stock_delta.filter(|delta| *delta != 0 || !ctx.is_html()),
        categories: input.categories().map(|ids| pb::CategoryIds { ids }),
    };
    let updated = ctx.services().inventory().update_product(request).await?.into_inner();
    updated.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))
}

/// Removes a product (admins). Orders keep their copy of its name and price.
/// A form posts to `/products/{id}/delete`.
#[utoipa::path(delete, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn delete(ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    ctx.admin()?;
    ctx.services().inventory().delete_product(pb::DeleteProductRequest { id }).await?;
    ctx.state.catalog.forget(id).await;
    match ctx.want {
        Want::Partial => Ok(ctx.render(DELETED, minijinja::context! {})),
        _ => ctx.redirect("/products", "The product was deleted.".into()).await,
    }
}

/// Fills an empty catalogue with the demo products (admins; the empty home
/// page offers it). A catalogue with products is left alone.
pub async fn load_demo(ctx: Ctx) -> Result<Response, AppError> {
    ctx.admin()?;
    let request = pb::LoadDemoCatalogueRequest {};
    let added = ctx.services().inventory().load_demo_catalogue(request).await?.into_inner().added;
    ctx.state.catalog.forget_lists().await;
    if ctx.want == Want::Json {
        return Ok(axum::Json(serde_json::json!({ "added": added })).into_response());
    }
    let message = match added {
        0 => "The catalogue has products already: nothing was loaded.".to_owned(),
        added => format!("Added {added} demo products."),
    };
    ctx.redirect("/products", message).await
}
