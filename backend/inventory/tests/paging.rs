//! Keyset paging of ListProducts through a real tonic client, on SQLite and
//! PostgreSQL: every order walked forwards (`after`) and backwards
//! (`before`, from `last`) visits each product once, in order, ties
//! included; filters and searches page the same way; bad cursors are
//! refused with their field; totals stop counting at 1,000; and a product
//! added or removed between two pages neither repeats nor hides the others.

use std::collections::HashSet;

use shop_grpc::identity::Signed;
use shop_grpc::rich_error::{self, ErrorReason};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::inventory::v1::*;
use shop_storage::sqlx;
use shop_testkit::{
    Backend, Running, TestDb, admin, assert_refused, connect, identity, loopback, on_both_backends, sign_as,
};
use tonic::Code;

struct Inventory {
    client: InventoryServiceClient<Signed>,
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
    Inventory { client, db, _server: server }
}

impl Inventory {
    async fn product(&mut self, name: &str, price_minor: i64, stock: i64, categories: &[i64]) -> Product {
        let request = CreateProductRequest {
            name: name.into(),
            description: "For tea.".into(),
            price_minor,
            stock,
            category_ids: categories.to_vec(),
        };
        self.client.create_product(request).await.expect("a product").into_inner().product.expect("a product")
    }

    async fn list(&mut self, request: ListProductsRequest) -> ListProductsResponse {
        self.client.list_products(request).await.expect("a page").into_inner()
    }

    /// Every page from the first by `after`; the ids in the order seen.
    async fn walk_forward(&mut self, base: &ListProductsRequest) -> Vec<i64> {
        let mut seen = Vec::new();
        let mut after = String::new();
        for page in 0.. {
            assert!(page < 1_000, "the walk ends");
            let listed = self.list(ListProductsRequest { after: after.clone(), ..base.clone() }).await;
            assert!(listed.products.len() <= base.page_size as usize);
            assert_eq!(listed.previous_cursor.is_empty(), page == 0, "a previous page exists but from the first");
            seen.extend(listed.products.iter().map(|p| p.id));
            if listed.next_cursor.is_empty() {
                break;
            }
            after = listed.next_cursor;
        }
        seen
    }

    /// Every page from the last by `before`; the ids in the list's order.
    async fn walk_backward(&mut self, base: &ListProductsRequest) -> Vec<i64> {
        let mut pages: Vec<Vec<i64>> = Vec::new();
        let mut listed = self.list(ListProductsRequest { last: true, ..base.clone() }).await;
        assert!(listed.next_cursor.is_empty(), "nothing after the last page");
        loop {
            assert!(pages.len() < 1_000, "the walk ends");
            pages.push(listed.products.iter().map(|p| p.id).collect());
            if listed.previous_cursor.is_empty() {
                break;
            }
            let before = listed.previous_cursor.clone();
            listed = self.list(ListProductsRequest { before, ..base.clone() }).await;
            assert!(!listed.next_cursor.is_empty(), "a page before another has a next");
        }
        pages.into_iter().rev().flatten().collect()
    }
}

fn sorted(sort: ProductSort, size: u32) -> ListProductsRequest {
    ListProductsRequest { sort: sort.into(), page_size: size, ..Default::default() }
}

/// 23 products; prices and names tie (names differ only in case too).
async fn catalogue(inventory: &mut Inventory, category: i64) -> Vec<Product> {
    let mut products = Vec::new();
    for n in 0..23_i64 {
        let name = match n % 4 {
            0 => "Cup".to_owned(),
            1 => "cup".to_owned(),
            2 => format!("Bowl {}", n % 3),
            _ => format!("Teapot {n}"),
        };
        let categories = if n % 2 == 0 { vec![category] } else { Vec::new() };
        products.push(inventory.product(&name, 100 * (n % 3 + 1), n % 5, &categories).await);
    }
    products
}

fn ids(products: &[&Product]) -> Vec<i64> {
    products.iter().map(|p| p.id).collect()
}

/// The products in `sort`'s order, as docs/search.md states it.
fn in_order<'a>(products: impl IntoIterator<Item = &'a Product>, sort: ProductSort) -> Vec<&'a Product> {
    let mut products: Vec<&Product> = products.into_iter().collect();
    match sort {
        ProductSort::PriceLowFirst => products.sort_by_key(|p| (p.price_minor, std::cmp::Reverse(p.id))),
        ProductSort::PriceHighFirst => {
            products.sort_by_key(|p| (std::cmp::Reverse(p.price_minor), std::cmp::Reverse(p.id)))
        }
        ProductSort::Name => products.sort_by_key(|p| (p.name.to_lowercase(), p.id)),
        _ => products.sort_by_key(|p| std::cmp::Reverse(p.id)),
    }
    products
}

