//! Checkout's writes on PostgreSQL, each transaction sent as one statement.
//!
//! The same rows and commits as the statement-by-statement forms in the
//! parent module (which SQLite runs, in process), and the same events but
//! for their JSON's spacing and key order (PostgreSQL fills in what only it
//! knows through `jsonb_set`), in one round trip each: every round trip
//! costs CPU on both sides, and checkout's nineteen were most of what
//! PostgreSQL spent on an order. `bench/checkout_floor.sh` replays a model
//! of both forms through pgbench: one statement a transaction made about
//! three times the orders a second on the same server.
//!
//! Each write is a data-modifying CTE chained on the one it depends on
//! (`... SELECT ... FROM placed`), so a statement whose first write finds
//! nothing to do writes nothing at all, and a failing one writes nothing
//! either: a statement is atomic.

use shop_events::outbox::OutboxRow;
use shop_storage::Db;
use shop_storage::sqlx::{self, AssertSqlSafe, Row};

use super::{
    NEW_ORDER_COLUMNS, Placement, Recorded, Source, bind_new_order, confirm_order_sql, confirmed_event,
    existing_order_for_key, order_from_row,
};
use crate::OrderError;
use crate::domain::{Order, OrderLines, PricedLine};

/// Where `order.created`'s JSON holds the order's id, filled in by the
/// statement that takes it from the sequence.
const ORDER_PATH: &str = "{data,order_id}";
/// Where `order.status_changed`'s JSON holds what the confirming statement
/// fills in from the order's row.
const USER_PATH: &str = "{data,user_id}";
const TOTAL_PATH: &str = "{data,total_minor}";

/// [`super::insert_pending`] on PostgreSQL in one statement: the order's
/// id from its sequence, the key's claim, the order, its lines, its first
/// status change and `order.created` with the id filled in. A key claimed
/// before makes the statement write nothing; the order it stands for is
/// then read as before.
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
    let items = lines.iter().map(|(product_id, quantity)| shop_events::OrderLine { product_id, quantity }).collect();
    let event = OutboxRow::of(&super::event(&shop_events::OrderCreated { order_id: 0, user_id, items })?)?;
    let request = idempotency_key.map(|_| source.request(lines, placement));

    // $1-$16 the order, $17 the actor, $18-$22 the event, then a pair a
    // line, then the key and the request it stands for.
    let line_count = lines.iter().count();
    let values = (0..line_count)
        .map(|n| format!("(${}::BIGINT, ${}::BIGINT)", 2 * n + 23, 2 * n + 24))
        .collect::<Vec<_>>()
        .join(", ");
    let (claim, new_id) = match idempotency_key {
        Some(_) => {
            let key = 2 * line_count + 23;
            let claim = format!(
                "claimed AS (INSERT INTO idempotency_keys (user_id, idempotency_key, request, order_id, created_at_ms) \
                 SELECT $1, ${key}, ${}, id, $2 FROM new_id ON CONFLICT (user_id, idempotency_key) DO NOTHING \
                 RETURNING order_id AS id), ",
                key + 1
            );
            (claim, "claimed")
        }
        None => (String::new(), "new_id"),
    };
    let sql = format!(
        "WITH new_id AS (SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS id), {claim}\
         placed AS (INSERT INTO orders (id, {NEW_ORDER_COLUMNS}) OVERRIDING SYSTEM VALUE \
             SELECT id, $1, 'pending', $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
             FROM {new_id} RETURNING id), \
         items AS (INSERT INTO order_items (order_id, product_id, quantity) \
             SELECT placed.id, line.product_id, line.quantity FROM placed, (VALUES {values}) AS line (product_id, quantity)), \
         change AS (INSERT INTO order_status_changes (order_id, status, actor, at_ms) SELECT id, 'pending', $17, $2 FROM placed), \
         event AS (INSERT INTO outbox (event_id, kind, payload, created_at_ms, trace_parent) \
             SELECT $18, $19, jsonb_set($20::JSONB, '{ORDER_PATH}', to_jsonb(id))::TEXT, $21, $22 FROM placed) \
         SELECT id FROM placed"
    );
    let mut query = bind_new_order(sqlx::query(AssertSqlSafe(sql)), user_id, now, source, placement)
        .bind(actor.to_owned())
        .bind(event.event_id)
        .bind(event.kind)
        .bind(event.payload)
        .bind(event.created_at_ms)
        .bind(event.trace_parent);
    for (product_id, quantity) in lines.iter() {
        query = query.bind(product_id).bind(quantity);
    }
    if let (Some(key), Some(request)) = (idempotency_key, &request) {
        query = query.bind(key.to_owned()).bind(request.clone());
    }
    if let Some(placed) = query.fetch_optional(&db.pool).await? {
        return Ok(Recorded::New(placed.try_get("id")?));
    }
    match (idempotency_key, request) {
        (Some(key), Some(request)) => {
            let mut conn = db.pool.acquire().await?;
            existing_order_for_key(&mut conn, user_id, key, &request).await
        }
        // Without a key nothing stops the order's writes: no row is an
        // answer PostgreSQL never gives.
        _ => Err(OrderError::Storage(sqlx::Error::RowNotFound)),
    }
}

