//! The cart: anyone may fill one; checkout (POST /orders) needs an account.
//!
//! Where it lives: a guest's cart is kept in the session; a signed-in
//! customer's is kept by the order service (its database), so it survives
//! sign-out and is the same on every device. At sign-in (and register) the
//! guest's cart is merged into the customer's ([`merge_guest_cart`]): the
//! order service adds the quantities, bounded by stock and by one order's
//! limits, and says what it cut, which the customer is told once. The
//! order service decides every bound for a kept cart; for a guest's the
//! gateway checks the stock it reads, and the order service checks again
//! when the cart is merged.
//!
//! The navigation's count is cached in the session after every cart change
//! and at sign-in (`viewer::remember_cart_count`): a change made on another
//! device shows here after this session's next cart action.

use axum::response::Response;
use serde::Deserialize;
use shop_grpc::identity::Caller;
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::orders::v1 as pb;
use utoipa::ToSchema;

use shop_order_lines::{LinesError, OrderLines};

use crate::cart_view::{CartLine, CartView, GoneLine, LineStatus, and_list};
use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{Id, Input, Product, number_or_blank};
use crate::negotiate::Want;
use crate::viewer::{self, Cart, SessionUser};
use crate::views::ProductView;

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

/// A guest's cart with today's names and prices, read in one call. Products
/// deleted since they were added are taken out of it (a guest cannot check
/// out, and there is no name to show for them), and the view says how many
/// went.
async fn guest_view(ctx: &Ctx, cart: &mut Cart) -> Result<CartView, AppError> {
    let products = ctx.state.catalog.products(&ctx.services(), cart.keys().copied().collect()).await?;
    let removed = cart.len() - products.len();
    if removed > 0 {
        cart.retain(|id, _| products.iter().any(|product| product.id == *id));
        viewer::save_cart(&ctx.session, cart).await?;
    }
    let lines = products.into_iter().filter_map(|product| Some(CartLine::new(*cart.get(&product.id)?, product)));
    Ok(CartView { removed, ..CartView::new(lines.collect(), Vec::new()) })
}

fn status_of(line: &pb::CartLine) -> Option<LineStatus> {
    match line.availability() {
        pb::CartLineAvailability::Available => Some(LineStatus::Available),
        pb::CartLineAvailability::Short => Some(LineStatus::Short),
        pb::CartLineAvailability::OutOfStock => Some(LineStatus::OutOfStock),
        pb::CartLineAvailability::NotSold | pb::CartLineAvailability::Unspecified => None,
    }
}

/// A kept cart as the order service marked it, each line still sold shown
/// with the product the order service read for it (no second call to
/// inventory); caches its count for the navigation.
pub async fn kept_view(ctx: &mut Ctx, cart: Option<pb::Cart>) -> Result<CartView, AppError> {
    let (mut lines, mut gone) = (Vec::new(), Vec::new());
    for line in cart.unwrap_or_default().lines {
        let status = status_of(&line);
        match (status, line.product) {
            // The order service's mark, so the page says what checkout will do.
            (Some(status), Some(product)) => {
                lines.push(CartLine { status, ..CartLine::new(line.quantity, ProductView::from(product)) });
            }
            _ => gone.push(GoneLine { product_id: line.product_id, name: line.product_name, quantity: line.quantity }),
        }
    }
    let view = CartView::new(lines, gone);
    remember_count(ctx, view.count).await?;
    Ok(view)
}

async fn remember_count(ctx: &mut Ctx, count: i64) -> Result<(), AppError> {
    ctx.viewer.cart_count = count;
    viewer::remember_cart_count(&ctx.session, count).await
}

