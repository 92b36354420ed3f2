//! Orders: customers see and place their own; admins see every order and
//! move orders through their status. The order service enforces the state
//! machine; the gateway only decides who may ask.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use shop_proto::orders::v1 as pb;
use tower_sessions::Session;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{AppError, OutOfBand};
use crate::extract::{Input, Paging, number_or_blank};
use crate::negotiate::{HxTarget, Want};
use crate::session::{self, CurrentUser, Viewer};
use crate::views::{OrderList, OrderView, PageInfo, parse_status};

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderLineInput {
    pub product_id: i64,
    pub quantity: i64,
}

/// What to order. Without `items` (a checkout form), the cart is ordered.
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
    /// `shipped`, `delivered` or `cancelled`.
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

fn order_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound(format!("There is no order {raw:?}.")))
}

/// An order the user may see. Someone else's order is "not found", not
/// "forbidden": its existence is nobody else's business.
async fn fetch_visible(state: &AppState, user: &CurrentUser, id: i64) -> Result<OrderView, AppError> {
    // The order service refuses someone else's order too; either way it is
    // "not found" to them.
    let order = match state.orders.clone().get_order(pb::GetOrderRequest { id }).await {
        Ok(found) => found.into_inner().order,
        Err(status) if status.code() == tonic::Code::PermissionDenied => {
            return Err(AppError::NotFound(format!("order {id} not found")));
        }
        Err(status) => return Err(status.into()),
    };
    let order = order.map(OrderView::from).ok_or_else(|| AppError::Internal("orders returned no order".into()))?;
    if user.may_access(order.user_id) { Ok(order) } else { Err(AppError::NotFound(format!("order {id} not found"))) }
}

/// The user's orders, newest first (admins: everyone's, or one user's).
#[utoipa::path(get, path = "/orders", tag = "orders", params(Paging, OrderFilter),
    responses((status = 200, body = OrderList), (status = 401, body = crate::error::ProblemBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    viewer: Viewer,
    want: Want,
    paging: Paging,
    Query(filter): Query<OrderFilter>,
) -> Result<Response, AppError> {
    let user_id = if user.0.admin { filter.user_id } else { Some(user.0.id) };
    let request = pb::ListOrdersRequest { user_id, page: paging.page(), page_size: paging.page_size() };
    let listed = state.orders.clone().list_orders(request).await?.into_inner();
    let list = OrderList {
        page: PageInfo::new(listed.page, listed.page_size, listed.total),
        orders: listed.orders.into_iter().map(OrderView::from).collect(),
    };
    Ok(match want {
        Want::Json => axum::Json(&list).into_response(),
        _ => state.templates.respond(
            &viewer,
            want,
            "orders/index.html",
            "orders/_list.html",
            minijinja::context! { list => minijinja::value::Serde(&list), user_filter => filter.user_id },
        ),
    })
}

/// One order, with its status history.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error::ProblemBody),
              (status = 404, description = "No such order, or not yours", body = crate::error::ProblemBody)))]
pub async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let order = fetch_visible(&state, &user, order_id(&id)?).await?;
    Ok(state.templates.represent(&viewer, want, ("orders/show.html", "orders/_detail.html"), "order", &order))
}

