//! The order service through a real tonic client, calling a real inventory
//! service over gRPC, each on a random port with a database of its own, on
//! SQLite and PostgreSQL.

use std::net::SocketAddr;
use std::time::Duration;

use shop_grpc::identity::{Caller, Identity, SignAs, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::{CreateProductRequest, GetProductRequest, UpdateProductRequest};
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::orders::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, assert_status, connect, identity, loopback, on_both_backends,
    sign_as,
};
use tokio::net::TcpListener;
use tonic::Code;

struct Shop {
    /// Both signed as an admin (user 99).
    orders: OrderServiceClient<Signed>,
    inventory: InventoryServiceClient<Signed>,
    orders_url: String,
    /// The service behind `orders`, for running recovery passes.
    service: shop_orders::OrderService,
    orders_db: TestDb,
    inventory_db: TestDb,
    inventory_addr: SocketAddr,
    inventory_server: Option<Running>,
    _orders_server: Running,
}

fn serve_inventory(db: &TestDb, listener: TcpListener) -> Running {
    let service = shop_inventory::InventoryService::new(db.db.clone()).with_identity(identity()).into_server();
    Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, service, shutdown).await.expect("the inventory service runs");
    })
}

async fn start(backend: Backend) -> Shop {
    start_on(backend, TestDb::new(backend, &shop_orders::MIGRATIONS).await).await
}

/// The shop, with the order service on `orders_db`.
async fn start_on(backend: Backend, orders_db: TestDb) -> Shop {
    let inventory_db = TestDb::new(backend, &shop_inventory::MIGRATIONS).await;
    let (listener, inventory_url) = loopback().await;
    let inventory_addr = listener.local_addr().expect("an address");
    let inventory_server = serve_inventory(&inventory_db, listener);

    let channel = shop_orders::service::inventory_channel(&inventory_url).expect("a channel");
    let service = shop_orders::OrderService::new(orders_db.db.clone(), channel).with_identity(identity());
    let (listener, orders_url) = loopback().await;
    let server = service.clone().into_server();
    let orders_server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, server, shutdown).await.expect("the order service runs");
    });
    Shop {
        orders: OrderServiceClient::with_interceptor(connect(&orders_url).await, sign_as(admin())),
        inventory: InventoryServiceClient::with_interceptor(connect(&inventory_url).await, sign_as(admin())),
        orders_url,
        service,
        orders_db,
        inventory_db,
        inventory_addr,
        inventory_server: Some(inventory_server),
        _orders_server: orders_server,
    }
}

impl Shop {
    async fn product(&mut self, name: &str, price_minor: i64, stock: i64) -> i64 {
        let request = CreateProductRequest { name: name.into(), price_minor, stock, ..Default::default() };
        let created = self.inventory.create_product(request).await.expect("a product");
        created.into_inner().product.expect("a product").id
    }

    async fn stock(&mut self, id: i64) -> i64 {
        let product = self.inventory.get_product(GetProductRequest { id }).await.expect("the product");
        product.into_inner().product.expect("a product").stock
    }

    async fn order(&mut self, user_id: i64, items: &[(i64, i64)]) -> Result<Order, tonic::Status> {
        let items = items.iter().map(|&(product_id, quantity)| OrderLine { product_id, quantity }).collect();
        let created = self.orders.create_order(CreateOrderRequest { user_id, items, ..Default::default() }).await?;
        Ok(created.into_inner().order.expect("an order"))
    }

    async fn order_with_key(&mut self, user_id: i64, items: &[(i64, i64)], key: &str) -> Result<Order, tonic::Status> {
        let items = items.iter().map(|&(product_id, quantity)| OrderLine { product_id, quantity }).collect();
        let request = CreateOrderRequest { user_id, items, idempotency_key: key.into(), ..Default::default() };
        Ok(self.orders.create_order(request).await?.into_inner().order.expect("an order"))
    }

    async fn set_status(&mut self, id: i64, status: OrderStatus) -> Result<Order, tonic::Status> {
        let request = UpdateOrderStatusRequest { id, status: status.into(), ..Default::default() };
        Ok(self.orders.update_order_status(request).await?.into_inner().order.expect("an order"))
    }

    async fn get(&mut self, id: i64) -> Order {
        self.orders.get_order(GetOrderRequest { id }).await.expect("the order").into_inner().order.expect("an order")
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (count,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&self.orders_db.db.pool).await.expect("a count");
        count
    }

    async fn stop_inventory(&mut self) {
        if let Some(server) = self.inventory_server.take() {
            server.stop().await;
        }
    }

    async fn restart_inventory(&mut self) {
        let listener = TcpListener::bind(self.inventory_addr).await.expect("the old port again");
        self.inventory_server = Some(serve_inventory(&self.inventory_db, listener));
    }
}

fn statuses(order: &Order) -> Vec<(OrderStatus, String)> {
    order.history.iter().map(|change| (change.status(), change.actor.clone())).collect()
}