/// The units a kept cart holds.
fn count_of(cart: Option<&pb::Cart>) -> i64 {
    cart.map_or(0, |cart| cart.lines.iter().map(|line| line.quantity).sum())
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

/// The viewer's cart, read afresh: a guest's from the session, a
/// customer's from the order service.
async fn current(ctx: &mut Ctx) -> Result<CartView, AppError> {
    match ctx.viewer.user.clone() {
        None => guest_view(ctx, &mut viewer::cart(&ctx.session).await?).await,
        Some(user) => {
            // A guest cart left in a signed-in session (the order service was
            // away at sign-in) is merged now, and the customer told.
            if !viewer::cart(&ctx.session).await?.is_empty() {
                let told = merge_guest_cart(ctx, &user).await?;
                if !told.is_empty() {
                    ctx.viewer.flash = Some(told);
                }
            }
            let kept = ctx.services().orders().get_cart(pb::GetCartRequest {}).await?.into_inner();
            kept_view(ctx, kept.cart).await
        }
    }
}

/// What the cart holds. Lines checkout would leave out are marked by
/// `status` (`short`, `out_of_stock`) or listed in `gone` (no longer sold).
#[utoipa::path(get, path = "/cart", tag = "cart", responses((status = 200, body = CartView)))]
pub async fn show(mut ctx: Ctx) -> Result<Response, AppError> {
    let cart = current(&mut ctx).await?;
    Ok(respond(&ctx, &cart))
}

/// `quantity` more of `id` in a guest's cart: a cart holds what one order
/// may hold, checked by the parser the order service and inventory use.
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

/// "Gyokuro: only 3 left" / "Gyokuro: out of stock".
fn beyond_stock(name: &str, available: i64) -> AppError {
    let left = if available > 0 { format!("only {available} left") } else { "out of stock".into() };
    AppError::field("quantity", &format!("{name}: {left}"))
}

/// A kept cart's refusal, told by the product's name.
fn cart_refusal(status: tonic::Status, name: &str, held_before: impl Fn(i64) -> i64) -> AppError {
    let meta = |key: &str| rich_error::metadata(&status, key).and_then(|value| value.parse::<i64>().ok());
    match rich_error::reason(&status) {
        Some(ErrorReason::StockShort) => {
            let available = meta("available").unwrap_or(0);
            let held = held_before(meta("requested").unwrap_or(0));
            if held > 0 && available > 0 {
                AppError::field("quantity", &format!("Only {available} {name} left: your cart has {held}."))
            } else {
                beyond_stock(name, available)
            }
        }
        _ => AppError::from_refusal(&status, Some(name)),
    }
}

/// Adds units of a product, as many as are in stock at most.
#[utoipa::path(post, path = "/cart/items", tag = "cart", request_body = CartItemInput,
    responses((status = 200, body = CartView), (status = 404, body = crate::error_page::ProblemBody),
              (status = 422, description = "More than is in stock, or not a quantity", body = crate::error_page::ProblemBody)))]
