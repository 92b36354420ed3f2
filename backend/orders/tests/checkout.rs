//! Checkout with a delivery address, a delivery method and a payment method;
//! the payment state beside the status; delivery methods kept by admins;
//! through real tonic clients and a real inventory service, on SQLite and
//! PostgreSQL.

use shop_grpc::identity::{Caller, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_orders::domain::Settings;
use shop_proto::inventory::v1::CreateProductRequest;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::orders::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;

struct Shop {
    /// Signed as an admin (user 99).
    orders: OrderServiceClient<Signed>,
    inventory: InventoryServiceClient<Signed>,
    orders_url: String,
    orders_db: TestDb,
    _inventory_db: TestDb,
    _servers: (Running, Running),
}

async fn start(backend: Backend) -> Shop {
    start_with(backend, Settings::default()).await
}

async fn start_with(backend: Backend, settings: Settings) -> Shop {
    let orders_db = TestDb::new(backend, &shop_orders::MIGRATIONS).await;
    let inventory_db = TestDb::new(backend, &shop_inventory::MIGRATIONS).await;
    let (listener, inventory_url) = loopback().await;
    let inventory = shop_inventory::InventoryService::new(inventory_db.db.clone()).with_identity(identity());
    let inventory_server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, inventory.into_server(), shutdown).await.expect("the inventory service runs");
    });
    let channel = shop_orders::service::inventory_channel(&inventory_url).expect("a channel");
    let orders =
        shop_orders::OrderService::new(orders_db.db.clone(), channel).with_identity(identity()).with_settings(settings);
    let (listener, orders_url) = loopback().await;
    let orders_server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, orders.into_server(), shutdown).await.expect("the order service runs");
    });
    Shop {
        orders: OrderServiceClient::with_interceptor(connect(&orders_url).await, sign_as(admin())),
        inventory: InventoryServiceClient::with_interceptor(connect(&inventory_url).await, sign_as(admin())),
        orders_url,
        orders_db,
        _inventory_db: inventory_db,
        _servers: (inventory_server, orders_server),
    }
}

fn address() -> DeliveryAddress {
    DeliveryAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        line2: "Second floor".into(),
        postcode: "SW1Y 4JH".into(),
        city: "London".into(),
        country: "gb".into(),
        phone: "+44 20 7946 0000".into(),
    }
}

impl Shop {
    async fn product(&mut self, name: &str, price_minor: i64, stock: i64) -> i64 {
        let request = CreateProductRequest { name: name.into(), price_minor, stock, ..Default::default() };
        self.inventory.create_product(request).await.expect("a product").into_inner().product.expect("a product").id
    }

    async fn method(&mut self, name: &str, price_minor: i64, free_above_minor: Option<i64>) -> i64 {
        let request = CreateDeliveryMethodRequest { name: name.into(), price_minor, free_above_minor, active: None };
        let created = self.orders.create_delivery_method(request).await.expect("a delivery method");
        created.into_inner().method.expect("a method").id
    }

    async fn client(&self, caller: Caller) -> OrderServiceClient<Signed> {
        OrderServiceClient::with_interceptor(connect(&self.orders_url).await, sign_as(caller))
    }

    async fn customer(&self, id: i64) -> OrderServiceClient<Signed> {
        self.client(Caller::User { id, admin: false }).await
    }

    /// Places an order for `user_id` with delivery to `address()` by `method`.
    async fn deliver(
        &mut self,
        user_id: i64,
        items: &[(i64, i64)],
        method: i64,
        payment: PaymentMethod,
    ) -> Result<Order, tonic::Status> {
        let request = CreateOrderRequest {
            user_id,
            items: items.iter().map(|&(product_id, quantity)| OrderLine { product_id, quantity }).collect(),
            delivery_address: Some(address()),
            delivery_method_id: method,
            payment_method: payment.into(),
            ..Default::default()
        };
        Ok(self.orders.create_order(request).await?.into_inner().order.expect("an order"))
    }

    async fn get(&mut self, id: i64) -> Order {
        self.orders.get_order(GetOrderRequest { id }).await.expect("the order").into_inner().order.expect("an order")
    }

    async fn set_status(&mut self, id: i64, status: OrderStatus, tracking: &str) -> Result<Order, tonic::Status> {
        let request = UpdateOrderStatusRequest { id, status: status.into(), tracking_reference: tracking.into() };
        Ok(self.orders.update_order_status(request).await?.into_inner().order.expect("an order"))
    }

    /// The outbox's payloads of one kind of event, oldest first.
    async fn events(&self, kind: &str) -> Vec<String> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT payload FROM outbox WHERE kind = $1 ORDER BY id")
            .bind(kind)
            .fetch_all(&self.orders_db.db.pool)
            .await
            .expect("the outbox");
        rows.into_iter().map(|(payload,)| payload).collect()
    }
}

