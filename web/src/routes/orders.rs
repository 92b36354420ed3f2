//! Orders: customers see and place their own; admins see every order and
//! move orders through their status. The order service decides who may see
//! an order and which moves it allows (each order says what its viewer may
//! do next); the gateway shows it.

use axum::extract::Query;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use shop_proto::orders::v1 as pb;
use utoipa::ToSchema;

use shop_grpc::rich_error::{self, ErrorReason};

use crate::cart_view::{LineStatus, and_list, unavailable_reason};
use crate::context::{Ctx, Pages};
use crate::error::{AppError, OutOfBand, Refusal};
use crate::extract::{Id, IdempotencyKey, Input, Order, Paging, number_or_blank};
use crate::negotiate::{HxTarget, Want};
use crate::services::Clients;
use crate::viewer;
use crate::views::{OrderList, OrderView, PageInfo, parse_status};

const LIST: Pages = Pages::new("orders/index.html", "orders/_list.html");
const DETAIL: Pages = Pages::new("orders/show.html", "orders/_detail.html");
const ROW: Pages = Pages::new("orders/show.html", "orders/_row.html");

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderLineInput {
    pub product_id: i64,
    pub quantity: i64,
}

/// What to order. Without `items` (a checkout form), the cart is ordered:
/// the lines that can be ordered now, the others staying in the cart.
/// Prices are never taken from the client: inventory prices every line.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct OrderInput {
    #[serde(default)]
    pub items: Option<Vec<OrderLineInput>>,
    /// The checkout form's key; an `Idempotency-Key` header takes precedence.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusInput {
    /// The status to move to: `shipped`, `delivered` or `cancelled`.
    pub status: String,
    /// Where a browser goes afterwards (a path on this site; default the order).
    #[serde(default)]
    pub next: Option<String>,
}

/// Admins may look at one customer's orders.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderFilter {
    /// Admins only: one customer's orders.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub user_id: Option<i64>,
}

async fn fetch(clients: &Clients, id: i64) -> Result<OrderView, AppError> {
    let found = clients.orders().get_order(pb::GetOrderRequest { id }).await?.into_inner();
    found.order.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))
}

/// The user's orders, newest first (admins: everyone's, or one user's).
#[utoipa::path(get, path = "/orders", tag = "orders", params(Paging, OrderFilter),
    responses((status = 200, body = OrderList), (status = 401, body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, paging: Paging, Query(filter): Query<OrderFilter>) -> Result<Response, AppError> {
    let user = ctx.user()?;
    // A customer's list is their own; an admin's is everyone's unless filtered.
    let user_id = filter.user_id.or((!user.admin).then_some(user.id));
    let request = pb::ListOrdersRequest { user_id, page: paging.page(), page_size: paging.page_size() };
    let listed = ctx.services().orders().list_orders(request).await?.into_inner();
    let list = OrderList {
        page: PageInfo::new(listed.page, listed.page_size, listed.total),
        orders: listed.orders.into_iter().map(OrderView::from).collect(),
    };
    Ok(match ctx.want {
        Want::Json => ctx.show(LIST, "list", &list),
        _ => ctx.render(
            LIST,
            minijinja::context! { list => minijinja::value::Serde(&list), user_filter => filter.user_id },
        ),
    })
}

/// One order, with its status history. Someone else's is "not found".
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such order, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<Order>) -> Result<Response, AppError> {
    ctx.user()?;
    Ok(ctx.show(DETAIL, "order", &fetch(&ctx.services(), id).await?))
}

