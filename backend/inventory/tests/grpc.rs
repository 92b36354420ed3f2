//! The inventory service through a real tonic client, on a random port,
//! against SQLite and PostgreSQL: the catalogue, and stock that is never
//! oversold.

use shop_grpc::identity::{Caller, Identity, SignAs, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, assert_status, connect, identity, loopback, on_both_backends,
    sign_as,
};
use tonic::Code;

struct Inventory {
    /// Signed as an admin.
    client: InventoryServiceClient<Signed>,
    url: String,
    db: TestDb,
    _server: Running,
}

async fn start(backend: Backend) -> Inventory {
    let db = TestDb::new(backend, &shop_inventory::MIGRATIONS).await;
    let (listener, url) = loopback().await;
    let service = shop_inventory::InventoryService::new(db.db.clone()).with_identity(identity()).into_server();
    let server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, service, shutdown).await.expect("the inventory service runs");
    });
    let client = InventoryServiceClient::with_interceptor(connect(&url).await, sign_as(admin()));
    Inventory { client, url, db, _server: server }
}

fn new_product(name: &str, price_minor: i64, stock: i64) -> CreateProductRequest {
    CreateProductRequest {
        name: name.into(),
        description: "A fine thing.".into(),
        price_minor,
        stock,
        category_ids: Vec::new(),
    }
}

async fn create(inventory: &mut Inventory, name: &str, price_minor: i64, stock: i64) -> Product {
    let created = inventory.client.create_product(new_product(name, price_minor, stock)).await;
    created.expect("a product").into_inner().product.expect("a product")
}

async fn stock_of(inventory: &mut Inventory, id: i64) -> i64 {
    let product = inventory.client.get_product(GetProductRequest { id }).await.expect("the product");
    product.into_inner().product.expect("a product").stock
}

async fn count(inventory: &Inventory, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (count,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&inventory.db.db.pool).await.expect("a count");
    count
}

fn reservation(order_id: i64, items: &[(i64, i64)]) -> ReserveStockRequest {
    ReserveStockRequest {
        order_id,
        items: items.iter().map(|&(product_id, quantity)| StockItem { product_id, quantity }).collect(),
    }
}

async fn products_are_created_read_changed_and_deleted(backend: Backend) {
    let mut inventory = start(backend).await;
    let lamp = create(&mut inventory, "  Desk lamp ", 2_499, 7).await;
    assert_eq!((lamp.name.as_str(), lamp.price_minor, lamp.stock), ("Desk lamp", 2_499, 7));

    let read = inventory.client.get_product(GetProductRequest { id: lamp.id }).await.expect("read");
    assert_eq!(read.into_inner().product.as_ref(), Some(&lamp));

    let change = UpdateProductRequest {
        id: lamp.id,
        name: Some("Brass desk lamp".into()),
        description: Some(String::new()),
        price_minor: Some(2_999),
        stock_delta: Some(5),
        categories: None,
    };
    let changed = inventory.client.update_product(change).await.expect("update").into_inner().product.expect("p");
    assert_eq!((changed.name.as_str(), changed.description.as_str()), ("Brass desk lamp", ""));
    assert_eq!((changed.price_minor, changed.stock), (2_999, 12));
    let write_off = UpdateProductRequest { id: lamp.id, stock_delta: Some(-12), ..Default::default() };
    let written_off = inventory.client.update_product(write_off).await.expect("write-off").into_inner();
    assert_eq!(written_off.product.map(|p| p.stock), Some(0));

    inventory.client.delete_product(DeleteProductRequest { id: lamp.id }).await.expect("delete");
    assert_status(inventory.client.get_product(GetProductRequest { id: lamp.id }).await, Code::NotFound, "not found");
    assert_status(
        inventory.client.delete_product(DeleteProductRequest { id: lamp.id }).await,
        Code::NotFound,
        "not found",
    );
}