async fn checkout(
    client: &mut OrderServiceClient<Signed>,
    request: CheckoutCartRequest,
) -> Result<CheckoutCartResponse, tonic::Status> {
    Ok(client.checkout_cart(request).await?.into_inner())
}

fn full_checkout(key: &str, method: i64, payment: PaymentMethod) -> CheckoutCartRequest {
    CheckoutCartRequest {
        idempotency_key: key.into(),
        delivery_address: Some(address()),
        delivery_method_id: method,
        payment_method: payment.into(),
        terms_accepted: true,
    }
}

#[track_caller]
fn field_of(result: Result<impl std::fmt::Debug, tonic::Status>) -> String {
    let refused = assert_refused(result, Code::InvalidArgument, ErrorReason::FieldInvalid);
    rich_error::field_violations(&refused).first().expect("a field").0.clone()
}

async fn delivery_is_free_from_the_threshold_on(backend: Backend) {
    let mut shop = start(backend).await;
    let cheap = shop.product("Pencil", 1, 100_000).await;
    let standard = shop.method("Standard", 490, Some(5_000)).await;
    let express = shop.method("Express", 990, None).await;

    for (quantity, delivery) in [(4_999, 490), (5_000, 0), (5_001, 0)] {
        let order = shop.deliver(1, &[(cheap, quantity)], standard, PaymentMethod::BankTransfer).await.expect("placed");
        assert_eq!(order.subtotal_minor, quantity, "subtotal of {quantity}");
        assert_eq!(order.delivery_minor, delivery, "delivery for a subtotal of {quantity}");
        assert_eq!(order.total_minor, quantity + delivery);
        assert_eq!(order.delivery_method_name, "Standard");
        assert_eq!(order.delivery_method_id, standard);
        // The quote for the same lines says the same.
        let quote = QuoteCheckoutRequest {
            items: vec![OrderLine { product_id: cheap, quantity }],
            delivery_method_id: standard,
        };
        let quote = shop.orders.quote_checkout(quote).await.expect("a quote").into_inner();
        assert_eq!(
            (quote.subtotal_minor, quote.delivery_minor, quote.total_minor, quote.vat_included_minor),
            (order.subtotal_minor, order.delivery_minor, order.total_minor, order.vat_included_minor)
        );
    }
    // Without a threshold, delivery is never free.
    let order = shop.deliver(1, &[(cheap, 9_000)], express, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!((order.delivery_minor, order.total_minor), (990, 9_990));
}

async fn totals_and_vat_are_the_services_whatever_the_client_says(backend: Backend) {
    let mut shop = start_with(backend, Settings { vat_rate_bp: 550, ..Settings::default() }).await;
    let tea = shop.product("Green tea", 1_000, 10).await;
    let standard = shop.method("Standard", 550, None).await;
    // A quote for the cart shows what checkout charges.
    let mut ada = shop.customer(1).await;
    ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 2 }).await.expect("in the cart");
    let quote = QuoteCheckoutRequest { items: vec![], delivery_method_id: standard };
    let quote = ada.quote_checkout(quote).await.expect("a quote").into_inner();
    assert_eq!((quote.subtotal_minor, quote.delivery_minor, quote.total_minor), (2_000, 550, 2_550));
    // 2,550 including 5.5 %: 2,550 * 5.5 / 105.5 = 132.94 -> 133.
    assert_eq!((quote.vat_included_minor, quote.vat_rate_basis_points), (133, 550));

    let placed = checkout(&mut ada, full_checkout("k", standard, PaymentMethod::BankTransfer)).await.expect("placed");
    let order = placed.order.expect("an order");
    assert_eq!(
        (order.subtotal_minor, order.delivery_minor, order.total_minor, order.vat_included_minor),
        (2_000, 550, 2_550, 133)
    );
    assert_eq!(order.vat_rate_basis_points, 550);
    // Repricing the method later changes nothing on the order.
    let reprice = UpdateDeliveryMethodRequest { id: standard, price_minor: Some(9_999), ..Default::default() };
    shop.orders.update_delivery_method(reprice).await.expect("repriced");
    let again = shop.get(order.id).await;
    assert_eq!((again.delivery_minor, again.total_minor, again.vat_included_minor), (550, 2_550, 133));

    // The order's total matches its parts as stored, too.
    let (subtotal, delivery, total): (i64, i64, i64) =
        sqlx::query_as("SELECT subtotal_minor, delivery_minor, total_minor FROM orders WHERE id = $1")
            .bind(order.id)
            .fetch_one(&shop.orders_db.db.pool)
            .await
            .expect("the row");
    assert_eq!(subtotal + delivery, total);
}

