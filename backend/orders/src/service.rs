//! `shop.orders.v1.OrderService`: records orders, has inventory reserve and
//! price them, and moves them through the status state machine.

use std::time::Duration;

use shop_events::Wake;
use shop_grpc::breaker::Breaker;
use shop_grpc::identity::{Caller, Guarded, Identity, SignAs};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1 as inventory;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1 as pb;
use shop_proto::orders::v1::order_service_server::{self, OrderServiceServer};
use shop_proto::time::from_unix_ms;
use shop_storage::cursor::{self, Key, KeyKind};
use shop_storage::{Db, Page, PageError};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::domain::{
    self, Access, Address, AddressInput, Delivery, DeliveryMethod, Order, OrderLines, PaymentMethod, PaymentState,
    PricedLine, Rejection, Settings, Status as OrderStatus, parse_id,
};
use crate::{OrderError, cart, store};

#[derive(Clone)]
pub struct OrderService {
    db: Db,
    /// Inventory, behind a breaker shared by every client made from it.
    channel: Breaker<Channel>,
    inventory: InventoryServiceClient<Guarded>,
    outbox: Wake,
    /// Wakes the recovery loop when a request left an order pending.
    recovery: Wake,
    identity: Identity,
    settings: Settings,
}

/// The service caller that may read every order (and do nothing else).
pub const NOTIFICATIONS: &str = "notifications";

