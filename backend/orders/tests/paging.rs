//! Paging through ListOrders by cursor: every order once, newest first, in
//! both directions, for a customer and for an admin, on SQLite and
//! PostgreSQL. Orders are written straight into the orders database (rows
//! as the service writes them): listing never calls inventory.

use shop_grpc::identity::{Caller, Signed};
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::orders::v1::*;
use shop_storage::cursor::{self, Key};
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;

struct Shop {
    db: TestDb,
    url: String,
    _server: Running,
}

async fn start(backend: Backend) -> Shop {
    let db = TestDb::new(backend, &shop_orders::MIGRATIONS).await;
    // Nothing here reaches inventory: a channel that would fail if it did.
    let channel = shop_orders::service::inventory_channel("http://127.0.0.1:9").expect("a channel");
    let server = shop_orders::OrderService::new(db.db.clone(), channel).with_identity(identity()).into_server();
    let (listener, url) = loopback().await;
    let server = Running::spawn(|shutdown| async move {
        shop_grpc::serve(listener, server, shutdown).await.expect("the order service runs");
    });
    Shop { db, url, _server: server }
}

impl Shop {
    async fn as_admin(&self) -> OrderServiceClient<Signed> {
        OrderServiceClient::with_interceptor(connect(&self.url).await, sign_as(admin()))
    }

    async fn as_customer(&self, id: i64) -> OrderServiceClient<Signed> {
        OrderServiceClient::with_interceptor(connect(&self.url).await, sign_as(Caller::User { id, admin: false }))
    }

    /// A confirmed (or rejected) order of one line, as the service leaves it.
    async fn place(&self, user_id: i64, status: &str) -> i64 {
        let pool = &self.db.db.pool;
        let total = if status == "rejected" { 0 } else { 450 };
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO orders (user_id, status, stock_state, total_minor, subtotal_minor, created_at_ms, \
                 updated_at_ms, vat_rate_bp) VALUES ($1, $2, $3, $4, $4, $5, $5, 2000) RETURNING id",
        )
        .bind(user_id)
        .bind(status)
        .bind(if status == "rejected" { "released" } else { "reserved" })
        .bind(total)
        .bind(shop_storage::now_ms())
        .fetch_one(pool)
        .await
        .expect("an order");
        sqlx::query(
            "INSERT INTO order_items (order_id, product_id, quantity, product_name, unit_price_minor) \
             VALUES ($1, 7, 1, 'Green tea', 450)",
        )
        .bind(id)
        .execute(pool)
        .await
        .expect("its line");
        id
    }
}

fn ids(page: &ListOrdersResponse) -> Vec<i64> {
    page.orders.iter().map(|order| order.id).collect()
}

fn request(user_id: Option<i64>) -> ListOrdersRequest {
    ListOrdersRequest { user_id, page_size: 4, ..Default::default() }
}

/// Every page from the first, following `next_cursor`, and the request of
/// the last; checks each page's links on the way.
async fn walk_forward(
    client: &mut OrderServiceClient<Signed>,
    user_id: Option<i64>,
) -> (Vec<Vec<i64>>, ListOrdersRequest) {
    let mut pages = Vec::new();
    let mut asked = request(user_id);
    loop {
        let page = client.list_orders(asked.clone()).await.expect("a page").into_inner();
        assert_eq!(page.previous_cursor.is_empty(), pages.is_empty(), "only the first page has none before it");
        pages.push(ids(&page));
        if page.next_cursor.is_empty() {
            return (pages, asked);
        }
        assert_eq!(page.orders.len(), 4, "only the last page is short");
        asked = ListOrdersRequest { after: page.next_cursor, ..request(user_id) };
    }
}

/// Every page from `start`, following `previous_cursor`; the pages in
/// list order (newest first).
async fn walk_back(
    client: &mut OrderServiceClient<Signed>,
    user_id: Option<i64>,
    start: ListOrdersRequest,
) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut asked = start;
    loop {
        let page = client.list_orders(asked).await.expect("a page").into_inner();
        pages.push(ids(&page));
        if page.previous_cursor.is_empty() {
            pages.reverse();
            return pages;
        }
        asked = ListOrdersRequest { before: page.previous_cursor, ..request(user_id) };
    }
}