async fn every_order_walks_both_ways_once_each(backend: Backend) {
    let mut inventory = start(backend).await;
    let category = inventory.client.create_category(CreateCategoryRequest { name: "Cups".into() }).await;
    let category = category.expect("a category").into_inner().category.expect("a category").id;
    let products = catalogue(&mut inventory, category).await;

    for sort in [ProductSort::Newest, ProductSort::PriceLowFirst, ProductSort::PriceHighFirst, ProductSort::Name] {
        let expected = ids(&in_order(&products, sort));
        for size in [1, 4, 23, 50] {
            let base = sorted(sort, size);
            assert_eq!(inventory.walk_forward(&base).await, expected, "{sort:?} forwards, {size} a page");
            assert_eq!(inventory.walk_backward(&base).await, expected, "{sort:?} backwards, {size} a page");
        }
        let last = inventory.list(ListProductsRequest { last: true, ..sorted(sort, 5) }).await;
        assert_eq!(last.products.iter().map(|p| p.id).collect::<Vec<_>>(), expected[18..], "{sort:?}: the last page");
        assert_eq!((last.total, last.total_is_lower_bound), (23, false));
    }

    // Filters hold across pages, and a page reached from the end by
    // `before` is full: the first page, not the rows left before it.
    let filtered = ListProductsRequest {
        category_id: category,
        in_stock_only: true,
        min_price_minor: Some(200),
        ..sorted(ProductSort::PriceLowFirst, 2)
    };
    let matching = products
        .iter()
        .filter(|p| p.categories.iter().any(|c| c.id == category) && p.stock > 0 && p.price_minor >= 200);
    let expected = ids(&in_order(matching, ProductSort::PriceLowFirst));
    assert!(expected.len() > 4, "{expected:?}");
    assert_eq!(inventory.walk_forward(&filtered).await, expected);
    assert_eq!(inventory.walk_backward(&filtered).await, expected);
    let after_first = inventory.list(filtered.clone()).await.next_cursor;
    let second = inventory.list(ListProductsRequest { after: after_first, ..filtered.clone() }).await;
    assert_eq!((second.total, second.total_is_lower_bound), (i64::try_from(expected.len()).expect("small"), false));
    let back = inventory.list(ListProductsRequest { before: second.previous_cursor, ..filtered.clone() }).await;
    assert_eq!(back.products.iter().map(|p| p.id).collect::<Vec<_>>(), expected[..2], "back to the first page");
    assert!(back.previous_cursor.is_empty() && !back.next_cursor.is_empty());

    // A search, by relevance and by price, pages the same way.
    for sort in [ProductSort::Relevance, ProductSort::PriceHighFirst] {
        let search = ListProductsRequest { query: "cup".into(), ..sorted(sort, 3) };
        let all = inventory.list(ListProductsRequest { page_size: 100, ..search.clone() }).await;
        let expected: Vec<i64> = all.products.iter().map(|p| p.id).collect();
        assert_eq!(expected.len(), 12, "'cup' names 12 products");
        assert_eq!(inventory.walk_forward(&search).await, expected, "{sort:?}");
        assert_eq!(inventory.walk_backward(&search).await, expected, "{sort:?}");
    }
}

fn field_of(status: &tonic::Status) -> Vec<String> {
    rich_error::field_violations(status).into_iter().map(|(field, _)| field).collect()
}

async fn bad_positions_are_refused_with_their_field(backend: Backend) {
    let mut inventory = start(backend).await;
    inventory.product("Cup", 100, 1, &[]).await;
    let by_price = sorted(ProductSort::PriceLowFirst, 5);
    for (request, field) in [
        (ListProductsRequest { after: "x".into(), ..by_price.clone() }, "after"),
        (ListProductsRequest { after: "i100".into(), ..by_price.clone() }, "after"),
        (ListProductsRequest { before: "t41.i1".into(), ..by_price.clone() }, "before"),
        (ListProductsRequest { after: "i1".into(), ..sorted(ProductSort::Name, 5) }, "after"),
        (ListProductsRequest { after: "i1.i2".into(), before: "i1.i2".into(), ..by_price.clone() }, "before"),
        (ListProductsRequest { after: "i1.i2".into(), last: true, ..by_price.clone() }, "last"),
        (ListProductsRequest { page: 1_000, page_size: 100, ..Default::default() }, "page"),
    ] {
        let refused = assert_refused(
            inventory.client.list_products(request.clone()).await,
            Code::InvalidArgument,
            ErrorReason::FieldInvalid,
        );
        assert_eq!(field_of(&refused), [field], "{request:?}");
    }
    // A cursor of another list is only a place: it moves the page, never
    // the query.
    let listed = inventory.list(ListProductsRequest { after: "i-5.i0".into(), ..by_price }).await;
    assert_eq!(listed.products.len(), 1);
    // Old clients' page numbers still work, within bounds.
    let numbered = inventory.list(ListProductsRequest { page: 1, page_size: 1, ..Default::default() }).await;
    assert_eq!((numbered.page, numbered.products.len(), numbered.total), (1, 1, 1));
}

