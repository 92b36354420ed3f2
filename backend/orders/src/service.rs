//! `shop.orders.v1.OrderService`: records orders, has inventory reserve and
//! price them, and moves them through the status state machine.

use std::time::Duration;

use shop_events::Wake;
use shop_grpc::identity::{Caller, Identity, SignAs, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1 as inventory;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1 as pb;
use shop_proto::orders::v1::order_service_server::{self, OrderServiceServer};
use shop_proto::time::from_unix_ms;
use shop_storage::{Db, Page, PageError};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::domain::{self, Access, Order, OrderLines, PricedLine, Rejection, Status as OrderStatus, parse_id};
use crate::{OrderError, cart, store};

#[derive(Clone)]
pub struct OrderService {
    db: Db,
    channel: Channel,
    inventory: InventoryServiceClient<Signed>,
    outbox: Wake,
    identity: Identity,
}

/// How the order service signs its calls to inventory.
fn as_orders(identity: &Identity, channel: &Channel) -> InventoryServiceClient<Signed> {
    InventoryServiceClient::with_interceptor(
        shop_grpc::observe::client(channel.clone()),
        SignAs::fixed(identity.clone(), Caller::Service("orders".into())),
    )
}

/// A channel to inventory that connects on first use, so the order service
/// starts (and recovers orders later) even while inventory is down.
pub fn inventory_channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

impl OrderService {
    pub fn new(db: Db, inventory: Channel) -> Self {
        let identity = Identity::random();
        Self { db, inventory: as_orders(&identity, &inventory), channel: inventory, outbox: Wake::default(), identity }
    }

    /// Checks callers' signed identities, and signs calls to inventory, with
    /// the shop's shared secret.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.inventory = as_orders(&identity, &self.channel);
        self.identity = identity;
        self
    }

    /// Wakes this relay when an event is written.
    pub fn with_outbox(mut self, wake: Wake) -> Self {
        self.outbox = wake;
        self
    }

    pub fn into_server(self) -> OrderServiceServer<Self> {
        OrderServiceServer::new(self)
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Inventory, called as the order service.
    pub(crate) fn inventory(&self) -> InventoryServiceClient<Signed> {
        self.inventory.clone()
    }

    async fn create(&self, request: pb::CreateOrderRequest) -> Result<Order, OrderError> {
        let user_id = parse_id("user_id", request.user_id)?;
        let lines = OrderLines::parse(request.items.iter().map(|line| (line.product_id, line.quantity)))?;
        let key = domain::parse_idempotency_key(&request.idempotency_key)?;
        self.place(user_id, lines, key, store::Source::Items).await
    }

    /// Records the order, has inventory reserve it, and answers with it (or
    /// answers a retry of `key` the way its first request was answered).
    async fn place(
        &self,
        user_id: i64,
        lines: OrderLines,
        key: Option<&str>,
        source: store::Source,
    ) -> Result<Order, OrderError> {
        let actor = domain::user_actor(user_id);
        let order_id = match store::insert_pending(&self.db, user_id, &lines, &actor, key, source).await? {
            store::Recorded::New(order_id) => {
                self.outbox.wake();
                #[cfg(feature = "fault-hooks")]
                crate::fault_hooks::after_recording(order_id).await;
                order_id
            }
            store::Recorded::Existing(order_id) if source == store::Source::Cart => {
                // The cart may hold something else by now: the retry is the
                // order the first checkout recorded.
                return self.replay_recorded(order_id).await;
            }
            store::Recorded::Existing(order_id) => return self.replay(order_id, &lines).await,
        };
        self.reserve(order_id, &lines).await?;
        let order = store::get(&self.db, order_id).await?;
        tracing::info!(
            order_id,
            user_id,
            status = order.status.as_str(),
            total_minor = order.total_minor,
            "order placed"
        );
        Ok(order)
    }

    /// Orders the lines of the customer's cart that can be ordered now, and
    /// says which stayed in the cart. A retry with the same key is the
    /// first checkout's answer, whatever the cart holds by then.
    async fn cart_checkout(&self, user_id: i64, key: &str) -> Result<(Order, Vec<crate::cart::Line>), OrderError> {
        let key = domain::parse_idempotency_key(key)?;
        if let Some(key) = key
            && let Some((request, order_id)) = store::keyed(&self.db, user_id, key).await?
        {
            if request != "cart" {
                return Err(OrderError::IdempotencyKeyReused);
            }
            return Ok((self.replay_recorded(order_id).await?, Vec::new()));
        }
        let lines = self.cart(user_id).await?;
        let (orderable, left): (Vec<_>, Vec<_>) =
            lines.into_iter().partition(|line| line.availability == crate::cart::Availability::Available);
        if orderable.is_empty() {
            return Err(match left.first() {
                None => OrderError::invalid("items", "your cart is empty"),
                Some(line) if line.availability == crate::cart::Availability::NotSold => {
                    OrderError::ProductNotFound(line.product_id)
                }
                Some(line) => OrderError::StockShort {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available: line.available,
                },
            });
        }
        let lines = OrderLines::parse(orderable.iter().map(|line| (line.product_id, line.quantity)))?;
        let order = self.place(user_id, lines, key, store::Source::Cart).await?;
        Ok((order, left))
    }

    /// Answers a retry of a recorded order from what it recorded.
    async fn replay_recorded(&self, order_id: i64) -> Result<Order, OrderError> {
        let order = store::get(&self.db, order_id).await?;
        let lines = OrderLines::parse(order.items.iter().map(|item| (item.product_id, item.quantity)))?;
        self.replay(order_id, &lines).await
    }

    /// Answers a retry the way the first request was answered. A retry that
    /// finds its order still pending (the first request crashed, or is still
    /// running) reserves again: inventory does it once per order id.
    async fn replay(&self, order_id: i64, lines: &OrderLines) -> Result<Order, OrderError> {
        let order = store::get(&self.db, order_id).await?;
        match order.status {
            OrderStatus::Pending => {
                self.reserve(order_id, lines).await?;
                store::get(&self.db, order_id).await
            }
            OrderStatus::Rejected => {
                // Every rejected order has its rejection (migration 0005
                // gave older ones theirs).
                let (rejection, product_id) =
                    store::rejection(&self.db, order_id).await?.unwrap_or((Rejection::StockShort, None));
                Err(OrderError::Rejected { order_id, rejection, product_id })
            }
            _ => Ok(order),
        }
    }

    /// Has inventory reserve and price a pending order's lines, then records
    /// the outcome. Safe to repeat: inventory reserves once per order id.
    pub(crate) async fn reserve(&self, order_id: i64, lines: &OrderLines) -> Result<(), OrderError> {
        let request = inventory::ReserveStockRequest {
            order_id,
            items: lines.iter().map(|(product_id, quantity)| inventory::StockItem { product_id, quantity }).collect(),
        };
        match self.inventory.clone().reserve_stock(request).await {
            Ok(reserved) => {
                let priced: Vec<PricedLine> = reserved
                    .into_inner()
                    .items
                    .into_iter()
                    .map(|item| PricedLine {
                        product_id: item.product_id,
                        product_name: item.product_name,
                        quantity: item.quantity,
                        unit_price_minor: item.unit_price_minor,
                    })
                    .collect();
                let total = domain::total_of(&priced).ok_or(OrderError::TotalOverflow)?;
                let status = store::confirm(&self.db, order_id, &priced, total).await?;
                self.outbox.wake();
                if matches!(status, OrderStatus::Cancelled | OrderStatus::Rejected) {
                    // The order moved on while inventory was reserving.
                    self.release(order_id).await;
                }
                Ok(())
            }
            Err(refused) => self.refused(order_id, &refused).await,
        }
    }

    /// What inventory's refusal means for a pending order, decided by its
    /// reason (never its message): rejected for stock or a product, nothing
    /// to do for an order that was cancelled meanwhile, and otherwise left
    /// pending for a retry or the recovery pass.
    async fn refused(&self, order_id: i64, refused: &Status) -> Result<(), OrderError> {
        let rejection = match rich_error::reason(refused) {
            Some(ErrorReason::StockShort) => Rejection::StockShort,
            Some(ErrorReason::ProductNotFound) => Rejection::ProductNotFound,
            // The order was cancelled before its stock was reserved, and
            // inventory will never reserve any for it: it stays cancelled.
            Some(ErrorReason::ReservationReleased) => return Ok(()),
            Some(ErrorReason::FieldInvalid) => {
                // Our own request was malformed: a bug, not the customer's fault.
                return Err(OrderError::Inventory(refused.to_string()));
            }
            _ => {
                tracing::warn!(order_id, error = %refused, "inventory unavailable; order left pending");
                return Err(OrderError::InventoryUnavailable(order_id));
            }
        };
        let product_id = rich_error::metadata(refused, "product_id").and_then(|id| id.parse().ok());
        store::reject(&self.db, order_id, rejection, product_id).await?;
        self.outbox.wake();
        tracing::info!(order_id, rejection = rejection.as_str(), product_id, "order rejected");
        Err(OrderError::Rejected { order_id, rejection, product_id })
    }

    /// Asks inventory to give the order's stock back. A failure is left for
    /// the recovery pass, which retries until it succeeds.
    pub(crate) async fn release(&self, order_id: i64) -> bool {
        let released = self.inventory.clone().release_stock(inventory::ReleaseStockRequest { order_id }).await;
        match released {
            Ok(_) => match store::mark_released(&self.db, order_id).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(order_id, error = %error, "stock released but not recorded; recovery will retry");
                    false
                }
            },
            Err(error) => {
                tracing::warn!(order_id, error = %error, "releasing stock failed; recovery will retry");
                false
            }
        }
    }

    /// The order, if `caller` may see it, and how they may change it. An
    /// order that is not theirs is "not found", exactly as one that does not
    /// exist, so its existence is not revealed.
    async fn visible(&self, caller: &Caller, id: i64) -> Result<(Order, Access), Status> {
        caller.require_signed_in()?;
        let order = store::get(&self.db, id).await?;
        match access(caller, order.user_id) {
            Some(access) => Ok((order, access)),
            None => Err(OrderError::NotFound(id).into()),
        }
    }

    /// Admins move orders along; a customer may only cancel their own.
    async fn update_status(
        &self,
        caller: &Caller,
        request: pb::UpdateOrderStatusRequest,
    ) -> Result<(Order, Access), Status> {
        let id = parse_id("id", request.id)?;
        let to = status_from_proto(request.status)?;
        let (order, access) = self.visible(caller, id).await?;
        caller.require(access.may_ask_for(to))?;
        if order.status == to {
            return Ok((order, access)); // asking twice for the same status changes nothing
        }
        if !order.status.can_be_moved_to(to) {
            return Err(OrderError::Transition { order_id: id, from: order.status, to }.into());
        }
        // History names the caller the service verified.
        if !store::transition(&self.db, id, order.status, to, &caller.actor()).await? {
            return Err(OrderError::Conflict(id).into());
        }
        self.outbox.wake();
        if to == OrderStatus::Cancelled {
            self.release(id).await;
        }
        Ok((store::get(&self.db, id).await?, access))
    }
}

