//! The SQL of the inventory service: products and stock here, categories,
//! pictures and search in the modules below. Statements run unchanged on
//! SQLite and PostgreSQL, except search's, which has one form per backend,
//! and the reservation's, which PostgreSQL also runs as one statement
//! ([`postgres`]).

pub mod categories;
pub mod images;
mod postgres;
pub mod search;

use shop_storage::sqlx::{self, AnyConnection, Row, any::AnyRow};
use shop_storage::{Backend, Db, Violation, now_ms, violation};

use shop_events::{Event, Payload, ProductChanged, StockLow, outbox};

use crate::InventoryError;
use crate::domain::{NewImage, NewProduct, OrderLines, Product, ProductChanges, ReservedItem};

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// `$first, $first+1, ...`: placeholders for `count` values. Built from
/// numbers only, never from input.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Writes an event to the outbox, in the transaction of its change.
async fn record<P: Payload>(tx: &mut Tx<'_>, payload: &P) -> Result<(), InventoryError> {
    let event = Event::new(payload).map_err(|e| InventoryError::Storage(sqlx::Error::Encode(Box::new(e))))?;
    Ok(outbox::record(tx, &event).await?)
}

/// Records that a product's stock moved to `stock` from `before`, and that
/// it ran low if it just crossed `low_stock` on the way down (returned, to
/// be counted once the transaction commits).
async fn stock_moved(
    tx: &mut Tx<'_>,
    product_id: i64,
    before: i64,
    stock: i64,
    low_stock: i64,
) -> Result<bool, InventoryError> {
    record(tx, &ProductChanged { product_id, change: "stock".into(), stock: Some(stock) }).await?;
    let ran_low = before > low_stock && stock <= low_stock;
    if ran_low {
        record(tx, &StockLow { product_id, stock, threshold: low_stock }).await?;
    }
    Ok(ran_low)
}

/// Counts products that ran low, after the change that made them so committed.
fn count_stock_low(products: u64) {
    if products > 0 {
        metrics::counter!("shop_stock_low_events_total").increment(products);
    }
}

const PRODUCT_COLUMNS: &str = "id, name, description, price_minor, stock, created_at_ms, updated_at_ms";
/// The same, for queries that name the products table `p`.
const P_COLUMNS: &str = "p.id, p.name, p.description, p.price_minor, p.stock, p.created_at_ms, p.updated_at_ms";

fn product_from_row(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price_minor: row.try_get("price_minor")?,
        stock: row.try_get("stock")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        categories: Vec::new(),
        images: Vec::new(),
    })
}

/// Fills in the products' categories and pictures: one query each for all
/// of them, never one per product.
async fn attach(conn: &mut AnyConnection, products: &mut [Product]) -> Result<(), InventoryError> {
    if products.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = products.iter().map(|p| p.id).collect();
    let mut categories = categories::of_products(conn, &ids).await?;
    let mut images = images::of_products(conn, &ids).await?;
    for product in products {
        product.categories = categories.remove(&product.id).unwrap_or_default();
        product.images = images.remove(&product.id).unwrap_or_default();
    }
    Ok(())
}

/// One product with its categories and pictures.
async fn read(conn: &mut AnyConnection, id: i64) -> Result<Product, InventoryError> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *conn).await?;
    let product = row.as_ref().map(product_from_row).transpose()?.ok_or(InventoryError::ProductNotFound(id))?;
    let mut products = [product];
    attach(conn, &mut products).await?;
    let [product] = products;
    Ok(product)
}

fn item_from_row(row: &AnyRow) -> Result<ReservedItem, sqlx::Error> {
    Ok(ReservedItem {
        product_id: row.try_get("product_id")?,
        product_name: row.try_get("product_name")?,
        quantity: row.try_get("quantity")?,
        unit_price_minor: row.try_get("unit_price_minor")?,
    })
}

/// Adds a product, in its categories, with its first picture if given: one
/// transaction, one `product.changed` (`created`).
pub async fn insert(db: &Db, product: &NewProduct, image: Option<&NewImage>) -> Result<Product, InventoryError> {
    db.observe("insert", async move {
        let sql = format!(
            "INSERT INTO products (name, description, price_minor, stock, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {PRODUCT_COLUMNS}"
        );
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product.name.as_str())
            .bind(product.description.as_str())
            .bind(product.price_minor)
            .bind(product.stock)
            .bind(now_ms())
            .fetch_one(&mut *tx)
            .await?;
        let created = product_from_row(&row)?;
        categories::set_of_product(&mut tx, created.id, &product.category_ids).await?;
        if let Some(image) = image {
            images::insert(&mut tx, created.id, image).await?;
        }
        record(
            &mut tx,
            &ProductChanged { product_id: created.id, change: "created".into(), stock: Some(created.stock) },
        )
        .await?;
        let created = read(&mut tx, created.id).await?;
        tx.commit().await?;
        Ok(created)
    })
    .await
}

