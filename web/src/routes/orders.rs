//! Orders: customers see and place their own; admins see every order and
//! move orders through their status. The order service decides who may see
//! an order and which moves it allows (each order says what its viewer may
//! do next); the gateway shows it.

use axum::extract::Query;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::BTreeMap;

use shop_proto::orders::v1 as pb;
use shop_proto::users::v1 as users_pb;
use utoipa::ToSchema;

use shop_grpc::rich_error::{self, ErrorReason};

use crate::cart_view::{LineStatus, and_list, unavailable_reason};
use crate::context::{Ctx, Pages};
use crate::error::{AppError, OutOfBand, Refusal};
use crate::extract::{Id, IdempotencyKey, Input, Order, Paging, number_or_blank};
use crate::negotiate::{HxTarget, Want};
use crate::pager::{self, Pager, Position};
use crate::services::Clients;
use crate::viewer;
use crate::views::{OrderView, parse_status};

const LIST: Pages = Pages::new("orders/index.html", "orders/_list.html");
const DETAIL: Pages = Pages::new("orders/show.html", "orders/_detail.html");
const ROW: Pages = Pages::new("orders/show.html", "orders/_row.html");
const CONFIRMATION: Pages = Pages::new("orders/confirmation.html", "orders/confirmation.html");
const SLIP: Pages = Pages::new("orders/packing_slip.html", "orders/packing_slip.html");

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
    /// Where to deliver, with `delivery_method_id`. With `items`, both may be
    /// left out (no delivery: collected in store); ordering the cart needs
    /// both, a `payment_method` and `terms_accepted`.
    #[serde(default)]
    pub delivery_address: Option<DeliveryAddressInput>,
    #[serde(default)]
    pub delivery_method_id: Option<i64>,
    /// `bank_transfer` or `cash_on_delivery`.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// The shop's terms, accepted.
    #[serde(default)]
    pub terms_accepted: bool,
}

/// A delivery address as sent; the order service checks every field.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(default)]
pub struct DeliveryAddressInput {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub postcode: String,
    pub city: String,
    /// ISO 3166-1 alpha-2, e.g. "FR".
    pub country: String,
    pub phone: String,
}

impl From<DeliveryAddressInput> for pb::DeliveryAddress {
    fn from(a: DeliveryAddressInput) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            postcode: a.postcode,
            city: a.city,
            country: a.country,
            phone: a.phone,
        }
    }
}

/// How an order is delivered and paid, as the order service takes it.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub address: Option<pb::DeliveryAddress>,
    pub method_id: i64,
    pub payment: pb::PaymentMethod,
    pub terms_accepted: bool,
}