/// How `caller` stands towards an order of `owner`'s: `None` for anyone who
/// may not see it.
fn access(caller: &Caller, owner: i64) -> Option<Access> {
    caller.may_act_for(owner).then(|| owner_or_admin(caller))
}

/// How a caller already let through to orders (as their owner, or as an
/// admin) stands towards them.
fn owner_or_admin(caller: &Caller) -> Access {
    if caller.is_admin() { Access::Admin } else { Access::Owner }
}

fn status_from_proto(value: i32) -> Result<OrderStatus, OrderError> {
    let invalid = || OrderError::invalid("status", "must be one of shipped, delivered or cancelled");
    match pb::OrderStatus::try_from(value).map_err(|_| invalid())? {
        pb::OrderStatus::Unspecified => Err(invalid()),
        pb::OrderStatus::Pending => Ok(OrderStatus::Pending),
        pb::OrderStatus::Confirmed => Ok(OrderStatus::Confirmed),
        pb::OrderStatus::Shipped => Ok(OrderStatus::Shipped),
        pb::OrderStatus::Delivered => Ok(OrderStatus::Delivered),
        pb::OrderStatus::Cancelled => Ok(OrderStatus::Cancelled),
        pb::OrderStatus::Rejected => Ok(OrderStatus::Rejected),
    }
}

