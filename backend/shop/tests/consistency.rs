//! The consistency contract, against real processes, PostgreSQL and NATS
//! JetStream: no overselling under load, every event delivered once to an
//! idempotent consumer, recovery after a SIGKILL, events surviving a NATS
//! outage, caches of two gateway processes kept fresh by events, and order
//! status reaching an open page live.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use shop_events::{Bus, Consumer, Event, OrderCreated, Payload, run_consumer};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::{CreateProductRequest, GetProductRequest};
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::orders::v1::{CreateOrderRequest, GetOrderRequest, OrderLine, OrderStatus, UpdateOrderStatusRequest};
use shop_storage::sqlx;
use support::{NatsServer, Postgres, Process, Stream, Web, admin_on, eventually, nats_url, shop};
use tonic::Code;

const READY: &str = "gateway (HTTP) listening";

async fn product(inventory: &str, name: &str, stock: i64) -> i64 {
    let mut client = InventoryServiceClient::with_interceptor(
        shop_testkit::connect(inventory).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    let request = CreateProductRequest { name: name.into(), price_minor: 1_000, stock, ..Default::default() };
    client.create_product(request).await.expect("a product").into_inner().product.expect("a product").id
}

async fn stock(inventory: &str, id: i64) -> i64 {
    let mut client = InventoryServiceClient::with_interceptor(
        shop_testkit::connect(inventory).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    client.get_product(GetProductRequest { id }).await.expect("the product").into_inner().product.expect("p").stock
}

fn order_request(user_id: i64, product_id: i64, quantity: i64) -> CreateOrderRequest {
    CreateOrderRequest { user_id, items: vec![OrderLine { product_id, quantity }], ..Default::default() }
}

/// Every event a durable consumer of `order.created` receives, as delivered.
fn collect_order_created(bus: Bus, name: &str) -> (Arc<Mutex<Vec<Event>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let consumer = Consumer::durable(name, vec![OrderCreated::KIND]);
    let task = tokio::spawn(run_consumer(bus, consumer, move |event| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().map_err(|e| e.to_string())?.push(event);
            Ok(())
        }
    }));
    (seen, task)
}