async fn every_order_is_visited_once_newest_first_forward_and_back(backend: Backend) {
    let shop = start(backend).await;
    // Ada (1) has 13 orders, 3 of them refused checkouts; Bob (2) has 10.
    let (mut ada, mut ada_all, mut everyone) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..23 {
        let (user, status) = match n % 5 {
            0 | 2 | 4 if n < 21 => (1, if n % 7 == 0 { "rejected" } else { "confirmed" }),
            _ => (2, "confirmed"),
        };
        let id = shop.place(user, status).await;
        everyone.push(id);
        if user == 1 {
            ada_all.push(id);
            if status != "rejected" {
                ada.push(id);
            }
        }
    }
    for list in [&mut ada, &mut ada_all, &mut everyone] {
        list.reverse();
    }
    assert_eq!((ada.len(), ada_all.len(), everyone.len()), (10, 13, 23));

    let customer = shop.as_customer(1).await;
    let mut admin = shop.as_admin().await;
    for (mut client, user_id, expected, total) in [
        // Her own list leaves refused checkouts out; the admin sees them.
        (customer.clone(), Some(1), &ada, 10),
        (admin.clone(), Some(1), &ada_all, 13),
        (admin.clone(), None, &everyone, 23),
    ] {
        let client = &mut client;
        let (forward, last_asked) = walk_forward(client, user_id).await;
        assert_eq!(forward.concat(), *expected, "forward: every order once, newest first");
        assert!(forward.iter().all(|page| !page.is_empty()));

        // Back from the forward walk's last page: the same pages.
        let back = walk_back(client, user_id, last_asked).await;
        assert_eq!(back, forward, "backward from the end of the forward walk");

        // Back from `last`: the oldest four first, then four by four.
        let last = client.list_orders(ListOrdersRequest { last: true, ..request(user_id) }).await;
        let last = last.expect("the last page").into_inner();
        assert_eq!(ids(&last), expected[expected.len() - 4..], "the oldest orders, newest first");
        assert!(last.next_cursor.is_empty() && !last.previous_cursor.is_empty());
        assert_eq!((last.total, last.total_is_lower_bound, last.page), (total, false, 0));
        let back = walk_back(client, user_id, ListOrdersRequest { last: true, ..request(user_id) }).await;
        assert_eq!(back.concat(), *expected, "backward from the last page: every order once");
        assert!(back[1..].iter().all(|page| page.len() == 4), "only the first page is short");

        let first = client.list_orders(request(user_id)).await.expect("the first page").into_inner();
        assert_eq!((first.total, first.total_is_lower_bound, first.page), (total, false, 1));
        assert!(first.orders.iter().all(|order| order.items.len() == 1 && order.items[0].unit_price_minor == 450));
    }

    // A list that fits on one page has no cursors at all; an empty one neither.
    for (user_id, expected) in [(Some(3), 0), (Some(2), 10)] {
        let whole = ListOrdersRequest { user_id, page_size: 20, ..Default::default() };
        for asked in [whole.clone(), ListOrdersRequest { last: true, ..whole }] {
            let page = admin.list_orders(asked).await.expect("a page").into_inner();
            assert_eq!((page.orders.len(), page.total), (expected, expected as i64));
            assert!(page.next_cursor.is_empty() && page.previous_cursor.is_empty());
        }
    }
}

