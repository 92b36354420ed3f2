//! The cart the order service keeps for signed-in customers, through real
//! tonic clients, with a real inventory service, on SQLite and PostgreSQL.

use shop_grpc::identity::{Caller, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_orders::domain::{OrderLines, PricedLine, Rejection};
use shop_orders::store::{self, Recorded, Source};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::{CreateProductRequest, DeleteProductRequest, UpdateProductRequest};
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::orders::v1::*;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;

struct Shop {
    inventory: InventoryServiceClient<Signed>,
    orders_url: String,
    /// A delivery method checkouts use.
    delivery_method_id: i64,
    _servers: (Running, Running),
    _dbs: (TestDb, TestDb),
}

async fn start(backend: Backend) -> Shop {
    let orders_db = TestDb::new(backend, &shop_orders::MIGRATIONS).await;
    let inventory_db = TestDb::new(backend, &shop_inventory::MIGRATIONS).await;
    let (listener, inventory_url) = loopback().await;
    let inventory = shop_inventory::InventoryService::new(inventory_db.db.clone()).with_identity(identity());
    let inventory_server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, inventory.into_server(), shutdown).await.expect("the inventory service runs");
    });
    let channel = shop_orders::service::inventory_channel(&inventory_url).expect("a channel");
    let orders = shop_orders::OrderService::new(orders_db.db.clone(), channel).with_identity(identity());
    let (listener, orders_url) = loopback().await;
    let orders_server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, orders.into_server(), shutdown).await.expect("the order service runs");
    });
    let mut admin_orders = OrderServiceClient::with_interceptor(connect(&orders_url).await, sign_as(admin()));
    let method = CreateDeliveryMethodRequest { name: "Standard".into(), price_minor: 490, ..Default::default() };
    let method = admin_orders.create_delivery_method(method).await.expect("a delivery method");
    Shop {
        inventory: InventoryServiceClient::with_interceptor(connect(&inventory_url).await, sign_as(admin())),
        orders_url,
        delivery_method_id: method.into_inner().method.expect("a method").id,
        _servers: (inventory_server, orders_server),
        _dbs: (orders_db, inventory_db),
    }
}

impl Shop {
    async fn product(&mut self, name: &str, price_minor: i64, stock: i64) -> i64 {
        let request = CreateProductRequest { name: name.into(), price_minor, stock, ..Default::default() };
        self.inventory.create_product(request).await.expect("a product").into_inner().product.expect("a product").id
    }

    async fn restock(&mut self, id: i64, stock_delta: i64) {
        let request = UpdateProductRequest { id, stock_delta: Some(stock_delta), ..Default::default() };
        self.inventory.update_product(request).await.expect("restocked");
    }

    async fn delete(&mut self, id: i64) {
        self.inventory.delete_product(DeleteProductRequest { id }).await.expect("deleted");
    }

    /// A client signed as customer `id`.
    async fn customer(&self, id: i64) -> Customer {
        let client = OrderServiceClient::with_interceptor(
            connect(&self.orders_url).await,
            sign_as(Caller::User { id, admin: false }),
        );
        Customer(client, self.delivery_method_id)
    }
}

/// A customer's client, and the delivery method they check out with.
#[derive(Clone)]
struct Customer(OrderServiceClient<Signed>, i64);

fn address() -> DeliveryAddress {
    DeliveryAddress {
        name: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        postcode: "SW1Y 4JH".into(),
        city: "London".into(),
        country: "GB".into(),
        ..Default::default()
    }
}

/// (product id, quantity, availability) of each line.
type Lines = Vec<(i64, i64, CartLineAvailability)>;

fn lines(cart: Option<Cart>) -> Lines {
    cart.unwrap_or_default().lines.iter().map(|l| (l.product_id, l.quantity, l.availability())).collect()
}

impl Customer {
    async fn cart(&mut self) -> Lines {
        lines(self.0.get_cart(GetCartRequest {}).await.expect("the cart").into_inner().cart)
    }

    async fn set(&mut self, product_id: i64, quantity: i64) -> Result<Lines, tonic::Status> {
        Ok(lines(self.0.set_cart_item(SetCartItemRequest { product_id, quantity }).await?.into_inner().cart))
    }

    async fn add(&mut self, product_id: i64, quantity: i64) -> Result<Lines, tonic::Status> {
        Ok(lines(self.0.add_cart_item(AddCartItemRequest { product_id, quantity }).await?.into_inner().cart))
    }

