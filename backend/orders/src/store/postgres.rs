//! Checkout's writes on PostgreSQL, each transaction sent as one statement.
//!
//! The same rows, events and commits as the statement-by-statement forms in
//! the parent module (which SQLite runs, in process), in one round trip
//! each: every round trip costs CPU on both sides, and checkout's nineteen
//! were most of what PostgreSQL spent on an order. `bench/checkout_floor.sh`
//! replays both forms through pgbench: one statement a transaction made
//! about three times the orders a second on the same server.
//!
//! Each write is a data-modifying CTE chained on the one it depends on
//! (`... SELECT ... FROM placed`), so a statement whose first write finds
//! nothing to do writes nothing at all, and a failing one writes nothing
//! either: a statement is atomic.

use shop_events::outbox::OutboxRow;
use shop_storage::Db;
use shop_storage::sqlx::{self, AssertSqlSafe};

use super::{Placement, Recorded, Source, existing_order_for_key};
use crate::OrderError;
use crate::domain::{OrderLines, PaymentMethod};

/// [`super::insert_pending`] on PostgreSQL: the order's id taken from its
/// sequence first (the event names it), then the key's claim, the order, its
/// lines, its first status change and `order.created` in one statement. A
/// key already claimed makes the statement write nothing; the order it
/// belongs to is then read as before.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_pending(
    db: &Db,
    user_id: i64,
    lines: &OrderLines,
    actor: &str,
    idempotency_key: Option<&str>,
    source: Source,
    placement: &Placement,
    now: i64,
) -> Result<Recorded, OrderError> {
    let (order_id,): (i64,) =
        sqlx::query_as("SELECT nextval(pg_get_serial_sequence('orders', 'id'))").fetch_one(&db.pool).await?;
    let items = lines.iter().map(|(product_id, quantity)| shop_events::OrderLine { product_id, quantity }).collect();
    let event = super::event(&shop_events::OrderCreated { order_id, user_id, items })?;
    let event = OutboxRow::of(&event)?;

    // $1-$23: the order, its change and its event; then a pair a line;
    // then the key and the request it stands for.
    let line_count = lines.iter().count();
    let values = (0..line_count)
        .map(|n| format!("(${}::BIGINT, ${}::BIGINT)", 2 * n + 24, 2 * n + 25))
        .collect::<Vec<_>>()
        .join(", ");
    let (claim, from_claim, id) = match idempotency_key {
        Some(_) => {
            let key = 2 * line_count + 24;
            (
                format!(
                    "claimed AS (INSERT INTO idempotency_keys (user_id, idempotency_key, request, order_id, created_at_ms) \
                     VALUES ($1, ${key}, ${}, $2, $3) ON CONFLICT (user_id, idempotency_key) DO NOTHING \
                     RETURNING order_id), ",
                    key + 1
                ),
                " FROM claimed",
                "order_id",
            )
        }
        None => (String::new(), "", "$2"),
    };
    let sql = format!(
        "WITH {claim}placed AS (INSERT INTO orders (id, user_id, status, created_at_ms, updated_at_ms, from_cart, \
             delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, \
             delivery_phone, delivery_method_id, delivery_method_name, delivery_price_minor, \
             delivery_free_above_minor, vat_rate_bp, payment_method) OVERRIDING SYSTEM VALUE \
             SELECT {id}, $1, 'pending', $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17\
             {from_claim} RETURNING id), \
         items AS (INSERT INTO order_items (order_id, product_id, quantity) \
             SELECT placed.id, line.product_id, line.quantity FROM placed, (VALUES {values}) AS line (product_id, quantity)), \
         change AS (INSERT INTO order_status_changes (order_id, status, actor, at_ms) SELECT id, 'pending', $18, $3 FROM placed), \
         event AS (INSERT INTO outbox (event_id, kind, payload, created_at_ms, trace_parent) \
             SELECT $19, $20, $21, $22, $23 FROM placed) \
         SELECT id FROM placed"
    );
    let address = placement.delivery.as_ref().map(|delivery| &delivery.address);
    let method = placement.delivery.as_ref().map(|delivery| &delivery.method);
    let mut query = sqlx::query_as::<_, (i64,)>(AssertSqlSafe(sql))
        .bind(user_id)
        .bind(order_id)
        .bind(now)
        .bind(i64::from(source == Source::Cart))
        .bind(address.map(|a| a.name.clone()))
        .bind(address.map(|a| a.line1.clone()))
        .bind(address.map(|a| a.line2.clone()))
        .bind(address.map(|a| a.postcode.clone()))
        .bind(address.map(|a| a.city.clone()))
        .bind(address.map(|a| a.country.clone()))
        .bind(address.map(|a| a.phone.clone()))
        .bind(method.map(|m| m.id))
        .bind(method.map(|m| m.name.clone()))
        .bind(method.map(|m| m.price_minor))
        .bind(method.and_then(|m| m.free_above_minor))
        .bind(i64::from(placement.vat_rate_bp))
        .bind(placement.payment_method.map(PaymentMethod::as_str))
        .bind(actor.to_owned())
        .bind(event.event_id)
        .bind(event.kind)
        .bind(event.payload)
        .bind(event.created_at_ms)
        .bind(event.trace_parent);
    for (product_id, quantity) in lines.iter() {
        query = query.bind(product_id).bind(quantity);
    }
    if let Some(key) = idempotency_key {
        query = query.bind(key.to_owned()).bind(source.request(lines, placement));
    }
    match query.fetch_optional(&db.pool).await? {
        Some((order_id,)) => Ok(Recorded::New(order_id)),
        None => {
            // Only a claimed key writes nothing: the order is the key's.
            let key = idempotency_key.ok_or(OrderError::Storage(sqlx::Error::RowNotFound))?;
            let mut conn = db.pool.acquire().await?;
            existing_order_for_key(&mut conn, user_id, key, &source.request(lines, placement)).await
        }
    }
}