fn parse_page(page: u32, size: u32) -> Result<Page, OrderError> {
    Page::new(page, size).map_err(|e| {
        let field = match e {
            PageError::Size => "page_size",
            PageError::Number => "page",
        };
        OrderError::invalid(field, e.to_string())
    })
}

#[tonic::async_trait]
impl order_service_server::OrderService for OrderService {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let request = request.into_inner();
        caller.require(caller.may_act_for(request.user_id))?;
        let access = owner_or_admin(&caller);
        // `create` logs "order placed" once, for a new order only (not a replay).
        let order = self.create(request).await?;
        Ok(Response::new(pb::CreateOrderResponse { order: Some(to_proto(order, access)) }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let id = parse_id("id", request.into_inner().id)?;
        let (order, access) = self.visible(&caller, id).await?;
        Ok(Response::new(pb::GetOrderResponse { order: Some(to_proto(order, access)) }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let request = request.into_inner();
        let user_id = request.user_id.map(|id| parse_id("user_id", id)).transpose()?;
        // Everyone's orders are for admins; one user's, for them too.
        caller.require(user_id.map_or(caller.is_admin(), |id| caller.may_act_for(id)))?;
        let page = parse_page(request.page, request.page_size)?;
        // A customer's orders are orders: a refused checkout (kept as rejected
        // for the shop's record and for retries) is not one of them.
        let (orders, total) = store::list(&self.db, user_id, caller.is_admin(), page).await?;
        let access = owner_or_admin(&caller);
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.into_iter().map(|order| to_proto(order, access)).collect(),
            total,
            page: page.number,
            page_size: page.size,
        }))
    }