    async fn checkout(&mut self, key: &str) -> Result<CheckoutCartResponse, tonic::Status> {
        let request = CheckoutCartRequest {
            idempotency_key: key.into(),
            delivery_address: Some(address()),
            delivery_method_id: self.1,
            payment_method: PaymentMethod::BankTransfer.into(),
            terms_accepted: true,
        };
        Ok(self.0.checkout_cart(request).await?.into_inner())
    }
}

use CartLineAvailability::{Available, NotSold, OutOfStock, Short};

fn meta(status: &tonic::Status, key: &str) -> Option<String> {
    rich_error::metadata(status, key)
}

async fn lines_are_set_and_added_within_the_stock(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 5).await;
    let pot = shop.product("Teapot", 3_200, 2).await;
    let mut ada = shop.customer(1).await;
    assert_eq!(ada.cart().await, vec![]);

    assert_eq!(ada.set(tea, 3).await.expect("set"), vec![(tea, 3, Available)]);
    assert_eq!(ada.add(tea, 2).await.expect("added"), vec![(tea, 5, Available)]);
    assert_eq!(ada.add(pot, 1).await.expect("added"), vec![(tea, 5, Available), (pot, 1, Available)]);

    // Beyond the stock: refused with what was asked and what there is.
    let short = assert_refused(ada.add(tea, 1).await, Code::FailedPrecondition, ErrorReason::StockShort);
    assert_eq!(
        (meta(&short, "product_id"), meta(&short, "requested"), meta(&short, "available")),
        (Some(tea.to_string()), Some("6".into()), Some("5".into()))
    );
    let short = assert_refused(ada.set(pot, 3).await, Code::FailedPrecondition, ErrorReason::StockShort);
    assert_eq!(meta(&short, "requested"), Some("3".into()));
    assert_eq!(ada.cart().await, vec![(tea, 5, Available), (pot, 1, Available)], "a refusal changes nothing");

    // Malformed and unknown.
    for (quantity, field) in [(-1, "quantity"), (10_001, "quantity")] {
        let refused = assert_refused(ada.set(tea, quantity).await, Code::InvalidArgument, ErrorReason::FieldInvalid);
        assert_eq!(rich_error::field_violations(&refused)[0].0, field);
    }
    assert_refused(ada.add(tea, 0).await, Code::InvalidArgument, ErrorReason::FieldInvalid);
    assert_refused(ada.set(0, 1).await, Code::InvalidArgument, ErrorReason::FieldInvalid);
    let unknown = assert_refused(ada.add(777_777, 1).await, Code::NotFound, ErrorReason::ProductNotFound);
    assert_eq!(meta(&unknown, "product_id"), Some("777777".into()));

    // 0 takes the line out.
    assert_eq!(ada.set(pot, 0).await.expect("removed"), vec![(tea, 5, Available)]);

    // Stock moves on: the cart says how each line stands now.
    shop.restock(tea, -3).await;
    assert_eq!(ada.cart().await, vec![(tea, 5, Short)]);
    let detail = ada.0.get_cart(GetCartRequest {}).await.expect("the cart").into_inner().cart.expect("a cart");
    let line = &detail.lines[0];
    assert_eq!((line.product_name.as_str(), line.available, line.unit_price_minor), ("Gyokuro", 2, 900));
    shop.restock(tea, -2).await;
    assert_eq!(ada.cart().await, vec![(tea, 5, OutOfStock)]);
    shop.delete(tea).await;
    let gone = ada.0.get_cart(GetCartRequest {}).await.expect("the cart").into_inner().cart.expect("a cart");
    assert_eq!(lines(Some(gone.clone())), vec![(tea, 5, NotSold)]);
    assert_eq!(gone.lines[0].product_name, "Gyokuro", "named as it was when added");
    // A line of a product no longer sold can still be taken out.
    assert_eq!(ada.set(tea, 0).await.expect("removed"), vec![]);
}

async fn a_customer_reaches_only_their_own_cart(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 5).await;
    let mut ada = shop.customer(1).await;
    let mut bea = shop.customer(2).await;
    ada.set(tea, 2).await.expect("set");
    assert_eq!(bea.cart().await, vec![], "the caller's cart, never another's");
    bea.add(tea, 1).await.expect("added");
    assert_eq!(ada.cart().await, vec![(tea, 2, Available)]);

    let anonymous = OrderServiceClient::with_interceptor(connect(&shop.orders_url).await, sign_as(Caller::Anonymous));
    let refused = anonymous.clone().get_cart(GetCartRequest {}).await;
    assert_refused(refused, Code::Unauthenticated, ErrorReason::SignInRequired);
    let service = OrderServiceClient::with_interceptor(
        connect(&shop.orders_url).await,
        sign_as(Caller::Service("orders".into())),
    );
    let refused = service.clone().set_cart_item(SetCartItemRequest { product_id: tea, quantity: 1 }).await;
    assert_refused(refused, Code::PermissionDenied, ErrorReason::PermissionDenied);
}