async fn an_order_placed_between_pages_is_neither_repeated_nor_skipped(backend: Backend) {
    let shop = start(backend).await;
    let mut placed = Vec::new();
    for _ in 0..10 {
        placed.push(shop.place(1, "confirmed").await);
    }
    placed.reverse();
    let mut customer = shop.as_customer(1).await;
    let first = customer.list_orders(request(Some(1))).await.expect("a page").into_inner();
    assert_eq!(ids(&first), placed[..4]);

    let newest = shop.place(1, "confirmed").await;
    let second = ListOrdersRequest { after: first.next_cursor.clone(), ..request(Some(1)) };
    let second = customer.list_orders(second).await.expect("a page").into_inner();
    assert_eq!(ids(&second), placed[4..8], "the page after the first is where it was");
    let third = ListOrdersRequest { after: second.next_cursor.clone(), ..request(Some(1)) };
    let third = customer.list_orders(third).await.expect("a page").into_inner();
    assert_eq!(ids(&third), placed[8..]);
    assert!(third.next_cursor.is_empty());

    // Back from the second page: the first as it was, which now has a page
    // before it holding the new order.
    let back = ListOrdersRequest { before: second.previous_cursor, ..request(Some(1)) };
    let back = customer.list_orders(back).await.expect("a page").into_inner();
    assert_eq!(ids(&back), placed[..4]);
    let before_that = ListOrdersRequest { before: back.previous_cursor, ..request(Some(1)) };
    let before_that = customer.list_orders(before_that).await.expect("a page").into_inner();
    assert_eq!(ids(&before_that), vec![newest]);
    assert!(before_that.previous_cursor.is_empty() && !before_that.next_cursor.is_empty());
    assert_eq!(customer.list_orders(request(Some(1))).await.expect("a page").into_inner().orders[0].id, newest);
}