/// Deliveries per order id.
fn deliveries(seen: &Mutex<Vec<Event>>) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for event in seen.lock().expect("the events").iter() {
        if let Some(created) = event.decode::<OrderCreated>() {
            *counts.entry(created.order_id).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_buyers_never_oversell_and_each_order_is_announced_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let postgres = Postgres::new();
    let stream = Stream::new(&nats_url());
    let mut command = shop(dir.path());
    postgres.env(&mut command);
    stream.env(&mut command);
    let running = Process::start(command, READY);
    let (inventory, orders) = (running.addresses.inventory(), running.addresses.orders());

    let bus = Bus::nats(stream.settings()).await.expect("NATS");
    let (seen, consumer) = collect_order_created(bus, "test-order-created");
    let products =
        [product(&inventory, "A", 8).await, product(&inventory, "B", 6).await, product(&inventory, "C", 4).await];

    let client = OrderServiceClient::with_interceptor(
        shop_testkit::connect(&orders).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    let attempts = (0..200_i64).map(|i| {
        let mut client = client.clone();
        let product_id = products[usize::try_from(i % 3).expect("an index")];
        tokio::spawn(async move { client.create_order(order_request(i + 1, product_id, 1)).await })
    });
    let mut confirmed = BTreeSet::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.expect("the task runs") {
            Ok(placed) => {
                let order = placed.into_inner().order.expect("an order");
                assert_eq!(order.status(), OrderStatus::Confirmed);
                confirmed.insert(order.id);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((confirmed.len(), refused), (18, 182), "successes equal the stock");
    for id in products {
        assert_eq!(stock(&inventory, id).await, 0);
    }

    let counts = eventually("every order.created delivered", Duration::from_secs(30), || {
        let counts = deliveries(&seen);
        async move { (counts.len() == 200).then_some(counts) }
    })
    .await;
    assert!(confirmed.iter().all(|id| counts.get(id) == Some(&1)), "each success's order.created once: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "no order.created delivered twice");
    consumer.abort();
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_recorded_before_a_sigkill_is_finished_by_recovery_with_stock_taken_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let postgres = Postgres::new();
    let mut crashing = shop(dir.path());
    postgres.env(&mut crashing);
    crashing.env("SHOP_TEST_PAUSE_AFTER_RECORDING_ORDER", "true");
    let mut first = Process::start(crashing, READY);
    let tea = product(&first.addresses.inventory(), "Tea", 5).await;

    let mut client = OrderServiceClient::with_interceptor(
        shop_testkit::connect(&first.addresses.orders()).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    let placing = tokio::spawn(async move { client.create_order(order_request(1, tea, 2)).await });
    let paused = first.wait_for_log(
        |event| event["message"].as_str().is_some_and(|m| m.starts_with("fault injection")),
        Duration::from_secs(10),
    );
    let order_id = paused["order_id"].as_i64().expect("the order id in the log");
    let orders_db = postgres.pool("orders").await;
    let inventory_db = postgres.pool("inventory").await;
    let status: (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&orders_db)
        .await
        .expect("row");
    assert_eq!(status.0, "pending");
    first.kill_hard();
    assert!(placing.await.expect("the task ends").is_err(), "the client saw the crash");
    let (stock_after_crash,): (i64,) = sqlx::query_as("SELECT stock FROM products WHERE id = $1")
        .bind(tea)
        .fetch_one(&inventory_db)
        .await
        .expect("row");
    assert_eq!(stock_after_crash, 5, "killed between recording and reserving");

    let mut restarted = shop(dir.path());
    postgres.env(&mut restarted);
    let second = Process::start(restarted, READY);
    let mut client = OrderServiceClient::with_interceptor(
        shop_testkit::connect(&second.addresses.orders()).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    let order = eventually("recovery confirms the order", Duration::from_secs(20), || {
        let mut client = client.clone();
        async move {
            let order = client.get_order(GetOrderRequest { id: order_id }).await.ok()?.into_inner().order?;
            (order.status() == OrderStatus::Confirmed).then_some(order)
        }
    })
    .await;
    assert_eq!(order.total_minor, 2_000);
    assert_eq!(stock(&second.addresses.inventory(), tea).await, 3);
    let (reservations,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM reservation_items WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(&inventory_db)
        .await
        .expect("a count");
    assert_eq!(reservations, 1, "reserved exactly once");

    // Cancelling twice gives the stock back once.
    for _ in 0..2 {
        let cancel =
            UpdateOrderStatusRequest { id: order_id, status: OrderStatus::Cancelled.into(), ..Default::default() };
        client.update_order_status(cancel).await.expect("cancelled");
    }
    assert_eq!(stock(&second.addresses.inventory(), tea).await, 5);
    orders_db.close().await;
    inventory_db.close().await;
}

fn backlog(metrics: &str, service: &str) -> Option<f64> {
    let prefix = format!("shop_outbox_backlog{{service=\"{service}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_written_while_nats_is_down_arrive_once_it_returns() {
    let mut nats = NatsServer::start();
    let stream = Stream::new(&nats.url());
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = shop(dir.path());
    stream.env(&mut command);
    let running = Process::start(command, READY);
    let (inventory, orders, metrics) =
        (running.addresses.inventory(), running.addresses.orders(), running.addresses.metrics());
    let bus = Bus::nats(stream.settings()).await.expect("NATS");
    let (seen, consumer) = collect_order_created(bus, "test-outage");
    let tea = product(&inventory, "Tea", 100).await;
    let mut client = OrderServiceClient::with_interceptor(
        shop_testkit::connect(&orders).await,
        shop_testkit::sign_as(shop_testkit::admin()),
    );
    for user in 1..=5 {
        client.create_order(order_request(user, tea, 1)).await.expect("an order");
    }
    eventually("the first orders' events", Duration::from_secs(15), || {
        let n = deliveries(&seen).len();
        async move { (n == 5).then_some(()) }
    })
    .await;

    nats.stop();
    for user in 6..=15 {
        let placed = client.create_order(order_request(user, tea, 1)).await.expect("writes succeed without NATS");
        assert_eq!(placed.into_inner().order.map(|o| o.status()), Some(OrderStatus::Confirmed));
    }
    let waiting = eventually("the outbox backlog shows", Duration::from_secs(15), || {
        let metrics = metrics.clone();
        async move {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            backlog(&text, "orders").filter(|n| *n >= 10.0)
        }
    })
    .await;
    assert!(waiting >= 10.0);

    nats.resume();
    let counts = eventually("every event after the outage", Duration::from_secs(60), || {
        let counts = deliveries(&seen);
        async move { (counts.len() == 15).then_some(counts) }
    })
    .await;
    assert!(counts.values().all(|n| *n == 1), "none twice: {counts:?}");
    eventually("the backlog drains", Duration::from_secs(30), || {
        let metrics = metrics.clone();
        async move {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            backlog(&text, "orders").filter(|n| *n == 0.0)
        }
    })
    .await;
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_changed_through_one_gateway_process_is_fresh_on_another() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let stream = Stream::new(&nats_url());
    let mut command = shop(dir.path());
    stream.env(&mut command);
    let first = Process::start(command, READY);
    let mut gateway = shop(dir.path());
    stream.env(&mut gateway);
    gateway
        .env("SHOP_USERS_URL", first.addresses.users())
        .env("SHOP_INVENTORY_URL", first.addresses.inventory())
        .env("SHOP_ORDERS_URL", first.addresses.orders())
        .arg("gateway");
    let second = Process::start(gateway, READY);

    let one = Web::new(first.addresses.gateway());
    admin_on(&one, dir.path(), "admin@example.com").await;
    let created =
        one.json(reqwest::Method::POST, "/products", json!({ "name": "Tea", "price_minor": 450, "stock": 3 })).await;
    let id = created.json::<Value>().await.expect("a product")["id"].as_i64().expect("an id");
    let two = Web::new(second.addresses.gateway());
    let path = format!("/products/{id}");
    assert_eq!(two.json(reqwest::Method::GET, &path, Value::Null).await.headers()["x-cache"], "miss");
    assert_eq!(two.json(reqwest::Method::GET, &path, Value::Null).await.headers()["x-cache"], "hit");

    let changed = one.json(reqwest::Method::PUT, &path, json!({ "price_minor": 500 })).await;
    assert_eq!(changed.status(), 200);
    // The other process's in-memory cache keeps it for 60 s unless the
    // product.changed event retires it.
    eventually("the other gateway serves the new price", Duration::from_secs(10), || {
        let request = two.json(reqwest::Method::GET, &path, Value::Null);
        async move { (request.await.json::<Value>().await.ok()?["price_minor"] == 500).then_some(()) }
    })
    .await;
    stream.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_order_page_hears_its_status_change() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = Process::start(shop(dir.path()), READY);
    let admin = Web::new(running.addresses.gateway());
    admin_on(&admin, dir.path(), "admin@example.com").await;
    let created =
        admin.json(reqwest::Method::POST, "/products", json!({ "name": "Tea", "price_minor": 450, "stock": 3 })).await;
    let product_id = created.json::<Value>().await.expect("a product")["id"].as_i64().expect("an id");

    let customer = Web::new(running.addresses.gateway());
    let body = json!({ "name": "Carol", "email": "carol@example.com", "password": "correct horse battery" });
    customer.json(reqwest::Method::POST, "/users/register", body).await;
    let order = customer
        .json(reqwest::Method::POST, "/orders", json!({ "items": [{ "product_id": product_id, "quantity": 1 }] }))
        .await;
    let order_id = order.json::<Value>().await.expect("an order")["id"].as_i64().expect("an id");

    let events = customer
        .client
        .get(format!("{}/orders/{order_id}/events", customer.base))
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut body = events.bytes_stream();
    let shipped =
        admin.json(reqwest::Method::PATCH, &format!("/orders/{order_id}/status"), json!({ "status": "shipped" })).await;
    assert_eq!(shipped.status(), 200);
    let mut received = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            received.push_str(&String::from_utf8_lossy(&chunk.expect("a chunk")));
            if received.contains("event: status") && received.contains(">shipped<") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "the page heard: {received}");
    // Someone else's order has no stream for them.
    let stranger = Web::new(running.addresses.gateway());
    let body = json!({ "name": "Eve", "email": "eve@example.com", "password": "correct horse battery" });
    stranger.json(reqwest::Method::POST, "/users/register", body).await;
    let peek = stranger.json(reqwest::Method::GET, &format!("/orders/{order_id}/events"), Value::Null).await;
    assert_eq!(peek.status(), 404);
    let _ = OrderCreated::KIND;
}