pub async fn get(db: &Db, id: i64) -> Result<Product, InventoryError> {
    db.observe("get", async move {
        let mut conn = db.pool.acquire().await?;
        read(&mut conn, id).await
    })
    .await
}

/// The products among `ids` that exist, in the order of `ids`.
pub async fn get_many(db: &Db, ids: &[i64]) -> Result<Vec<Product>, InventoryError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db.observe("get_many", async move {
        // One placeholder per id (at most 100, checked by the caller).
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({})", placeholders(1, ids.len()));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        let mut conn = db.pool.acquire().await?;
        let rows = query.fetch_all(&mut *conn).await?;
        let mut found = rows.iter().map(product_from_row).collect::<Result<Vec<_>, _>>()?;
        found.sort_by_key(|product| ids.iter().position(|id| *id == product.id));
        attach(&mut conn, &mut found).await?;
        Ok(found)
    })
    .await
}

/// Applies the set fields in one statement; stock moves relative to what is
/// there now, and the CHECK constraint refuses a negative result.
pub async fn update(db: &Db, id: i64, changes: &ProductChanges, low_stock: i64) -> Result<Product, InventoryError> {
    db.observe("update", async move {
        let sql = format!(
            "UPDATE products SET name = COALESCE($2, name), description = COALESCE($3, description), \
         price_minor = COALESCE($4, price_minor), stock = stock + COALESCE($5, 0), updated_at_ms = $6 \
         WHERE id = $1 RETURNING {PRODUCT_COLUMNS}"
        );
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.name.as_ref().map(|n| n.as_str().to_owned()))
            .bind(changes.description.as_ref().map(|d| d.as_str().to_owned()))
            .bind(changes.price_minor)
            .bind(changes.stock_delta)
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|error| match violation(&error) {
                Some(Violation::Check) => InventoryError::StockBelowZero(id),
                _ => InventoryError::Storage(error),
            })?;
        let product = row.as_ref().map(product_from_row).transpose()?.ok_or(InventoryError::ProductNotFound(id))?;
        if let Some(category_ids) = &changes.category_ids {
            categories::set_of_product(&mut tx, id, category_ids).await?;
        }
        let ran_low = match changes.stock_delta {
            Some(delta) => stock_moved(&mut tx, id, product.stock - delta, product.stock, low_stock).await?,
            None => {
                record(
                    &mut tx,
                    &ProductChanged { product_id: id, change: "updated".into(), stock: Some(product.stock) },
                )
                .await?;
                false
            }
        };
        let product = read(&mut tx, id).await?;
        tx.commit().await?;
        count_stock_low(u64::from(ran_low));
        Ok(product)
    })
    .await
}

