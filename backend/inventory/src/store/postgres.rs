//! Reservation on PostgreSQL in one statement.
//!
//! The claim, the stock of every line, the reservation's lines and the
//! events (`product.changed` for each product, `stock.low` for one that
//! just crossed its threshold) are data-modifying CTEs of one statement,
//! each chained on the write it depends on; the transaction around it is
//! committed only when every line was taken. That is three round trips
//! where the statement-by-statement form (which SQLite runs) takes six, and
//! three more a line; and a hot product's row stays locked for one round
//! trip and the commit instead of three (`bench/checkout_floor.sh`).
//!
//! Anything else (the order reserved or released before, a product short
//! or gone) rolls back and goes the careful way in the parent module, which
//! says exactly why (an order for a sold-out product thus costs a round
//! trip more than before; a sale costs three fewer). Each line carries a
//! `stock.low` event ready in case it crosses its threshold, written only
//! if it does.

use shop_events::outbox::OutboxRow;
use shop_events::{Event, Payload, ProductChanged, StockLow};
use shop_storage::Db;
use shop_storage::sqlx::{self, AssertSqlSafe, Row};

use crate::InventoryError;
use crate::domain::{OrderLines, ReservedItem};

/// Where a stock event's JSON holds the stock: filled in by the statement
/// with what the update left.
const STOCK_PATH: &str = "{data,stock}";

/// What the one statement reserved, and how many products ran low.
pub(super) struct Taken {
    pub items: Vec<ReservedItem>,
    pub ran_low: u64,
}

/// Reserves every line of `lines` for `order_id` in one statement, or
/// nothing (`None`: not every line could be taken, or the order was claimed
/// before; the caller then goes the careful way).
pub(super) async fn reserve(
    db: &Db,
    order_id: i64,
    lines: &OrderLines,
    low_stock: i64,
    now: i64,
) -> Result<Option<Taken>, InventoryError> {
    // The events with the stock left blank (the statement fills it in).
    let mut wanted = Vec::new();
    for (product_id, quantity) in lines.iter() {
        let changed = outbox_row(&ProductChanged { product_id, change: "stock".into(), stock: Some(0) }, now)?;
        let low = outbox_row(&StockLow { product_id, stock: 0, threshold: low_stock }, now)?;
        wanted.push((product_id, quantity, changed, low));
    }
    let trace_parent = wanted.first().and_then(|(_, _, changed, _)| changed.trace_parent.clone());

    // $1 order, $2 now, $3 threshold, $4 trace context, $5/$6 the kinds;
    // then six a line: product, quantity, and each event's id and JSON.
    let values = (0..wanted.len())
        .map(|n| {
            let first = 6 * n + 7;
            format!(
                "(${}::BIGINT, ${}::BIGINT, ${}, ${}, ${}, ${})",
                first,
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The rows are locked in id order, as the careful way takes them, so
    // two orders sharing products wait for each other instead of
    // deadlocking; `NO KEY`, as an update of the stock takes it, so a
    // picture or category added to the product meanwhile does not wait.
    // The events are written in the careful way's order too: product by
    // product, `product.changed` then `stock.low`.
    let sql = format!(
        "WITH claim AS (INSERT INTO reservations (order_id, state, created_at_ms) VALUES ($1, 'reserved', $2) \
             ON CONFLICT (order_id) DO NOTHING RETURNING order_id), \
         wanted (product_id, quantity, changed_id, changed, low_id, low) AS (VALUES {values}), \
         locked AS (SELECT p.id FROM products p JOIN wanted ON p.id = wanted.product_id \
             WHERE EXISTS (SELECT FROM claim) ORDER BY p.id FOR NO KEY UPDATE OF p), \
         taken AS (UPDATE products p SET stock = p.stock - w.quantity, updated_at_ms = $2 \
             FROM wanted w, locked l WHERE p.id = w.product_id AND l.id = p.id AND p.stock >= w.quantity \
             RETURNING p.id, p.name, p.price_minor, p.stock, w.quantity, w.changed_id, w.changed, w.low_id, w.low, \
                 p.stock + w.quantity > $3 AND p.stock <= $3 AS ran_low), \
         items AS (INSERT INTO reservation_items (order_id, product_id, product_name, quantity, unit_price_minor) \
             SELECT $1, id, name, quantity, price_minor FROM taken), \
         events AS (INSERT INTO outbox (event_id, kind, payload, created_at_ms, trace_parent) \
             SELECT e.event_id, e.kind, jsonb_set(e.payload::JSONB, '{STOCK_PATH}', to_jsonb(t.stock))::TEXT, $2, $4 \
             FROM taken t CROSS JOIN LATERAL \
                 (VALUES (1, t.changed_id, $5, t.changed), (2, t.low_id, $6, t.low)) AS e (n, event_id, kind, payload) \
             WHERE e.n = 1 OR t.ran_low ORDER BY t.id, e.n) \
         SELECT id, name, price_minor, quantity, ran_low FROM taken ORDER BY id"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(order_id)
        .bind(now)
        .bind(low_stock)
        .bind(trace_parent)
        .bind(ProductChanged::KIND)
        .bind(StockLow::KIND);
    for (product_id, quantity, changed, low) in &wanted {
        query = query
            .bind(*product_id)
            .bind(*quantity)
            .bind(changed.event_id.clone())
            .bind(changed.payload.clone())
            .bind(low.event_id.clone())
            .bind(low.payload.clone());
    }

    let mut tx = db.pool.begin().await?;
    let rows = query.fetch_all(&mut *tx).await?;
    if rows.len() != wanted.len() {
        // At once: the careful way's claim would wait for this one.
        tx.rollback().await?;
        return Ok(None);
    }
    let mut items = Vec::with_capacity(rows.len());
    let mut ran_low = 0;
    for row in &rows {
        items.push(ReservedItem {
            product_id: row.try_get("id")?,
            product_name: row.try_get("name")?,
            quantity: row.try_get("quantity")?,
            unit_price_minor: row.try_get("price_minor")?,
        });
        ran_low += u64::from(row.try_get::<bool, _>("ran_low")?);
    }
    tx.commit().await?;
    Ok(Some(Taken { items, ran_low }))
}

/// An event's outbox row, written as any other change's (its id, time and
/// trace context in their columns), at `now`.
fn outbox_row<P: Payload>(payload: &P, now: i64) -> Result<OutboxRow, InventoryError> {
    let mut event = Event::new(payload).map_err(|e| InventoryError::Storage(sqlx::Error::Encode(Box::new(e))))?;
    event.occurred_at_ms = now;
    Ok(OutboxRow::of(&event)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement fills the stock in at [`STOCK_PATH`]: both events
    /// must hold it there.
    #[test]
    fn stock_events_hold_the_stock_where_the_statement_writes_it() {
        let changed =
            Event::new(&ProductChanged { product_id: 1, change: "stock".into(), stock: Some(7) }).expect("an event");
        let low = Event::new(&StockLow { product_id: 1, stock: 7, threshold: 5 }).expect("an event");
        for event in [changed, low] {
            let json: serde_json::Value =
                serde_json::from_str(&OutboxRow::of(&event).expect("a row").payload).expect("JSON");
            let pointer = format!("/{}", STOCK_PATH.trim_matches(['{', '}']).replace(',', "/"));
            assert_eq!(json.pointer(&pointer), Some(&serde_json::json!(7)), "{json}");
        }
    }
}