pub async fn add(mut ctx: Ctx, Input(input): Input<CartItemInput>) -> Result<Response, AppError> {
    let id =
        input.product_id.filter(|id| *id > 0).ok_or_else(|| AppError::field("product_id", "must name a product"))?;
    let quantity = input.quantity.unwrap_or(1);
    let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
    let mut view = None;
    if ctx.viewer.user.is_some() {
        let request = pb::AddCartItemRequest { product_id: id, quantity };
        let added = ctx.services().orders().add_cart_item(request).await;
        let kept = added.map_err(|status| cart_refusal(status, &product.name, |requested| requested - quantity))?;
        let kept = kept.into_inner().cart;
        if ctx.want == Want::Json {
            view = Some(kept_view(&mut ctx, kept).await?);
        } else {
            remember_count(&mut ctx, count_of(kept.as_ref())).await?;
        }
    } else {
        let mut cart = viewer::cart(&ctx.session).await?;
        let held = cart.get(&id).copied().unwrap_or(0);
        if quantity > 0 && held.saturating_add(quantity) > product.stock {
            return Err(beyond_stock(&product.name, product.stock));
        }
        add_to(&mut cart, id, quantity)?;
        viewer::save_cart(&ctx.session, &cart).await?;
        ctx.viewer.cart_count = cart.values().sum();
        if ctx.want == Want::Json {
            view = Some(guest_view(&ctx, &mut cart).await?);
        }
    }
    match (ctx.want, view) {
        (Want::Json, Some(view)) => Ok(respond(&ctx, &view)),
        (Want::Page, _) => ctx.redirect("/cart", format!("Added {quantity} × {} to your cart.", product.name)).await,
        _ => Ok(ctx.render(ADDED, minijinja::context! { product => minijinja::value::Serde(&product), quantity })),
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
    let view = if ctx.viewer.user.is_some() {
        let set = ctx.services().orders().set_cart_item(pb::SetCartItemRequest { product_id: id, quantity }).await;
        let kept = set.map_err(|status| cart_refusal(status, &product.name, |_| 0))?;
        kept_view(&mut ctx, kept.into_inner().cart).await?
    } else {
        if quantity > product.stock {
            return Err(beyond_stock(&product.name, product.stock));
        }
        let mut cart = viewer::cart(&ctx.session).await?;
        cart.remove(&id);
        if quantity != 0 {
            add_to(&mut cart, id, quantity)?;
        }
        viewer::save_cart(&ctx.session, &cart).await?;
        ctx.viewer.cart_count = cart.values().sum();
        guest_view(&ctx, &mut cart).await?
    };
    if ctx.want == Want::Page {
        return ctx.redirect("/cart", format!("{}: {quantity} in your cart.", product.name)).await;
    }
    Ok(respond(&ctx, &view))
}

/// Takes a product out of the cart (also `POST /cart/items/{product_id}/delete`),
/// a product no longer sold too.
#[utoipa::path(delete, path = "/cart/items/{product_id}", tag = "cart",
    params(("product_id" = i64, Path, description = "Product id")),
    responses((status = 200, body = CartView)))]
pub async fn remove(mut ctx: Ctx, Id(id, _): Id<Product>) -> Result<Response, AppError> {
    let (view, name) = if ctx.viewer.user.is_some() {
        // The line's own name, which a product no longer sold keeps.
        let before = ctx.services().orders().get_cart(pb::GetCartRequest {}).await?.into_inner().cart;
        let name = before.unwrap_or_default().lines.into_iter().find(|l| l.product_id == id).map(|l| l.product_name);
        let set = ctx.services().orders().set_cart_item(pb::SetCartItemRequest { product_id: id, quantity: 0 }).await?;
        (kept_view(&mut ctx, set.into_inner().cart).await?, name)
    } else {
        let mut cart = viewer::cart(&ctx.session).await?;
        cart.remove(&id);
        viewer::save_cart(&ctx.session, &cart).await?;
        ctx.viewer.cart_count = cart.values().sum();
        let name = ctx.state.catalog.product(&ctx.services(), id).await.ok().map(|(product, _)| product.name);
        (guest_view(&ctx, &mut cart).await?, name)
    };
    if ctx.want == Want::Page {
        let name = name.filter(|name| !name.is_empty()).unwrap_or_else(|| "the product".into());
        return ctx.redirect("/cart", format!("Removed {name} from your cart.")).await;
    }
    Ok(respond(&ctx, &view))
}