/// The order's status as it changes, as server-sent events named `status`
/// whose data is the order's detail panel (the htmx SSE extension swaps it
/// in), so a customer watching their order sees "shipped" appear.
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>, AppError> {
    let id = order_id(&id)?;
    fetch_visible(&state, &user, id).await?;
    let changes = tokio_stream::wrappers::BroadcastStream::new(state.live.subscribe());
    let stream = changes.filter_map(move |change| {
        let (state, viewer) = (state.clone(), viewer.clone());
        // The stream outlives the request: its calls name the viewer themselves.
        shop_grpc::identity::CURRENT_CALLER.scope(viewer.caller(), async move {
            // A lagging watcher missed some changes: the next one renders the
            // current state anyway.
            let change = change.ok().filter(|change| change.order_id == id)?;
            let order = state.orders.clone().get_order(pb::GetOrderRequest { id: change.order_id }).await.ok()?;
            let order = OrderView::from(order.into_inner().order?);
            let context = minijinja::context! { viewer => minijinja::value::Serde(&viewer), order => minijinja::value::Serde(&order) };
            let html = state.templates.render("orders/_detail.html", context).ok()?;
            Some(Ok(SseEvent::default().event("status").data(html)))
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Places an order for the signed-in user: the items sent, or the cart.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = OrderInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first order")),
    responses((status = 201, description = "Placed and confirmed; `Location` names it", body = OrderView),
              (status = 401, body = crate::error::ProblemBody),
              (status = 404, description = "An unknown product", body = crate::error::ProblemBody),
              (status = 409, description = "Not enough stock; the order is kept as rejected", body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody),
              (status = 503, description = "Inventory unreachable; the order stays pending and is finished automatically", body = crate::error::ProblemBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    want: Want,
    headers: HeaderMap,
    Input(input): Input<OrderInput>,
) -> Result<Response, AppError> {
    let from_cart = input.items.is_none();
    let items: Vec<pb::OrderLine> = match input.items {
        Some(items) => {
            items.into_iter().map(|l| pb::OrderLine { product_id: l.product_id, quantity: l.quantity }).collect()
        }
        None => session::cart(&session)
            .await?
            .into_iter()
            .map(|(product_id, quantity)| pb::OrderLine { product_id, quantity })
            .collect(),
    };
    if items.is_empty() {
        let message = if from_cart { "your cart is empty" } else { "must name at least one product" };
        return Err(AppError::field("items", message));
    }
    let product_ids: Vec<i64> = items.iter().map(|l| l.product_id).collect();
    // A retry with the same key (a double submit, a client's timeout) gets
    // the first order back; the order service makes sure of it.
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(input.idempotency_key)
        .unwrap_or_default();
    let request = pb::CreateOrderRequest { user_id: user.0.id, items, idempotency_key };
    let placed = state.orders.clone().create_order(request).await;
    // Whatever happened, the stock of these products may have moved.
    for id in product_ids {
        super::products::forget(&state, id).await;
    }
    let order = match placed {
        Ok(placed) => placed.into_inner().order.map(OrderView::from),
        // Refused for stock: said plainly, and the checkout form gets a new
        // key, so trying again after the cart or the stock changed is a new
        // order rather than a replay of this refusal.
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            let reason = status.message().split_once("rejected: ").map_or(status.message(), |(_, reason)| reason);
            let mut response = AppError::Conflict(format!("Your order could not be placed: {reason}.")).into_response();
            let key = uuid::Uuid::new_v4();
            response.extensions_mut().insert(OutOfBand(format!(
                r#"<input type="hidden" id="checkout-key" name="idempotency_key" value="{key}" hx-swap-oob="true">"#
            )));
            return Ok(response);
        }
        Err(status) if status.code() == tonic::Code::Unavailable && status.message().contains("pending") => {
            return Err(AppError::Unavailable(
                "We could not confirm your order just now. It is saved as pending and will be confirmed or \
                 rejected within a minute; see it under Orders."
                    .into(),
            ));
        }
        Err(status) => return Err(status.into()),
    };
    let order = order.ok_or_else(|| AppError::Internal("orders returned no order".into()))?;
    if from_cart {
        session::save_cart(&session, &session::Cart::new()).await?;
    }
    if want.is_html() {
        session::flash(&session, format!("Thank you: order #{} is {}.", order.id, order.status)).await?;
    }
    Ok(super::created(want, &format!("/orders/{}", order.id), &order))
}

/// Moves an order on: admins to any status the state machine allows;
/// customers may only cancel their own. Forms post to the same URL.
#[utoipa::path(patch, path = "/orders/{id}/status", tag = "orders", request_body = StatusInput,
    params(("id" = i64, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 401, body = crate::error::ProblemBody),
              (status = 403, body = crate::error::ProblemBody), (status = 404, body = crate::error::ProblemBody),
              (status = 409, description = "The state machine does not allow it", body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody)))]
pub async fn update_status(
    State(state): State<AppState>,
    session: Session,
    viewer: Viewer,
    want: Want,
    target: HxTarget,
    Path(id): Path<String>,
    Input(input): Input<StatusInput>,
) -> Result<Response, AppError> {
    let user = viewer.signed_in()?;
    let id = order_id(&id)?;
    let status = parse_status(&input.status)
        .ok_or_else(|| AppError::field("status", "must be one of shipped, delivered or cancelled"))?;
    let order = fetch_visible(&state, &user, id).await?;
    if !user.0.admin && (status != pb::OrderStatus::Cancelled || order.user_id != user.0.id) {
        return Err(AppError::Forbidden);
    }
    let request = pb::UpdateOrderStatusRequest { id, status: status.into() };
    let updated = state.orders.clone().update_order_status(request).await?.into_inner().order;
    let order = updated.map(OrderView::from).ok_or_else(|| AppError::Internal("orders returned no order".into()))?;
    if status == pb::OrderStatus::Cancelled {
        for item in &order.items {
            super::products::forget(&state, item.product_id).await;
        }
    }
    if want == Want::Page {
        let back =
            input.next.as_deref().map_or_else(|| format!("/orders/{id}"), |next| super::users::safe_next(Some(next)));
        return super::done(&session, &back, format!("Order #{id} is now {}.", order.status)).await;
    }
    // HTMX names the element it will replace: a row of the list, or the
    // order's own status panel.
    let partial = if target.starts_with("order-row-") { "orders/_row.html" } else { "orders/_detail.html" };
    Ok(state.templates.represent(&viewer, want, ("orders/show.html", partial), "order", &order))
}