async fn an_order_is_priced_by_inventory_and_reserves_its_stock(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let pot = shop.product("Teapot", 3_200, 2).await;

    let order = shop.order(42, &[(tea, 2), (pot, 1), (tea, 1)]).await.expect("an order");
    assert_eq!(order.status(), OrderStatus::Confirmed);
    assert_eq!(order.user_id, 42);
    assert_eq!(order.total_minor, 3 * 450 + 3_200);
    assert_eq!(
        order.items,
        vec![
            OrderItem { product_id: tea, product_name: "Green tea".into(), quantity: 3, unit_price_minor: 450 },
            OrderItem { product_id: pot, product_name: "Teapot".into(), quantity: 1, unit_price_minor: 3_200 },
        ]
    );
    assert_eq!(
        statuses(&order),
        vec![(OrderStatus::Pending, "user:42".into()), (OrderStatus::Confirmed, "system".into())]
    );
    assert_eq!((shop.stock(tea).await, shop.stock(pot).await), (7, 1));
    assert_eq!(shop.get(order.id).await, order);

    // The price is inventory's at the time of the order: a later change
    // does not touch this order, and the next one pays the new price.
    let reprice = UpdateProductRequest { id: tea, price_minor: Some(500), ..Default::default() };
    shop.inventory.update_product(reprice).await.expect("repriced");
    assert_eq!(shop.get(order.id).await.total_minor, 3 * 450 + 3_200);
    assert_eq!(shop.order(42, &[(tea, 1)]).await.expect("an order").total_minor, 500);
}

async fn an_order_short_of_stock_is_rejected_and_takes_nothing(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let pot = shop.product("Teapot", 3_200, 1).await;

    let short = shop.order(1, &[(tea, 2), (pot, 2)]).await;
    assert_status(short, Code::FailedPrecondition, "not enough stock");
    let unknown = shop.order(1, &[(tea, 2), (777_777, 1)]).await;
    assert_status(unknown, Code::NotFound, "product 777777 not found");
    assert_eq!((shop.stock(tea).await, shop.stock(pot).await), (10, 1));

    // Both are kept, as rejected, for the record: admins see them.
    let listed = shop.orders.list_orders(ListOrdersRequest { user_id: Some(1), ..Default::default() }).await;
    let listed = listed.expect("a list").into_inner();
    assert_eq!(listed.total, 2);
    assert!(listed.orders.iter().all(|o| o.status() == OrderStatus::Rejected && o.total_minor == 0));

    // The customer's own list holds the orders they placed, not refusals;
    // a rejected order is still theirs to open.
    shop.order(1, &[(tea, 1)]).await.expect("an order");
    let mut customer = as_customer(&shop, 1).await;
    let mine = customer.list_orders(ListOrdersRequest { user_id: Some(1), ..Default::default() }).await;
    let mine = mine.expect("a list").into_inner();
    assert_eq!((mine.total, mine.orders.len()), (1, 1));
    assert_eq!(mine.orders[0].status(), OrderStatus::Confirmed);
    let rejected = listed.orders[0].id;
    let opened = customer.get_order(GetOrderRequest { id: rejected }).await.expect("their rejected order");
    assert_eq!(opened.into_inner().order.map(|o| o.status()), Some(OrderStatus::Rejected));
    let everyone = shop.orders.list_orders(ListOrdersRequest { user_id: None, ..Default::default() }).await;
    assert_eq!(everyone.expect("a list").into_inner().total, 3, "admins see every order");
}

async fn bad_orders_are_refused_and_write_nothing(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let many: Vec<_> = (1..=101).map(|id| (id, 1)).collect();
    for (user_id, items, field) in [
        (0, vec![(tea, 1)], "user_id"),
        (-3, vec![(tea, 1)], "user_id"),
        (1, vec![], "items"),
        (1, vec![(tea, 0)], "items.quantity"),
        (1, vec![(tea, -2)], "items.quantity"),
        (1, vec![(tea, 10_001)], "items.quantity"),
        (1, vec![(0, 1)], "items.product_id"),
        (1, many, "items"),
    ] {
        assert_status(shop.order(user_id, &items).await, Code::InvalidArgument, field);
    }
    assert_eq!(shop.count("orders").await, 0);
    assert_eq!(shop.stock(tea).await, 10);
    for id in [0, -1] {
        assert_status(shop.orders.get_order(GetOrderRequest { id }).await, Code::InvalidArgument, "id");
    }
    assert_status(shop.orders.get_order(GetOrderRequest { id: 31_337 }).await, Code::NotFound, "not found");
}