/// How the order service signs its calls to inventory.
fn as_orders(identity: &Identity, channel: &Breaker<Channel>) -> InventoryServiceClient<Guarded> {
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
        let inventory = Breaker::new(inventory, "inventory");
        Self {
            db,
            inventory: as_orders(&identity, &inventory),
            channel: inventory,
            outbox: Wake::default(),
            recovery: Wake::default(),
            identity,
            settings: Settings::default(),
        }
    }

    /// The shop's VAT rate and whether unpaid bank transfers ship.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
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

    /// What the recovery loop waits on between passes (see
    /// [`crate::recovery::run_periodically`]).
    pub(crate) fn recovery_wake(&self) -> &Wake {
        &self.recovery
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Inventory, called as the order service.
    pub(crate) fn inventory(&self) -> InventoryServiceClient<Guarded> {
        self.inventory.clone()
    }

    async fn create(&self, request: pb::CreateOrderRequest) -> Result<Order, OrderError> {
        let user_id = parse_id("user_id", request.user_id)?;
        let lines = OrderLines::parse(request.items.iter().map(|line| (line.product_id, line.quantity)))?;
        let key = domain::parse_idempotency_key(&request.idempotency_key)?;
        let payment_method = payment_method_from_proto(request.payment_method)?;
        let address = request.delivery_address.as_ref().map(address_from_proto).transpose()?;
        let delivery = match (address, request.delivery_method_id) {
            (None, 0) => None,
            (Some(_), 0) => {
                return Err(OrderError::invalid("delivery_method_id", "is required with a delivery address"));
            }
            (None, _) => return Err(OrderError::invalid("delivery_address", "is required with a delivery method")),
            (Some(address), method_id) => {
                let method_id = parse_id("delivery_method_id", method_id)?;
                Some(Delivery { address, method: self.offered(method_id, user_id, key).await? })
            }
        };
        let placement = store::Placement { delivery, payment_method, vat_rate_bp: self.settings.vat_rate_bp };
        self.place(user_id, lines, key, store::Source::Items, &placement).await
    }

    /// The delivery method `id` if it is offered now, or (for a retry of an
    /// order placed with `key`) if it exists: the retry is answered with
    /// its first order even if the method was deactivated meanwhile.
    async fn offered(&self, id: i64, user_id: i64, key: Option<&str>) -> Result<DeliveryMethod, OrderError> {
        let method = store::delivery_method(&self.db, id).await?;
        if method.active {
            return Ok(method);
        }
        match key {
            Some(key) if store::keyed(&self.db, user_id, key).await?.is_some() => Ok(method),
            _ => Err(OrderError::DeliveryMethodNotFound(id)),
        }
    }

    /// Records the order, has inventory reserve it, and answers with it (or
    /// answers a retry of `key` the way its first request was answered).
    async fn place(
        &self,
        user_id: i64,
        lines: OrderLines,
        key: Option<&str>,
        source: store::Source,
        placement: &store::Placement,
    ) -> Result<Order, OrderError> {
        let actor = domain::user_actor(user_id);
        let order_id = match store::insert_pending(&self.db, user_id, &lines, &actor, key, source, placement).await? {
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
        // The order as confirmed, when this request confirmed it: it holds
        // what a read would find, without the read.
        let order = match self.reserve_placed(order_id, &lines, Some(&actor)).await {
            Ok(Some(order)) => order,
            Ok(None) => store::get(&self.db, order_id).await?,
            Err(OrderError::InventoryUnavailable(_)) => self.left_pending(order_id).await?,
            Err(error) => return Err(error),
        };
        let order = self.answered(order).await?;
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
    async fn cart_checkout(
        &self,
        user_id: i64,
        request: &pb::CheckoutCartRequest,
    ) -> Result<(Order, Vec<crate::cart::Line>), OrderError> {
        // The whole request is checked before anything is looked up.
        let (address, method_id, payment_method) = parse_checkout(request)?;
        let key = domain::parse_idempotency_key(&request.idempotency_key)?;
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
        let method = store::delivery_method(&self.db, method_id).await?;
        if !method.active {
            return Err(OrderError::DeliveryMethodNotFound(method_id));
        }
        let placement = store::Placement {
            delivery: Some(Delivery { address, method }),
            payment_method: Some(payment_method),
            vat_rate_bp: self.settings.vat_rate_bp,
        };
        let lines = OrderLines::parse(orderable.iter().map(|line| (line.product_id, line.quantity)))?;
        let order = self.place(user_id, lines, key, store::Source::Cart, &placement).await?;
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
            OrderStatus::Pending => match self.reserve(order_id, lines).await {
                Ok(()) => self.answered(store::get(&self.db, order_id).await?).await,
                Err(OrderError::InventoryUnavailable(_)) => self.left_pending(order_id).await,
                Err(error) => Err(error),
            },
            _ => self.answered(order).await,
        }
    }

    /// A recorded order as the answer to a request for it: a rejected one
    /// is answered as its rejection, never as a placed order (a recovery
    /// pass may have rejected it while this request was reserving; found by
    /// the order checker, seeds 1001 and 2033).
    async fn answered(&self, order: Order) -> Result<Order, OrderError> {
        if order.status != OrderStatus::Rejected {
            return Ok(order);
        }
        // Every rejected order has its rejection (migration 0005 gave
        // older ones theirs).
        let order_id = order.id;
        let (rejection, product_id) =
            store::rejection(&self.db, order_id).await?.unwrap_or((Rejection::StockShort, None));
        Err(OrderError::Rejected { order_id, rejection, product_id })
    }

    /// The answer for an order that is recorded but that inventory could
    /// not be asked about: the order as it is, pending. It is the customer's
    /// order (the recovery loop, woken now, reserves it as soon as inventory
    /// answers), so it is never answered as a failure.
    async fn left_pending(&self, order_id: i64) -> Result<Order, OrderError> {
        metrics::counter!("shop_orders_left_pending_total").increment(1);
        self.recovery.wake();
        self.answered(store::get(&self.db, order_id).await?).await
    }

    /// Has inventory reserve and price a pending order's lines, then records
    /// the outcome. Safe to repeat: inventory reserves once per order id.
    pub(crate) async fn reserve(&self, order_id: i64, lines: &OrderLines) -> Result<(), OrderError> {
        self.reserve_placed(order_id, lines, None).await.map(drop)
    }

    /// [`Self::reserve`], answering with the order when this call confirmed
    /// it and `placed_by` recorded it in the same request (see
    /// `store::confirm_placed`).
    async fn reserve_placed(
        &self,
        order_id: i64,
        lines: &OrderLines,
        placed_by: Option<&str>,
    ) -> Result<Option<Order>, OrderError> {
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
                let subtotal = domain::total_of(&priced).ok_or(OrderError::TotalOverflow)?;
                let confirmed = store::confirm_placed(&self.db, order_id, &priced, subtotal, placed_by).await?;
                self.outbox.wake();
                if matches!(confirmed.status, OrderStatus::Cancelled | OrderStatus::Rejected) {
                    // The order moved on while inventory was reserving.
                    self.release(order_id).await;
                }
                Ok(confirmed.order)
            }
            Err(refused) => self.refused(order_id, &refused).await.map(|()| None),
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
        let tracking = domain::parse_tracking_reference(&request.tracking_reference)?;
        if tracking.is_some() && to != OrderStatus::Shipped {
            return Err(OrderError::invalid("tracking_reference", "is given only when shipping").into());
        }
        let (order, access) = self.visible(caller, id).await?;
        caller.require(access.may_ask_for(to))?;
        if order.status == to {
            return Ok((order, access)); // asking twice for the same status changes nothing
        }
        if !order.status.can_be_moved_to(to) {
            return Err(OrderError::Transition { order_id: id, from: order.status, to }.into());
        }
        if to == OrderStatus::Shipped && !self.may_ship(&order) {
            return Err(OrderError::PaymentRequired(id).into());
        }
        // History names the caller the service verified.
        if !store::transition(&self.db, id, order.status, to, &caller.actor(), tracking.as_deref()).await? {
            return Err(OrderError::Conflict(id).into());
        }
        self.outbox.wake();
        if to == OrderStatus::Cancelled {
            self.release(id).await;
        }
        Ok((store::get(&self.db, id).await?, access))
    }

    fn may_ship(&self, order: &Order) -> bool {
        domain::may_ship(order.payment_method, order.payment_state, self.settings.ship_unpaid_bank_transfer)
    }

    /// Admins move an order's payment (mark paid, refund).
    async fn move_payment(&self, caller: &Caller, id: i64, to: PaymentState) -> Result<(Order, Access), Status> {
        let id = parse_id("id", id)?;
        let (order, access) = self.visible(caller, id).await?;
        caller.require(access == Access::Admin)?;
        let from = order.payment_state;
        if !from.can_be_moved_to(to, order.status) {
            return Err(OrderError::PaymentTransition { order_id: id, from, to }.into());
        }
        if !store::payment_transition(&self.db, id, order.status, from, to, &caller.actor()).await? {
            return Err(OrderError::Conflict(id).into());
        }
        self.outbox.wake();
        tracing::info!(order_id = id, from = from.as_str(), to = to.as_str(), "order payment changed");
        Ok((store::get(&self.db, id).await?, access))
    }

    /// What placing the order would charge: today's prices, the delivery
    /// cost, the total and the VAT in it.
    async fn quote(
        &self,
        user_id: i64,
        request: pb::QuoteCheckoutRequest,
    ) -> Result<pb::QuoteCheckoutResponse, OrderError> {
        let method = match request.delivery_method_id {
            0 => None,
            id => {
                let method = store::delivery_method(&self.db, parse_id("delivery_method_id", id)?).await?;
                if !method.active {
                    return Err(OrderError::DeliveryMethodNotFound(id));
                }
                Some(method)
            }
        };
        let (priced, left): (Vec<PricedLine>, Vec<crate::cart::Line>) = if request.items.is_empty() {
            let lines = self.cart(user_id).await?;
            if lines.is_empty() {
                return Err(OrderError::invalid("items", "your cart is empty"));
            }
            let (orderable, left): (Vec<_>, Vec<_>) =
                lines.into_iter().partition(|line| line.availability == crate::cart::Availability::Available);
            let priced = orderable
                .into_iter()
                .map(|line| PricedLine {
                    product_id: line.product_id,
                    product_name: line.product_name,
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                })
                .collect();
            (priced, left)
        } else {
            let lines = OrderLines::parse(request.items.iter().map(|line| (line.product_id, line.quantity)))?;
            let products = self.stocked(lines.iter().map(|(product_id, _)| product_id).collect()).await?;
            let priced = lines
                .iter()
                .map(|(product_id, quantity)| {
                    let product = products.get(&product_id).ok_or(OrderError::ProductNotFound(product_id))?;
                    Ok(PricedLine {
                        product_id,
                        product_name: product.name.clone(),
                        quantity,
                        unit_price_minor: product.price_minor,
                    })
                })
                .collect::<Result<_, OrderError>>()?;
            (priced, Vec::new())
        };
        let subtotal = domain::total_of(&priced).ok_or(OrderError::TotalOverflow)?;
        let delivery = method.as_ref().map_or(0, |method| method.cost(subtotal));
        let total = subtotal.checked_add(delivery).ok_or(OrderError::TotalOverflow)?;
        let rate = self.settings.vat_rate_bp;
        Ok(pb::QuoteCheckoutResponse {
            items: priced
                .into_iter()
                .map(|line| pb::OrderItem {
                    product_id: line.product_id,
                    product_name: line.product_name,
                    quantity: line.quantity,
                    unit_price_minor: line.unit_price_minor,
                })
                .collect(),
            subtotal_minor: subtotal,
            delivery_method: method.map(pb::DeliveryMethod::from),
            delivery_minor: delivery,
            total_minor: total,
            vat_included_minor: domain::vat_included(total, rate),
            vat_rate_basis_points: rate,
            left_in_cart: left.into_iter().map(pb::CartLine::from).collect(),
        })
    }

    /// An order as `access` sees it: with the status and payment changes
    /// that caller may make now (shipping left out while payment is due).
    fn answer(&self, order: Order, access: Access) -> pb::Order {
        let may_ship = self.may_ship(&order);
        let allowed: Vec<OrderStatus> = access
            .allowed_transitions(order.status)
            .into_iter()
            .filter(|to| *to != OrderStatus::Shipped || may_ship)
            .collect();
        let payments = access.allowed_payment_transitions(order.payment_state, order.status);
        let rate = order.vat_rate_bp.unwrap_or(self.settings.vat_rate_bp);
        let vat = domain::vat_included(order.total_minor, rate);
        pb::Order {
            allowed_transitions: allowed.into_iter().map(|status| pb::OrderStatus::from(status).into()).collect(),
            allowed_payment_transitions: payments
                .into_iter()
                .map(|state| pb::PaymentState::from(state).into())
                .collect(),
            vat_rate_basis_points: rate,
            vat_included_minor: vat,
            ..order.into()
        }
    }
}

