//! The home page: the newest products (the first page of the catalogue,
//! through its cache).

use axum::response::{IntoResponse, Response};

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::negotiate::Want;

const HOME: Pages = Pages::new("home.html", "home.html");

pub async fn home(ctx: Ctx) -> Result<Response, AppError> {
    let (newest, _) = ctx.state.catalog.page(&ctx.services(), 1, 8).await?;
    Ok(match ctx.want {
        Want::Json => axum::Json(serde_json::json!({
            "products": newest.products,
            "total": newest.page.total,
            "links": { "products": "/products", "orders": "/orders", "cart": "/cart", "openapi": "/openapi.json" },
        }))
        .into_response(),
        _ => ctx.render(
            HOME,
            minijinja::context! { products => minijinja::value::Serde(&newest.products), total => newest.page.total },
        ),
    })
}