async fn totals_stop_counting_at_a_thousand(backend: Backend) {
    let mut inventory = start(backend).await;
    // Inserted by SQL (the API would take a while); the same columns.
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100) \
               INSERT INTO products (name, description, price_minor, stock, created_at_ms, updated_at_ms) \
               SELECT 'Bulk cup', 'A cup.', 100 + i % 7, 1, 0, 0 FROM n";
    sqlx::query(sql).execute(&inventory.db.db.pool).await.expect("1,100 products");

    let first = inventory.list(sorted(ProductSort::PriceLowFirst, 100)).await;
    assert_eq!((first.total, first.total_is_lower_bound), (1_000, true));
    let numbered = inventory.list(ListProductsRequest { page: 3, ..sorted(ProductSort::Newest, 100) }).await;
    assert_eq!((numbered.page, numbered.products.len()), (3, 100));
    assert!(!numbered.previous_cursor.is_empty() && !numbered.next_cursor.is_empty(), "a numbered page links on");
    let all = inventory.walk_forward(&sorted(ProductSort::PriceLowFirst, 100)).await;
    assert_eq!(all.len(), 1_100, "every product is reachable, counted or not");

    // Relevance ranks the newest 1,000 matches: the pages end there.
    let search = ListProductsRequest { query: "bulk".into(), ..sorted(ProductSort::Relevance, 100) };
    let found = inventory.list(search.clone()).await;
    assert_eq!((found.total, found.total_is_lower_bound), (1_000, true));
    let ranked = inventory.walk_forward(&search).await;
    assert_eq!(ranked.len(), 1_000);
    assert_eq!(ranked.iter().collect::<HashSet<_>>().len(), 1_000, "no product twice");
    assert!(ranked.iter().all(|id| *id > 100), "the newest 1,000: {:?}", ranked.iter().min());
}

async fn changes_between_pages_neither_repeat_nor_hide_others(backend: Backend) {
    let mut inventory = start(backend).await;
    let mut products = Vec::new();
    for n in 0..12_i64 {
        products.push(inventory.product(&format!("Cup {n}"), 100 * (n % 4 + 1), 1, &[]).await);
    }
    for sort in [ProductSort::Newest, ProductSort::PriceLowFirst, ProductSort::PriceHighFirst, ProductSort::Name] {
        let base = sorted(sort, 4);
        let first = inventory.list(base.clone()).await;
        // The page's last product (the cursor's own row) goes, another
        // further on goes, and a new one arrives before the cursor.
        let boundary = first.products.last().expect("a full page").id;
        let expected = ids(&in_order(&products, sort));
        let later = expected[8];
        for id in [boundary, later] {
            inventory.client.delete_product(DeleteProductRequest { id }).await.expect("deleted");
        }
        let added = inventory.product("Aaa cup", 50, 1, &[]).await;

        let mut seen: Vec<i64> = first.products.iter().map(|p| p.id).collect();
        let mut after = first.next_cursor;
        while !after.is_empty() {
            let listed = inventory.list(ListProductsRequest { after, ..base.clone() }).await;
            seen.extend(listed.products.iter().map(|p| p.id));
            after = listed.next_cursor;
        }
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort:?}: no product twice: {seen:?}");
        let others: Vec<i64> = expected.iter().copied().filter(|id| *id != later).collect();
        let seen_of_others: Vec<i64> = seen.iter().copied().filter(|id| *id != added.id).collect();
        assert_eq!(seen_of_others, others, "{sort:?}: every other product, in order");

        // Put things back for the next order.
        products.retain(|p| p.id != boundary && p.id != later);
        inventory.client.delete_product(DeleteProductRequest { id: added.id }).await.expect("deleted");
        for _ in 0..2 {
            let n = i64::try_from(products.len()).expect("small");
            products.push(inventory.product(&format!("Cup {n}b"), 100 * (n % 4 + 1), 1, &[]).await);
        }
    }
}