/// How `caller` stands towards an order of `owner`'s: `None` for anyone who
/// may not see it.
fn access(caller: &Caller, owner: i64) -> Option<Access> {
    if matches!(caller, Caller::Service(name) if name == NOTIFICATIONS) {
        return Some(Access::ReadOnly);
    }
    caller.may_act_for(owner).then(|| owner_or_admin(caller))
}

/// CheckoutCart's input, checked: the address, the method's id and the
/// payment method, each required, and the terms accepted.
fn parse_checkout(request: &pb::CheckoutCartRequest) -> Result<(Address, i64, PaymentMethod), OrderError> {
    if !request.terms_accepted {
        return Err(OrderError::invalid("terms", "must be accepted to place the order"));
    }
    let address = request
        .delivery_address
        .as_ref()
        .ok_or_else(|| OrderError::invalid("delivery_address", "is required"))
        .and_then(address_from_proto)?;
    if request.delivery_method_id == 0 {
        return Err(OrderError::invalid("delivery_method_id", "choose a delivery method"));
    }
    let method_id = parse_id("delivery_method_id", request.delivery_method_id)?;
    let payment = payment_method_from_proto(request.payment_method)?
        .ok_or_else(|| OrderError::invalid("payment_method", "choose a payment method"))?;
    Ok((address, method_id, payment))
}