/// Deletes a product; its pictures go with it (ON DELETE CASCADE), and so
/// do their stored variants unless another picture shares them.
pub async fn delete(db: &Db, id: i64) -> Result<(), InventoryError> {
    db.observe("delete", async move {
        let mut tx = db.pool.begin().await?;
        let hashes = images::hashes_of_product(&mut tx, id).await?;
        let result = sqlx::query("DELETE FROM products WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if result.rows_affected() == 0 {
            return Err(InventoryError::ProductNotFound(id));
        }
        images::forget_unused_blobs(&mut tx, &hashes).await?;
        record(&mut tx, &ProductChanged { product_id: id, change: "deleted".into(), stock: None }).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// Whether the catalogue has any product.
pub async fn is_empty(db: &Db) -> Result<bool, InventoryError> {
    db.observe("is_empty", async move {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM (SELECT id FROM products LIMIT 1) AS one").fetch_one(&db.pool).await?;
        Ok(count == 0)
    })
    .await
}

/// Reserves every line of `lines` for `order_id`, or nothing. On
/// PostgreSQL in one statement first ([`postgres::reserve`]); what that
/// cannot settle comes here.
///
/// The reservation row is claimed first: a second call for the same order
/// (a retry, or a recovery pass racing the first call) waits for the first
/// transaction and then returns what it reserved, so stock is taken once.
pub async fn reserve(
    db: &Db,
    order_id: i64,
    lines: &OrderLines,
    low_stock: i64,
) -> Result<Vec<ReservedItem>, InventoryError> {
    db.observe("reserve", async move {
        let now = now_ms();
        #[cfg(feature = "fault-hooks")]
        let one_statement = db.backend == Backend::Postgres && !crate::fault_hooks::lost_update_armed();
        #[cfg(not(feature = "fault-hooks"))]
        let one_statement = db.backend == Backend::Postgres;
        if one_statement && let Some(taken) = postgres::reserve(db, order_id, lines, low_stock, now).await? {
            count_stock_low(taken.ran_low);
            return Ok(taken.items);
        }
        let mut tx = db.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO reservations (order_id, state, created_at_ms) VALUES ($1, 'reserved', $2) \
         ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            let (state,): (String,) = sqlx::query_as("SELECT state FROM reservations WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&mut *tx)
                .await?;
            if state == "released" {
                return Err(InventoryError::Released(order_id));
            }
            let items = reserved_items(&mut tx, order_id).await?;
            tx.commit().await?;
            return Ok(items);
        }

        let mut items = Vec::new();
        let mut ran_low = 0;
        for (product_id, quantity) in lines.iter() {
            // Relative and conditional: never "read stock, write it back".
            let taken = sqlx::query(
                "UPDATE products SET stock = stock - $2, updated_at_ms = $3 \
             WHERE id = $1 AND stock >= $2 RETURNING name, price_minor, stock",
            )
            .bind(product_id)
            .bind(quantity)
            .bind(now);
            #[cfg(feature = "fault-hooks")]
            let taken = if crate::fault_hooks::lost_update_armed() {
                crate::fault_hooks::take_by_absolute_write(&mut tx, product_id, quantity, now).await?
            } else {
                taken.fetch_optional(&mut *tx).await?
            };
            #[cfg(not(feature = "fault-hooks"))]
            let taken = taken.fetch_optional(&mut *tx).await?;
            let Some(taken) = taken else {
                let available: Option<(i64,)> = sqlx::query_as("SELECT stock FROM products WHERE id = $1")
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                // Dropping `tx` rolls back every line taken so far.
                return Err(match available {
                    None => InventoryError::ProductNotFound(product_id),
                    Some((available,)) => {
                        InventoryError::InsufficientStock { product_id, requested: quantity, available }
                    }
                });
            };
            let item = ReservedItem {
                product_id,
                product_name: taken.try_get("name")?,
                quantity,
                unit_price_minor: taken.try_get("price_minor")?,
            };
            let stock: i64 = taken.try_get("stock")?;
            ran_low += u64::from(stock_moved(&mut tx, product_id, stock + quantity, stock, low_stock).await?);
            sqlx::query(
                "INSERT INTO reservation_items (order_id, product_id, product_name, quantity, unit_price_minor) \
             VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(order_id)
            .bind(item.product_id)
            .bind(&item.product_name)
            .bind(item.quantity)
            .bind(item.unit_price_minor)
            .execute(&mut *tx)
            .await?;
            items.push(item);
        }
        tx.commit().await?;
        count_stock_low(ran_low);
        Ok(items)
    })
    .await
}

async fn reserved_items(tx: &mut Tx<'_>, order_id: i64) -> Result<Vec<ReservedItem>, InventoryError> {
    let rows = sqlx::query(
        "SELECT product_id, product_name, quantity, unit_price_minor FROM reservation_items \
         WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(item_from_row).collect::<Result<_, _>>()?)
}

/// Gives an order's stock back. True when this call returned it; false when
/// an earlier call had. An order never reserved is marked released, so a
/// reservation arriving late cannot take stock for a cancelled order.
pub async fn release(db: &Db, order_id: i64) -> Result<bool, InventoryError> {
    db.observe("release", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        // The tombstone first: if a reservation for this order is being
        // made right now, this waits for it (the order id is the key) and
        // then finds it. Updating first would not see a reservation not yet
        // committed, and the tombstone would then silently give way to it:
        // a cancelled order whose stock stays held (found by the order
        // checker, seed 1049).
        let never_reserved = sqlx::query(
            "INSERT INTO reservations (order_id, state, created_at_ms, released_at_ms) \
             VALUES ($1, 'released', $2, $2) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if never_reserved.rows_affected() == 1 {
            tx.commit().await?;
            return Ok(false);
        }
        let released = sqlx::query(
            "UPDATE reservations SET state = 'released', released_at_ms = $2 \
             WHERE order_id = $1 AND state = 'reserved'",
        )
        .bind(order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() == 0 {
            // Released before.
            tx.commit().await?;
            return Ok(false);
        }
        for item in reserved_items(&mut tx, order_id).await? {
            // A product deleted since has nowhere to return to; that is fine.
            let returned: Option<(i64,)> = sqlx::query_as(
                "UPDATE products SET stock = stock + $2, updated_at_ms = $3 WHERE id = $1 RETURNING stock",
            )
            .bind(item.product_id)
            .bind(item.quantity)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((stock,)) = returned {
                record(
                    &mut tx,
                    &ProductChanged { product_id: item.product_id, change: "stock".into(), stock: Some(stock) },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    })
    .await
}