/// Words with digits match as typed (PostgreSQL asks the words table, which
/// holds them since migration 0006), and are never offered as corrections.
async fn words_with_digits_match_as_typed(backend: Backend) {
    let mut inventory = start(backend).await;
    let kettle = inventory.product("Kettle 500ml", 2500, 1, &[]).await;
    inventory.product("Teapot", 1500, 1, &[]).await;
    let search = |query: &str| ListProductsRequest { query: query.into(), ..sorted(ProductSort::Relevance, 10) };
    for query in ["500", "500m", "500ml", "kettle 500"] {
        let found = inventory.list(search(query)).await;
        assert_eq!(found.products.iter().map(|p| p.id).collect::<Vec<_>>(), [kettle.id], "{query}");
        assert_eq!((found.total, found.searched_for.as_str()), (1, ""), "{query}: found as typed");
    }
    // A code near another is another product: no correction, no match.
    let none = inventory.list(search("501ml")).await;
    assert_eq!((none.products.len(), none.total, none.searched_for.as_str()), (0, 0, ""));
    // Renamed: the old words go, the new ones come (the update trigger).
    let renamed = UpdateProductRequest { id: kettle.id, name: Some("Kettle 750w".into()), ..Default::default() };
    inventory.client.update_product(renamed).await.expect("renamed");
    assert_eq!(inventory.list(search("750w")).await.total, 1);
    assert_eq!(inventory.list(search("500ml")).await.total, 0);
    // A typo still finds the word without digits.
    let corrected = inventory.list(search("kettel")).await;
    assert_eq!((corrected.total, corrected.searched_for.as_str()), (1, "kettle"));
}

/// A word most products have and one few have, each in every order: the
/// count is bounded for the common one and exact for the rare one, and the
/// rare one pages both ways by price. On PostgreSQL the two are read by
/// different plans once the catalogue's size is known (ANALYZE): a walk of
/// the order's index for the common word, the GIN index for the rare one.
async fn common_and_rare_words_count_and_page(backend: Backend) {
    let mut inventory = start(backend).await;
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1100) \
               INSERT INTO products (name, description, price_minor, stock, created_at_ms, updated_at_ms) \
               SELECT 'Bulk cup', 'A cup.', 100 + i % 7, 1, 0, 0 FROM n";
    sqlx::query(sql).execute(&inventory.db.db.pool).await.expect("1,100 products");
    let mut rare = Vec::new();
    for (n, price) in [300, 100, 300, 200, 100].into_iter().enumerate() {
        rare.push(inventory.product(&format!("Darjeeling bowl {n}"), price, 1, &[]).await);
    }
    if backend == Backend::Postgres {
        sqlx::query("ANALYZE products").execute(&inventory.db.db.pool).await.expect("analysed");
    }
    for sort in [ProductSort::Newest, ProductSort::PriceLowFirst, ProductSort::PriceHighFirst, ProductSort::Name] {
        let common = ListProductsRequest { query: "cup".into(), ..sorted(sort, 100) };
        let first = inventory.list(common.clone()).await;
        assert_eq!((first.total, first.total_is_lower_bound), (1_000, true), "{sort:?}");
        let last = inventory.list(ListProductsRequest { last: true, ..common.clone() }).await;
        assert_eq!((last.total, last.total_is_lower_bound), (1_000, true), "{sort:?}");
        assert_eq!(inventory.walk_forward(&common).await.len(), 1_100, "{sort:?}: every match reachable");

        let search = ListProductsRequest { query: "darjeeling".into(), ..sorted(sort, 2) };
        let expected = ids(&in_order(&rare, sort));
        assert_eq!(inventory.walk_forward(&search).await, expected, "{sort:?} forwards");
        assert_eq!(inventory.walk_backward(&search).await, expected, "{sort:?} backwards");
        let after = inventory.list(search.clone()).await.next_cursor;
        let second = inventory.list(ListProductsRequest { after, ..search.clone() }).await;
        assert_eq!((second.total, second.total_is_lower_bound), (5, false), "{sort:?}");
    }
    // Both words: only the rare one's products have both; none here.
    let both = inventory
        .list(ListProductsRequest { query: "darjeeling cup".into(), ..sorted(ProductSort::Relevance, 5) })
        .await;
    assert_eq!((both.products.len(), both.total), (0, 0));
    let by_relevance =
        inventory.list(ListProductsRequest { query: "darj".into(), ..sorted(ProductSort::Relevance, 5) }).await;
    assert_eq!((by_relevance.products.len(), by_relevance.total, by_relevance.total_is_lower_bound), (5, 5, false));
}

on_both_backends!(
    every_order_walks_both_ways_once_each,
    bad_positions_are_refused_with_their_field,
    totals_stop_counting_at_a_thousand,
    changes_between_pages_neither_repeat_nor_hide_others,
    words_with_digits_match_as_typed,
    common_and_rare_words_count_and_page,
);
