//! The catalogue: browsing for everyone; creating, editing and deleting for
//! admins, each as a partial swap.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shop_proto::inventory::v1 as pb;
use tower_sessions::Session;
use utoipa::ToSchema;

use crate::AppState;
use crate::cache::Lookup;
use crate::error::{AppError, FieldError};
use crate::extract::{Input, Paging, number_or_blank, parse_price};
use crate::negotiate::Want;
use crate::session::{self, Admin, Viewer};
use crate::views::{PageInfo, ProductList, ProductView};

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
}

pub fn product_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound(format!("There is no product {raw:?}.")))
}

fn error_map(errors: &[FieldError]) -> BTreeMap<String, String> {
    errors
        .iter()
        .map(|e| {
            // The form has one price field, whichever form the service named.
            let field = if e.field == "price_minor" { "price".to_owned() } else { e.field.clone() };
            (field, e.message.clone())
        })
        .collect()
}

/// Reads a product through the cache.
pub async fn fetch(state: &AppState, id: i64) -> Result<(ProductView, Lookup), AppError> {
    let mut inventory = state.inventory.clone();
    state
        .cache
        .get_or_fetch(&format!("product:{id}"), async move {
            let product = inventory.get_product(pb::GetProductRequest { id }).await?.into_inner().product;
            product.map(ProductView::from).ok_or_else(|| AppError::Internal("inventory returned no product".into()))
        })
        .await
}

/// Forgets a product's cached copies (it changed or went).
pub async fn forget(state: &AppState, id: i64) {
    state.cache.invalidate(&format!("product:{id}")).await;
    state.cache.retire_lists().await;
}

async fn fetch_page(state: &AppState, page: u32, page_size: u32) -> Result<(ProductList, Lookup), AppError> {
    let version = state.cache.list_version().await;
    let mut inventory = state.inventory.clone();
    state
        .cache
        .get_or_fetch(&format!("products:v{version}:{page}:{page_size}"), async move {
            let listed = inventory.list_products(pb::ListProductsRequest { page, page_size }).await?.into_inner();
            Ok::<_, AppError>(ProductList {
                page: PageInfo::new(listed.page, listed.page_size, listed.total),
                products: listed.products.into_iter().map(ProductView::from).collect(),
            })
        })
        .await
}

/// The catalogue, newest first, a page at a time.
#[utoipa::path(get, path = "/products", tag = "products", params(Paging),
    responses((status = 200, description = "A page of products", body = ProductList),
              (status = 400, description = "A malformed page number", body = crate::error::ProblemBody)))]
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    want: Want,
    paging: Paging,
) -> Result<Response, AppError> {
    let (list, lookup) = fetch_page(&state, paging.page(), paging.page_size()).await?;
    let mut response =
        state.templates.represent(&viewer, want, ("products/index.html", "products/_list.html"), "list", &list);
    response.headers_mut().insert("x-cache", HeaderValue::from_static(lookup.header()));
    Ok(response)
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 404, body = crate::error::ProblemBody)))]
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (product, lookup) = fetch(&state, product_id(&id)?).await?;
    let mut response =
        state.templates.represent(&viewer, want, ("products/show.html", "products/_card.html"), "product", &product);
    response.headers_mut().insert("x-cache", HeaderValue::from_static(lookup.header()));
    Ok(response)
}

/// The form for a new product (admins).
pub async fn new_form(State(state): State<AppState>, Admin(_): Admin, viewer: Viewer, want: Want) -> Response {
    let context = minijinja::context! { values => BTreeMap::<String, String>::new(), errors => BTreeMap::<String, String>::new() };
    state.templates.respond(&viewer, want, "products/new.html", "products/_new_form.html", context)
}