/// The order's status as it changes, as server-sent events named `status`
/// whose data is the order's detail panel (the htmx SSE extension swaps it
/// in), so a customer watching their order sees "shipped" appear. The
/// stream keeps the viewer's own clients: it asks as them however long it runs.
pub async fn events(
    ctx: Ctx,
    Id(id, _): Id<Order>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>, AppError> {
    ctx.user()?;
    let clients = ctx.services();
    fetch(&clients, id).await?;
    let (templates, viewer) = (ctx.state.templates.clone(), ctx.viewer.clone());
    let (rules, signed_in) = (ctx.state.sessions.clone(), ctx.user()?.clone());
    let changes = tokio_stream::wrappers::BroadcastStream::new(ctx.state.live.subscribe());
    // The stream lasts as long as the session it was opened in would.
    let changes = changes.take_while(move |_| {
        let (rules, signed_in) = (rules.clone(), signed_in.clone());
        async move { rules.still_valid(&signed_in).await }
    });
    let stream = changes.filter_map(move |change| {
        let (clients, templates, viewer) = (clients.clone(), templates.clone(), viewer.clone());
        async move {
            // A lagging watcher missed some changes: the next one renders the
            // current state anyway.
            let change = change.ok().filter(|change| change.order_id == id)?;
            let order = fetch(&clients, change.order_id).await.ok()?;
            let context = minijinja::context! { viewer => minijinja::value::Serde(&viewer), order => minijinja::value::Serde(&order) };
            let html = templates.render(DETAIL.partial, context).ok()?;
            Some(Ok(SseEvent::default().event("status").data(html)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Places an order for the signed-in user: the items sent (the cart is left
/// alone), or the cart's lines that can be ordered now (the others stay in
/// the cart, and the message names them).
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = OrderInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first order")),
    responses((status = 201, description = "Placed and confirmed; `Location` names it", body = OrderView),
              (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "An unknown product", body = crate::error_page::ProblemBody),
              (status = 409, description = "Not enough stock; the order is kept as rejected", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody),
              (status = 503, description = "Inventory unreachable; the order stays pending and is finished automatically", body = crate::error_page::ProblemBody)))]
pub async fn create(
    ctx: Ctx,
    IdempotencyKey(key): IdempotencyKey,
    Input(input): Input<OrderInput>,
) -> Result<Response, AppError> {
    let user_id = ctx.user()?.id;
    let from_cart = input.items.is_none();
    // A retry with the same key (a double submit, a client's timeout) gets
    // the first order back; the order service makes sure of it.
    let idempotency_key = key.or(input.idempotency_key).unwrap_or_default();
    if let Some(order_id) =
        viewer::placed_with(&ctx.session, &idempotency_key).await?.filter(|_| from_cart && ctx.is_html())
    {
        // The same checkout form again, after it emptied the cart.
        let location = format!("/orders/{order_id}");
        return ctx.redirect(&location, format!("Order #{order_id} is placed.")).await;
    }
    let Some(sent) = input.items else {
        return checkout(ctx, idempotency_key).await;
    };
    let items: Vec<pb::OrderLine> =
        sent.into_iter().map(|l| pb::OrderLine { product_id: l.product_id, quantity: l.quantity }).collect();
    let product_ids: Vec<i64> = items.iter().map(|line| line.product_id).collect();
    let request = pb::CreateOrderRequest { user_id, items, idempotency_key: idempotency_key.clone() };
    let placed = ctx.services().orders().create_order(request).await;
    // Whatever happened, the stock of these products may have moved: this
    // replica reads its own write at once (the others hear product.changed).
    ctx.state.catalog.forget_all(&product_ids).await;
    let order = match placed {
        Ok(placed) => {
            placed.into_inner().order.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))?
        }
        Err(status) => return refused(&ctx, &status).await,
    };
    let message = format!("Thank you: order #{} is {}.", order.id, order.status);
    ctx.created(&format!("/orders/{}", order.id), &order, message).await
}

/// Orders the customer's kept cart: the order service orders the lines that
/// can be ordered now and leaves the others (no longer sold, out of stock,
/// more than is left) in the cart, which the customer is told by name. A
/// shopper would rather have what is there than nothing; when nothing can
/// be ordered, the checkout is refused with the names and why.
async fn checkout(mut ctx: Ctx, idempotency_key: String) -> Result<Response, AppError> {
    let request = pb::CheckoutCartRequest { idempotency_key: idempotency_key.clone() };
    let placed = ctx.services().orders().checkout_cart(request).await;
    let (order, left) = match placed {
        Ok(placed) => {
            let placed = placed.into_inner();
            let order = placed.order.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))?;
            (order, placed.left_in_cart)
        }
        Err(status) => {
            let reason = rich_error::reason(&status);
            if matches!(reason, Some(ErrorReason::StockShort | ErrorReason::ProductNotFound)) {
                // Nothing was recorded; a new key all the same, as for a rejection.
                return Ok(with_new_checkout_key(nothing_to_order(&ctx).await));
            }
            return refused(&ctx, &status).await;
        }
    };
    let product_ids: Vec<i64> = order.items.iter().map(|item| item.product_id).collect();
    ctx.state.catalog.forget_all(&product_ids).await;
    viewer::remember_checkout(&ctx.session, &idempotency_key, order.id).await?;
    // What the cart holds now (a retry's answer leaves nothing out, however
    // much the cart holds), for the navigation's count.
    let kept = ctx.services().orders().get_cart(pb::GetCartRequest {}).await;
    let count = kept.map_or_else(
        |_| left.iter().map(|line| line.quantity).sum(),
        |kept| kept.into_inner().cart.unwrap_or_default().lines.iter().map(|line| line.quantity).sum(),
    );
    ctx.viewer.cart_count = count;
    viewer::remember_cart_count(&ctx.session, count).await?;
    let units: i64 = order.items.iter().map(|item| item.quantity).sum();
    let mut message = format!(
        "Thank you: order #{} is {} ({units} {}).",
        order.id,
        order.status,
        if units == 1 { "item" } else { "items" }
    );
    if !left.is_empty() {
        let reasons: Vec<String> = left.iter().map(left_out).collect();
        let pronoun = if left.len() == 1 { "it stayed" } else { "they stayed" };
        message.push_str(&format!(" {}: {pronoun} in your cart.", capitalised(&and_list(&reasons))));
    }
    ctx.created(&format!("/orders/{}", order.id), &order, message).await
}

/// Why a cart line was left out of an order, naming the product.
fn left_out(line: &pb::CartLine) -> String {
    let status = match line.availability() {
        pb::CartLineAvailability::Short => Some(LineStatus::Short),
        pb::CartLineAvailability::OutOfStock => Some(LineStatus::OutOfStock),
        pb::CartLineAvailability::Available => Some(LineStatus::Available),
        pb::CartLineAvailability::NotSold | pb::CartLineAvailability::Unspecified => None,
    };
    unavailable_reason(&line.product_name, status, line.available)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// A checkout refused because nothing in the cart can be ordered now, with
/// every line's name and why.
async fn nothing_to_order(ctx: &Ctx) -> AppError {
    let cart = ctx.services().orders().get_cart(pb::GetCartRequest {}).await;
    let lines = cart.map(|cart| cart.into_inner().cart.unwrap_or_default().lines).unwrap_or_default();
    let reasons: Vec<String> = lines.iter().map(left_out).collect();
    let detail = if reasons.is_empty() {
        "Nothing in your cart can be ordered now.".to_owned()
    } else {
        format!("Nothing in your cart can be ordered now: {}.", and_list(&reasons))
    };
    AppError::Refused { refusal: Refusal::StockShort, detail, field: None }
}

/// A refused checkout, told by the product's name where it can be. Only a
/// rejection renews the form's key.
async fn refused(ctx: &Ctx, status: &tonic::Status) -> Result<Response, AppError> {
    let product = match AppError::product_of(status) {
        Some(id) => ctx.state.catalog.product(&ctx.services(), id).await.ok().map(|(product, _)| product.name),
        None => None,
    };
    let error = AppError::from_refusal(status, product.as_deref());
    if matches!(error, AppError::Refused { refusal: Refusal::OrderRejected | Refusal::ProductNotFound, .. }) {
        return Ok(with_new_checkout_key(error));
    }
    Err(error)
}

/// A rejected checkout gives the checkout form a new key, so trying again
/// after the cart or the stock changed is a new order rather than a replay
/// of this refusal. Any other failure (the order saved as pending, a
/// service away) keeps the key: trying again finishes that same order.
fn with_new_checkout_key(error: AppError) -> Response {
    let mut response = error.into_response();
    let context = minijinja::context! { checkout_key => uuid::Uuid::new_v4().to_string() };
    response.extensions_mut().insert(OutOfBand("cart/_checkout_key.html", context));
    response
}

/// Moves an order on, as far as the order service allows this viewer:
/// admins along the state machine, customers only to cancel their own.
/// Forms post to the same URL.
#[utoipa::path(patch, path = "/orders/{id}/status", tag = "orders", request_body = StatusInput,
    params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody),
              (status = 409, description = "The state machine does not allow it", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update_status(
    ctx: Ctx,
    target: HxTarget,
    Id(id, _): Id<Order>,
    Input(input): Input<StatusInput>,
) -> Result<Response, AppError> {
    ctx.user()?;
    let status =
        parse_status(&input.status).ok_or_else(|| AppError::field("status", "must be a status, e.g. shipped"))?;
    let request = pb::UpdateOrderStatusRequest { id, status: status.into() };
    let updated = ctx.services().orders().update_order_status(request).await?.into_inner().order;
    let order = updated.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))?;
    if status == pb::OrderStatus::Cancelled {
        let products: Vec<i64> = order.items.iter().map(|item| item.product_id).collect();
        ctx.state.catalog.forget_all(&products).await;
    }
    // HTMX names the element it will replace: a row of the list, or the
    // order's own status panel.
    let pages = if target.starts_with("order-row-") { ROW } else { DETAIL };
    let back = input.next.map_or_else(|| format!("/orders/{id}"), |next| crate::return_to::safe_next(Some(&next)));
    ctx.done((pages, "order", &order), &back, format!("Order #{id} is now {}.", order.status)).await
}
