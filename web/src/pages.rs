//! The pages of the thin gateway.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use shop_proto::inventory::v1::ListProductsRequest;

use crate::AppState;

/// The home page: the newest products. JSON when the client asks for it.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let listed = state
        .inventory
        .clone()
        .list_products(ListProductsRequest {
            page: 1,
            page_size: 20,
        })
        .await;
    let listed = match listed {
        Ok(listed) => listed.into_inner(),
        Err(status) => {
            tracing::warn!(error = %status, "listing products failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The catalogue is unavailable; please try again shortly.",
            )
                .into_response();
        }
    };
    let products: Vec<_> = listed
        .products
        .iter()
        .map(|p| serde_json::json!({ "id": p.id, "name": p.name, "price_minor": p.price_minor, "stock": p.stock }))
        .collect();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        return axum::Json(serde_json::json!({ "products": products, "total": listed.total }))
            .into_response();
    }
    let context = minijinja::context! { products => minijinja::value::Serde(&products), total => listed.total };
    match state.templates.render("home.html", context) {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "rendering home.html");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