async fn bad_products_are_refused_and_write_nothing(backend: Backend) {
    let mut inventory = start(backend).await;
    let long_name = "n".repeat(201);
    let cases = [
        (new_product("", 100, 1), "name"),
        (new_product("   ", 100, 1), "name"),
        (new_product(&long_name, 100, 1), "name"),
        (new_product("Lamp\u{0}", 100, 1), "name"),
        (new_product("Lamp", -1, 1), "price_minor"),
        (new_product("Lamp", i64::MAX, 1), "price_minor"),
        (new_product("Lamp", 100, -1), "stock"),
        (new_product("Lamp", 100, i64::MAX), "stock"),
        (CreateProductRequest { description: "d".repeat(5001), ..new_product("Lamp", 100, 1) }, "description"),
    ];
    for (request, field) in cases {
        assert_status(inventory.client.create_product(request).await, Code::InvalidArgument, field);
    }
    assert_eq!(count(&inventory, "products").await, 0);

    let lamp = create(&mut inventory, "Lamp", 100, 3).await;
    for (change, field) in [
        (UpdateProductRequest { id: lamp.id, name: Some(String::new()), ..Default::default() }, "name"),
        (UpdateProductRequest { id: lamp.id, price_minor: Some(-5), ..Default::default() }, "price_minor"),
        (UpdateProductRequest { id: lamp.id, stock_delta: Some(0), ..Default::default() }, "stock_delta"),
        (UpdateProductRequest { id: lamp.id, stock_delta: Some(i64::MIN), ..Default::default() }, "stock_delta"),
        (UpdateProductRequest { id: 0, name: Some("X".into()), ..Default::default() }, "id"),
    ] {
        assert_status(inventory.client.update_product(change).await, Code::InvalidArgument, field);
    }
    // The database itself refuses stock below zero.
    let too_many = UpdateProductRequest { id: lamp.id, stock_delta: Some(-4), ..Default::default() };
    assert_status(inventory.client.update_product(too_many).await, Code::FailedPrecondition, "below zero");
    let unknown = UpdateProductRequest { id: 424_242, name: Some("X".into()), ..Default::default() };
    assert_status(inventory.client.update_product(unknown).await, Code::NotFound, "not found");
    for id in [0, -7] {
        assert_status(inventory.client.get_product(GetProductRequest { id }).await, Code::InvalidArgument, "id");
        assert_status(inventory.client.delete_product(DeleteProductRequest { id }).await, Code::InvalidArgument, "id");
    }
    let unchanged = inventory.client.get_product(GetProductRequest { id: lamp.id }).await.expect("read");
    assert_eq!(unchanged.into_inner().product, Some(lamp));
}

async fn listing_pages_through_a_stable_order(backend: Backend) {
    let mut inventory = start(backend).await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(create(&mut inventory, &format!("Product {n}"), 100 + n, 1).await.id);
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    for page in 1..=3 {
        let listed =
            inventory.client.list_products(ListProductsRequest { page, page_size: 10, ..Default::default() }).await;
        let listed = listed.expect("a page").into_inner();
        assert_eq!((listed.total, listed.page, listed.page_size), (25, page, 10));
        seen.extend(listed.products.iter().map(|p| p.id));
    }
    assert_eq!(seen, ids, "pages neither overlap nor skip");

    let beyond = inventory
        .client
        .list_products(ListProductsRequest { page: 9, page_size: 10, ..Default::default() })
        .await
        .expect("a page");
    let beyond = beyond.into_inner();
    assert!(beyond.products.is_empty());
    assert_eq!(beyond.total, 25);
    let defaults = inventory.client.list_products(ListProductsRequest::default()).await.expect("a page").into_inner();
    assert_eq!((defaults.page, defaults.page_size, defaults.products.len()), (1, 20, 20));

    for (request, field) in [
        (ListProductsRequest { page: 1, page_size: 101, ..Default::default() }, "page_size"),
        (ListProductsRequest { page: 1, page_size: u32::MAX, ..Default::default() }, "page_size"),
        (ListProductsRequest { page: u32::MAX, page_size: 100, ..Default::default() }, "page"),
    ] {
        assert_status(inventory.client.list_products(request).await, Code::InvalidArgument, field);
    }
}

