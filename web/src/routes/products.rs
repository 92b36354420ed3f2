//! The catalogue: browsing for everyone; creating, editing and deleting for
//! admins. Reads go through the [`Catalog`](crate::catalog::Catalog)'s cache;
//! every write forgets what it changed.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shop_proto::inventory::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::{AppError, FieldError};
use crate::extract::{Id, Input, Paging, Product, number_or_blank, parse_price};
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
}

impl ProductInput {
    fn price_minor(&self) -> Result<Option<i64>, AppError> {
        match (&self.price_minor, self.price.as_deref().map(str::trim)) {
            (Some(minor), _) => Ok(Some(*minor)),
            (None, Some(text)) if !text.is_empty() => parse_price(text).map(Some),
            _ => Ok(None),
        }
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

/// The catalogue, newest first, a page at a time.
#[utoipa::path(get, path = "/products", tag = "products", params(Paging),
    responses((status = 200, description = "A page of products", body = crate::views::ProductList),
              (status = 400, description = "A malformed page number", body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, paging: Paging) -> Result<Response, AppError> {
    let (list, lookup) = ctx.state.catalog.page(&ctx.services(), paging.page(), paging.page_size()).await?;
    Ok(ctx.show_cached(LIST, "list", &list, lookup))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    let (product, lookup) = ctx.state.catalog.product(&ctx.services(), id).await?;
    Ok(ctx.show_cached(CARD, "product", &product, lookup))
}

/// The form for a new product (admins).
pub async fn new_form(ctx: Ctx) -> Result<Response, AppError> {
    ctx.admin()?;
    Ok(ctx.render(NEW, minijinja::context! { values => BTreeMap::<String, String>::new(), errors => BTreeMap::<String, String>::new() }))
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
        Err(error) => return ctx.form_again(NEW, on_form(error), input.values(), minijinja::context! {}),
    };
    ctx.state.catalog.forget_lists().await;
    if ctx.want == crate::negotiate::Want::Partial {
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
    };
    let created = ctx.services().inventory().create_product(request).await?.into_inner();
    created.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))
}

/// The form editing a product (admins), swapped over its card.
pub async fn edit_form(ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    ctx.admin()?;
    let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
    let values = BTreeMap::from([
        ("name", product.name.clone()),
        ("description", product.description.clone()),
        ("price", product.price.clone()),
    ]);
    let context = minijinja::context! { product => minijinja::value::Serde(&product), values => values, errors => BTreeMap::<String, String>::new() };
    Ok(ctx.render(EDIT, context))
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
            let context = minijinja::context! { product => minijinja::value::Serde(&product) };
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
        crate::negotiate::Want::Partial => Ok(ctx.render(DELETED, minijinja::context! {})),
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
    if ctx.want == crate::negotiate::Want::Json {
        return Ok(axum::Json(serde_json::json!({ "added": added })).into_response());
    }
    let message = match added {
        0 => "The catalogue has products already: nothing was loaded.".to_owned(),
        added => format!("Added {added} demo products."),
    };
    ctx.redirect("/products", message).await
}