/// A payment method by its name in the API.
pub fn parse_payment(name: Option<&str>) -> Result<pb::PaymentMethod, AppError> {
    match name.map(str::trim) {
        None | Some("") => Ok(pb::PaymentMethod::Unspecified),
        Some("bank_transfer") => Ok(pb::PaymentMethod::BankTransfer),
        Some("cash_on_delivery") => Ok(pb::PaymentMethod::CashOnDelivery),
        Some(_) => Err(AppError::field("payment_method", "must be bank_transfer or cash_on_delivery")),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusInput {
    /// The status to move to: `shipped`, `delivered` or `cancelled`.
    pub status: String,
    /// Where a browser goes afterwards (a path on this site; default the order).
    #[serde(default)]
    pub next: Option<String>,
    /// With `shipped`: the carrier's reference (optional).
    #[serde(default)]
    pub tracking_reference: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentInput {
    /// `paid` (an admin records the money arrived) or `refunded` (a
    /// cancelled order's money was given back).
    pub state: String,
}

/// Admins may look at one customer's orders; any list is read a page at a
/// time from where its URL says.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderFilter {
    /// Admins only: one customer's orders.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub user_id: Option<i64>,
    /// The page after the order with this cursor (a list's `next_cursor`).
    #[serde(default)]
    pub after: Option<String>,
    /// The page before the order with this cursor (a list's `previous_cursor`).
    #[serde(default)]
    pub before: Option<String>,
    /// `1`: the last page (the oldest orders).
    #[serde(default)]
    pub last: Option<String>,
}

/// A page of orders, newest first, paged by cursor: the links around it are
/// in `first`, `previous`, `next` and `last` (absent where there is no such
/// page).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Orders in the list, counted up to 1,000.
    pub total: i64,
    /// The list holds more than `total`: counting stopped there.
    pub total_is_lower_bound: bool,
    pub page_size: u32,
    /// The service's cursors of the next and previous pages (empty: none);
    /// `after=` / `before=` take them.
    pub next_cursor: String,
    pub previous_cursor: String,
    #[serde(flatten)]
    pub pager: Pager,
    /// For clients of the numbered pages: whether `next` / `previous` exist.
    pub has_next: bool,
    pub has_previous: bool,
}

/// A customer as an admin's order screens name them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// The people orders name (their customers, the admins in their history),
/// by id, for an admin; nobody for a customer, whose pages say "you" and
/// "the shop". One call per distinct person, made together.
pub async fn people(ctx: &Ctx, orders: &[&OrderView]) -> BTreeMap<String, Person> {
    if !ctx.viewer.user.as_ref().is_some_and(|user| user.admin) {
        return BTreeMap::new();
    }
    let mut ids: Vec<i64> = orders.iter().map(|order| order.user_id).collect();
    for order in orders {
        let actors = order.history.iter().chain(&order.payment_history).map(|change| change.actor.as_str());
        ids.extend(actors.filter_map(|actor| actor.strip_prefix("user:")?.parse::<i64>().ok()));
    }
    ids.sort_unstable();
    ids.dedup();
    let clients = ctx.services();
    let lookups = ids.into_iter().map(|id| {
        let clients = clients.clone();
        async move {
            let found = clients.users().get_user_profile(users_pb::GetUserProfileRequest { id }).await.ok()?;
            let user = found.into_inner().user?;
            Some((id.to_string(), Person { name: user.name, email: user.email }))
        }
    });
    futures_util::future::join_all(lookups).await.into_iter().flatten().collect()
}

async fn fetch(clients: &Clients, id: i64) -> Result<OrderView, AppError> {
    let found = clients.orders().get_order(pb::GetOrderRequest { id }).await?.into_inner();
    found.order.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))
}