async fn fifty_buyers_for_twenty_units_leave_exactly_zero(backend: Backend) {
    let mut inventory = start(backend).await;
    let product = create(&mut inventory, "Limited print", 5_000, 20).await;
    let attempts = (1..=50).map(|order_id| {
        let mut client = inventory.client.clone();
        tokio::spawn(async move { client.reserve_stock(reservation(order_id, &[(product.id, 1)])).await })
    });
    let mut succeeded = 0;
    for attempt in attempts {
        match attempt.await.expect("the task runs") {
            Ok(_) => succeeded += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(succeeded, 20);
    assert_eq!(stock_of(&mut inventory, product.id).await, 0);
    assert_eq!(count(&inventory, "reservations").await, 20, "refused reservations leave nothing behind");
}

async fn crossing_multi_item_reservations_never_deadlock_or_oversell(backend: Backend) {
    let mut inventory = start(backend).await;
    let a = create(&mut inventory, "A", 100, 15).await.id;
    let b = create(&mut inventory, "B", 100, 15).await.id;
    let attempts = (1..=30).map(|order_id| {
        let mut client = inventory.client.clone();
        // Half ask for A then B, half for B then A.
        let items = if order_id % 2 == 0 { [(a, 1), (b, 1)] } else { [(b, 1), (a, 1)] };
        tokio::spawn(async move { client.reserve_stock(reservation(order_id, &items)).await.is_ok() })
    });
    let mut succeeded = 0;
    for attempt in attempts {
        succeeded += i32::from(attempt.await.expect("the task runs"));
    }
    assert_eq!(succeeded, 15);
    assert_eq!((stock_of(&mut inventory, a).await, stock_of(&mut inventory, b).await), (0, 0));
}

async fn a_reservation_takes_every_item_or_none(backend: Backend) {
    let mut inventory = start(backend).await;
    let plenty = create(&mut inventory, "Plenty", 100, 10).await.id;
    let scarce = create(&mut inventory, "Scarce", 100, 1).await.id;

    let short = inventory.client.reserve_stock(reservation(1, &[(plenty, 3), (scarce, 2)])).await;
    assert_status(short, Code::FailedPrecondition, &format!("product {scarce}: 2 wanted, 1 available"));
    let unknown = inventory.client.reserve_stock(reservation(2, &[(plenty, 3), (987_654, 1)])).await;
    assert_status(unknown, Code::NotFound, "product 987654 not found");

    assert_eq!((stock_of(&mut inventory, plenty).await, stock_of(&mut inventory, scarce).await), (10, 1));
    assert_eq!(count(&inventory, "reservations").await, 0);
    assert_eq!(count(&inventory, "reservation_items").await, 0);
}

async fn reserving_and_releasing_are_idempotent_by_order_id(backend: Backend) {
    let mut inventory = start(backend).await;
    let mug = create(&mut inventory, "Mug", 1_250, 10).await;
    let bowl = create(&mut inventory, "Bowl", 900, 10).await;

    let first = inventory.client.reserve_stock(reservation(7, &[(mug.id, 2), (bowl.id, 1), (mug.id, 1)])).await;
    let first = first.expect("reserved").into_inner();
    assert_eq!(
        first.items,
        vec![
            ReservedItem { product_id: mug.id, product_name: "Mug".into(), quantity: 3, unit_price_minor: 1_250 },
            ReservedItem { product_id: bowl.id, product_name: "Bowl".into(), quantity: 1, unit_price_minor: 900 },
        ]
    );
    // A price change after the reservation does not reprice it.
    let reprice = UpdateProductRequest { id: mug.id, price_minor: Some(9_999), ..Default::default() };
    inventory.client.update_product(reprice).await.expect("repriced");
    let retry = inventory.client.reserve_stock(reservation(7, &[(mug.id, 3), (bowl.id, 1)])).await;
    assert_eq!(retry.expect("the same reservation").into_inner(), first);
    assert_eq!((stock_of(&mut inventory, mug.id).await, stock_of(&mut inventory, bowl.id).await), (7, 9));

    // Ten concurrent retries of a new order take its stock once.
    let retries = (0..10).map(|_| {
        let mut client = inventory.client.clone();
        tokio::spawn(async move { client.reserve_stock(reservation(8, &[(bowl.id, 2)])).await.is_ok() })
    });
    for retry in retries {
        assert!(retry.await.expect("the task runs"));
    }
    assert_eq!(stock_of(&mut inventory, bowl.id).await, 7);

    let released = inventory.client.release_stock(ReleaseStockRequest { order_id: 7 }).await.expect("released");
    assert!(released.into_inner().released);
    let again = inventory.client.release_stock(ReleaseStockRequest { order_id: 7 }).await.expect("released");
    assert!(!again.into_inner().released);
    assert_eq!((stock_of(&mut inventory, mug.id).await, stock_of(&mut inventory, bowl.id).await), (10, 8));
    let after = inventory.client.reserve_stock(reservation(7, &[(mug.id, 1)])).await;
    assert_status(after, Code::FailedPrecondition, "released");

    // Released before it was ever reserved: a late reservation is refused.
    let early = inventory.client.release_stock(ReleaseStockRequest { order_id: 9 }).await.expect("released");
    assert!(!early.into_inner().released);
    assert_status(
        inventory.client.reserve_stock(reservation(9, &[(mug.id, 1)])).await,
        Code::FailedPrecondition,
        "released",
    );
    assert_eq!(stock_of(&mut inventory, mug.id).await, 10);
}

async fn bad_reservations_are_refused(backend: Backend) {
    let mut inventory = start(backend).await;
    let mug = create(&mut inventory, "Mug", 1_250, 10).await.id;
    for (request, field) in [
        (reservation(1, &[]), "items"),
        (reservation(1, &[(mug, 0)]), "items.quantity"),
        (reservation(1, &[(mug, -3)]), "items.quantity"),
        (reservation(1, &[(mug, 10_001)]), "items.quantity"),
        (reservation(1, &[(0, 1)]), "items.product_id"),
        (reservation(0, &[(mug, 1)]), "order_id"),
        (reservation(-1, &[(mug, 1)]), "order_id"),
    ] {
        assert_status(inventory.client.reserve_stock(request).await, Code::InvalidArgument, field);
    }
    let release = inventory.client.release_stock(ReleaseStockRequest { order_id: 0 }).await;
    assert_status(release, Code::InvalidArgument, "order_id");
    assert_eq!(stock_of(&mut inventory, mug).await, 10);
    assert_eq!(count(&inventory, "reservations").await, 0);
}

async fn only_admins_change_the_catalogue_and_only_orders_move_stock(backend: Backend) {
    let mut inventory = start(backend).await;
    let mug = create(&mut inventory, "Mug", 1_250, 10).await;
    let as_customer = || async {
        InventoryServiceClient::with_interceptor(
            connect(&inventory.url).await,
            sign_as(Caller::User { id: 5, admin: false }),
        )
    };
    let mut customer = as_customer().await;
    let mut anonymous = InventoryServiceClient::new(connect(&inventory.url).await);

    // Reading the catalogue is open to anyone.
    assert!(anonymous.get_product(GetProductRequest { id: mug.id }).await.is_ok());
    assert!(anonymous.list_products(ListProductsRequest::default()).await.is_ok());
    // Writing it is for admins.
    assert_status(customer.create_product(new_product("Mine", 1, 1)).await, Code::PermissionDenied, "not allowed");
    assert_status(anonymous.create_product(new_product("Mine", 1, 1)).await, Code::Unauthenticated, "sign in");
    let free = UpdateProductRequest { id: mug.id, price_minor: Some(0), ..Default::default() };
    assert_status(customer.update_product(free).await, Code::PermissionDenied, "not allowed");
    assert_status(
        customer.delete_product(DeleteProductRequest { id: mug.id }).await,
        Code::PermissionDenied,
        "not allowed",
    );
    // Taking and returning stock is for the order service.
    assert_status(customer.reserve_stock(reservation(1, &[(mug.id, 10)])).await, Code::PermissionDenied, "not allowed");
    assert_status(anonymous.release_stock(ReleaseStockRequest { order_id: 1 }).await, Code::Unauthenticated, "sign in");
    assert_eq!(count(&inventory, "products").await, 1);
    assert_eq!(count(&inventory, "reservations").await, 0);
    let unchanged = inventory.client.get_product(GetProductRequest { id: mug.id }).await.expect("read");
    assert_eq!(unchanged.into_inner().product, Some(mug.clone()));
    let mut orders = InventoryServiceClient::with_interceptor(
        connect(&inventory.url).await,
        sign_as(Caller::Service("orders".into())),
    );
    assert!(orders.reserve_stock(reservation(1, &[(mug.id, 2)])).await.is_ok());
    assert_status(orders.create_product(new_product("Side job", 1, 1)).await, Code::PermissionDenied, "not allowed");
}

/// The field each violation names, in order.
fn violated_fields(status: &tonic::Status) -> Vec<String> {
    rich_error::field_violations(status).into_iter().map(|(field, _)| field).collect()
}

async fn every_refusal_carries_its_reason(backend: Backend) {
    let mut inventory = start(backend).await;
    let lamp = create(&mut inventory, "Lamp", 100, 3).await;
    let meta = |status: &tonic::Status, key: &str| rich_error::metadata(status, key);

    let missing = inventory.client.get_product(GetProductRequest { id: 424_242 }).await;
    let missing = assert_refused(missing, Code::NotFound, ErrorReason::ProductNotFound);
    assert_eq!(meta(&missing, "product_id").as_deref(), Some("424242"));
    let gone = inventory.client.delete_product(DeleteProductRequest { id: 424_242 }).await;
    assert_refused(gone, Code::NotFound, ErrorReason::ProductNotFound);
    let unknown_line = inventory.client.reserve_stock(reservation(1, &[(lamp.id, 1), (424_242, 1)])).await;
    let unknown_line = assert_refused(unknown_line, Code::NotFound, ErrorReason::ProductNotFound);
    assert_eq!(meta(&unknown_line, "product_id").as_deref(), Some("424242"));

    let short = inventory.client.reserve_stock(reservation(2, &[(lamp.id, 5)])).await;
    let short = assert_refused(short, Code::FailedPrecondition, ErrorReason::StockShort);
    let (id, requested, available) = (meta(&short, "product_id"), meta(&short, "requested"), meta(&short, "available"));
    assert_eq!((id, requested.as_deref(), available.as_deref()), (Some(lamp.id.to_string()), Some("5"), Some("3")));

    let below = UpdateProductRequest { id: lamp.id, stock_delta: Some(-4), ..Default::default() };
    let below = assert_refused(
        inventory.client.update_product(below).await,
        Code::FailedPrecondition,
        ErrorReason::StockWouldGoNegative,
    );
    assert_eq!(meta(&below, "product_id"), Some(lamp.id.to_string()));

    inventory.client.release_stock(ReleaseStockRequest { order_id: 3 }).await.expect("released");
    let late = inventory.client.reserve_stock(reservation(3, &[(lamp.id, 1)])).await;
    let late = assert_refused(late, Code::FailedPrecondition, ErrorReason::ReservationReleased);
    assert_eq!(meta(&late, "order_id").as_deref(), Some("3"));

    // Invalid input: a BadRequest naming the field.
    for (result, field) in [
        (inventory.client.create_product(new_product("", 1, 1)).await.map(drop), "name"),
        (inventory.client.create_product(new_product("Lamp", -1, 1)).await.map(drop), "price_minor"),
        (inventory.client.reserve_stock(reservation(4, &[(lamp.id, 0)])).await.map(drop), "items.quantity"),
        (inventory.client.reserve_stock(reservation(4, &[])).await.map(drop), "items"),
        (inventory.client.reserve_stock(reservation(4, &[(-1, 1)])).await.map(drop), "items.product_id"),
        (
            inventory
                .client
                .list_products(ListProductsRequest { page: 1, page_size: 101, ..Default::default() })
                .await
                .map(drop),
            "page_size",
        ),
        (inventory.client.get_product(GetProductRequest { id: 0 }).await.map(drop), "id"),
    ] {
        let refused = assert_refused(result, Code::InvalidArgument, ErrorReason::FieldInvalid);
        assert_eq!(violated_fields(&refused), vec![field.to_owned()]);
    }

    // Who may not: a customer, an anonymous caller, a forger.
    let mut customer = InventoryServiceClient::with_interceptor(
        connect(&inventory.url).await,
        sign_as(Caller::User { id: 5, admin: false }),
    );
    let mut anonymous = InventoryServiceClient::new(connect(&inventory.url).await);
    let forger = SignAs::fixed(Identity::new(b"not the shop's secret at all"), admin());
    let mut forged = InventoryServiceClient::with_interceptor(connect(&inventory.url).await, forger);
    let denied = customer.create_product(new_product("Mine", 1, 1)).await;
    assert_refused(denied, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let anonymous = anonymous.reserve_stock(reservation(5, &[(lamp.id, 1)])).await;
    assert_refused(anonymous, Code::Unauthenticated, ErrorReason::SignInRequired);
    let forged = forged.create_product(new_product("Forged", 1, 1)).await;
    assert_refused(forged, Code::Unauthenticated, ErrorReason::CallerUnverified);
}

/// Several products in one call, in the order asked; ids of no product left out.
async fn several_products_are_read_in_one_call(backend: Backend) {
    let mut inventory = start(backend).await;
    let tea = create(&mut inventory, "Tea", 450, 10).await;
    let pot = create(&mut inventory, "Pot", 3_200, 1).await;
    let mut anonymous = InventoryServiceClient::new(connect(&inventory.url).await);
    let found = anonymous.get_products(GetProductsRequest { ids: vec![pot.id, 999_999, tea.id, pot.id] }).await;
    let names: Vec<String> =
        found.expect("the catalogue is public").into_inner().products.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["Pot", "Tea"]);
    let too_many = anonymous.get_products(GetProductsRequest { ids: (1..=101).collect() }).await;
    assert_refused(too_many, Code::InvalidArgument, ErrorReason::FieldInvalid);
    let bad = anonymous.get_products(GetProductsRequest { ids: vec![0] }).await;
    assert_refused(bad, Code::InvalidArgument, ErrorReason::FieldInvalid);
}

/// The demo catalogue fills an empty catalogue once, for admins only.
async fn the_demo_catalogue_fills_an_empty_catalogue_once(backend: Backend) {
    let mut inventory = start(backend).await;
    let mut customer = InventoryServiceClient::with_interceptor(
        connect(&inventory.url).await,
        sign_as(Caller::User { id: 5, admin: false }),
    );
    let refused = customer.load_demo_catalogue(LoadDemoCatalogueRequest {}).await;
    assert_refused(refused, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let loaded = inventory.client.load_demo_catalogue(LoadDemoCatalogueRequest {}).await.expect("loaded");
    let added = loaded.into_inner().added;
    assert_eq!(usize::try_from(added).ok(), Some(shop_inventory::demo::PRODUCTS.len()));
    assert!(added >= 24, "a few dozen products");
    let again = inventory.client.load_demo_catalogue(LoadDemoCatalogueRequest {}).await.expect("answered");
    assert_eq!(again.into_inner().added, 0, "a catalogue with products is left alone");
    let listed =
        inventory.client.list_products(ListProductsRequest { page: 1, page_size: 100, ..Default::default() }).await;
    assert_eq!(listed.expect("a list").into_inner().total, i64::from(added));
    let categories = i64::try_from(shop_inventory::demo::CATEGORIES.len()).expect("a few");
    assert_eq!(
        count(&inventory, "outbox").await,
        i64::from(added) + categories,
        "each product announced as product.changed, each category as category.changed"
    );
}

/// A reservation announces each product's stock as it left it, and a
/// product that just ran low once, in product order; each event's row
/// agrees with its JSON.
async fn a_reservation_announces_the_stock_it_left(backend: Backend) {
    let mut inventory = start(backend).await;
    let low = shop_inventory::service::DEFAULT_LOW_STOCK;
    let tea = create(&mut inventory, "Tea", 450, low + 3).await;
    let pot = create(&mut inventory, "Pot", 3_200, 100).await;
    let before = count(&inventory, "outbox").await;

    inventory.client.reserve_stock(reservation(1, &[(pot.id, 2), (tea.id, 4)])).await.expect("reserved");
    inventory.client.reserve_stock(reservation(2, &[(tea.id, 1)])).await.expect("reserved");
    // Refused (too many) and repeated reservations announce nothing.
    assert!(inventory.client.reserve_stock(reservation(3, &[(pot.id, 1), (tea.id, 50)])).await.is_err());
    inventory.client.reserve_stock(reservation(2, &[(tea.id, 1)])).await.expect("the same reservation");

    let rows: Vec<(i64, String, String, String, i64)> =
        sqlx::query_as("SELECT id, event_id, kind, payload, created_at_ms FROM outbox WHERE id > $1 ORDER BY id")
            .bind(before)
            .fetch_all(&inventory.db.db.pool)
            .await
            .expect("the outbox");
    let mut announced = Vec::new();
    for (_, event_id, kind, payload, created_at_ms) in &rows {
        let event: serde_json::Value = serde_json::from_str(payload).expect("an event's JSON");
        assert_eq!((event["id"].as_str(), event["type"].as_str()), (Some(event_id.as_str()), Some(kind.as_str())));
        assert_eq!(event["occurred_at_ms"].as_i64(), Some(*created_at_ms), "{event}");
        let data = &event["data"];
        announced.push((kind.clone(), data["product_id"].as_i64(), data["stock"].as_i64(), data["threshold"].as_i64()));
    }
    // Product by product (tea was made first), each change before the
    // product's running low.
    let expected = vec![
        ("product.changed".to_owned(), Some(tea.id), Some(low - 1), None),
        ("stock.low".to_owned(), Some(tea.id), Some(low - 1), Some(low)),
        ("product.changed".to_owned(), Some(pot.id), Some(98), None),
        ("product.changed".to_owned(), Some(tea.id), Some(low - 2), None),
    ];
    assert_eq!(announced, expected);
}

on_both_backends!(
    a_reservation_announces_the_stock_it_left,
    several_products_are_read_in_one_call,
    the_demo_catalogue_fills_an_empty_catalogue_once,
    only_admins_change_the_catalogue_and_only_orders_move_stock,
    every_refusal_carries_its_reason,
    products_are_created_read_changed_and_deleted,
    bad_products_are_refused_and_write_nothing,
    listing_pages_through_a_stable_order,
    fifty_buyers_for_twenty_units_leave_exactly_zero,
    crossing_multi_item_reservations_never_deadlock_or_oversell,
    a_reservation_takes_every_item_or_none,
    reserving_and_releasing_are_idempotent_by_order_id,
    bad_reservations_are_refused,
);
