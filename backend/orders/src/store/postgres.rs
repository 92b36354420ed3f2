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

use super::{Placement, Recorded, Source, confirm_order_sql, confirmed_event, existing_order_for_key, order_from_row};
use crate::OrderError;
use crate::domain::{Order, OrderLines, PaymentMethod, PricedLine};

/// Where `order.status_changed`'s JSON holds what the confirming statement
/// fills in from the order's row.
const USER_PATH: &str = "{data,user_id}";
const TOTAL_PATH: &str = "{data,total_minor}";

/// [`super::insert_pending`] on PostgreSQL: the order's id taken from its
/// sequence first (the event names it), then the key's claim, the order, its
/// lines, its first status change and `order.created` in one statement. A
/// key already claimed makes the statement write nothing; the order it
/// belongs to is then read as before.
#[expect(clippy::too_many_arguments, reason = "insert_pending's arguments, and the time it was called")]
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

/// [`super::confirm_placed`]'s writes on PostgreSQL in one statement: the
/// order's row, its lines' names and prices, what it takes out of the cart
/// if it was placed from there, its status change, and
/// `order.status_changed` with the customer and the total filled in from
/// the row. `None`: the order was not pending or its total would not fit,
/// and nothing was written (the caller goes the careful way).
pub(super) async fn confirm(
    db: &Db,
    order_id: i64,
    lines: &[PricedLine],
    subtotal_minor: i64,
    now: i64,
) -> Result<Option<Order>, OrderError> {
    let event = OutboxRow::of(&super::event(&confirmed_event(order_id, 0, 0))?)?;
    // $1-$4 the order's update, $5 the actor, $6-$10 the event, then four a line.
    let values = (0..lines.len())
        .map(|n| {
            let first = 4 * n + 11;
            format!("(${first}::BIGINT, ${}, ${}::BIGINT, ${}::BIGINT)", first + 1, first + 2, first + 3)
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The cart's rows a line empties and the ones it only lessens are apart
    // (`<=` and `>`): a statement may change a row once.
    let sql = format!(
        "WITH o AS ({confirm}), \
         priced (product_id, product_name, unit_price_minor, quantity) AS (VALUES {values}), \
         items AS (UPDATE order_items SET product_name = priced.product_name, \
                 unit_price_minor = priced.unit_price_minor, quantity = priced.quantity \
             FROM o, priced WHERE order_items.order_id = o.id AND order_items.product_id = priced.product_id), \
         emptied AS (DELETE FROM cart_items c USING o, priced WHERE o.from_cart = 1 AND c.user_id = o.user_id \
             AND c.product_id = priced.product_id AND c.quantity <= priced.quantity), \
         lessened AS (UPDATE cart_items c SET quantity = c.quantity - priced.quantity FROM o, priced \
             WHERE o.from_cart = 1 AND c.user_id = o.user_id AND c.product_id = priced.product_id \
             AND c.quantity > priced.quantity), \
         change AS (INSERT INTO order_status_changes (order_id, status, actor, at_ms) \
             SELECT id, 'confirmed', $5, $3 FROM o), \
         event AS (INSERT INTO outbox (event_id, kind, payload, created_at_ms, trace_parent) \
             SELECT $6, $7, jsonb_set(jsonb_set($8::JSONB, '{USER_PATH}', to_jsonb(user_id)), \
                 '{TOTAL_PATH}', to_jsonb(total_minor))::TEXT, $9, $10 FROM o) \
         SELECT * FROM o",
        confirm = confirm_order_sql(),
    );
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(order_id)
        .bind(subtotal_minor)
        .bind(now)
        .bind(i64::MAX - subtotal_minor.max(0))
        .bind(crate::domain::SYSTEM)
        .bind(event.event_id)
        .bind(event.kind)
        .bind(event.payload)
        .bind(event.created_at_ms)
        .bind(event.trace_parent);
    for line in lines {
        query =
            query.bind(line.product_id).bind(line.product_name.clone()).bind(line.unit_price_minor).bind(line.quantity);
    }
    let row = query.fetch_optional(&db.pool).await?;
    Ok(row.as_ref().map(order_from_row).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement fills the customer and the total in at [`USER_PATH`]
    /// and [`TOTAL_PATH`]: the event must hold them there.
    #[test]
    fn the_confirmation_event_holds_what_the_statement_fills_in_where_it_writes_it() {
        let event = super::super::event(&confirmed_event(9, 42, 1_234)).expect("an event");
        let json: serde_json::Value =
            serde_json::from_str(&OutboxRow::of(&event).expect("a row").payload).expect("JSON");
        for (path, value) in [(USER_PATH, 42), (TOTAL_PATH, 1_234)] {
            let pointer = format!("/{}", path.trim_matches(['{', '}']).replace(',', "/"));
            assert_eq!(json.pointer(&pointer), Some(&serde_json::json!(value)), "{json}");
        }
    }
}