/// Adds a product (admins).
#[utoipa::path(post, path = "/products", tag = "products", request_body = ProductInput,
    responses((status = 201, description = "Created; `Location` names it", body = ProductView),
              (status = 401, body = crate::error::ProblemBody), (status = 403, body = crate::error::ProblemBody),
              (status = 422, description = "A field is invalid", body = crate::error::ProblemBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(_): Admin,
    session: Session,
    viewer: Viewer,
    want: Want,
    Input(input): Input<ProductInput>,
) -> Result<Response, AppError> {
    let result = async {
        let price_minor = input.price_minor()?.ok_or_else(|| AppError::field("price", "is required"))?;
        let request = pb::CreateProductRequest {
            name: input.name.clone().unwrap_or_default(),
            description: input.description.clone().unwrap_or_default(),
            price_minor,
            stock: input.stock.unwrap_or(0),
        };
        let product = state.inventory.clone().create_product(request).await?.into_inner().product;
        product.map(ProductView::from).ok_or_else(|| AppError::Internal("inventory returned no product".into()))
    }
    .await;
    match (result, want) {
        (Ok(product), Want::Partial) => {
            state.cache.retire_lists().await;
            let mut response = state.templates.respond(
                &viewer,
                want,
                "products/new.html",
                "products/_created.html",
                minijinja::context! { product => minijinja::value::Serde(&product) },
            );
            *response.status_mut() = StatusCode::CREATED;
            response.headers_mut().insert("hx-trigger", HeaderValue::from_static("product-list-changed"));
            Ok(response)
        }
        (Ok(product), _) => {
            state.cache.retire_lists().await;
            if want == Want::Page {
                session::flash(&session, format!("Added {} at €{}.", product.name, product.price)).await?;
            }
            Ok(super::created(want, &format!("/products/{}", product.id), &product))
        }
        (Err(AppError::Invalid(errors)), Want::Page | Want::Partial) => {
            let values = form_values(&input);
            let context = minijinja::context! { values => values, errors => error_map(&errors) };
            let mut response =
                state.templates.respond(&viewer, want, "products/new.html", "products/_new_form.html", context);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        (Err(error), _) => Err(error),
    }
}

fn form_values(input: &ProductInput) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            values.insert(key.to_owned(), value);
        }
    };
    put("name", input.name.clone());
    put("description", input.description.clone());
    put("price", input.price.clone().or_else(|| input.price_minor.map(crate::views::money)));
    put("stock", input.stock.map(|s| s.to_string()));
    put("stock_delta", input.stock_delta.map(|s| s.to_string()));
    values
}

/// The form editing a product (admins), swapped over its card.
pub async fn edit_form(
    State(state): State<AppState>,
    Admin(_): Admin,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (product, _) = fetch(&state, product_id(&id)?).await?;
    let values = BTreeMap::from([
        ("name".to_owned(), product.name.clone()),
        ("description".to_owned(), product.description.clone()),
        ("price".to_owned(), product.price.clone()),
    ]);
    let context = minijinja::context! { product => minijinja::value::Serde(&product), values => values, errors => BTreeMap::<String, String>::new() };
    Ok(state.templates.respond(&viewer, want, "products/edit.html", "products/_edit_form.html", context))
}

/// Changes a product (admins). Only the fields sent change; stock moves by
/// `stock_delta`, never to an absolute value. The edit form posts to the
/// same URL.
#[utoipa::path(put, path = "/products/{id}", tag = "products", request_body = ProductInput,
    params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, body = ProductView), (status = 401, body = crate::error::ProblemBody),
              (status = 403, body = crate::error::ProblemBody), (status = 404, body = crate::error::ProblemBody),
              (status = 409, description = "Stock would go below zero", body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody)))]
pub async fn update(
    State(state): State<AppState>,
    Admin(_): Admin,
    session: Session,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
    Input(input): Input<ProductInput>,
) -> Result<Response, AppError> {
    let id = product_id(&id)?;
    let result = async {
        let request = pb::UpdateProductRequest {
            id,
            name: input.name.clone(),
            description: input.description.clone(),
            price_minor: input.price_minor()?,
            stock_delta: input.stock_delta.filter(|delta| *delta != 0 || want == Want::Json),
        };
        let product = state.inventory.clone().update_product(request).await?.into_inner().product;
        product.map(ProductView::from).ok_or_else(|| AppError::Internal("inventory returned no product".into()))
    }
    .await;
    match result {
        Ok(product) if want == Want::Page => {
            forget(&state, id).await;
            super::done(&session, &format!("/products/{id}"), format!("Saved {}.", product.name)).await
        }
        Ok(product) => {
            forget(&state, id).await;
            Ok(state.templates.represent(
                &viewer,
                want,
                ("products/show.html", "products/_card.html"),
                "product",
                &product,
            ))
        }
        Err(AppError::Invalid(errors)) if want.is_html() => {
            let (product, _) = fetch(&state, id).await?;
            let context = minijinja::context! { product => minijinja::value::Serde(&product), values => form_values(&input), errors => error_map(&errors) };
            let mut response =
                state.templates.respond(&viewer, want, "products/edit.html", "products/_edit_form.html", context);
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(error) => Err(error),
    }
}

/// Removes a product (admins). Orders keep their copy of its name and price.
/// A form posts to `/products/{id}/delete`.
#[utoipa::path(delete, path = "/products/{id}", tag = "products", params(("id" = i64, Path, description = "Product id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error::ProblemBody),
              (status = 403, body = crate::error::ProblemBody), (status = 404, body = crate::error::ProblemBody)))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(_): Admin,
    session: Session,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = product_id(&id)?;
    state.inventory.clone().delete_product(pb::DeleteProductRequest { id }).await?;
    forget(&state, id).await;
    Ok(match want {
        Want::Json => StatusCode::NO_CONTENT.into_response(),
        Want::Partial => state.templates.respond(
            &viewer,
            want,
            "products/show.html",
            "products/_deleted.html",
            minijinja::context! {},
        ),
        Want::Page => super::done(&session, "/products", "The product was deleted.").await?,
    })
}