async fn orders_are_listed_per_user_and_for_everyone_page_by_page(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 100).await;
    let mut ada = Vec::new();
    for quantity in 1..=3 {
        ada.push(shop.order(1, &[(tea, quantity)]).await.expect("an order").id);
        shop.order(2, &[(tea, 1)]).await.expect("an order");
    }
    ada.reverse();

    let mine = shop
        .orders
        .list_orders(ListOrdersRequest { user_id: Some(1), page: 1, page_size: 2, ..Default::default() })
        .await;
    let mine = mine.expect("a page").into_inner();
    assert_eq!((mine.total, mine.page, mine.page_size), (3, 1, 2));
    assert_eq!(mine.orders.iter().map(|o| o.id).collect::<Vec<_>>(), ada[..2]);
    assert!(mine.orders.iter().all(|o| o.user_id == 1 && o.items.len() == 1 && o.items[0].unit_price_minor == 450));
    assert_eq!(mine.orders[0].items[0].quantity, 3);
    let rest = shop
        .orders
        .list_orders(ListOrdersRequest { user_id: Some(1), page: 2, page_size: 2, ..Default::default() })
        .await;
    assert_eq!(rest.expect("a page").into_inner().orders.iter().map(|o| o.id).collect::<Vec<_>>(), ada[2..]);
    // Page numbers keep their meaning for old clients; the next page's
    // cursor reaches the same orders (tests/paging.rs pages by cursor).
    let after = ListOrdersRequest { user_id: Some(1), page_size: 2, after: mine.next_cursor, ..Default::default() };
    let after = shop.orders.list_orders(after).await.expect("a page").into_inner();
    assert_eq!(
        (after.orders.iter().map(|o| o.id).collect::<Vec<_>>(), after.next_cursor),
        (ada[2..].to_vec(), "".into())
    );

    let everyone = shop
        .orders
        .list_orders(ListOrdersRequest { user_id: None, page: 1, page_size: 100, ..Default::default() })
        .await;
    let everyone = everyone.expect("a page").into_inner();
    assert_eq!((everyone.total, everyone.orders.len()), (6, 6));
    assert!(everyone.orders.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");
    let nobody = shop.orders.list_orders(ListOrdersRequest { user_id: Some(3), ..Default::default() }).await;
    assert_eq!(nobody.expect("a page").into_inner().total, 0);

    for (request, field) in [
        (ListOrdersRequest { user_id: None, page: 1, page_size: 1_000, ..Default::default() }, "page_size"),
        (ListOrdersRequest { user_id: Some(0), page: 1, page_size: 10, ..Default::default() }, "user_id"),
        (ListOrdersRequest { user_id: Some(1), page: 2_000_000, page_size: 10, ..Default::default() }, "page"),
    ] {
        assert_status(shop.orders.list_orders(request).await, Code::InvalidArgument, field);
    }
}

async fn status_follows_the_state_machine(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let order = shop.order(1, &[(tea, 1)]).await.expect("an order");

    for refused in [OrderStatus::Delivered, OrderStatus::Pending, OrderStatus::Rejected] {
        assert_status(shop.set_status(order.id, refused).await, Code::FailedPrecondition, "cannot go from confirmed");
    }
    let shipped = shop.set_status(order.id, OrderStatus::Shipped).await.expect("shipped");
    assert_eq!(shipped.status(), OrderStatus::Shipped);
    assert_eq!(shop.set_status(order.id, OrderStatus::Shipped).await.expect("still shipped").history.len(), 3);
    assert_status(shop.set_status(order.id, OrderStatus::Cancelled).await, Code::FailedPrecondition, "cannot go");
    let delivered = shop.set_status(order.id, OrderStatus::Delivered).await.expect("delivered");
    assert_eq!(
        statuses(&delivered),
        vec![
            (OrderStatus::Pending, "user:1".into()),
            (OrderStatus::Confirmed, "system".into()),
            (OrderStatus::Shipped, "user:99".into()),
            (OrderStatus::Delivered, "user:99".into()),
        ]
    );
    assert_eq!(shop.stock(tea).await, 9, "a delivered order keeps its stock");

    let unspecified = UpdateOrderStatusRequest { id: order.id, status: 0, ..Default::default() };
    assert_status(shop.orders.update_order_status(unspecified).await, Code::InvalidArgument, "status");
    let unknown_value = UpdateOrderStatusRequest { id: order.id, status: 99, ..Default::default() };
    assert_status(shop.orders.update_order_status(unknown_value).await, Code::InvalidArgument, "status");
    assert_status(shop.set_status(55_555, OrderStatus::Shipped).await, Code::NotFound, "not found");
    assert_status(shop.set_status(0, OrderStatus::Shipped).await, Code::InvalidArgument, "id");
    assert_eq!(shop.get(order.id).await.status(), OrderStatus::Delivered);
}

async fn cancelling_returns_the_stock_once(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let order = shop.order(1, &[(tea, 4)]).await.expect("an order");
    assert_eq!(shop.stock(tea).await, 6);
    let cancelled = shop.set_status(order.id, OrderStatus::Cancelled).await.expect("cancelled");
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(shop.stock(tea).await, 10);
    shop.set_status(order.id, OrderStatus::Cancelled).await.expect("cancelling twice changes nothing");
    assert_eq!(shop.stock(tea).await, 10);
    assert_status(shop.set_status(order.id, OrderStatus::Shipped).await, Code::FailedPrecondition, "cannot go");
    let report = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
    assert_eq!(report, shop_orders::recovery::Report::default(), "nothing left to do");
    assert_eq!(shop.stock(tea).await, 10);
}

async fn an_inventory_outage_leaves_orders_pending_until_recovery_finishes_them(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let kept = shop.order(1, &[(tea, 2)]).await.expect("an order");
    shop.stop_inventory().await;

    let during = shop.order(1, &[(tea, 3)]).await.expect("the order, pending");
    assert_eq!(during.status(), OrderStatus::Pending);
    // Cancelling while inventory is down succeeds; the stock goes back later.
    let cancelled = shop.set_status(kept.id, OrderStatus::Cancelled).await.expect("cancelled");
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    let pending = shop.orders.list_orders(ListOrdersRequest { user_id: Some(1), ..Default::default() }).await;
    let pending = pending.expect("a list").into_inner().orders;
    assert_eq!(pending[0].status(), OrderStatus::Pending);

    let still_down = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
    assert_eq!((still_down.settled, still_down.still_pending, still_down.released), (0, 1, 0));

    shop.restart_inventory().await;
    let report = settle(&shop).await;
    assert_eq!((report.settled, report.released), (1, 1));
    let finished = shop.get(pending[0].id).await;
    assert_eq!((finished.status(), finished.total_minor), (OrderStatus::Confirmed, 3 * 450));
    assert_eq!(shop.stock(tea).await, 7, "the cancelled order's 2 came back; the recovered order's 3 went out");

    let again = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
    assert_eq!(again, shop_orders::recovery::Report::default());
    assert_eq!(shop.stock(tea).await, 7);
}