/// The user's orders, newest first (admins: everyone's, or one user's), a
/// page at a time by cursor: `next` / `previous` (and `first`, `last`) are
/// the URLs of the pages around this one, `next_cursor` / `previous_cursor`
/// the cursors they carry; `total` is counted up to 1,000
/// (`total_is_lower_bound` past that). Old `page=N` links still answer, for
/// the newest 10,000 orders, with cursor links onwards.
#[utoipa::path(get, path = "/orders", tag = "orders", params(Paging, OrderFilter),
    responses((status = 200, body = OrderPage), (status = 401, body = crate::error_page::ProblemBody),
              (status = 400, description = "A malformed page size or number", body = crate::error_page::ProblemBody),
              (status = 422, description = "A malformed cursor, both cursors, or a page number past 10,000 orders (the problem names the field)",
               body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, paging: Paging, Query(filter): Query<OrderFilter>) -> Result<Response, AppError> {
    let user = ctx.user()?;
    let position = Position::parse(filter.after, filter.before, filter.last)?;
    // A customer's list is their own; an admin's is everyone's unless filtered.
    let user_id = filter.user_id.or((!user.admin).then_some(user.id));
    let (after, before, last) = position.cursors();
    // A position wins over an old page number (which only the first page
    // of an old link carries).
    let page = if position == Position::First { paging.page() } else { 1 };
    let request = pb::ListOrdersRequest { user_id, page, page_size: paging.page_size(), after, before, last };
    let listed = ctx.services().orders().list_orders(request).await?.into_inner();
    // The list's canonical query: what it holds and how big its pages are.
    let mut query = Vec::new();
    if let Some(id) = filter.user_id {
        query.push(("user_id", id.to_string()));
    }
    if let Some(size) = paging.page_size {
        query.push(("page_size", size.to_string()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let list = OrderPage {
        pager: Pager::new("/orders", &query, &listed.previous_cursor, &listed.next_cursor),
        has_next: !listed.next_cursor.is_empty(),
        has_previous: !listed.previous_cursor.is_empty(),
        orders: listed.orders.into_iter().map(OrderView::from).collect(),
        total: listed.total,
        total_is_lower_bound: listed.total_is_lower_bound,
        page_size: listed.page_size,
        next_cursor: listed.next_cursor,
        previous_cursor: listed.previous_cursor,
    };
    if ctx.want == Want::Json {
        return Ok(ctx.show(LIST, "list", &list));
    }
    let people = people(&ctx, &list.orders.iter().collect::<Vec<_>>()).await;
    let context = minijinja::context! {
        list => minijinja::value::Serde(&list),
        count => pager::count_text(list.total, list.total_is_lower_bound, "order", "orders"),
        // Where an empty page (a cursor or page number past the end) leads.
        newest => pager::href("/orders", &query, &Position::First),
        user_filter => filter.user_id,
        people => minijinja::value::Serde(&people),
    };
    Ok(ctx.render(LIST, context))
}

/// One order, with its status history. Someone else's is "not found".
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such order, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<Order>) -> Result<Response, AppError> {
    ctx.user()?;
    let order = fetch(&ctx.services(), id).await?;
    if ctx.want == Want::Json {
        return Ok(ctx.show(DETAIL, "order", &order));
    }
    let people = people(&ctx, &[&order]).await;
    Ok(ctx.render(
        DETAIL,
        minijinja::context! { order => minijinja::value::Serde(&order), people => minijinja::value::Serde(&people) },
    ))
}

/// After checkout: the order, and what happens next (how to pay, when it ships).
pub async fn confirmation(ctx: Ctx, Id(id, _): Id<Order>) -> Result<Response, AppError> {
    ctx.user()?;
    let order = fetch(&ctx.services(), id).await?;
    let context = minijinja::context! {
        order => minijinja::value::Serde(&order),
        bank_details => ctx.state.shop.bank_details.clone(),
    };
    Ok(ctx.render(CONFIRMATION, context))
}

/// A printable packing slip (admins): what goes in the parcel and where.
pub async fn packing_slip(ctx: Ctx, Id(id, _): Id<Order>) -> Result<Response, AppError> {
    ctx.admin()?;
    let order = fetch(&ctx.services(), id).await?;
    let people = people(&ctx, &[&order]).await;
    let context = minijinja::context! {
        order => minijinja::value::Serde(&order),
        people => minijinja::value::Serde(&people),
        shop_name => ctx.state.shop.name.clone(),
    };
    Ok(ctx.render(SLIP, context))
}

/// Records an order's payment (admins): `paid` when the money arrived,
/// `refunded` once a cancelled order's money went back. The order service
/// decides which moves are allowed (each order lists them). Forms post to
/// the same URL.
#[utoipa::path(post, path = "/orders/{id}/payment", tag = "orders", request_body = PaymentInput,
    params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody),
              (status = 409, description = "The payment state does not allow it", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update_payment(
    ctx: Ctx,
    target: HxTarget,
    Id(id, _): Id<Order>,
    Input(input): Input<PaymentInput>,
) -> Result<Response, AppError> {
    ctx.admin()?;
    let orders = ctx.services().orders();
    let updated = match input.state.trim() {
        "paid" => orders.clone().mark_order_paid(pb::MarkOrderPaidRequest { id }).await?.into_inner().order,
        "refunded" => orders.clone().refund_order(pb::RefundOrderRequest { id }).await?.into_inner().order,
        _ => return Err(AppError::field("state", "must be paid or refunded")),
    };
    let order = updated.map(OrderView::from).ok_or(AppError::Missing("orders returned no order"))?;
    let pages = if target.starts_with("order-row-") { ROW } else { DETAIL };
    ctx.done(
        (pages, "order", &order),
        &format!("/orders/{id}"),
        format!("Order #{id} is marked {}.", order.payment_state),
    )
    .await
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
              (status = 202, description = "Recorded, but inventory could not be asked yet: the order is pending and is confirmed or rejected shortly; `Location` names it", body = OrderView),
              (status = 503, description = "A service is unreachable; retrying with the same Idempotency-Key is safe", body = crate::error_page::ProblemBody)))]
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
        // (Back from the confirmation page, and the form sent again.)
        let location = format!("/orders/{order_id}/confirmation");
        return ctx.redirect(&location, String::new()).await;
    }
    let delivery = Delivery {
        address: input.delivery_address.map(pb::DeliveryAddress::from),
        method_id: input.delivery_method_id.unwrap_or(0),
        payment: parse_payment(input.payment_method.as_deref())?,
        terms_accepted: input.terms_accepted,
    };
    let Some(sent) = input.items else {
        return checkout(ctx, idempotency_key, delivery).await;
    };
    let items: Vec<pb::OrderLine> =
        sent.into_iter().map(|l| pb::OrderLine { product_id: l.product_id, quantity: l.quantity }).collect();
    let product_ids: Vec<i64> = items.iter().map(|line| line.product_id).collect();
    let request = pb::CreateOrderRequest {
        user_id,
        items,
        idempotency_key: idempotency_key.clone(),
        delivery_address: delivery.address,
        delivery_method_id: delivery.method_id,
        payment_method: delivery.payment.into(),
    };
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
    let message = placed_message(&order, "");
    answer_placed(&ctx, &order, message).await
}

