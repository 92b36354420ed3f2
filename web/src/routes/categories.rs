//! Categories: a list anyone can browse (each links to its products), kept
//! by admins on the same page (add, rename, delete).

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shop_proto::inventory::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::negotiate::Want;
use crate::views::CategoryView;

const LIST: Pages = Pages::new("categories/index.html", "categories/_list.html");

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CategoryInput {
    /// 1 to 60 characters, unique.
    pub name: Option<String>,
}

/// Every category, by name, with how many products each holds.
#[utoipa::path(get, path = "/categories", tag = "products",
    responses((status = 200, description = "Every category", body = Vec<CategoryView>)))]
pub async fn list(ctx: Ctx) -> Result<Response, AppError> {
    let categories = ctx.state.catalog.categories(&ctx.services()).await?;
    if ctx.want == Want::Json {
        return Ok(axum::Json(categories).into_response());
    }
    Ok(ctx.render(LIST, page_context(categories, BTreeMap::new(), BTreeMap::new())))
}

fn page_context(
    categories: Vec<CategoryView>,
    values: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
) -> minijinja::Value {
    minijinja::context! { categories => minijinja::value::Serde(&categories), values => values, errors => errors }
}

/// The list again after a change: the fragment for htmx (with the message),
/// a 303 to the page for a plain form.
async fn changed(ctx: &Ctx, message: String) -> Result<Response, AppError> {
    ctx.state.catalog.forget_lists().await;
    let categories = ctx.state.catalog.categories(&ctx.services()).await?;
    ctx.done((LIST, "categories", &categories), "/categories", message).await
}

async fn form_again(ctx: &Ctx, error: AppError, input: &CategoryInput) -> Result<Response, AppError> {
    let categories = ctx.state.catalog.categories(&ctx.services()).await?;
    let values = BTreeMap::from([("name".to_owned(), input.name.clone().unwrap_or_default())]);
    let context = minijinja::context! { categories => minijinja::value::Serde(&categories) };
    ctx.form_again(LIST, error, values, context)
}

/// Adds a category (admins).
#[utoipa::path(post, path = "/categories", tag = "products", request_body = CategoryInput,
    responses((status = 201, body = CategoryView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody),
              (status = 409, description = "The name is taken", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn create(
    ctx: Ctx,
    crate::extract::Input(input): crate::extract::Input<CategoryInput>,
) -> Result<Response, AppError> {
    ctx.admin()?;
    let request = pb::CreateCategoryRequest { name: input.name.clone().unwrap_or_default() };
    let category = match ctx.services().inventory().create_category(request).await {
        Ok(created) => created.into_inner().category.map(CategoryView::from),
        Err(status) => return form_again(&ctx, AppError::from(status), &input).await,
    };
    let category = category.ok_or(AppError::Missing("inventory returned no category"))?;
    if ctx.want == Want::Json {
        ctx.state.catalog.forget_lists().await;
        return ctx.created(&format!("/products?category={}", category.slug), &category, String::new()).await;
    }
    changed(&ctx, format!("Added the category {}.", category.name)).await
}

/// Renames a category (admins; the form posts to the same URL).
#[utoipa::path(put, path = "/categories/{id}", tag = "products", request_body = CategoryInput,
    params(("id" = i64, Path, description = "Category id")),
    responses((status = 200, body = CategoryView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody),
              (status = 409, description = "The name is taken", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn rename(
    ctx: Ctx,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::extract::Input(input): crate::extract::Input<CategoryInput>,
) -> Result<Response, AppError> {
    ctx.admin()?;
    let id = category_id(&id)?;
    let request = pb::UpdateCategoryRequest { id, name: input.name.clone().unwrap_or_default() };
    let category = match ctx.services().inventory().update_category(request).await {
        Ok(renamed) => renamed.into_inner().category.map(CategoryView::from),
        Err(status) => return form_again(&ctx, AppError::from(status), &input).await,
    };
    let category = category.ok_or(AppError::Missing("inventory returned no category"))?;
    if ctx.want == Want::Json {
        ctx.state.catalog.forget_lists().await;
        return Ok(axum::Json(category).into_response());
    }
    changed(&ctx, format!("Renamed the category to {}.", category.name)).await
}

/// Deletes a category (admins); its products stay, without it. A form
/// posts to `/categories/{id}/delete`.
#[utoipa::path(delete, path = "/categories/{id}", tag = "products",
    params(("id" = i64, Path, description = "Category id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn delete(ctx: Ctx, axum::extract::Path(id): axum::extract::Path<String>) -> Result<Response, AppError> {
    ctx.admin()?;
    let id = category_id(&id)?;
    let name = ctx.state.catalog.categories(&ctx.services()).await?.into_iter().find(|c| c.id == id).map(|c| c.name);
    ctx.services().inventory().delete_category(pb::DeleteCategoryRequest { id }).await?;
    if ctx.want == Want::Json {
        ctx.state.catalog.forget_lists().await;
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let name = name.unwrap_or_else(|| "the category".into());
    changed(&ctx, format!("Deleted {name}; its products are still in the shop.")).await
}

fn category_id(raw: &str) -> Result<i64, AppError> {
    raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| AppError::NotFound("There is no such category.".into()))
}