/// [`super::confirm_placed`]'s writes on PostgreSQL in one statement: the
/// order's row, its lines' names and prices, what it takes out of the cart
/// if it was placed from there, its status change, and
/// `order.status_changed` with the customer and the total filled in from
/// the row. `None`: the order is missing, no longer pending, or its total
/// would not fit; nothing was written (the caller finds out which).
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
    // The cart's rows the order took from, locked in product order (two
    // confirmations from one cart wait for each other, never deadlock) and
    // read as they are once locked: a line empties a row or lessens it by
    // what that row holds now, whatever was added since the statement began.
    let sql = format!(
        "WITH o AS ({confirm}), \
         priced (product_id, product_name, unit_price_minor, quantity) AS (VALUES {values}), \
         items AS (UPDATE order_items SET product_name = priced.product_name, \
                 unit_price_minor = priced.unit_price_minor, quantity = priced.quantity \
             FROM o, priced WHERE order_items.order_id = o.id AND order_items.product_id = priced.product_id), \
         held AS (SELECT c.user_id, c.product_id, c.quantity, priced.quantity AS taken \
             FROM cart_items c JOIN o ON o.from_cart = 1 AND c.user_id = o.user_id \
             JOIN priced ON c.product_id = priced.product_id \
             ORDER BY c.product_id FOR NO KEY UPDATE OF c), \
         emptied AS (DELETE FROM cart_items c USING held \
             WHERE c.user_id = held.user_id AND c.product_id = held.product_id AND held.quantity <= held.taken), \
         lessened AS (UPDATE cart_items c SET quantity = c.quantity - held.taken FROM held \
             WHERE c.user_id = held.user_id AND c.product_id = held.product_id AND held.quantity > held.taken), \
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

    fn json_of<P: shop_events::Payload>(payload: &P) -> serde_json::Value {
        let event = super::super::event(payload).expect("an event");
        serde_json::from_str(&OutboxRow::of(&event).expect("a row").payload).expect("JSON")
    }

    /// `{data,user_id}` as a JSON pointer, `/data/user_id`.
    fn pointer(path: &str) -> String {
        format!("/{}", path.trim_matches(['{', '}']).replace(',', "/"))
    }

    /// The statements fill in the order's id, customer and total at these
    /// paths: the events must hold them there.
    #[test]
    fn the_events_hold_what_the_statements_fill_in_where_they_write_it() {
        let created = json_of(&shop_events::OrderCreated { order_id: 9, user_id: 42, items: Vec::new() });
        assert_eq!(created.pointer(&pointer(ORDER_PATH)), Some(&serde_json::json!(9)), "{created}");
        let confirmed = json_of(&confirmed_event(9, 42, 1_234));
        for (path, value) in [(USER_PATH, 42), (TOTAL_PATH, 1_234)] {
            assert_eq!(confirmed.pointer(&pointer(path)), Some(&serde_json::json!(value)), "{confirmed}");
        }
    }
}