async fn the_address_and_the_checkout_are_checked_field_by_field(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let mut ada = shop.customer(1).await;
    ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 1 }).await.expect("in the cart");
    let good = || full_checkout("", standard, PaymentMethod::BankTransfer);
    let with_address = |change: fn(&mut DeliveryAddress)| {
        let mut address = address();
        change(&mut address);
        CheckoutCartRequest { delivery_address: Some(address), ..good() }
    };
    let cases: Vec<(CheckoutCartRequest, &str)> = vec![
        (CheckoutCartRequest { terms_accepted: false, ..good() }, "terms"),
        (CheckoutCartRequest { delivery_address: None, ..good() }, "delivery_address"),
        (CheckoutCartRequest { delivery_method_id: 0, ..good() }, "delivery_method_id"),
        (CheckoutCartRequest { payment_method: 0, ..good() }, "payment_method"),
        (CheckoutCartRequest { payment_method: 7, ..good() }, "payment_method"),
        (with_address(|a| a.name = "  ".into()), "delivery_address.name"),
        (with_address(|a| a.name = "x".repeat(101)), "delivery_address.name"),
        (with_address(|a| a.line1 = String::new()), "delivery_address.line1"),
        (with_address(|a| a.line1 = "x".repeat(201)), "delivery_address.line1"),
        (with_address(|a| a.line2 = "floor\u{7}2".into()), "delivery_address.line2"),
        (with_address(|a| a.postcode = String::new()), "delivery_address.postcode"),
        (with_address(|a| a.postcode = "75<01>".into()), "delivery_address.postcode"),
        (with_address(|a| a.city = "Par\nis".into()), "delivery_address.city"),
        (with_address(|a| a.country = "XX".into()), "delivery_address.country"),
        (with_address(|a| a.country = "FRA".into()), "delivery_address.country"),
        (with_address(|a| a.country = String::new()), "delivery_address.country"),
        (with_address(|a| a.phone = "call me".into()), "delivery_address.phone"),
        (with_address(|a| a.phone = "1".repeat(31)), "delivery_address.phone"),
    ];
    for (request, field) in cases {
        assert_eq!(field_of(checkout(&mut ada, request).await), field);
    }
    // An unknown or inactive method is not offered.
    let unknown = assert_refused(
        checkout(&mut ada, CheckoutCartRequest { delivery_method_id: 4_242, ..good() }).await,
        Code::NotFound,
        ErrorReason::DeliveryMethodNotFound,
    );
    assert_eq!(rich_error::metadata(&unknown, "delivery_method_id").as_deref(), Some("4242"));
    let retired = shop.method("Retired", 100, None).await;
    let deactivate = UpdateDeliveryMethodRequest { id: retired, active: Some(false), ..Default::default() };
    shop.orders.update_delivery_method(deactivate).await.expect("deactivated");
    assert_refused(
        checkout(&mut ada, CheckoutCartRequest { delivery_method_id: retired, ..good() }).await,
        Code::NotFound,
        ErrorReason::DeliveryMethodNotFound,
    );
    // Nothing was recorded by any refusal; an optional field left empty is fine.
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&shop.orders_db.db.pool).await.expect("a count");
    assert_eq!(orders, 0);
    let plain = with_address(|a| {
        a.line2 = String::new();
        a.phone = String::new();
    });
    let placed = checkout(&mut ada, plain).await.expect("placed").order.expect("an order");
    let kept = placed.delivery_address.expect("an address");
    assert_eq!((kept.country.as_str(), kept.line2.as_str(), kept.phone.as_str()), ("GB", "", ""));

    // CreateOrder: delivery is optional, but an address and a method go together.
    let line = vec![OrderLine { product_id: tea, quantity: 1 }];
    let only_address =
        CreateOrderRequest { user_id: 1, items: line.clone(), delivery_address: Some(address()), ..Default::default() };
    assert_eq!(field_of(shop.orders.create_order(only_address).await), "delivery_method_id");
    let only_method =
        CreateOrderRequest { user_id: 1, items: line.clone(), delivery_method_id: standard, ..Default::default() };
    assert_eq!(field_of(shop.orders.create_order(only_method).await), "delivery_address");
    // Without either: collected in store, no delivery cost.
    let plain = CreateOrderRequest { user_id: 1, items: line, ..Default::default() };
    let order = shop.orders.create_order(plain).await.expect("placed").into_inner().order.expect("an order");
    assert!(order.delivery_address.is_none());
    assert_eq!((order.delivery_minor, order.delivery_method_name.as_str()), (0, ""));
    assert_eq!(order.payment_method(), PaymentMethod::Unspecified);
    assert_eq!(order.total_minor, 450);
}

