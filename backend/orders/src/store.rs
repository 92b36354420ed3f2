//! The SQL of the order service. Every statement runs unchanged on SQLite and
//! PostgreSQL; every status change is conditional on the status it expects,
//! so concurrent writers cannot both win.

use std::collections::HashMap;

use shop_storage::sqlx::{self, Row, any::AnyRow};
use shop_storage::{Db, Page, now_ms};

use shop_events::{Event, OrderCreated, OrderStatusChanged, Payload, outbox};

use crate::OrderError;
use crate::domain::{Item, Order, OrderLines, PricedLine, Rejection, Status, StatusChange};

const ORDER_COLUMNS: &str = "id, user_id, status, total_minor, created_at_ms, updated_at_ms";

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

fn status_of(value: &str) -> Result<Status, sqlx::Error> {
    Status::from_db(value).ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {value:?}").into()))
}

fn order_from_row(row: &AnyRow) -> Result<Order, sqlx::Error> {
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: status_of(row.try_get("status")?)?,
        total_minor: row.try_get("total_minor")?,
        items: Vec::new(),
        history: Vec::new(),
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn item_from_row(row: &AnyRow) -> Result<(i64, Item), sqlx::Error> {
    Ok((
        row.try_get("order_id")?,
        Item {
            product_id: row.try_get("product_id")?,
            quantity: row.try_get("quantity")?,
            product_name: row.try_get("product_name")?,
            unit_price_minor: row.try_get("unit_price_minor")?,
        },
    ))
}

async fn record_change(tx: &mut Tx<'_>, order_id: i64, status: Status, actor: &str, at_ms: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO order_status_changes (order_id, status, actor, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(order_id)
        .bind(status.as_str())
        .bind(actor)
        .bind(at_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Where an order's lines came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Sent with the request (CreateOrder).
    Items,
    /// The customer's cart (CheckoutCart): the order takes its quantities
    /// out of the cart when it is confirmed, and a retry with its key is the
    /// same checkout whatever the cart holds by then.
    Cart,
}

impl Source {
    /// What the idempotency key remembers of the request: the lines sent, or
    /// "cart" for any checkout of the cart.
    fn request(self, lines: &OrderLines) -> String {
        match self {
            Self::Items => lines.canonical(),
            Self::Cart => "cart".to_owned(),
        }
    }
}

/// What recording an order found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new pending order.
    New(i64),
    /// The order an earlier request with the same idempotency key made.
    Existing(i64),
}

/// Writes an event to the outbox, in the transaction of its change.
async fn record<P: Payload>(tx: &mut Tx<'_>, payload: &P) -> Result<(), OrderError> {
    let event = Event::new(payload).map_err(|e| OrderError::Storage(sqlx::Error::Encode(Box::new(e))))?;
    Ok(outbox::record(tx, &event).await?)
}

/// Records `order.status_changed` for a change just made in `tx`.
async fn status_changed(
    tx: &mut Tx<'_>,
    order_id: i64,
    from: Status,
    to: Status,
    actor: &str,
) -> Result<(), OrderError> {
    let (user_id, total_minor): (i64, i64) = sqlx::query_as("SELECT user_id, total_minor FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&mut **tx)
        .await?;
    let change = OrderStatusChanged {
        order_id,
        user_id,
        from: from.as_str().into(),
        to: to.as_str().into(),
        actor: actor.into(),
        total_minor,
        tracking_reference: None,
    };
    record(tx, &change).await
}

/// Records a new order as pending, with its lines, before any stock is
/// touched: whatever happens next, there is a row to finish or reject.
///
/// With an idempotency key, the key is claimed in the same transaction. A
/// concurrent request with the same key waits for this one (the key is the
/// primary key) and then finds its order instead of making a second.
pub async fn insert_pending(
    db: &Db,
    user_id: i64,
    lines: &OrderLines,
    actor: &str,
    idempotency_key: Option<&str>,
    source: Source,
) -> Result<Recorded, OrderError> {
    db.observe("insert_pending", async move {
        let now = now_ms();
        let request = source.request(lines);
        let mut tx = db.pool.begin().await?;
        let (order_id,): (i64,) = sqlx::query_as(
            "INSERT INTO orders (user_id, status, created_at_ms, updated_at_ms, from_cart) \
             VALUES ($1, 'pending', $2, $2, $3) RETURNING id",
        )
        .bind(user_id)
        .bind(now)
        .bind(i64::from(source == Source::Cart))
        .fetch_one(&mut *tx)
        .await?;
        for (product_id, quantity) in lines.iter() {
            sqlx::query("INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)")
                .bind(order_id)
                .bind(product_id)
                .bind(quantity)
                .execute(&mut *tx)
                .await?;
        }
        record_change(&mut tx, order_id, Status::Pending, actor, now).await?;
        if let Some(key) = idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, idempotency_key, request, order_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, idempotency_key) DO NOTHING",
            )
            .bind(user_id)
            .bind(key)
            .bind(&request)
            .bind(order_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                // Dropping `tx` rolls this request's order back.
                let (existing_request, existing): (String, i64) = sqlx::query_as(
                    "SELECT request, order_id FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2",
                )
                .bind(user_id)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                return if existing_request == request {
                    Ok(Recorded::Existing(existing))
                } else {
                    Err(OrderError::IdempotencyKeyReused)
                };
            }
        }
        let items =
            lines.iter().map(|(product_id, quantity)| shop_events::OrderLine { product_id, quantity }).collect();
        record(&mut tx, &OrderCreated { order_id, user_id, items }).await?;
        tx.commit().await?;
        Ok(Recorded::New(order_id))
    })
    .await
}

