//! A cancel's release racing the order's reservation on PostgreSQL: the
//! release must wait for a reservation being made and then give its stock
//! back, never leave it held behind a "nothing to release" (the order
//! checker found that, seed 1049).

use std::time::Duration;

use shop_storage::sqlx;
use shop_testkit::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_during_the_reservation_gives_the_stock_back() {
    let inventory = TestDb::new(Backend::Postgres, &shop_inventory::MIGRATIONS).await;
    let pool = &inventory.db.pool;
    sqlx::query(
        "INSERT INTO products (name, description, price_minor, stock, created_at_ms, updated_at_ms) \
         VALUES ('Tea', '', 450, 10, 0, 0)",
    )
    .execute(pool)
    .await
    .expect("a product");
    let (product,): (i64,) = sqlx::query_as("SELECT id FROM products").fetch_one(pool).await.expect("its id");

    // A reservation under way, as `store::reserve` makes it: claimed, stock
    // taken, lines written, not yet committed.
    let mut reserving = pool.begin().await.expect("a transaction");
    for statement in [
        "INSERT INTO reservations (order_id, state, created_at_ms) VALUES (77, 'reserved', 0)".to_owned(),
        format!("UPDATE products SET stock = stock - 3 WHERE id = {product}"),
        format!(
            "INSERT INTO reservation_items (order_id, product_id, product_name, quantity, unit_price_minor) \
             VALUES (77, {product}, 'Tea', 3, 450)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *reserving).await.expect("the reservation");
    }

    let db = inventory.db.clone();
    let release = tokio::spawn(async move { shop_inventory::store::release(&db, 77).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!release.is_finished(), "the release waits for the reservation being made");
    reserving.commit().await.expect("the reservation commits");

    let released = release.await.expect("the task").expect("the release");
    assert!(released, "this call gave the stock back");
    let (stock,): (i64,) = sqlx::query_as("SELECT stock FROM products").fetch_one(pool).await.expect("the stock");
    assert_eq!(stock, 10);
    let (state,): (String,) =
        sqlx::query_as("SELECT state FROM reservations WHERE order_id = 77").fetch_one(pool).await.expect("a row");
    assert_eq!(state, "released");
    assert!(!shop_inventory::store::release(&inventory.db, 77).await.expect("again"), "once");
}