async fn concurrent_adds_are_all_counted(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 100).await;
    let ada = shop.customer(1).await;
    let adds = (0..20).map(|_| {
        let mut ada = ada.clone();
        tokio::spawn(async move { ada.add(tea, 1).await })
    });
    for add in futures_join(adds).await {
        add.expect("the task ran").expect("added");
    }
    assert_eq!(ada.clone().cart().await, vec![(tea, 20, Available)]);

    // Near the bound, as many succeed as there is stock for.
    let pot = shop.product("Teapot", 3_200, 7).await;
    let adds = (0..12).map(|_| {
        let mut ada = ada.clone();
        tokio::spawn(async move { ada.add(pot, 1).await })
    });
    let added = futures_join(adds).await.into_iter().filter(|add| matches!(add, Ok(Ok(_)))).count();
    assert_eq!(added, 7);
    assert_eq!(ada.clone().cart().await, vec![(tea, 20, Available), (pot, 7, Available)]);
}

async fn futures_join<T>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await);
    }
    results
}

async fn a_guest_cart_is_merged_within_the_stock_and_the_line_limits(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 5).await;
    let pot = shop.product("Teapot", 3_200, 2).await;
    let cup = shop.product("Cup", 500, 0).await;
    let gone = shop.product("Kettle", 4_000, 3).await;
    shop.delete(gone).await;
    let mut ada = shop.customer(1).await;
    ada.set(tea, 3).await.expect("set");

    let items = [(tea, 4), (pot, 1), (cup, 2), (gone, 1)]
        .into_iter()
        .map(|(product_id, quantity)| OrderLine { product_id, quantity })
        .collect();
    let merged = ada.0.merge_cart(MergeCartRequest { items }).await.expect("merged").into_inner();
    assert_eq!(lines(merged.cart), vec![(tea, 5, Available), (pot, 1, Available)]);
    let adjustments: Vec<_> = merged
        .adjustments
        .iter()
        .map(|a| (a.product_id, a.product_name.as_str(), a.wanted, a.quantity, a.available, a.cause()))
        .collect();
    use cart_adjustment::Cause;
    assert_eq!(
        adjustments,
        vec![
            (tea, "Gyokuro", 7, 5, 5, Cause::StockShort),
            (cup, "Cup", 2, 0, 0, Cause::StockShort),
            (gone, "", 1, 0, 0, Cause::NotSold),
        ]
    );

    // A line already beyond the stock is never lowered by a merge.
    shop.restock(tea, -4).await;
    let items = vec![OrderLine { product_id: tea, quantity: 1 }];
    let merged = ada.0.merge_cart(MergeCartRequest { items }).await.expect("merged").into_inner();
    assert_eq!(lines(merged.cart), vec![(tea, 5, Short), (pot, 1, Available)]);

    let empty = ada.0.merge_cart(MergeCartRequest { items: vec![] }).await.expect("merged").into_inner();
    assert_eq!(lines(empty.cart).len(), 2);
    let bad = vec![OrderLine { product_id: tea, quantity: 0 }];
    assert_refused(
        ada.0.merge_cart(MergeCartRequest { items: bad }).await,
        Code::InvalidArgument,
        ErrorReason::FieldInvalid,
    );
}