fn address_from_proto(address: &pb::DeliveryAddress) -> Result<Address, OrderError> {
    Address::parse(AddressInput {
        name: &address.name,
        line1: &address.line1,
        line2: &address.line2,
        postcode: &address.postcode,
        city: &address.city,
        country: &address.country,
        phone: &address.phone,
    })
}

fn payment_method_from_proto(value: i32) -> Result<Option<PaymentMethod>, OrderError> {
    match pb::PaymentMethod::try_from(value) {
        Ok(pb::PaymentMethod::Unspecified) => Ok(None),
        Ok(pb::PaymentMethod::BankTransfer) => Ok(Some(PaymentMethod::BankTransfer)),
        Ok(pb::PaymentMethod::CashOnDelivery) => Ok(Some(PaymentMethod::CashOnDelivery)),
        Err(_) => Err(OrderError::invalid("payment_method", "must be bank transfer or cash on delivery")),
    }
}

/// An update's changes, checked.
fn method_changes(request: &pb::UpdateDeliveryMethodRequest) -> Result<store::MethodChanges, OrderError> {
    if request.clear_free_above && request.free_above_minor.is_some() {
        return Err(OrderError::invalid("free_above_minor", "cannot be set and cleared at once"));
    }
    Ok(store::MethodChanges {
        name: request.name.as_deref().map(domain::parse_method_name).transpose()?,
        price_minor: request.price_minor.map(domain::parse_method_price).transpose()?,
        free_above_minor: if request.clear_free_above {
            Some(None)
        } else {
            request.free_above_minor.map(domain::parse_free_above).transpose()?.map(Some)
        },
        active: request.active,
    })
}

