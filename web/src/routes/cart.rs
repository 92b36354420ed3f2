//! The cart, kept in the session: anyone may fill one; checkout (POST
//! /orders) needs an account.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;
use utoipa::ToSchema;

use super::products::{fetch, product_id};
use crate::AppState;
use crate::error::AppError;
use crate::extract::{Input, number_or_blank};
use crate::negotiate::Want;
use crate::session::{self, Cart, Viewer};
use crate::views::{CartLine, CartView, money};

/// Most distinct products, and units of one product, a cart may hold
/// (the same bounds as an order).
const MAX_LINES: usize = 100;
const MAX_QUANTITY: i64 = 10_000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CartItemInput {
    #[serde(default, deserialize_with = "number_or_blank")]
    pub product_id: Option<i64>,
    /// Units to add (default 1).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub quantity: Option<i64>,
}

/// The cart with today's names and prices. Products deleted since they
/// were added drop out.
pub async fn view(state: &AppState, cart: &Cart) -> Result<CartView, AppError> {
    let mut lines = Vec::with_capacity(cart.len());
    for (&id, &quantity) in cart {
        match fetch(state, id).await {
            Ok((product, _)) => lines.push(CartLine {
                line_total: money(product.price_minor.saturating_mul(quantity)),
                product,
                quantity,
            }),
            Err(AppError::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    let total_minor =
        lines.iter().map(|l| l.product.price_minor.saturating_mul(l.quantity)).fold(0_i64, i64::saturating_add);
    let count = lines.iter().map(|l| l.quantity).sum();
    Ok(CartView { lines, count, total_minor, total: money(total_minor) })
}

fn respond(state: &AppState, viewer: &Viewer, want: Want, cart: &CartView) -> Response {
    match want {
        Want::Json => axum::Json(cart).into_response(),
        _ => state.templates.respond(
            viewer,
            want,
            "cart/show.html",
            "cart/_cart.html",
            minijinja::context! { cart => minijinja::value::Serde(cart), checkout_key => uuid::Uuid::new_v4().to_string() },
        ),
    }
}

/// What the cart holds.
#[utoipa::path(get, path = "/cart", tag = "cart", responses((status = 200, body = CartView)))]
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    viewer: Viewer,
    want: Want,
) -> Result<Response, AppError> {
    let cart = view(&state, &session::cart(&session).await?).await?;
    Ok(respond(&state, &viewer, want, &cart))
}

/// Adds units of a product.
#[utoipa::path(post, path = "/cart/items", tag = "cart", request_body = CartItemInput,
    responses((status = 200, body = CartView), (status = 404, body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody)))]
pub async fn add(
    State(state): State<AppState>,
    session: Session,
    mut viewer: Viewer,
    want: Want,
    Input(input): Input<CartItemInput>,
) -> Result<Response, AppError> {
    let id =
        input.product_id.filter(|id| *id > 0).ok_or_else(|| AppError::field("product_id", "must name a product"))?;
    let quantity = input.quantity.unwrap_or(1);
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(AppError::field("quantity", "must be between 1 and 10000"));
    }
    let (product, _) = fetch(&state, id).await?;
    let mut cart = session::cart(&session).await?;
    let total = cart.get(&id).copied().unwrap_or(0).saturating_add(quantity);
    if total > MAX_QUANTITY {
        return Err(AppError::field("quantity", "a cart holds at most 10000 of one product"));
    }
    if !cart.contains_key(&id) && cart.len() >= MAX_LINES {
        return Err(AppError::field("product_id", "a cart holds at most 100 different products"));
    }
    cart.insert(id, total);
    session::save_cart(&session, &cart).await?;
    viewer.cart_count = cart.values().sum();
    match want {
        Want::Partial => Ok(state.templates.respond(
            &viewer,
            want,
            "cart/show.html",
            "cart/_added.html",
            minijinja::context! { product => minijinja::value::Serde(&product), quantity => quantity },
        )),
        Want::Page => {
            super::done(&session, "/cart", format!("Added {quantity} × {} to your cart.", product.name)).await
        }
        Want::Json => Ok(respond(&state, &viewer, want, &view(&state, &cart).await?)),
    }
}

/// Takes a product out of the cart (also `POST /cart/items/{product_id}/delete`).
#[utoipa::path(delete, path = "/cart/items/{product_id}", tag = "cart",
    params(("product_id" = i64, Path, description = "Product id")),
    responses((status = 200, body = CartView)))]
pub async fn remove(
    State(state): State<AppState>,
    session: Session,
    mut viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = product_id(&id)?;
    let mut cart = session::cart(&session).await?;
    cart.remove(&id);
    session::save_cart(&session, &cart).await?;
    if want == Want::Page {
        // A product deleted since it was added has no name to tell.
        let name = fetch(&state, id).await.map_or_else(|_| "the product".to_owned(), |(product, _)| product.name);
        return super::done(&session, "/cart", format!("Removed {name} from your cart.")).await;
    }
    viewer.cart_count = cart.values().sum();
    let cart = view(&state, &cart).await?;
    Ok(respond(&state, &viewer, want, &cart))
}