    async fn update_order_status(
        &self,
        request: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::UpdateOrderStatusResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let (order, access) = self.update_status(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateOrderStatusResponse { order: Some(to_proto(order, access)) }))
    }

    async fn get_cart(&self, request: Request<pb::GetCartRequest>) -> Result<Response<pb::CartResponse>, Status> {
        let user_id = cart::owner(&self.identity.caller(&request)?)?;
        let lines = self.cart(user_id).await?;
        Ok(Response::new(pb::CartResponse { cart: Some(cart::to_proto(lines)) }))
    }

    async fn set_cart_item(
        &self,
        request: Request<pb::SetCartItemRequest>,
    ) -> Result<Response<pb::CartResponse>, Status> {
        let user_id = cart::owner(&self.identity.caller(&request)?)?;
        let request = request.into_inner();
        let lines = self.cart_set(user_id, request.product_id, request.quantity).await?;
        Ok(Response::new(pb::CartResponse { cart: Some(cart::to_proto(lines)) }))
    }

    async fn add_cart_item(
        &self,
        request: Request<pb::AddCartItemRequest>,
    ) -> Result<Response<pb::CartResponse>, Status> {
        let user_id = cart::owner(&self.identity.caller(&request)?)?;
        let request = request.into_inner();
        let lines = self.cart_add(user_id, request.product_id, request.quantity).await?;
        Ok(Response::new(pb::CartResponse { cart: Some(cart::to_proto(lines)) }))
    }

    async fn merge_cart(
        &self,
        request: Request<pb::MergeCartRequest>,
    ) -> Result<Response<pb::MergeCartResponse>, Status> {
        let user_id = cart::owner(&self.identity.caller(&request)?)?;
        let (lines, adjustments) = self.cart_merge(user_id, &request.into_inner().items).await?;
        Ok(Response::new(pb::MergeCartResponse {
            cart: Some(cart::to_proto(lines)),
            adjustments: adjustments.into_iter().map(pb::CartAdjustment::from).collect(),
        }))
    }

    async fn checkout_cart(
        &self,
        request: Request<pb::CheckoutCartRequest>,
    ) -> Result<Response<pb::CheckoutCartResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let user_id = cart::owner(&caller)?;
        let (order, left) = self.cart_checkout(user_id, &request.into_inner().idempotency_key).await?;
        Ok(Response::new(pb::CheckoutCartResponse {
            order: Some(to_proto(order, owner_or_admin(&caller))),
            left_in_cart: left.into_iter().map(pb::CartLine::from).collect(),
        }))
    }
}

impl From<OrderStatus> for pb::OrderStatus {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
            OrderStatus::Rejected => Self::Rejected,
        }
    }
}

/// An order as `access` sees it: with the status changes that caller may
/// make now.
fn to_proto(order: Order, access: Access) -> pb::Order {
    let allowed = access.allowed_transitions(order.status);
    pb::Order {
        allowed_transitions: allowed.into_iter().map(|status| pb::OrderStatus::from(status).into()).collect(),
        ..order.into()
    }
}

impl From<Order> for pb::Order {
    /// Without `allowed_transitions`, which depend on who asks: see [`to_proto`].
    fn from(order: Order) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            status: pb::OrderStatus::from(order.status).into(),
            items: order
                .items
                .into_iter()
                .map(|item| pb::OrderItem {
                    product_id: item.product_id,
                    product_name: item.product_name.unwrap_or_default(),
                    quantity: item.quantity,
                    unit_price_minor: item.unit_price_minor.unwrap_or_default(),
                })
                .collect(),
            total_minor: order.total_minor,
            created_at: Some(from_unix_ms(order.created_at_ms)),
            updated_at: Some(from_unix_ms(order.updated_at_ms)),
            history: order
                .history
                .into_iter()
                .map(|change| pb::StatusChange {
                    status: pb::OrderStatus::from(change.status).into(),
                    actor: change.actor,
                    at: Some(from_unix_ms(change.at_ms)),
                })
                .collect(),
            allowed_transitions: Vec::new(),
        }
    }
}