/// Recovery passes after inventory's return, until nothing is pending: the
/// first ones may find the order service's breaker still open (it lets a
/// trial call through within 5 s). What they did, summed.
async fn settle(shop: &Shop) -> shop_orders::recovery::Report {
    let mut total = shop_orders::recovery::Report::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pass = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
        total.settled += pass.settled;
        total.released += pass.released;
        if pass.still_pending == 0 || std::time::Instant::now() > deadline {
            total.still_pending = pass.still_pending;
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Orders an outage left pending are settled back to back once inventory
/// returns: more than one batch in a single pass, and, with the recovery
/// loop running on a long interval, within seconds of the return (the first
/// order left pending woke it; it tries again with back-off).
async fn orders_left_pending_settle_soon_after_inventory_returns(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 1_000).await;
    // One pass takes every batch.
    shop.stop_inventory().await;
    for _ in 0..150 {
        shop.order(1, &[(tea, 1)]).await.expect("the order, pending");
    }
    let down = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
    assert_eq!((down.settled, down.still_pending), (0, 100), "it stops asking at the first failure");
    shop.restart_inventory().await;
    let back = settle(&shop).await;
    assert_eq!(back.settled, 150);
    assert_eq!(shop.stock(tea).await, 850);

    let recovery =
        tokio::spawn(shop_orders::recovery::run_periodically(shop.service.clone(), Duration::from_secs(3_600)));
    shop.stop_inventory().await;
    let mut pending = Vec::new();
    for _ in 0..250 {
        let order = shop.order(1, &[(tea, 1)]).await.expect("the order, pending");
        assert_eq!(order.status(), OrderStatus::Pending);
        pending.push(order.id);
    }
    shop.restart_inventory().await;
    let returned = std::time::Instant::now();
    loop {
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
            .fetch_one(&shop.orders_db.db.pool)
            .await
            .expect("a count");
        if left == 0 {
            break;
        }
        assert!(returned.elapsed() < Duration::from_secs(20), "{left} orders still pending 20 s after the return");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recovery.abort();
    for id in [pending[0], pending[249]] {
        assert_eq!(shop.get(id).await.status(), OrderStatus::Confirmed);
    }
    assert_eq!(shop.stock(tea).await, 600, "each order's stock taken once");
    let again = shop_orders::recovery::run_once(&shop.service, Duration::ZERO).await.expect("a pass");
    assert_eq!(again.settled, 0, "nothing left");
}

async fn a_retry_with_the_same_idempotency_key_is_the_same_order(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 100).await;
    let pot = shop.product("Teapot", 3_200, 1).await;

    let first = shop.order_with_key(1, &[(tea, 2)], "checkout-1").await.expect("an order");
    let again = shop.order_with_key(1, &[(tea, 2)], "checkout-1").await.expect("the same order");
    assert_eq!(again, first);
    assert_eq!(shop.stock(tea).await, 98, "reserved once");
    // The same key with other items is refused, and changes nothing.
    let other = shop.order_with_key(1, &[(tea, 3)], "checkout-1").await;
    assert_status(other.clone(), Code::InvalidArgument, "idempotency_key: was already used for a different order");
    assert_refused(other, Code::InvalidArgument, ErrorReason::IdempotencyKeyReused);
    // Keys belong to their user.
    let someone_else = shop.order_with_key(2, &[(tea, 2)], "checkout-1").await.expect("another order");
    assert_ne!(someone_else.id, first.id);

    // Twenty concurrent retries of one checkout make one order.
    let retries = (0..20).map(|_| {
        let mut orders = shop.orders.clone();
        tokio::spawn(async move {
            let request = CreateOrderRequest {
                user_id: 3,
                items: vec![OrderLine { product_id: tea, quantity: 1 }],
                idempotency_key: "double-click".into(),
                ..Default::default()
            };
            orders.create_order(request).await.map(|r| r.into_inner().order.map(|o| o.id))
        })
    });
    let mut ids = std::collections::BTreeSet::new();
    for retry in retries {
        ids.insert(retry.await.expect("the task runs").expect("an order").expect("an id"));
    }
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
    assert_eq!(shop.stock(tea).await, 98 - 2 - 1);
    assert_eq!(shop.count("idempotency_keys").await, 3);

    // A rejected order's retry gets the same refusal, for the same reason,
    // and no second order; even after the stock came back.
    let short = shop.order_with_key(4, &[(pot, 2)], "too-many").await;
    assert_status(short.clone(), Code::FailedPrecondition, "not enough stock");
    let orders_before = shop.count("orders").await;
    let restock = UpdateProductRequest { id: pot, stock_delta: Some(5), ..Default::default() };
    shop.inventory.update_product(restock).await.expect("restocked");
    let retried = shop.order_with_key(4, &[(pot, 2)], "too-many").await;
    assert_eq!(rejection_of(retried), rejection_of(short));
    assert_eq!(shop.count("orders").await, orders_before);
    let unknown = shop.order_with_key(4, &[(777_777, 1)], "no-such-thing").await;
    let unknown_again = shop.order_with_key(4, &[(777_777, 1)], "no-such-thing").await;
    let (code, reason, rejection, ..) = rejection_of(unknown.clone());
    assert_eq!(
        (code, reason, rejection.as_deref()),
        (Code::NotFound, Some(ErrorReason::OrderRejected), Some("product_not_found"))
    );
    assert_eq!(rejection_of(unknown_again), rejection_of(unknown));
    let orders_before = shop.count("orders").await;

    // A bad key is refused before anything is written.
    let long = "k".repeat(201);
    assert_status(shop.order_with_key(5, &[(tea, 1)], &long).await, Code::InvalidArgument, "idempotency_key");
    assert_eq!(shop.count("orders").await, orders_before);
}

/// Everything a client can learn of a rejection: code, reason, its
/// metadata and the message.
fn rejection_of(
    result: Result<Order, tonic::Status>,
) -> (Code, Option<ErrorReason>, Option<String>, Option<String>, Option<String>, String) {
    let status = result.expect_err("a rejection");
    let meta = |key| rich_error::metadata(&status, key);
    (
        status.code(),
        rich_error::reason(&status),
        meta("rejection"),
        meta("order_id"),
        meta("product_id"),
        status.message().to_owned(),
    )
}

async fn a_retry_finishes_an_order_an_outage_left_pending(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    shop.stop_inventory().await;
    let pending = shop.order_with_key(1, &[(tea, 4)], "k1").await.expect("the order, pending");
    assert_eq!(pending.status(), OrderStatus::Pending);
    let again = shop.order_with_key(1, &[(tea, 4)], "k1").await.expect("a retry while still away");
    assert_eq!((again.id, again.status()), (pending.id, OrderStatus::Pending));
    shop.restart_inventory().await;
    // Retries are answered pending until the order service's breaker lets
    // a call through to inventory again (within its longest wait, 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let retried = loop {
        let retried = shop.order_with_key(1, &[(tea, 4)], "k1").await.expect("a retry");
        assert_eq!(retried.id, pending.id, "the same order");
        if retried.status() != OrderStatus::Pending || std::time::Instant::now() > deadline {
            break retried;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((retried.status(), retried.total_minor), (OrderStatus::Confirmed, 4 * 450));
    assert_eq!(shop.stock(tea).await, 6);
    assert_eq!(shop.count("orders").await, 1);
}

async fn customers_reach_only_their_own_orders(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let as_user = |id: i64| sign_as(Caller::User { id, admin: false });
    let mut ada = OrderServiceClient::with_interceptor(connect(&shop.orders_url).await, as_user(1));
    let mut eve = OrderServiceClient::with_interceptor(connect(&shop.orders_url).await, as_user(2));
    let mut anonymous = OrderServiceClient::new(connect(&shop.orders_url).await);
    let line = || vec![OrderLine { product_id: tea, quantity: 1 }];

    let mine = ada.create_order(CreateOrderRequest { user_id: 1, items: line(), ..Default::default() }).await;
    let mine = mine.expect("Ada orders for herself").into_inner().order.expect("an order");
    // Ordering in someone else's name, or without a name, is refused.
    let for_ada = CreateOrderRequest { user_id: 1, items: line(), ..Default::default() };
    assert_status(eve.create_order(for_ada.clone()).await, Code::PermissionDenied, "not allowed");
    assert_status(anonymous.create_order(for_ada).await, Code::Unauthenticated, "sign in");
    // Someone else's order does not exist for her: reading or changing it is
    // answered exactly as for an order that does not exist.
    let missing = answer(eve.get_order(GetOrderRequest { id: 999_999 }).await);
    assert_eq!(missing.0, Code::NotFound);
    assert_eq!(missing.1, Some(ErrorReason::OrderNotFound));
    let not_found_as = |id: i64, missing: &Refusal| {
        let text = missing.2.replace("999999", &id.to_string());
        (missing.0, missing.1, text, Some(id.to_string()))
    };
    assert_eq!(answer(eve.get_order(GetOrderRequest { id: mine.id }).await), not_found_as(mine.id, &missing));
    let cancel = UpdateOrderStatusRequest { id: mine.id, status: OrderStatus::Cancelled.into(), ..Default::default() };
    assert_eq!(answer(eve.update_order_status(cancel.clone()).await), not_found_as(mine.id, &missing));
    let cancel_missing = UpdateOrderStatusRequest { id: 999_999, ..cancel.clone() };
    assert_eq!(answer(eve.update_order_status(cancel_missing).await), missing);
    // Listing someone else's orders, or everyone's, is not for her.
    let adas = ListOrdersRequest { user_id: Some(1), ..Default::default() };
    assert_refused(eve.list_orders(adas.clone()).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let everyone = eve.list_orders(ListOrdersRequest::default()).await;
    assert_refused(everyone, Code::PermissionDenied, ErrorReason::PermissionDenied);
    // Nor for an anonymous caller, who learns nothing either way.
    for id in [mine.id, 999_999] {
        let refused = anonymous.get_order(GetOrderRequest { id }).await;
        assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
    }
    // A customer may not ship her own order, but may cancel it; history
    // names who the service verified.
    let ship = UpdateOrderStatusRequest { id: mine.id, status: OrderStatus::Shipped.into(), ..Default::default() };
    assert_refused(ada.update_order_status(ship).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    assert_eq!(ada.list_orders(adas).await.expect("her list").into_inner().total, 1);
    let cancelled = ada.update_order_status(cancel).await.expect("cancelled").into_inner().order.expect("an order");
    assert_eq!(statuses(&cancelled).last(), Some(&(OrderStatus::Cancelled, "user:1".to_owned())));
    assert_eq!(shop.stock(tea).await, 10);
    assert_eq!(shop.count("orders").await, 1);
}

/// Code, reason, message and the order it names: what a client can tell apart.
type Refusal = (Code, Option<ErrorReason>, String, Option<String>);

fn answer<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Refusal {
    let status = result.expect_err("a refusal");
    (status.code(), rich_error::reason(&status), status.message().to_owned(), rich_error::metadata(&status, "order_id"))
}

/// A client signed as customer `id`.
async fn as_customer(shop: &Shop, id: i64) -> OrderServiceClient<Signed> {
    OrderServiceClient::with_interceptor(connect(&shop.orders_url).await, sign_as(Caller::User { id, admin: false }))
}

async fn every_refusal_carries_its_reason(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let meta = |status: &tonic::Status, key: &str| rich_error::metadata(status, key);

    let missing = shop.orders.get_order(GetOrderRequest { id: 31_337 }).await;
    let missing = assert_refused(missing, Code::NotFound, ErrorReason::OrderNotFound);
    assert_eq!(meta(&missing, "order_id").as_deref(), Some("31337"));

    // Rejections, for short stock and for an unknown product.
    let short = shop.order(1, &[(tea, 11)]).await;
    let short = assert_refused(short, Code::FailedPrecondition, ErrorReason::OrderRejected);
    assert_eq!(meta(&short, "rejection").as_deref(), Some("stock_short"));
    assert_eq!(meta(&short, "product_id"), Some(tea.to_string()));
    let rejected_id: i64 = meta(&short, "order_id").and_then(|id| id.parse().ok()).expect("the order id");
    assert_eq!(shop.get(rejected_id).await.status(), OrderStatus::Rejected);
    let unknown = shop.order(1, &[(tea, 1), (777_777, 1)]).await;
    let unknown = assert_refused(unknown, Code::NotFound, ErrorReason::OrderRejected);
    assert_eq!(meta(&unknown, "rejection").as_deref(), Some("product_not_found"));
    assert_eq!(meta(&unknown, "product_id").as_deref(), Some("777777"));

    // The state machine refuses a move.
    let order = shop.order(1, &[(tea, 1)]).await.expect("an order");
    let back = shop.set_status(order.id, OrderStatus::Pending).await;
    let back = assert_refused(back, Code::FailedPrecondition, ErrorReason::TransitionForbidden);
    assert_eq!(
        (meta(&back, "order_id"), meta(&back, "from"), meta(&back, "to")),
        (Some(order.id.to_string()), Some("confirmed".to_owned()), Some("pending".to_owned()))
    );

    // A reused idempotency key names its field.
    shop.order_with_key(1, &[(tea, 1)], "k").await.expect("an order");
    let reused = shop.order_with_key(1, &[(tea, 2)], "k").await;
    let reused = assert_refused(reused, Code::InvalidArgument, ErrorReason::IdempotencyKeyReused);
    assert_eq!(rich_error::field_violations(&reused)[0].0, "idempotency_key");

    // Invalid input: a BadRequest naming each field.
    for (result, field) in [
        (shop.order(0, &[(tea, 1)]).await.map(drop), "user_id"),
        (shop.order(1, &[]).await.map(drop), "items"),
        (shop.order(1, &[(tea, 0)]).await.map(drop), "items.quantity"),
        (shop.order(1, &[(-4, 1)]).await.map(drop), "items.product_id"),
        (shop.order_with_key(1, &[(tea, 1)], "with space").await.map(drop), "idempotency_key"),
        (shop.set_status(order.id, OrderStatus::Unspecified).await.map(drop), "status"),
        (shop.orders.get_order(GetOrderRequest { id: -1 }).await.map(drop), "id"),
        (
            shop.orders.list_orders(ListOrdersRequest { page_size: 1_000, ..Default::default() }).await.map(drop),
            "page_size",
        ),
    ] {
        let refused = assert_refused(result, Code::InvalidArgument, ErrorReason::FieldInvalid);
        let fields: Vec<_> = rich_error::field_violations(&refused).into_iter().map(|(field, _)| field).collect();
        assert_eq!(fields, vec![field.to_owned()]);
    }

    // Who may not.
    let mut eve = as_customer(&shop, 2).await;
    let for_someone_else = CreateOrderRequest {
        user_id: 1,
        items: vec![OrderLine { product_id: tea, quantity: 1 }],
        ..Default::default()
    };
    assert_refused(eve.create_order(for_someone_else).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let forger = SignAs::fixed(Identity::new(b"not the shop's secret at all"), admin());
    let mut forged = OrderServiceClient::with_interceptor(connect(&shop.orders_url).await, forger);
    let forged = forged.get_order(GetOrderRequest { id: order.id }).await;
    assert_refused(forged, Code::Unauthenticated, ErrorReason::CallerUnverified);

    // Inventory away: the order is recorded, and answered as it is, pending
    // (never as a failure: it will be confirmed or rejected).
    shop.stop_inventory().await;
    let pending = shop.order(1, &[(tea, 1)]).await.expect("the order, pending");
    assert_eq!((pending.status(), pending.total_minor), (OrderStatus::Pending, 0));
    assert_eq!(shop.get(pending.id).await.status(), OrderStatus::Pending);
}

async fn a_change_made_meanwhile_is_refused_as_such(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 10).await;
    let order = shop.order(1, &[(tea, 1)]).await.expect("an order");
    // Another writer, played by a trigger: the service's conditional update
    // finds the order no longer as it read it.
    let pool = shop.orders_db.db.pool.clone();
    let statements: &[&str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER another_writer BEFORE UPDATE OF status ON orders \
             WHEN NEW.status = 'shipped' BEGIN SELECT RAISE(IGNORE); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION another_writer() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
            "CREATE TRIGGER another_writer BEFORE UPDATE ON orders FOR EACH ROW \
             WHEN (NEW.status = 'shipped') EXECUTE FUNCTION another_writer()",
        ],
    };
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(*statement)).execute(&pool).await.expect("the trigger");
    }
    let refused = shop.set_status(order.id, OrderStatus::Shipped).await;
    let refused = assert_refused(refused, Code::Aborted, ErrorReason::ConcurrentChange);
    assert_eq!(rich_error::metadata(&refused, "order_id"), Some(order.id.to_string()));
    let drop_trigger = match backend {
        Backend::Sqlite => "DROP TRIGGER another_writer",
        Backend::Postgres => "DROP TRIGGER another_writer ON orders",
    };
    sqlx::query(drop_trigger).execute(&pool).await.expect("no more trigger");
    assert_eq!(shop.set_status(order.id, OrderStatus::Shipped).await.expect("shipped").status(), OrderStatus::Shipped);
}

/// The statuses as the proto lists them.
fn transitions(order: &Order) -> Vec<OrderStatus> {
    order.allowed_transitions().collect()
}

async fn allowed_transitions_follow_the_caller_for_every_status(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Green tea", 450, 100).await;
    let mut ada = as_customer(&shop, 1).await;
    let mut eve = as_customer(&shop, 2).await;
    let line = || vec![OrderLine { product_id: tea, quantity: 1 }];
    let place = |user_id| CreateOrderRequest { user_id, items: line(), ..Default::default() };
    use OrderStatus::*;

    // The answer to CreateOrder says what its caller may do next.
    let confirmed = ada.create_order(place(1)).await.expect("an order").into_inner().order.expect("an order");
    assert_eq!((confirmed.status(), transitions(&confirmed)), (Confirmed, vec![Cancelled]));
    let by_admin = shop.orders.create_order(place(1)).await.expect("an order").into_inner().order.expect("an order");
    assert_eq!(transitions(&by_admin), vec![Shipped, Cancelled]);
    // So does the answer to UpdateOrderStatus.
    let shipped = shop.set_status(by_admin.id, Shipped).await.expect("shipped");
    assert_eq!(transitions(&shipped), vec![Delivered]);
    let delivered = shop.order(1, &[(tea, 1)]).await.expect("an order").id;
    shop.set_status(delivered, Shipped).await.expect("shipped");
    assert_eq!(transitions(&shop.set_status(delivered, Delivered).await.expect("delivered")), vec![]);
    let cancelled = ada.create_order(place(1)).await.expect("an order").into_inner().order.expect("an order").id;
    let cancel = UpdateOrderStatusRequest { id: cancelled, status: Cancelled.into(), ..Default::default() };
    let after_cancel = ada.update_order_status(cancel).await.expect("cancelled").into_inner().order.expect("an order");
    assert_eq!((after_cancel.status(), transitions(&after_cancel)), (Cancelled, vec![]));
    let rejected = shop.order(1, &[(tea, 1_000)]).await.expect_err("rejected");
    let rejected: i64 = rich_error::metadata(&rejected, "order_id").and_then(|id| id.parse().ok()).expect("an id");
    shop.stop_inventory().await;
    let pending = shop.order(1, &[(tea, 1)]).await.expect("left pending").id;

    let every = [
        (pending, Pending, vec![Cancelled], vec![Cancelled]),
        (confirmed.id, Confirmed, vec![Shipped, Cancelled], vec![Cancelled]),
        (shipped.id, Shipped, vec![Delivered], vec![]),
        (delivered, Delivered, vec![], vec![]),
        (cancelled, Cancelled, vec![], vec![]),
        (rejected, Rejected, vec![], vec![]),
    ];
    let admin_list = shop.orders.list_orders(ListOrdersRequest::default()).await.expect("a list").into_inner().orders;
    let adas_list = ada.list_orders(ListOrdersRequest { user_id: Some(1), ..Default::default() }).await;
    let adas_list = adas_list.expect("her list").into_inner().orders;
    assert_eq!(
        eve.list_orders(ListOrdersRequest { user_id: Some(2), ..Default::default() })
            .await
            .expect("a list")
            .into_inner()
            .total,
        0
    );
    for (id, status, admins, owners) in every {
        let as_admin = shop.get(id).await;
        assert_eq!((as_admin.status(), transitions(&as_admin)), (status, admins.clone()), "admin, {status:?}");
        let listed = admin_list.iter().find(|o| o.id == id).expect("in the admin's list");
        assert_eq!(transitions(listed), admins, "admin's list, {status:?}");

        let as_owner = ada.get_order(GetOrderRequest { id }).await.expect("hers").into_inner().order.expect("an order");
        assert_eq!(transitions(&as_owner), owners, "owner, {status:?}");
        // A refused checkout is not in her list of orders (only in the admin's).
        match adas_list.iter().find(|o| o.id == id) {
            Some(listed) => assert_eq!(transitions(listed), owners, "owner's list, {status:?}"),
            None => assert_eq!(status, Rejected, "only a rejected order is left out of her list"),
        }

        assert_refused(eve.get_order(GetOrderRequest { id }).await, Code::NotFound, ErrorReason::OrderNotFound);
        for to in [Cancelled, Shipped] {
            let change =
                eve.update_order_status(UpdateOrderStatusRequest { id, status: to.into(), ..Default::default() }).await;
            assert_refused(change, Code::NotFound, ErrorReason::OrderNotFound);
        }
    }
}

async fn rejections_of_the_old_schema_migrate_and_answer_retries_alike(backend: Backend) {
    // The schema before rejections were the order service's own: inventory's
    // message and gRPC code were kept.
    let before = shop_storage::Migrations {
        postgres: &shop_orders::MIGRATIONS.postgres[..4],
        sqlite: &shop_orders::MIGRATIONS.sqlite[..4],
    };
    let orders_db = TestDb::new(backend, &before).await;
    let pool = &orders_db.db.pool;
    let mut ids = Vec::new();
    for (status, reason, code) in [
        ("rejected", Some("product 777 not found"), Some(5)),
        ("rejected", Some("not enough stock for product 3: 2 wanted, 1 available"), Some(9)),
        ("rejected", None, None),
        ("confirmed", None, None),
    ] {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO orders (user_id, status, rejection_reason, rejection_code, created_at_ms, updated_at_ms) \
             VALUES (4, $1, $2, $3, 0, 0) RETURNING id",
        )
        .bind(status)
        .bind(reason)
        .bind(code)
        .fetch_one(pool)
        .await
        .expect("an old order");
        sqlx::query("INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, 777, 1)")
            .bind(id)
            .execute(pool)
            .await
            .expect("its line");
        sqlx::query(
            "INSERT INTO idempotency_keys (user_id, idempotency_key, request, order_id, created_at_ms) \
             VALUES (4, $1, '777:1', $2, $3)",
        )
        .bind(format!("key-{id}"))
        .bind(id)
        .bind(shop_storage::now_ms())
        .execute(pool)
        .await
        .expect("its key");
        ids.push(id);
    }

    orders_db.db.migrate(&shop_orders::MIGRATIONS).await.expect("migrated");
    let rows: Vec<(i64, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT id, rejection, rejected_product_id FROM orders ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("the orders");
    let rejections: Vec<_> = rows.iter().map(|(_, rejection, product)| (rejection.as_deref(), *product)).collect();
    assert_eq!(
        rejections,
        vec![(Some("product_not_found"), None), (Some("stock_short"), None), (Some("stock_short"), None), (None, None)]
    );
    assert!(
        sqlx::query("SELECT rejection_code FROM orders").fetch_all(pool).await.is_err(),
        "the old columns are gone"
    );
    assert!(sqlx::query("SELECT rejection_reason FROM orders").fetch_all(pool).await.is_err());
    let bogus = sqlx::query("UPDATE orders SET rejection = 'bored' WHERE id = $1").bind(ids[0]).execute(pool).await;
    assert!(bogus.is_err(), "only the domain's rejections are stored");

    // A retry of an order rejected before the migration is answered with
    // its reason, as one rejected after.
    let mut shop = start_on(backend, orders_db).await;
    let expected = [
        (Code::NotFound, "product_not_found"),
        (Code::FailedPrecondition, "stock_short"),
        (Code::FailedPrecondition, "stock_short"),
    ];
    for (id, (code, rejection)) in ids.iter().zip(expected) {
        let retried = rejection_of(shop.order_with_key(4, &[(777, 1)], &format!("key-{id}")).await);
        assert_eq!(
            (retried.0, retried.1, retried.2.as_deref(), retried.3),
            (code, Some(ErrorReason::OrderRejected), Some(rejection), Some(id.to_string()))
        );
    }
    let confirmed = shop.order_with_key(4, &[(777, 1)], &format!("key-{}", ids[3])).await.expect("the old order");
    assert_eq!(confirmed.id, ids[3]);
}

on_both_backends!(
    rejections_of_the_old_schema_migrate_and_answer_retries_alike,
    customers_reach_only_their_own_orders,
    every_refusal_carries_its_reason,
    a_change_made_meanwhile_is_refused_as_such,
    allowed_transitions_follow_the_caller_for_every_status,
    a_retry_with_the_same_idempotency_key_is_the_same_order,
    a_retry_finishes_an_order_an_outage_left_pending,
    an_order_is_priced_by_inventory_and_reserves_its_stock,
    an_order_short_of_stock_is_rejected_and_takes_nothing,
    bad_orders_are_refused_and_write_nothing,
    orders_are_listed_per_user_and_for_everyone_page_by_page,
    status_follows_the_state_machine,
    cancelling_returns_the_stock_once,
    an_inventory_outage_leaves_orders_pending_until_recovery_finishes_them,
    orders_left_pending_settle_soon_after_inventory_returns,
);