/// What the customer is told about an order just placed. A pending order
/// (inventory could not be asked yet) is the customer's order all the same:
/// it is said to be received and confirmed shortly, never to have failed.
fn placed_message(order: &OrderView, units: &str) -> String {
    if order.status == "pending" {
        format!(
            "Thank you: order #{} is received{units}. We are confirming the stock and will confirm it shortly; \
             its page shows the result.",
            order.id
        )
    } else {
        format!("Thank you: order #{} is {}{units}.", order.id, order.status)
    }
}

/// The answer to a placed order: a browser is sent to `/orders/{id}`'s
/// confirmation; a JSON client gets 201 with the order, or 202 while it is
/// pending (`Location` names it either way: reading it says when it is
/// confirmed or rejected).
async fn answer_placed(ctx: &Ctx, order: &OrderView, message: String) -> Result<Response, AppError> {
    let location = format!("/orders/{}", order.id);
    let mut response = ctx.created(&location, order, message).await?;
    if ctx.want == Want::Json && order.status == "pending" {
        *response.status_mut() = axum::http::StatusCode::ACCEPTED;
    }
    Ok(response)
}

/// Orders the customer's kept cart: the order service orders the lines that
/// can be ordered now and leaves the others (no longer sold, out of stock,
/// more than is left) in the cart, which the customer is told by name. A
/// shopper would rather have what is there than nothing; when nothing can
/// be ordered, the checkout is refused with the names and why.
pub async fn checkout(mut ctx: Ctx, idempotency_key: String, delivery: Delivery) -> Result<Response, AppError> {
    let request = pb::CheckoutCartRequest {
        idempotency_key: idempotency_key.clone(),
        delivery_address: delivery.address,
        delivery_method_id: delivery.method_id,
        payment_method: delivery.payment.into(),
        terms_accepted: delivery.terms_accepted,
    };
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
    let mut message = placed_message(&order, &format!(" ({units} {})", if units == 1 { "item" } else { "items" }));
    if !left.is_empty() {
        let reasons: Vec<String> = left.iter().map(left_out).collect();
        let pronoun = if left.len() == 1 { "it stayed" } else { "they stayed" };
        message.push_str(&format!(" {}: {pronoun} in your cart.", capitalised(&and_list(&reasons))));
    }
    if ctx.want != Want::Json {
        // The confirmation page says what happens next; the message what was left out.
        let location = format!("/orders/{}/confirmation", order.id);
        return ctx.redirect(&location, if left.is_empty() { String::new() } else { message }).await;
    }
    answer_placed(&ctx, &order, message).await
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
    let tracking_reference = input.tracking_reference.map(|t| t.trim().to_owned()).unwrap_or_default();
    let tracking_reference = if status == pb::OrderStatus::Shipped { tracking_reference } else { String::new() };
    let request = pb::UpdateOrderStatusRequest { id, status: status.into(), tracking_reference };
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