/// The order an idempotency key of this user's made, if any.
pub async fn keyed(db: &Db, user_id: i64, key: &str) -> Result<Option<(String, i64)>, OrderError> {
    db.observe("keyed", async move {
        Ok(sqlx::query_as("SELECT request, order_id FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user_id)
            .bind(key)
            .fetch_optional(&db.pool)
            .await?)
    })
    .await
}

/// Forgets idempotency keys older than `before_ms`.
pub async fn expire_idempotency_keys(db: &Db, before_ms: i64) -> Result<u64, OrderError> {
    db.observe("expire_idempotency_keys", async move {
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at_ms < $1")
            .bind(before_ms)
            .execute(&db.pool)
            .await?;
        Ok(deleted.rows_affected())
    })
    .await
}

/// Why a rejected order was rejected, and the product concerned if known.
pub async fn rejection(db: &Db, order_id: i64) -> Result<Option<(Rejection, Option<i64>)>, OrderError> {
    db.observe("rejection", async move {
        let row: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT rejection, rejected_product_id FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_optional(&db.pool)
                .await?;
        let Some((Some(rejection), product_id)) = row else { return Ok(None) };
        let rejection = Rejection::from_db(&rejection)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown rejection {rejection:?}").into()))?;
        Ok(Some((rejection, product_id)))
    })
    .await
}

/// Stores inventory's reservation: the lines' names and prices, the total,
/// and `confirmed` if the order is still pending. Returns the status the
/// order has afterwards; anything but `confirmed` means the reservation
/// arrived for an order that had moved on, and its stock must go back.
pub async fn confirm(db: &Db, order_id: i64, lines: &[PricedLine], total_minor: i64) -> Result<Status, OrderError> {
    db.observe("confirm", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        // Inventory holds stock for this order now, whatever its status.
        sqlx::query("UPDATE orders SET stock_state = 'reserved' WHERE id = $1 AND stock_state = 'none'")
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        let confirmed = sqlx::query(
            "UPDATE orders SET status = 'confirmed', total_minor = $2, updated_at_ms = $3 \
         WHERE id = $1 AND status = 'pending'",
        )
        .bind(order_id)
        .bind(total_minor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let newly_confirmed = confirmed.rows_affected() == 1;
        if newly_confirmed {
            for line in lines {
                sqlx::query(
                    "UPDATE order_items SET product_name = $3, unit_price_minor = $4, quantity = $5 \
                 WHERE order_id = $1 AND product_id = $2",
                )
                .bind(order_id)
                .bind(line.product_id)
                .bind(&line.product_name)
                .bind(line.unit_price_minor)
                .bind(line.quantity)
                .execute(&mut *tx)
                .await?;
            }
            let (user_id, from_cart): (i64, i64) =
                sqlx::query_as("SELECT user_id, from_cart FROM orders WHERE id = $1")
                    .bind(order_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if from_cart == 1 {
                // Placed from the cart: what it ordered leaves the cart with
                // the order's confirmation, never for a rejected order.
                let ordered: Vec<(i64, i64)> = lines.iter().map(|line| (line.product_id, line.quantity)).collect();
                crate::cart::take_ordered(&mut tx, user_id, &ordered).await?;
            }
            record_change(&mut tx, order_id, Status::Confirmed, crate::domain::SYSTEM, now).await?;
            status_changed(&mut tx, order_id, Status::Pending, Status::Confirmed, crate::domain::SYSTEM).await?;
        }
        let status = current_status(&mut tx, order_id).await?;
        tx.commit().await?;
        if newly_confirmed {
            crate::metrics::confirmed(total_minor);
        }
        Ok(status)
    })
    .await
}

/// Rejects a pending order whose stock inventory refused, keeping why.
pub async fn reject(db: &Db, order_id: i64, rejection: Rejection, product_id: Option<i64>) -> Result<(), OrderError> {
    db.observe("reject", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        let rejected = sqlx::query(
            "UPDATE orders SET status = 'rejected', rejection = $3, rejected_product_id = $4, updated_at_ms = $2 \
         WHERE id = $1 AND status = 'pending'",
        )
        .bind(order_id)
        .bind(now)
        .bind(rejection.as_str())
        .bind(product_id)
        .execute(&mut *tx)
        .await?;
        let newly_rejected = rejected.rows_affected() == 1;
        if newly_rejected {
            record_change(&mut tx, order_id, Status::Rejected, crate::domain::SYSTEM, now).await?;
            status_changed(&mut tx, order_id, Status::Pending, Status::Rejected, crate::domain::SYSTEM).await?;
        }
        tx.commit().await?;
        if newly_rejected {
            crate::metrics::rejected();
        }
        Ok(())
    })
    .await
}

/// Moves an order from `from` to `to` if it is still in `from`.
/// False when someone else changed it first.
pub async fn transition(db: &Db, order_id: i64, from: Status, to: Status, actor: &str) -> Result<bool, OrderError> {
    db.observe("transition", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        let moved = sqlx::query("UPDATE orders SET status = $3, updated_at_ms = $4 WHERE id = $1 AND status = $2")
            .bind(order_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        record_change(&mut tx, order_id, to, actor, now).await?;
        status_changed(&mut tx, order_id, from, to, actor).await?;
        tx.commit().await?;
        crate::metrics::status_changed(to);
        Ok(true)
    })
    .await
}

/// Notes that inventory has given the order's stock back (or will refuse
/// to take any).
pub async fn mark_released(db: &Db, order_id: i64) -> Result<(), OrderError> {
    db.observe("mark_released", async move {
        sqlx::query("UPDATE orders SET stock_state = 'released' WHERE id = $1")
            .bind(order_id)
            .execute(&db.pool)
            .await?;
        Ok(())
    })
    .await
}

async fn current_status(tx: &mut Tx<'_>, order_id: i64) -> Result<Status, OrderError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT status FROM orders WHERE id = $1").bind(order_id).fetch_optional(&mut **tx).await?;
    let (status,) = row.ok_or(OrderError::NotFound(order_id))?;
    Ok(status_of(&status)?)
}

/// One order with its items and history.
pub async fn get(db: &Db, order_id: i64) -> Result<Order, OrderError> {
    db.observe("get", async move {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(order_id).fetch_optional(&db.pool).await?;
        let mut order = row.as_ref().map(order_from_row).transpose()?.ok_or(OrderError::NotFound(order_id))?;
        let items = sqlx::query(
            "SELECT order_id, product_id, quantity, product_name, unit_price_minor FROM order_items \
         WHERE order_id = $1 ORDER BY product_id",
        )
        .bind(order_id)
        .fetch_all(&db.pool)
        .await?;
        order.items = items.iter().map(|row| item_from_row(row).map(|(_, item)| item)).collect::<Result<_, _>>()?;
        let history =
            sqlx::query("SELECT status, actor, at_ms FROM order_status_changes WHERE order_id = $1 ORDER BY id")
                .bind(order_id)
                .fetch_all(&db.pool)
                .await?;
        order.history = history
            .iter()
            .map(|row| {
                Ok(StatusChange {
                    status: status_of(row.try_get("status")?)?,
                    actor: row.try_get("actor")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(order)
    })
    .await
}

/// One page of orders, newest first, with their items (one query for all
/// the page's items, not one per order), and how many there are in all.
/// A page of orders, newest first: one user's or everyone's; rejected ones
/// (refused checkouts, kept for the record) only when `with_rejected`.
pub async fn list(
    db: &Db,
    user_id: Option<i64>,
    with_rejected: bool,
    page: Page,
) -> Result<(Vec<Order>, i64), OrderError> {
    db.observe("list", async move {
        // Shapes of query rather than `$3 IS NULL OR ...`, so each can use its
        // index; built from constants only.
        let conditions = |user: &str| {
            let mut conditions: Vec<String> = user_id.map(|_| format!("user_id = {user}")).into_iter().collect();
            if !with_rejected {
                conditions.push("status <> 'rejected'".to_owned());
            }
            if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) }
        };
        let filter = conditions("$3");
        let page_ids = format!("SELECT id FROM orders {filter} ORDER BY id DESC LIMIT $1 OFFSET $2");
        let bind_page = |sql: String| {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(page.limit()).bind(page.offset());
            match user_id {
                Some(user_id) => query.bind(user_id),
                None => query,
            }
        };

        let rows = bind_page(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id IN ({page_ids}) ORDER BY id DESC"))
            .fetch_all(&db.pool)
            .await?;
        let mut orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;

        let item_rows = bind_page(format!(
            "SELECT order_id, product_id, quantity, product_name, unit_price_minor FROM order_items \
         WHERE order_id IN ({page_ids}) ORDER BY order_id, product_id"
        ))
        .fetch_all(&db.pool)
        .await?;
        let mut items: HashMap<i64, Vec<Item>> = HashMap::new();
        for row in &item_rows {
            let (order_id, item) = item_from_row(row)?;
            items.entry(order_id).or_default().push(item);
        }
        for order in &mut orders {
            order.items = items.remove(&order.id).unwrap_or_default();
        }

        let count = format!("SELECT COUNT(*) FROM orders {}", conditions("$1"));
        let count = sqlx::query_as(sqlx::AssertSqlSafe(count));
        let (total,): (i64,) = match user_id {
            Some(user_id) => count.bind(user_id).fetch_one(&db.pool).await?,
            None => count.fetch_one(&db.pool).await?,
        };
        Ok((orders, total))
    })
    .await
}

/// Pending orders last touched before `before_ms`, oldest first: work for
/// the recovery pass.
pub async fn stale_pending(db: &Db, before_ms: i64, limit: i64) -> Result<Vec<(i64, OrderLines)>, OrderError> {
    db.observe("stale_pending", async move {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM orders WHERE status = 'pending' AND updated_at_ms < $1 ORDER BY id LIMIT $2",
        )
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
        let mut pending = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let lines: Vec<(i64, i64)> =
                sqlx::query_as("SELECT product_id, quantity FROM order_items WHERE order_id = $1 ORDER BY product_id")
                    .bind(id)
                    .fetch_all(&db.pool)
                    .await?;
            pending.push((id, OrderLines::parse(lines)?));
        }
        Ok(pending)
    })
    .await
}

/// Cancelled or rejected orders whose stock inventory may still hold.
pub async fn unreleased(db: &Db, limit: i64) -> Result<Vec<i64>, OrderError> {
    db.observe("unreleased", async move {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM orders \
         WHERE (status IN ('cancelled', 'rejected') AND stock_state = 'reserved') \
            OR (status = 'cancelled' AND stock_state = 'none') \
         ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    })
    .await
}