async fn checkout_orders_what_can_be_and_keeps_the_rest(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 5).await;
    let pot = shop.product("Teapot", 3_200, 2).await;
    let cup = shop.product("Cup", 500, 4).await;
    let kettle = shop.product("Kettle", 4_000, 3).await;
    let mut ada = shop.customer(1).await;
    assert_refused(ada.checkout("").await, Code::InvalidArgument, ErrorReason::FieldInvalid);
    ada.set(tea, 2).await.expect("set");
    ada.set(pot, 2).await.expect("set");
    ada.set(cup, 4).await.expect("set");
    ada.set(kettle, 1).await.expect("set");
    shop.restock(pot, -1).await; // only 1 left for a line of 2
    shop.restock(cup, -4).await; // out of stock
    shop.delete(kettle).await; // no longer sold

    let placed = ada.checkout("first").await.expect("placed");
    let order = placed.order.expect("an order");
    assert_eq!(order.status(), OrderStatus::Confirmed);
    let ordered: Vec<_> = order.items.iter().map(|i| (i.product_id, i.quantity)).collect();
    assert_eq!(ordered, vec![(tea, 2)]);
    let left: Vec<_> =
        placed.left_in_cart.iter().map(|l| (l.product_id, l.product_name.as_str(), l.availability())).collect();
    assert_eq!(left, vec![(pot, "Teapot", Short), (cup, "Cup", OutOfStock), (kettle, "Kettle", NotSold)]);
    assert_eq!(ada.cart().await, vec![(pot, 2, Short), (cup, 4, OutOfStock), (kettle, 1, NotSold)]);

    // The same key again is the same order, whatever the cart holds now.
    ada.set(pot, 1).await.expect("set");
    let again = ada.checkout("first").await.expect("the same order");
    assert_eq!(again.order.map(|o| o.id), Some(order.id));
    assert_eq!(ada.cart().await, vec![(pot, 1, Available), (cup, 4, OutOfStock), (kettle, 1, NotSold)]);

    // Nothing that can be ordered: refused by the first line's reason, nothing recorded.
    ada.set(pot, 0).await.expect("removed");
    let refused = assert_refused(ada.checkout("second").await, Code::FailedPrecondition, ErrorReason::StockShort);
    assert_eq!(meta(&refused, "product_id"), Some(cup.to_string()));
    ada.set(cup, 0).await.expect("removed");
    assert_refused(ada.checkout("third").await, Code::NotFound, ErrorReason::ProductNotFound);
}

async fn an_order_takes_its_lines_out_of_the_cart_and_a_rejected_one_leaves_it(backend: Backend) {
    let mut shop = start(backend).await;
    let tea = shop.product("Gyokuro", 900, 10).await;
    let pot = shop.product("Teapot", 3_200, 2).await;
    let mut ada = shop.customer(1).await;
    ada.set(tea, 3).await.expect("set");
    ada.set(pot, 1).await.expect("set");
    let mut bea = shop.customer(2).await;
    bea.set(pot, 2).await.expect("set");
    bea.checkout("bea").await.expect("placed");
    assert_eq!(bea.cart().await, vec![], "an order takes its lines out of the cart");

    // Inventory refusing the reservation (the teapots went between Ada's
    // cart check and her reservation) rejects the order: a race, so driven
    // here through the order's two steps as the service takes them.
    let db = &shop._dbs.0.db;
    let lines = OrderLines::parse([(tea, 3), (pot, 1)]).expect("lines");
    let recorded = store::insert_pending(db, 1, &lines, "user:1", Some("ada-1"), Source::Cart, &Default::default())
        .await
        .expect("recorded");
    let Recorded::New(rejected) = recorded else { panic!("a new order, not {recorded:?}") };
    store::reject(db, rejected, Rejection::StockShort, Some(pot)).await.expect("rejected");
    assert_eq!(ada.cart().await, vec![(tea, 3, Available), (pot, 1, OutOfStock)], "a rejected order leaves the cart");

    // A confirmed one takes what it ordered, and only that: units added
    // after checkout began stay.
    let lines = OrderLines::parse([(tea, 3)]).expect("lines");
    let recorded = store::insert_pending(db, 1, &lines, "user:1", Some("ada-2"), Source::Cart, &Default::default())
        .await
        .expect("recorded");
    let Recorded::New(placed) = recorded else { panic!("a new order, not {recorded:?}") };
    ada.add(tea, 2).await.expect("added meanwhile");
    let priced = [PricedLine { product_id: tea, product_name: "Gyokuro".into(), quantity: 3, unit_price_minor: 900 }];
    store::confirm(db, placed, &priced, 2_700).await.expect("confirmed");
    assert_eq!(ada.cart().await, vec![(tea, 2, Available), (pot, 1, OutOfStock)]);

    // An order placed with its own items (not from the cart) leaves the cart alone.
    let mut own = OrderServiceClient::with_interceptor(
        connect(&shop.orders_url).await,
        sign_as(Caller::User { id: 1, admin: false }),
    );
    let items = vec![OrderLine { product_id: tea, quantity: 1 }];
    own.create_order(CreateOrderRequest { user_id: 1, items, ..Default::default() }).await.expect("placed");
    assert_eq!(ada.cart().await, vec![(tea, 2, Available), (pot, 1, OutOfStock)]);
}

on_both_backends!(
    lines_are_set_and_added_within_the_stock,
    a_customer_reaches_only_their_own_cart,
    concurrent_adds_are_all_counted,
    a_guest_cart_is_merged_within_the_stock_and_the_line_limits,
    checkout_orders_what_can_be_and_keeps_the_rest,
    an_order_takes_its_lines_out_of_the_cart_and_a_rejected_one_leaves_it,
);
