//! The cart, kept in the session: anyone may fill one; checkout (POST
//! /orders) needs an account.

use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use shop_order_lines::{LinesError, OrderLines};

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{Id, Input, Product, number_or_blank};
use crate::negotiate::Want;
use crate::viewer::{self, Cart};
use crate::views::{CartLine, CartView};

const CART: Pages = Pages::new("cart/show.html", "cart/_cart.html");
const ADDED: Pages = Pages::new("cart/show.html", "cart/_added.html");

#[derive(Debug, Deserialize, ToSchema)]
pub struct CartItemInput {
    #[serde(default, deserialize_with = "number_or_blank")]
    pub product_id: Option<i64>,
    /// Units to add (default 1).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub quantity: Option<i64>,
}

/// The cart with today's names and prices, read in one call. Products
/// deleted since they were added are taken out of the cart (so checkout
/// cannot trip on them), and the view says how many went.
async fn view(ctx: &Ctx, cart: &mut Cart) -> Result<CartView, AppError> {
    let products = ctx.state.catalog.products(&ctx.services(), cart.keys().copied().collect()).await?;
    let removed = cart.len() - products.len();
    if removed > 0 {
        cart.retain(|id, _| products.iter().any(|product| product.id == *id));
        viewer::save_cart(&ctx.session, cart).await?;
    }
    let lines = products.into_iter().filter_map(|product| Some(CartLine::new(*cart.get(&product.id)?, product)));
    Ok(CartView { removed, ..CartView::new(lines.collect()) })
}

/// The cart in the representation wanted, with a fresh checkout key (one
/// per rendering: submitting the form twice places one order).
fn respond(ctx: &Ctx, cart: &CartView) -> Response {
    match ctx.want {
        Want::Json => ctx.show(CART, "cart", cart),
        _ => ctx.render(
            CART,
            minijinja::context! { cart => minijinja::value::Serde(cart), checkout_key => uuid::Uuid::new_v4().to_string() },
        ),
    }
}

/// What the cart holds.
#[utoipa::path(get, path = "/cart", tag = "cart", responses((status = 200, body = CartView)))]
pub async fn show(ctx: Ctx) -> Result<Response, AppError> {
    let cart = view(&ctx, &mut viewer::cart(&ctx.session).await?).await?;
    Ok(respond(&ctx, &cart))
}

/// `quantity` more of `id`: a cart holds what one order may hold, checked
/// by the parser the order service and inventory use.
fn add_to(cart: &mut Cart, id: i64, quantity: i64) -> Result<(), AppError> {
    // A quantity out of bounds is this request's fault, whatever the cart held.
    let lines = std::iter::once((id, quantity)).chain(cart.iter().map(|(id, quantity)| (*id, *quantity)));
    OrderLines::parse(lines).map_err(|error| {
        let field = match error {
            LinesError::Quantity | LinesError::QuantityPerProduct => "quantity",
            LinesError::ProductId | LinesError::Empty | LinesError::TooMany => "product_id",
        };
        AppError::field(field, error.message())
    })?;
    *cart.entry(id).or_default() += quantity;
    Ok(())
}

/// Adds units of a product.
#[utoipa::path(post, path = "/cart/items", tag = "cart", request_body = CartItemInput,
    responses((status = 200, body = CartView), (status = 404, body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn add(mut ctx: Ctx, Input(input): Input<CartItemInput>) -> Result<Response, AppError> {
    let id =
        input.product_id.filter(|id| *id > 0).ok_or_else(|| AppError::field("product_id", "must name a product"))?;
    let quantity = input.quantity.unwrap_or(1);
    let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
    let mut cart = viewer::cart(&ctx.session).await?;
    add_to(&mut cart, id, quantity)?;
    viewer::save_cart(&ctx.session, &cart).await?;
    ctx.viewer.cart_count = cart.values().sum();
    match ctx.want {
        Want::Json => Ok(respond(&ctx, &view(&ctx, &mut cart).await?)),
        Want::Partial => {
            Ok(ctx.render(ADDED, minijinja::context! { product => minijinja::value::Serde(&product), quantity }))
        }
        Want::Page => ctx.redirect("/cart", format!("Added {quantity} × {} to your cart.", product.name)).await,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct QuantityInput {
    /// Units wanted; 0 takes the product out.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub quantity: Option<i64>,
}

/// Sets how many of a product the cart holds, at most what is in stock
/// (the form on each cart line posts to the same URL). 0 takes it out.
#[utoipa::path(put, path = "/cart/items/{product_id}", tag = "cart", request_body = QuantityInput,
    params(("product_id" = i64, Path, description = "Product id")),
    responses((status = 200, body = CartView), (status = 404, body = crate::error_page::ProblemBody),
              (status = 422, description = "More than is in stock, or not a quantity", body = crate::error_page::ProblemBody)))]
pub async fn set(
    mut ctx: Ctx,
    Id(id, _): Id<Product>,
    Input(input): Input<QuantityInput>,
) -> Result<Response, AppError> {
    let quantity = input.quantity.ok_or_else(|| AppError::field("quantity", "must be a whole number"))?;
    let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
    if quantity > product.stock {
        let left = if product.stock > 0 { format!("only {} left", product.stock) } else { "out of stock".into() };
        return Err(AppError::field("quantity", &format!("{}: {left}", product.name)));
    }
    let mut cart = viewer::cart(&ctx.session).await?;
    cart.remove(&id);
    if quantity != 0 {
        add_to(&mut cart, id, quantity)?;
    }
    viewer::save_cart(&ctx.session, &cart).await?;
    ctx.viewer.cart_count = cart.values().sum();
    if ctx.want == Want::Page {
        return ctx.redirect("/cart", format!("{}: {quantity} in your cart.", product.name)).await;
    }
    Ok(respond(&ctx, &view(&ctx, &mut cart).await?))
}

/// Takes a product out of the cart (also `POST /cart/items/{product_id}/delete`).
#[utoipa::path(delete, path = "/cart/items/{product_id}", tag = "cart",
    params(("product_id" = i64, Path, description = "Product id")),
    responses((status = 200, body = CartView)))]
pub async fn remove(mut ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    let mut cart = viewer::cart(&ctx.session).await?;
    cart.remove(&id);
    viewer::save_cart(&ctx.session, &cart).await?;
    ctx.viewer.cart_count = cart.values().sum();
    if ctx.want == Want::Page {
        // A product deleted since it was added has no name to tell.
        let name =
            ctx.state.catalog.product(&ctx.services(), id).await.map_or_else(|_| "the product".into(), |p| p.0.name);
        return ctx.redirect("/cart", format!("Removed {name} from your cart.")).await;
    }
    Ok(respond(&ctx, &view(&ctx, &mut cart).await?))
}