async fn checkout_takes_each_payment_method(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let mut ada = shop.customer(1).await;
    for (key, payment) in [("bank", PaymentMethod::BankTransfer), ("cash", PaymentMethod::CashOnDelivery)] {
        ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 1 }).await.expect("in the cart");
        let placed = checkout(&mut ada, full_checkout(key, standard, payment)).await.expect("placed");
        let order = placed.order.expect("an order");
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert_eq!(order.payment_method(), payment);
        assert_eq!(order.payment_state(), PaymentState::Unpaid);
        assert_eq!(order.payment_reference, format!("ORDER-{:06}", order.id));
        assert_eq!(order.delivery_address.as_ref().map(|a| a.name.as_str()), Some("Ada Lovelace"));
        // The customer may cancel; they may not move the payment.
        assert_eq!(order.allowed_payment_transitions, Vec::<i32>::new());
        assert_eq!(order.allowed_transitions().collect::<Vec<_>>(), vec![OrderStatus::Cancelled]);
    }
}

async fn payment_moves_only_as_its_state_machine_allows(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let order = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!(order.allowed_payment_transitions().collect::<Vec<_>>(), vec![PaymentState::Paid]);

    // Neither its customer nor another may mark it paid.
    let mut ada = shop.customer(1).await;
    assert_refused(
        ada.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
    let mut eve = shop.customer(2).await;
    assert_refused(
        eve.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await,
        Code::NotFound,
        ErrorReason::OrderNotFound,
    );
    // Refunding an unpaid order is refused.
    let refused = assert_refused(
        shop.orders.refund_order(RefundOrderRequest { id: order.id }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );
    assert_eq!(rich_error::metadata(&refused, "from").as_deref(), Some("unpaid"));
    assert_eq!(rich_error::metadata(&refused, "to").as_deref(), Some("refunded"));

    let paid = shop.orders.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await.expect("paid");
    let paid = paid.into_inner().order.expect("an order");
    assert_eq!(paid.payment_state(), PaymentState::Paid);
    assert_eq!(
        paid.payment_history.iter().map(|c| (c.state(), c.actor.as_str())).collect::<Vec<_>>(),
        vec![(PaymentState::Paid, "user:99")]
    );
    assert_eq!(paid.allowed_payment_transitions, Vec::<i32>::new(), "refunds wait for a cancellation");
    // Twice is refused; a refund before cancelling too.
    assert_refused(
        shop.orders.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );
    assert_refused(
        shop.orders.refund_order(RefundOrderRequest { id: order.id }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );
    let cancelled = shop.set_status(order.id, OrderStatus::Cancelled, "").await.expect("cancelled");
    assert_eq!(cancelled.allowed_payment_transitions().collect::<Vec<_>>(), vec![PaymentState::Refunded]);
    let refunded = shop.orders.refund_order(RefundOrderRequest { id: order.id }).await.expect("refunded");
    assert_eq!(refunded.into_inner().order.expect("an order").payment_state(), PaymentState::Refunded);
    assert_refused(
        shop.orders.refund_order(RefundOrderRequest { id: order.id }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );

    // A cancelled or rejected order cannot be paid.
    let other = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    shop.set_status(other.id, OrderStatus::Cancelled, "").await.expect("cancelled");
    assert_refused(
        shop.orders.mark_order_paid(MarkOrderPaidRequest { id: other.id }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );
    let short = shop.deliver(1, &[(tea, 1_000)], standard, PaymentMethod::BankTransfer).await;
    let rejected = assert_refused(short, Code::FailedPrecondition, ErrorReason::OrderRejected);
    let rejected: i64 = rich_error::metadata(&rejected, "order_id").expect("its id").parse().expect("an id");
    assert_refused(
        shop.orders.mark_order_paid(MarkOrderPaidRequest { id: rejected }).await,
        Code::FailedPrecondition,
        ErrorReason::PaymentTransitionForbidden,
    );

    // Each change wrote its event.
    let events = shop.events("order.payment_changed").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains(r#""from":"unpaid""#) && events[0].contains(r#""to":"paid""#), "{}", events[0]);
    assert!(events[1].contains(r#""to":"refunded""#) && events[1].contains(r#""actor":"user:99""#), "{}", events[1]);
}

async fn unpaid_bank_transfers_ship_only_when_the_shop_says_so(backend: Backend) {
    // By default they wait for the payment.
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let order = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!(
        order.allowed_transitions().collect::<Vec<_>>(),
        vec![OrderStatus::Cancelled],
        "no shipping while unpaid"
    );
    let refused = assert_refused(
        shop.set_status(order.id, OrderStatus::Shipped, "").await,
        Code::FailedPrecondition,
        ErrorReason::PaymentRequired,
    );
    assert_eq!(rich_error::metadata(&refused, "order_id"), Some(order.id.to_string()));
    shop.orders.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await.expect("paid");
    assert_eq!(
        shop.get(order.id).await.allowed_transitions().collect::<Vec<_>>(),
        vec![OrderStatus::Shipped, OrderStatus::Cancelled]
    );
    shop.set_status(order.id, OrderStatus::Shipped, "").await.expect("shipped once paid");

    // Cash on delivery ships unpaid, and is paid when delivered.
    let cash = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::CashOnDelivery).await.expect("placed");
    let shipped = shop.set_status(cash.id, OrderStatus::Shipped, "").await.expect("shipped unpaid");
    assert_eq!(shipped.payment_state(), PaymentState::Unpaid);
    let delivered = shop.set_status(cash.id, OrderStatus::Delivered, "").await.expect("delivered");
    assert_eq!(delivered.payment_state(), PaymentState::Paid);
    assert_eq!(
        delivered.payment_history.iter().map(|c| (c.state(), c.actor.as_str())).collect::<Vec<_>>(),
        vec![(PaymentState::Paid, "user:99")]
    );
    let events = shop.events("order.payment_changed").await;
    assert_eq!(events.len(), 2, "the bank transfer's and the cash's: {events:?}");

    // A shop that ships unpaid bank transfers.
    let mut shop = start_with(backend, Settings { ship_unpaid_bank_transfer: true, ..Settings::default() }).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let order = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!(order.allowed_transitions().collect::<Vec<_>>(), vec![OrderStatus::Shipped, OrderStatus::Cancelled]);
    let shipped = shop.set_status(order.id, OrderStatus::Shipped, "").await.expect("shipped unpaid");
    assert_eq!(shipped.payment_state(), PaymentState::Unpaid);
    // Delivery does not pay a bank transfer: the admin marks it.
    let delivered = shop.set_status(order.id, OrderStatus::Delivered, "").await.expect("delivered");
    assert_eq!(delivered.payment_state(), PaymentState::Unpaid);
    assert_eq!(delivered.allowed_payment_transitions().collect::<Vec<_>>(), vec![PaymentState::Paid]);
}

async fn the_tracking_reference_is_recorded_and_sent_with_the_event(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let order = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::CashOnDelivery).await.expect("placed");

    let not_when_cancelling = shop.set_status(order.id, OrderStatus::Cancelled, "COLIS-1").await;
    assert_eq!(field_of(not_when_cancelling), "tracking_reference");
    assert_eq!(field_of(shop.set_status(order.id, OrderStatus::Shipped, &"x".repeat(101)).await), "tracking_reference");
    assert_eq!(field_of(shop.set_status(order.id, OrderStatus::Shipped, "COLIS\t1").await), "tracking_reference");

    let shipped = shop.set_status(order.id, OrderStatus::Shipped, "  6A123456789FR ").await.expect("shipped");
    assert_eq!(shipped.tracking_reference, "6A123456789FR");
    assert_eq!(shop.get(order.id).await.tracking_reference, "6A123456789FR");
    let mut ada = shop.customer(1).await;
    let seen = ada.get_order(GetOrderRequest { id: order.id }).await.expect("hers").into_inner();
    assert_eq!(seen.order.expect("an order").tracking_reference, "6A123456789FR");

    // Read as JSON: how an event is spaced is not part of it (PostgreSQL
    // writes the confirmation's through jsonb).
    let events: Vec<serde_json::Value> = shop
        .events("order.status_changed")
        .await
        .iter()
        .map(|event| serde_json::from_str(event).expect("an event's JSON"))
        .collect();
    let moved_to = |status: &str| events.iter().find(|e| e["data"]["to"] == status).cloned();
    let shipped_event = moved_to("shipped").expect("the shipping event");
    assert_eq!(shipped_event["data"]["tracking_reference"], "6A123456789FR", "{shipped_event}");
    let confirmed_event = moved_to("confirmed").expect("the confirmation");
    assert!(confirmed_event["data"].get("tracking_reference").is_none(), "{confirmed_event}");
    assert_eq!(confirmed_event["data"]["user_id"], 1, "{confirmed_event}");
    assert_eq!(confirmed_event["data"]["total_minor"], 450 + 490, "{confirmed_event}");
    assert_eq!(confirmed_event["data"]["order_id"], order.id, "{confirmed_event}");
    // Delivered keeps the reference on the order, not in its event.
    shop.set_status(order.id, OrderStatus::Delivered, "").await.expect("delivered");
    assert_eq!(shop.get(order.id).await.tracking_reference, "6A123456789FR");
}

async fn the_order_keeps_the_address_and_method_it_was_given(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, Some(10_000)).await;
    let mut ada = shop.customer(1).await;
    ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 1 }).await.expect("in the cart");
    let first = checkout(&mut ada, full_checkout("one", standard, PaymentMethod::BankTransfer)).await.expect("placed");
    let first = first.order.expect("an order");

    // The customer moves house (the next checkout goes elsewhere), the
    // method is renamed, repriced, its threshold cleared, and deactivated.
    ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 1 }).await.expect("in the cart");
    let moved =
        DeliveryAddress { line1: "1 Rue de Rivoli".into(), city: "Paris".into(), country: "FR".into(), ..address() };
    let second = CheckoutCartRequest {
        delivery_address: Some(moved.clone()),
        ..full_checkout("two", standard, PaymentMethod::BankTransfer)
    };
    let second = checkout(&mut ada, second).await.expect("placed").order.expect("an order");
    assert_eq!(second.delivery_address, Some(moved));
    let change = UpdateDeliveryMethodRequest {
        id: standard,
        name: Some("Slow".into()),
        price_minor: Some(1),
        clear_free_above: true,
        active: Some(false),
        ..Default::default()
    };
    let changed = shop.orders.update_delivery_method(change).await.expect("changed").into_inner().method;
    assert_eq!(
        changed,
        Some(DeliveryMethod {
            id: standard,
            name: "Slow".into(),
            price_minor: 1,
            free_above_minor: None,
            active: false
        })
    );

    let kept = shop.get(first.id).await;
    assert_eq!(kept.delivery_address, Some(DeliveryAddress { country: "GB".into(), ..address() }));
    assert_eq!((kept.delivery_method_name.as_str(), kept.delivery_minor), ("Standard", 490));
    assert_eq!(kept.total_minor, first.total_minor);
}

async fn another_customers_order_stays_invisible(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let order = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    let mut eve = shop.customer(2).await;
    let missing = 999_999;
    for id in [order.id, missing] {
        assert_refused(eve.get_order(GetOrderRequest { id }).await, Code::NotFound, ErrorReason::OrderNotFound);
        assert_refused(eve.refund_order(RefundOrderRequest { id }).await, Code::NotFound, ErrorReason::OrderNotFound);
    }
    let theirs = ListOrdersRequest { user_id: Some(1), ..Default::default() };
    assert_refused(eve.list_orders(theirs).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert_refused(
        eve.summarize_customers(SummarizeCustomersRequest { user_ids: vec![1] }).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );

    // The notifications component reads any order, and changes nothing.
    let mut notifications = shop.client(Caller::Service("notifications".into())).await;
    let read = notifications.get_order(GetOrderRequest { id: order.id }).await.expect("readable").into_inner();
    let read = read.order.expect("an order");
    assert_eq!(read.delivery_address.as_ref().map(|a| a.city.as_str()), Some("London"));
    assert!(read.allowed_transitions.is_empty() && read.allowed_payment_transitions.is_empty());
    let cancel = UpdateOrderStatusRequest { id: order.id, status: OrderStatus::Cancelled.into(), ..Default::default() };
    assert_refused(
        notifications.update_order_status(cancel).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
    assert_refused(
        notifications.mark_order_paid(MarkOrderPaidRequest { id: order.id }).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
    let everyone = ListOrdersRequest::default();
    assert_refused(notifications.list_orders(everyone).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    // Another service is no one to orders.
    let mut other = shop.client(Caller::Service("inventory".into())).await;
    assert_refused(other.get_order(GetOrderRequest { id: order.id }).await, Code::NotFound, ErrorReason::OrderNotFound);
}

async fn a_retried_checkout_is_the_same_order(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let standard = shop.method("Standard", 490, None).await;
    let mut ada = shop.customer(1).await;
    ada.set_cart_item(SetCartItemRequest { product_id: tea, quantity: 2 }).await.expect("in the cart");
    let first = checkout(&mut ada, full_checkout("once", standard, PaymentMethod::CashOnDelivery)).await;
    let first = first.expect("placed").order.expect("an order");

    // Back, another method deactivated meanwhile, another payment chosen:
    // the same key is still the first order.
    let deactivate = UpdateDeliveryMethodRequest { id: standard, active: Some(false), ..Default::default() };
    shop.orders.update_delivery_method(deactivate).await.expect("deactivated");
    let retry = checkout(&mut ada, full_checkout("once", standard, PaymentMethod::BankTransfer)).await;
    let retry = retry.expect("the same order").order.expect("an order");
    assert_eq!(retry, first);
    assert_eq!(retry.payment_method(), PaymentMethod::CashOnDelivery);
    assert_eq!((shop.get(first.id).await.items[0].quantity, first.total_minor), (2, 2 * 450 + 490));

    // CreateOrder: the same key with the same delivery is the same order,
    // with another address it is refused.
    let express = shop.method("Express", 990, None).await;
    let request = CreateOrderRequest {
        user_id: 1,
        items: vec![OrderLine { product_id: tea, quantity: 1 }],
        idempotency_key: "api-1".into(),
        delivery_address: Some(address()),
        delivery_method_id: express,
        payment_method: PaymentMethod::BankTransfer.into(),
    };
    let placed = shop.orders.create_order(request.clone()).await.expect("placed").into_inner().order;
    let again = shop.orders.create_order(request.clone()).await.expect("the same").into_inner().order;
    assert_eq!(placed, again);
    let elsewhere = CreateOrderRequest {
        delivery_address: Some(DeliveryAddress { city: "Paris".into(), country: "FR".into(), ..address() }),
        ..request
    };
    assert_refused(shop.orders.create_order(elsewhere).await, Code::InvalidArgument, ErrorReason::IdempotencyKeyReused);
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&shop.orders_db.db.pool).await.expect("a count");
    assert_eq!(count, 2);
}

async fn delivery_methods_are_kept_by_admins(backend: Backend) {
    let mut shop = start(backend).await;
    let mut ada = shop.customer(1).await;
    let create = CreateDeliveryMethodRequest { name: "Mine".into(), price_minor: 1, ..Default::default() };
    assert_refused(ada.create_delivery_method(create).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    for (request, field) in [
        (CreateDeliveryMethodRequest { name: " ".into(), ..Default::default() }, "name"),
        (CreateDeliveryMethodRequest { name: "x".repeat(101), ..Default::default() }, "name"),
        (CreateDeliveryMethodRequest { name: "A\u{0}B".into(), ..Default::default() }, "name"),
        (CreateDeliveryMethodRequest { name: "Neg".into(), price_minor: -1, ..Default::default() }, "price_minor"),
        (
            CreateDeliveryMethodRequest { name: "Neg".into(), free_above_minor: Some(-5), ..Default::default() },
            "free_above_minor",
        ),
    ] {
        assert_eq!(field_of(shop.orders.create_delivery_method(request).await), field);
    }
    let standard = shop.method("Standard", 490, Some(5_000)).await;
    let pickup = shop.method("Pick-up point", 0, None).await;
    let hidden = CreateDeliveryMethodRequest {
        name: "Courier".into(),
        price_minor: 1_500,
        active: Some(false),
        ..Default::default()
    };
    let courier = shop.orders.create_delivery_method(hidden).await.expect("created").into_inner().method.expect("one");
    assert!(!courier.active);

    // Anyone sees the active ones; only admins the inactive ones too.
    let ids = |methods: Vec<DeliveryMethod>| methods.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let mut anonymous = shop.client(Caller::Anonymous).await;
    let listed = anonymous.list_delivery_methods(ListDeliveryMethodsRequest::default()).await.expect("a list");
    assert_eq!(ids(listed.into_inner().methods), vec![standard, pickup]);
    let all = ListDeliveryMethodsRequest { include_inactive: true };
    assert_refused(ada.list_delivery_methods(all).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let listed = shop.orders.list_delivery_methods(all).await.expect("a list").into_inner().methods;
    assert_eq!(ids(listed), vec![standard, pickup, courier.id]);

    // Updates change only what is set.
    let update = UpdateDeliveryMethodRequest { id: standard, free_above_minor: Some(6_000), ..Default::default() };
    let updated = shop.orders.update_delivery_method(update).await.expect("updated").into_inner().method;
    assert_eq!(
        updated,
        Some(DeliveryMethod {
            id: standard,
            name: "Standard".into(),
            price_minor: 490,
            free_above_minor: Some(6_000),
            active: true
        })
    );
    let both = UpdateDeliveryMethodRequest {
        id: standard,
        free_above_minor: Some(1),
        clear_free_above: true,
        ..Default::default()
    };
    assert_eq!(field_of(shop.orders.update_delivery_method(both).await), "free_above_minor");
    let missing = UpdateDeliveryMethodRequest { id: 9_999, active: Some(true), ..Default::default() };
    assert_refused(
        shop.orders.update_delivery_method(missing).await,
        Code::NotFound,
        ErrorReason::DeliveryMethodNotFound,
    );
    let by_customer = UpdateDeliveryMethodRequest { id: standard, active: Some(false), ..Default::default() };
    assert_refused(
        ada.update_delivery_method(by_customer).await,
        Code::PermissionDenied,
        ErrorReason::PermissionDenied,
    );
}

async fn customers_are_summarized_for_admins(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 1_000, 10).await;
    let standard = shop.method("Standard", 500, None).await;
    let shipped = shop.deliver(1, &[(tea, 1)], standard, PaymentMethod::CashOnDelivery).await.expect("placed");
    shop.set_status(shipped.id, OrderStatus::Shipped, "").await.expect("shipped");
    shop.deliver(1, &[(tea, 2)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    let refunded = shop.deliver(1, &[(tea, 3)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    shop.orders.mark_order_paid(MarkOrderPaidRequest { id: refunded.id }).await.expect("paid");
    shop.set_status(refunded.id, OrderStatus::Cancelled, "").await.expect("cancelled");
    shop.orders.refund_order(RefundOrderRequest { id: refunded.id }).await.expect("refunded");
    let rejected = shop.deliver(1, &[(tea, 100)], standard, PaymentMethod::BankTransfer).await;
    assert_refused(rejected, Code::FailedPrecondition, ErrorReason::OrderRejected);
    shop.deliver(2, &[(tea, 1)], standard, PaymentMethod::BankTransfer).await.expect("placed");

    let asked = SummarizeCustomersRequest { user_ids: vec![3, 1, 2, 1] };
    let summary = shop.orders.summarize_customers(asked).await.expect("a summary").into_inner().customers;
    assert_eq!(
        summary,
        vec![
            CustomerSummary { user_id: 3, orders_count: 0, spent_minor: 0 },
            // Three placed (the rejected one not counted); the cancelled and
            // refunded one spent nothing.
            CustomerSummary { user_id: 1, orders_count: 3, spent_minor: 1_500 + 2_500 },
            CustomerSummary { user_id: 2, orders_count: 1, spent_minor: 1_500 },
        ]
    );
    let too_many = SummarizeCustomersRequest { user_ids: (1..=101).collect() };
    assert_eq!(field_of(shop.orders.summarize_customers(too_many).await), "user_ids");
    let bad = SummarizeCustomersRequest { user_ids: vec![0] };
    assert_eq!(field_of(shop.orders.summarize_customers(bad).await), "user_ids");
}

/// The order answered when it is placed is built from what confirming it
/// wrote, not read back: it must equal a fresh read, field for field.
async fn the_order_answered_when_placed_is_what_a_read_finds(backend: Backend) {
    let mut shop = start_with(backend, Settings { vat_rate_bp: 2_000, ..Settings::default() }).await;
    let tea = shop.product("Tea", 1_250, 1_000).await;
    let cup = shop.product("Cup", 700, 1_000).await;
    let standard = shop.method("Standard", 490, Some(5_000)).await;
    let express = shop.method("Express", 990, None).await;

    // Under and over the free-delivery threshold, without a threshold, with
    // lines given out of product order, and with no delivery at all.
    let placed = [
        shop.deliver(1, &[(cup, 1), (tea, 2)], standard, PaymentMethod::BankTransfer).await,
        shop.deliver(1, &[(cup, 3), (tea, 4)], standard, PaymentMethod::CashOnDelivery).await,
        shop.deliver(2, &[(tea, 1)], express, PaymentMethod::BankTransfer).await,
    ];
    let plain = CreateOrderRequest {
        user_id: 3,
        items: vec![OrderLine { product_id: tea, quantity: 1 }, OrderLine { product_id: cup, quantity: 2 }],
        idempotency_key: "plain-1".into(),
        ..Default::default()
    };
    let plain = shop.orders.create_order(plain.clone()).await.map(|r| r.into_inner().order.expect("an order"));
    for order in placed.into_iter().chain([plain]) {
        let order = order.expect("placed");
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert_eq!(order.history.len(), 2, "placed and confirmed: {:?}", order.history);
        assert_eq!(order, shop.get(order.id).await, "order {} as answered and as read", order.id);
    }
    let free = shop.deliver(1, &[(cup, 3), (tea, 4)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!((free.subtotal_minor, free.delivery_minor, free.total_minor), (7_100, 0, 7_100));
    let charged = shop.deliver(1, &[(cup, 1), (tea, 2)], standard, PaymentMethod::BankTransfer).await.expect("placed");
    assert_eq!((charged.subtotal_minor, charged.delivery_minor, charged.total_minor), (3_200, 490, 3_690));

    // From the cart, and the same order again for a retry of its key.
    let mut ada = shop.customer(4).await;
    ada.add_cart_item(AddCartItemRequest { product_id: tea, quantity: 2 }).await.expect("in the cart");
    ada.add_cart_item(AddCartItemRequest { product_id: cup, quantity: 1 }).await.expect("in the cart");
    let request = full_checkout("cart-1", standard, PaymentMethod::BankTransfer);
    let first = checkout(&mut ada, request.clone()).await.expect("checked out").order.expect("an order");
    assert_eq!(
        first,
        ada.get_order(GetOrderRequest { id: first.id }).await.expect("read").into_inner().order.expect("an order")
    );
    let again = checkout(&mut ada, request).await.expect("the same checkout").order.expect("an order");
    assert_eq!(again, first);
}

on_both_backends!(
    delivery_is_free_from_the_threshold_on,
    totals_and_vat_are_the_services_whatever_the_client_says,
    the_address_and_the_checkout_are_checked_field_by_field,
    checkout_takes_each_payment_method,
    payment_moves_only_as_its_state_machine_allows,
    unpaid_bank_transfers_ship_only_when_the_shop_says_so,
    the_tracking_reference_is_recorded_and_sent_with_the_event,
    the_order_keeps_the_address_and_method_it_was_given,
    another_customers_order_stays_invisible,
    a_retried_checkout_is_the_same_order,
    delivery_methods_are_kept_by_admins,
    customers_are_summarized_for_admins,
    the_order_answered_when_placed_is_what_a_read_finds,
);