async fn a_crafted_cursor_moves_the_page_never_the_owner(backend: Backend) {
    let shop = start(backend).await;
    let mut adas = Vec::new();
    for _ in 0..6 {
        adas.push(shop.place(1, "confirmed").await);
        shop.place(2, "confirmed").await;
    }
    let mut eve = shop.as_customer(2).await;
    // A cursor just past Ada's newest order, or anywhere at all: Eve still
    // gets her own orders and nobody else's.
    for id in [adas[5] + 1, adas[2], i64::MAX, 0, -5] {
        for asked in [
            ListOrdersRequest { after: cursor::encode(&[Key::Int(id)]), ..request(Some(2)) },
            ListOrdersRequest { before: cursor::encode(&[Key::Int(id)]), ..request(Some(2)) },
        ] {
            let page = eve.list_orders(asked).await.expect("a page").into_inner();
            assert!(page.orders.iter().all(|order| order.user_id == 2), "only her own orders");
        }
    }
    let theirs = ListOrdersRequest { after: cursor::encode(&[Key::Int(adas[5] + 1)]), ..request(Some(1)) };
    assert_refused(eve.list_orders(theirs).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
    let everyone = ListOrdersRequest { after: cursor::encode(&[Key::Int(i64::MAX)]), ..request(None) };
    assert_refused(eve.list_orders(everyone).await, Code::PermissionDenied, ErrorReason::PermissionDenied);
}

async fn bad_cursors_are_refused_naming_their_field(backend: Backend) {
    let shop = start(backend).await;
    shop.place(1, "confirmed").await;
    let mut admin = shop.as_admin().await;
    let good = cursor::encode(&[Key::Int(5)]);
    let mut cases = Vec::new();
    let long = "i1".repeat(600);
    for bad in ["x", "i", "i1.i2", "t41", "f3ff0000000000000", "i12abc", "1", " i1", long.as_str()] {
        cases.push((ListOrdersRequest { after: bad.into(), ..request(None) }, "after"));
        cases.push((ListOrdersRequest { before: bad.into(), ..request(Some(1)) }, "before"));
    }
    cases.push((ListOrdersRequest { after: good.clone(), before: good.clone(), ..request(None) }, "before"));
    cases.push((ListOrdersRequest { after: good.clone(), last: true, ..request(None) }, "last"));
    cases.push((ListOrdersRequest { before: good, last: true, ..request(None) }, "last"));
    // Page numbers stay for old clients, as deep as skipping stays cheap.
    cases.push((ListOrdersRequest { page: 2_502, page_size: 4, ..Default::default() }, "page"));
    for (asked, field) in cases {
        let refused =
            assert_refused(admin.list_orders(asked.clone()).await, Code::InvalidArgument, ErrorReason::FieldInvalid);
        let fields: Vec<_> = rich_error::field_violations(&refused).into_iter().map(|(field, _)| field).collect();
        assert_eq!(fields, vec![field.to_owned()], "{asked:?}");
    }
    let deepest = ListOrdersRequest { page: 2_501, page_size: 4, ..Default::default() };
    assert!(admin.list_orders(deepest).await.expect("an empty page").into_inner().orders.is_empty());
}

async fn page_numbers_still_work_and_lead_to_cursors(backend: Backend) {
    let shop = start(backend).await;
    let mut placed = Vec::new();
    for _ in 0..10 {
        placed.push(shop.place(1, "confirmed").await);
    }
    placed.reverse();
    let mut customer = shop.as_customer(1).await;
    let second = ListOrdersRequest { page: 2, ..request(Some(1)) };
    let second = customer.list_orders(second).await.expect("page 2").into_inner();
    assert_eq!((ids(&second), second.page, second.total), (placed[4..8].to_vec(), 2, 10));
    let next = ListOrdersRequest { after: second.next_cursor, ..request(Some(1)) };
    assert_eq!(ids(&customer.list_orders(next).await.expect("a page").into_inner()), placed[8..]);
    let previous = ListOrdersRequest { before: second.previous_cursor, ..request(Some(1)) };
    assert_eq!(ids(&customer.list_orders(previous).await.expect("a page").into_inner()), placed[..4]);
    let past_the_end = ListOrdersRequest { page: 4, ..request(Some(1)) };
    let past_the_end = customer.list_orders(past_the_end).await.expect("a page").into_inner();
    assert!(past_the_end.orders.is_empty() && past_the_end.next_cursor.is_empty());
}

async fn totals_are_counted_up_to_a_bound(backend: Backend) {
    let shop = start(backend).await;
    {
        // A thousand orders in one transaction: quick on both backends.
        let mut tx = shop.db.db.pool.begin().await.expect("a transaction");
        for _ in 0..1_000 {
            sqlx::query(
                "INSERT INTO orders (user_id, status, total_minor, subtotal_minor, created_at_ms, updated_at_ms) \
                 VALUES (4, 'confirmed', 450, 450, 1, 1)",
            )
            .execute(&mut *tx)
            .await
            .expect("an order");
        }
        tx.commit().await.expect("committed");
    }
    let mut customer = shop.as_customer(4).await;
    let mut admin = shop.as_admin().await;
    let total = |page: ListOrdersResponse| (page.total, page.total_is_lower_bound);
    let page = customer.list_orders(request(Some(4))).await.expect("a page").into_inner();
    assert_eq!(total(page), (1_000, false), "a thousand is counted exactly");

    shop.place(4, "rejected").await;
    let page = customer.list_orders(request(Some(4))).await.expect("a page").into_inner();
    assert_eq!(total(page), (1_000, false), "a refused checkout is not hers to count");
    let page = admin.list_orders(request(None)).await.expect("a page").into_inner();
    assert_eq!(total(page), (1_000, true), "the admin counts it: more than a thousand");

    shop.place(4, "confirmed").await;
    shop.place(5, "confirmed").await;
    for (mut client, user_id) in [(customer.clone(), Some(4)), (admin.clone(), Some(4)), (admin.clone(), None)] {
        for asked in [request(user_id), ListOrdersRequest { last: true, ..request(user_id) }] {
            let page = client.list_orders(asked).await.expect("a page").into_inner();
            assert_eq!(total(page), (1_000, true), "more than a thousand");
        }
    }
    let page = admin.list_orders(request(Some(5))).await.expect("a page").into_inner();
    assert_eq!(total(page), (1, false));
}

on_both_backends!(
    every_order_is_visited_once_newest_first_forward_and_back,
    an_order_placed_between_pages_is_neither_repeated_nor_skipped,
    a_crafted_cursor_moves_the_page_never_the_owner,
    bad_cursors_are_refused_naming_their_field,
    page_numbers_still_work_and_lead_to_cursors,
    totals_are_counted_up_to_a_bound,
);