/// At sign-in (and register): adds the guest's cart to the customer's kept
/// cart, bounded by stock, clears the session's, caches the count, and
/// returns what to tell the customer (empty when there is nothing to say).
/// A failure here never fails the sign-in: the guest cart stays in the
/// session and is merged when the cart is next shown.
pub async fn merge_guest_cart(ctx: &mut Ctx, user: &SessionUser) -> Result<String, AppError> {
    let orders = ctx.state.clients(Caller::User { id: user.id, admin: user.admin }).orders();
    let guest = viewer::cart(&ctx.session).await?;
    if guest.is_empty() {
        let kept = orders.clone().get_cart(pb::GetCartRequest {}).await;
        match kept {
            Ok(kept) => remember_count(ctx, count_of(kept.into_inner().cart.as_ref())).await?,
            Err(error) => tracing::warn!(error = %error, "the kept cart could not be counted at sign-in"),
        }
        return Ok(String::new());
    }
    let items = guest.iter().map(|(&product_id, &quantity)| pb::OrderLine { product_id, quantity }).collect();
    let merged = match orders.clone().merge_cart(pb::MergeCartRequest { items }).await {
        Ok(merged) => merged.into_inner(),
        Err(error) => {
            tracing::warn!(error = %error, "the guest cart could not be merged at sign-in; kept in the session");
            remember_count(ctx, guest.values().sum()).await?;
            return Ok(String::new());
        }
    };
    viewer::save_cart(&ctx.session, &Cart::new()).await?;
    remember_count(ctx, count_of(merged.cart.as_ref())).await?;
    Ok(merge_message(guest.values().sum(), &merged.adjustments))
}

/// What a merge did, in a shopper's words, naming products.
fn merge_message(units: i64, adjustments: &[pb::CartAdjustment]) -> String {
    use pb::cart_adjustment::Cause;
    let plural =
        |n: i64, one: &str, many: &str| if n == 1 { one.to_owned() } else { many.replace("{n}", &n.to_string()) };
    let mut told = vec![if adjustments.is_empty() {
        plural(
            units,
            "The item you chose before signing in is in your cart.",
            "The {n} items you chose before signing in are in your cart.",
        )
    } else {
        "What you chose before signing in was added to your cart.".to_owned()
    }];
    let mut not_sold = 0;
    let mut out_of_stock = Vec::new();
    for adjustment in adjustments {
        let name = &adjustment.product_name;
        match adjustment.cause() {
            Cause::StockShort if adjustment.quantity > 0 => {
                told.push(format!("Only {} {name} left: your cart has {}.", adjustment.available, adjustment.quantity))
            }
            Cause::StockShort => out_of_stock.push(name.clone()),
            Cause::NotSold | Cause::Unspecified => not_sold += 1,
            Cause::TooManyLines => told.push(format!("{name} was left out: a cart holds at most 100 products.")),
            Cause::QuantityLimit => told.push(format!(
                "{name}: a cart holds at most {} of a product; your cart has {}.",
                shop_order_lines::MAX_QUANTITY,
                adjustment.quantity
            )),
        }
    }
    if !out_of_stock.is_empty() {
        let verb = if out_of_stock.len() == 1 { "is" } else { "are" };
        told.push(format!("{} {verb} out of stock and stayed out of your cart.", and_list(&out_of_stock)));
    }
    if not_sold > 0 {
        told.push(plural(
            not_sold,
            "A product no longer sold was left out.",
            "{n} products no longer sold were left out.",
        ));
    }
    told.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::cart_adjustment::Cause;

    #[test]
    fn a_merge_is_told_by_product_name() {
        assert_eq!(merge_message(3, &[]), "The 3 items you chose before signing in are in your cart.");
        let adjustment = |name: &str, quantity, available, cause: Cause| pb::CartAdjustment {
            product_id: 7,
            product_name: name.into(),
            wanted: 9,
            quantity,
            available,
            cause: cause.into(),
        };
        let told = merge_message(
            9,
            &[
                adjustment("Gyokuro", 3, 3, Cause::StockShort),
                adjustment("Cup", 0, 0, Cause::StockShort),
                adjustment("", 0, 0, Cause::NotSold),
            ],
        );
        assert_eq!(
            told,
            "What you chose before signing in was added to your cart. Only 3 Gyokuro left: your cart has 3. \
             Cup is out of stock and stayed out of your cart. A product no longer sold was left out."
        );
        assert!(!told.contains('7'), "names, never ids");
    }
}