/// The ids asked for, each once, in the order asked.
fn parse_user_ids(ids: &[i64]) -> Result<Vec<i64>, OrderError> {
    if ids.len() > 100 {
        return Err(OrderError::invalid("user_ids", "at most 100 at a time"));
    }
    let mut distinct = Vec::with_capacity(ids.len());
    for id in ids {
        let id = parse_id("user_ids", *id)?;
        if !distinct.contains(&id) {
            distinct.push(id);
        }
    }
    Ok(distinct)
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

/// Pages by number reach this many orders deep, no further: skipping costs
/// what is skipped. Deeper pages are reached by cursor.
const MAX_SKIP: i64 = 10_000;

/// Where the asked-for page is: a cursor (`after`, `before`) or `last`, or
/// else the page number old clients send.
fn parse_position(request: &pb::ListOrdersRequest, page: Page) -> Result<store::Position, OrderError> {
    let id_of = |field: &'static str, cursor: &str| match cursor::decode(cursor, &[KeyKind::Int]).as_deref() {
        Ok([Key::Int(id)]) => Ok(*id),
        _ => Err(OrderError::invalid(field, "is not a position in this list; use a cursor the list gave")),
    };
    match (request.after.as_str(), request.before.as_str(), request.last) {
        ("", "", false) if page.offset() == 0 => Ok(store::Position::First),
        ("", "", false) if page.offset() > MAX_SKIP => Err(OrderError::invalid(
            "page",
            format!("pages by number reach the newest {MAX_SKIP} orders; page further with after and before"),
        )),
        ("", "", false) => Ok(store::Position::Skip(page.offset())),
        ("", "", true) => Ok(store::Position::Last),
        (after, "", false) => Ok(store::Position::After(id_of("after", after)?)),
        ("", before, false) => Ok(store::Position::Before(id_of("before", before)?)),
        ("", _, true) | (_, "", true) => {
            Err(OrderError::invalid("last", "is a page of its own: not with after or before"))
        }
        (_, _, _) => Err(OrderError::invalid("before", "at most one of after and before")),
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
        Ok(Response::new(pb::CreateOrderResponse { order: Some(self.answer(order, access)) }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let id = parse_id("id", request.into_inner().id)?;
        let (order, access) = self.visible(&caller, id).await?;
        Ok(Response::new(pb::GetOrderResponse { order: Some(self.answer(order, access)) }))
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
        let position = parse_position(&request, page)?;
        // A customer's orders are orders: a refused checkout (kept as rejected
        // for the shop's record and for retries) is not one of them.
        let scope = store::Scope { user_id, with_rejected: caller.is_admin() };
        let listed = store::list(&self.db, scope, position, page.limit()).await?;
        let cursor_of = |order: Option<&Order>| order.map(|o| cursor::encode(&[Key::Int(o.id)])).unwrap_or_default();
        let next_cursor = if listed.older { cursor_of(listed.orders.last()) } else { String::new() };
        let previous_cursor = if listed.newer { cursor_of(listed.orders.first()) } else { String::new() };
        let access = owner_or_admin(&caller);
        Ok(Response::new(pb::ListOrdersResponse {
            orders: listed.orders.into_iter().map(|order| self.answer(order, access)).collect(),
            total: listed.total,
            // A page reached by cursor has no number.
            page: if matches!(position, store::Position::First | store::Position::Skip(_)) { page.number } else { 0 },
            page_size: page.size,
            next_cursor,
            previous_cursor,
            total_is_lower_bound: listed.total_is_lower_bound,
        }))
    }

    async fn update_order_status(
        &self,
        request: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::UpdateOrderStatusResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let (order, access) = self.update_status(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateOrderStatusResponse { order: Some(self.answer(order, access)) }))
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
        let (order, left) = self.cart_checkout(user_id, &request.into_inner()).await?;
        Ok(Response::new(pb::CheckoutCartResponse {
            order: Some(self.answer(order, owner_or_admin(&caller))),
            left_in_cart: left.into_iter().map(pb::CartLine::from).collect(),
        }))
    }

    async fn mark_order_paid(
        &self,
        request: Request<pb::MarkOrderPaidRequest>,
    ) -> Result<Response<pb::MarkOrderPaidResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let (order, access) = self.move_payment(&caller, request.into_inner().id, PaymentState::Paid).await?;
        Ok(Response::new(pb::MarkOrderPaidResponse { order: Some(self.answer(order, access)) }))
    }

    async fn refund_order(
        &self,
        request: Request<pb::RefundOrderRequest>,
    ) -> Result<Response<pb::RefundOrderResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let (order, access) = self.move_payment(&caller, request.into_inner().id, PaymentState::Refunded).await?;
        Ok(Response::new(pb::RefundOrderResponse { order: Some(self.answer(order, access)) }))
    }

    async fn list_delivery_methods(
        &self,
        request: Request<pb::ListDeliveryMethodsRequest>,
    ) -> Result<Response<pb::ListDeliveryMethodsResponse>, Status> {
        let caller = self.identity.caller(&request)?;
        let include_inactive = request.into_inner().include_inactive;
        if include_inactive {
            caller.require_admin()?;
        }
        let methods = store::delivery_methods(&self.db, include_inactive).await?;
        Ok(Response::new(pb::ListDeliveryMethodsResponse {
            methods: methods.into_iter().map(pb::DeliveryMethod::from).collect(),
        }))
    }

    async fn create_delivery_method(
        &self,
        request: Request<pb::CreateDeliveryMethodRequest>,
    ) -> Result<Response<pb::DeliveryMethodResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let request = request.into_inner();
        let name = domain::parse_method_name(&request.name)?;
        let price = domain::parse_method_price(request.price_minor)?;
        let free_above = request.free_above_minor.map(domain::parse_free_above).transpose()?;
        let method =
            store::create_delivery_method(&self.db, &name, price, free_above, request.active.unwrap_or(true)).await?;
        tracing::info!(delivery_method_id = method.id, "delivery method created");
        Ok(Response::new(pb::DeliveryMethodResponse { method: Some(method.into()) }))
    }

    async fn update_delivery_method(
        &self,
        request: Request<pb::UpdateDeliveryMethodRequest>,
    ) -> Result<Response<pb::DeliveryMethodResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let request = request.into_inner();
        let id = parse_id("id", request.id)?;
        let changes = method_changes(&request)?;
        let method = store::update_delivery_method(&self.db, id, &changes).await?;
        Ok(Response::new(pb::DeliveryMethodResponse { method: Some(method.into()) }))
    }

    async fn quote_checkout(
        &self,
        request: Request<pb::QuoteCheckoutRequest>,
    ) -> Result<Response<pb::QuoteCheckoutResponse>, Status> {
        let user_id = cart::owner(&self.identity.caller(&request)?)?;
        Ok(Response::new(self.quote(user_id, request.into_inner()).await?))
    }

    async fn summarize_customers(
        &self,
        request: Request<pb::SummarizeCustomersRequest>,
    ) -> Result<Response<pb::SummarizeCustomersResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let ids = parse_user_ids(&request.into_inner().user_ids)?;
        let summaries = store::summarize_customers(&self.db, &ids).await?;
        Ok(Response::new(pb::SummarizeCustomersResponse {
            customers: ids
                .into_iter()
                .map(|user_id| {
                    let (orders_count, spent_minor) = summaries.get(&user_id).copied().unwrap_or_default();
                    pb::CustomerSummary { user_id, orders_count, spent_minor }
                })
                .collect(),
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

impl From<PaymentState> for pb::PaymentState {
    fn from(state: PaymentState) -> Self {
        match state {
            PaymentState::Unpaid => Self::Unpaid,
            PaymentState::Paid => Self::Paid,
            PaymentState::Refunded => Self::Refunded,
        }
    }
}

impl From<PaymentMethod> for pb::PaymentMethod {
    fn from(method: PaymentMethod) -> Self {
        match method {
            PaymentMethod::BankTransfer => Self::BankTransfer,
            PaymentMethod::CashOnDelivery => Self::CashOnDelivery,
        }
    }
}

impl From<DeliveryMethod> for pb::DeliveryMethod {
    fn from(method: DeliveryMethod) -> Self {
        Self {
            id: method.id,
            name: method.name,
            price_minor: method.price_minor,
            free_above_minor: method.free_above_minor,
            active: method.active,
        }
    }
}

impl From<Order> for pb::Order {
    /// Without what depends on who asks and on the shop's settings (allowed
    /// moves, the VAT): see `OrderService::answer`.
    fn from(order: Order) -> Self {
        let (delivery_method_id, delivery_method_name) = order.delivery_method.unwrap_or_default();
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
            subtotal_minor: order.subtotal_minor,
            delivery_minor: order.delivery_minor,
            delivery_method_id,
            delivery_method_name,
            delivery_address: order.address.map(|a| pb::DeliveryAddress {
                name: a.name,
                line1: a.line1,
                line2: a.line2,
                postcode: a.postcode,
                city: a.city,
                country: a.country,
                phone: a.phone,
            }),
            vat_included_minor: 0,
            vat_rate_basis_points: 0,
            payment_method: order.payment_method.map_or(pb::PaymentMethod::Unspecified, pb::PaymentMethod::from).into(),
            payment_state: pb::PaymentState::from(order.payment_state).into(),
            payment_reference: domain::payment_reference(order.id),
            tracking_reference: order.tracking_reference.unwrap_or_default(),
            allowed_payment_transitions: Vec::new(),
            payment_history: order
                .payment_history
                .into_iter()
                .map(|change| pb::PaymentChange {
                    state: pb::PaymentState::from(change.state).into(),
                    actor: change.actor,
                    at: Some(from_unix_ms(change.at_ms)),
                })
                .collect(),
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
