//! The home page: the newest products.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::AppError;
use crate::negotiate::Want;
use crate::session::Viewer;

pub async fn home(State(state): State<AppState>, viewer: Viewer, want: Want) -> Result<Response, AppError> {
    let listed = state
        .inventory
        .clone()
        .list_products(shop_proto::inventory::v1::ListProductsRequest { page: 1, page_size: 8 })
        .await?
        .into_inner();
    let products: Vec<crate::views::ProductView> = listed.products.into_iter().map(Into::into).collect();
    Ok(match want {
        Want::Json => axum::Json(serde_json::json!({
            "products": products,
            "total": listed.total,
            "links": { "products": "/products", "orders": "/orders", "cart": "/cart", "openapi": "/openapi.json" },
        }))
        .into_response(),
        _ => state.templates.respond(
            &viewer,
            want,
            "home.html",
            "home.html",
            minijinja::context! { products => minijinja::value::Serde(&products), total => listed.total },
        ),
    })
}
