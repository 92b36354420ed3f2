//! The SQL of the order service. Every statement here runs unchanged on
//! SQLite and PostgreSQL; checkout's writes have a second form on
//! PostgreSQL, one statement a transaction ([`postgres`]). Every status
//! change is conditional on the status it expects, so concurrent writers
//! cannot both win.

use std::collections::HashMap;

use shop_storage::sqlx::{self, AnyConnection, Row, any::AnyRow};
use shop_storage::{Backend, Db, now_ms};

use shop_events::{Event, OrderCreated, OrderPaymentChanged, OrderStatusChanged, Payload, outbox};

use crate::OrderError;
use crate::domain::{
    Address, Delivery, DeliveryMethod, Item, Order, OrderLines, PaymentChange, PaymentMethod, PaymentState, PricedLine,
    Rejection, Status, StatusChange,
};

const ORDER_COLUMNS: &str = "id, user_id, status, total_minor, subtotal_minor, created_at_ms, updated_at_ms, \
     delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, \
     delivery_phone, delivery_method_id, delivery_method_name, delivery_minor, vat_rate_bp, payment_method, \
     payment_state, tracking_reference";

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

mod postgres;

fn status_of(value: &str) -> Result<Status, sqlx::Error> {
    Status::from_db(value).ok_or_else(|| sqlx::Error::Decode(format!("unknown order status {value:?}").into()))
}

fn payment_state_of(value: &str) -> Result<PaymentState, sqlx::Error> {
    PaymentState::from_db(value).ok_or_else(|| sqlx::Error::Decode(format!("unknown payment state {value:?}").into()))
}

fn order_from_row(row: &AnyRow) -> Result<Order, sqlx::Error> {
    let address = match row.try_get::<Option<String>, _>("delivery_name")? {
        None => None,
        Some(name) => {
            let field = |column: &str| -> Result<String, sqlx::Error> {
                Ok(row.try_get::<Option<String>, _>(column)?.unwrap_or_default())
            };
            Some(Address {
                name,
                line1: field("delivery_line1")?,
                line2: field("delivery_line2")?,
                postcode: field("delivery_postcode")?,
                city: field("delivery_city")?,
                country: field("delivery_country")?,
                phone: field("delivery_phone")?,
            })
        }
    };
    let method_id: Option<i64> = row.try_get("delivery_method_id")?;
    let method_name: Option<String> = row.try_get("delivery_method_name")?;
    let payment_method = row
        .try_get::<Option<String>, _>("payment_method")?
        .map(|value| {
            PaymentMethod::from_db(&value)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown payment method {value:?}").into()))
        })
        .transpose()?;
    let vat_rate_bp: Option<i64> = row.try_get("vat_rate_bp")?;
    Ok(Order {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        status: status_of(row.try_get("status")?)?,
        total_minor: row.try_get("total_minor")?,
        subtotal_minor: row.try_get("subtotal_minor")?,
        items: Vec::new(),
        history: Vec::new(),
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        address,
        delivery_method: method_id.map(|id| (id, method_name.unwrap_or_default())),
        delivery_minor: row.try_get("delivery_minor")?,
        vat_rate_bp: vat_rate_bp.and_then(|bp| u32::try_from(bp).ok()),
        payment_method,
        payment_state: payment_state_of(row.try_get("payment_state")?)?,
        payment_history: Vec::new(),
        tracking_reference: row.try_get("tracking_reference")?,
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
    /// What the idempotency key remembers of the request: the lines sent
    /// (with the delivery and payment, when given), or "cart" for any
    /// checkout of the cart.
    fn request(self, lines: &OrderLines, placement: &Placement) -> String {
        match self {
            Self::Items => {
                let mut request = lines.canonical();
                if let Some(delivery) = &placement.delivery {
                    let a = &delivery.address;
                    let address = [&a.name, &a.line1, &a.line2, &a.postcode, &a.city, &a.country, &a.phone];
                    // Debug-quoted, so no field can run into the next one.
                    request.push_str(&format!(";delivery={};address={address:?}", delivery.method.id));
                }
                if let Some(method) = placement.payment_method {
                    request.push_str(&format!(";payment={}", method.as_str()));
                }
                request
            }
            Self::Cart => "cart".to_owned(),
        }
    }
}

/// What an order is placed with beside its lines (`Default`: no delivery,
/// no payment method, no VAT).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub delivery: Option<Delivery>,
    pub payment_method: Option<PaymentMethod>,
    /// The shop's VAT rate at the time.
    pub vat_rate_bp: u32,
}

/// What recording an order found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new pending order.
    New(i64),
    /// The order an earlier request with the same idempotency key made.
    Existing(i64),
}

/// The columns a new order is written with, in the order
/// [`bind_new_order`] binds their values (`status` is the literal
/// `'pending'`, `updated_at_ms` the same value as `created_at_ms`).
const NEW_ORDER_COLUMNS: &str = "user_id, status, created_at_ms, updated_at_ms, from_cart, \
     delivery_name, delivery_line1, delivery_line2, delivery_postcode, delivery_city, delivery_country, \
     delivery_phone, delivery_method_id, delivery_method_name, delivery_price_minor, \
     delivery_free_above_minor, vat_rate_bp, payment_method";

/// Binds a new order's values as `$1` to `$16`: the customer, the time,
/// where it came from, the delivery's seven address fields and four
/// method fields, the VAT rate and the payment method.
fn bind_new_order<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    user_id: i64,
    now: i64,
    source: Source,
    placement: &Placement,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let address = placement.delivery.as_ref().map(|delivery| &delivery.address);
    let method = placement.delivery.as_ref().map(|delivery| &delivery.method);
    query
        .bind(user_id)
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
}

/// An event about to be written.
fn event<P: Payload>(payload: &P) -> Result<Event, OrderError> {
    Event::new(payload).map_err(|e| OrderError::Storage(sqlx::Error::Encode(Box::new(e))))
}

/// Writes an event to the outbox, in the transaction of its change.
async fn record<P: Payload>(tx: &mut Tx<'_>, payload: &P) -> Result<(), OrderError> {
    Ok(outbox::record(tx, &event(payload)?).await?)
}

/// Records `order.status_changed` for a change just made in `tx`.
async fn status_changed(
    tx: &mut Tx<'_>,
    order_id: i64,
    from: Status,
    to: Status,
    actor: &str,
) -> Result<(), OrderError> {
    let (user_id, total_minor, tracking_reference): (i64, i64, Option<String>) =
        sqlx::query_as("SELECT user_id, total_minor, tracking_reference FROM orders WHERE id = $1")
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
        tracking_reference: if to == Status::Shipped { tracking_reference } else { None },
    };
    record(tx, &change).await
}

/// Moves the payment state in `tx` (if it is still `from`), records the
/// change and its `order.payment_changed` event. False when it had moved.
async fn payment_moved(
    tx: &mut Tx<'_>,
    order_id: i64,
    from: PaymentState,
    to: PaymentState,
    actor: &str,
    now: i64,
) -> Result<bool, OrderError> {
    let moved =
        sqlx::query("UPDATE orders SET payment_state = $3, updated_at_ms = $4 WHERE id = $1 AND payment_state = $2")
            .bind(order_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("INSERT INTO order_payment_changes (order_id, state, actor, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(order_id)
        .bind(to.as_str())
        .bind(actor)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let (user_id,): (i64,) =
        sqlx::query_as("SELECT user_id FROM orders WHERE id = $1").bind(order_id).fetch_one(&mut **tx).await?;
    let change = OrderPaymentChanged {
        order_id,
        user_id,
        from: from.as_str().into(),
        to: to.as_str().into(),
        actor: actor.into(),
    };
    record(tx, &change).await?;
    Ok(true)
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
    placement: &Placement,
) -> Result<Recorded, OrderError> {
    db.observe("insert_pending", async move {
        let now = now_ms();
        if db.backend == Backend::Postgres {
            return postgres::insert_pending(db, user_id, lines, actor, idempotency_key, source, placement, now).await;
        }
        let request = source.request(lines, placement);
        let mut tx = db.pool.begin().await?;
        let sql = format!(
            "INSERT INTO orders ({NEW_ORDER_COLUMNS}) VALUES ($1, 'pending', $2, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16) RETURNING id"
        );
        let order_id: i64 = bind_new_order(sqlx::query(sqlx::AssertSqlSafe(sql)), user_id, now, source, placement)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
        // Every line in one statement: a round trip per line costs CPU on
        // both sides. Placeholders only ($1 the order, then a pair a line).
        let values = (0..lines.iter().count())
            .map(|n| format!("($1, ${}, ${})", 2 * n + 2, 2 * n + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let mut items = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO order_items (order_id, product_id, quantity) VALUES {values}"
        )))
        .bind(order_id);
        for (product_id, quantity) in lines.iter() {
            items = items.bind(product_id).bind(quantity);
        }
        items.execute(&mut *tx).await?;
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
                return existing_order_for_key(&mut tx, user_id, key, &request).await;
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

/// The order a key already claimed stands for, if `request` is the one it
/// was claimed for; another request under the same key is refused.
async fn existing_order_for_key(
    conn: &mut AnyConnection,
    user_id: i64,
    key: &str,
    request: &str,
) -> Result<Recorded, OrderError> {
    let (existing_request, existing): (String, i64) =
        sqlx::query_as("SELECT request, order_id FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user_id)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    if existing_request == request { Ok(Recorded::Existing(existing)) } else { Err(OrderError::IdempotencyKeyReused) }
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

/// What confirming an order found.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    /// The order's status afterwards: anything but `confirmed` means the
    /// reservation arrived for an order that had moved on, and its stock
    /// must go back.
    pub status: Status,
    /// The order as this call confirmed it, complete (items, history,
    /// payment history) when the caller said who placed it; `None` when
    /// it was not this call that confirmed it, or when something else may
    /// have touched it since it was placed: then read it.
    pub order: Option<Order>,
}

/// Stores inventory's reservation: the lines' names and prices, the
/// subtotal, the delivery cost (from the method's price and threshold the
/// order recorded, against this subtotal), the total, and `confirmed` if the
/// order is still pending. Returns the status the order has afterwards;
/// anything but `confirmed` means the reservation arrived for an order that
/// had moved on, and its stock must go back.
pub async fn confirm(db: &Db, order_id: i64, lines: &[PricedLine], subtotal_minor: i64) -> Result<Status, OrderError> {
    Ok(confirm_placed(db, order_id, lines, subtotal_minor, None).await?.status)
}

/// The confirmed order's delivery cost, from the method's price and free
/// threshold recorded on the order against the subtotal `$2`: SQL for
/// `domain::delivery_cost` (no method, no cost).
const DELIVERY_COST_SQL: &str = "CASE WHEN delivery_price_minor IS NULL THEN 0 \
     WHEN delivery_free_above_minor IS NOT NULL AND delivery_free_above_minor <= $2 THEN 0 \
     ELSE delivery_price_minor END";

/// [`confirm`], which also answers with the order when this call confirmed
/// it. `placed_by` is the actor who recorded the pending order in the same
/// request: its history is then that change and this one, known without
/// reading it (a pending order has no other change: every move leaves
/// `pending`, and an unpaid one has no payment change).
///
/// The usual case reads nothing: on PostgreSQL it is one statement
/// ([`postgres::confirm`]); on SQLite one statement on the order's row (its
/// status, totals, stock state, and the columns of the answer by
/// `RETURNING`), one for all its lines, the change and the event.
pub async fn confirm_placed(
    db: &Db,
    order_id: i64,
    lines: &[PricedLine],
    subtotal_minor: i64,
    placed_by: Option<&str>,
) -> Result<Confirmed, OrderError> {
    db.observe("confirm", async move {
        let now = now_ms();
        // Lines always come with a reservation; none would be no VALUES.
        let confirmed = if db.backend == Backend::Postgres && !lines.is_empty() {
            postgres::confirm(db, order_id, lines, subtotal_minor, now).await?
        } else {
            confirm_statement_by_statement(db, order_id, lines, subtotal_minor, now).await?
        };
        let Some(mut order) = confirmed else {
            let mut tx = db.pool.begin().await?;
            let status = not_confirmed(&mut tx, order_id, subtotal_minor).await?;
            tx.commit().await?;
            return Ok(Confirmed { status, order: None });
        };
        crate::metrics::confirmed(order.total_minor);

        let complete = match placed_by {
            Some(actor) if order.payment_state == PaymentState::Unpaid => {
                let mut items: Vec<Item> = lines
                    .iter()
                    .map(|line| Item {
                        product_id: line.product_id,
                        quantity: line.quantity,
                        product_name: Some(line.product_name.clone()),
                        unit_price_minor: Some(line.unit_price_minor),
                    })
                    .collect();
                items.sort_by_key(|item| item.product_id);
                order.items = items;
                order.history = vec![
                    StatusChange { status: Status::Pending, actor: actor.to_owned(), at_ms: order.created_at_ms },
                    StatusChange { status: Status::Confirmed, actor: crate::domain::SYSTEM.to_owned(), at_ms: now },
                ];
                Some(order)
            }
            _ => None,
        };
        Ok(Confirmed { status: Status::Confirmed, order: complete })
    })
    .await
}

/// The order's update that confirms it: pending, with a total that fits
/// (else the careful way says why not). Inventory holds stock for this
/// order now. `$1` the order, `$2` the subtotal, `$3` now, `$4` the largest
/// delivery cost that fits.
fn confirm_order_sql() -> String {
    format!(
        "UPDATE orders SET status = 'confirmed', \
             stock_state = CASE WHEN stock_state = 'none' THEN 'reserved' ELSE stock_state END, \
             subtotal_minor = $2, delivery_minor = {DELIVERY_COST_SQL}, \
             total_minor = $2 + {DELIVERY_COST_SQL}, updated_at_ms = $3 \
         WHERE id = $1 AND status = 'pending' AND ({DELIVERY_COST_SQL}) <= $4 \
         RETURNING {ORDER_COLUMNS}, from_cart"
    )
}

/// [`confirm_placed`]'s writes a statement at a time (SQLite): the order
/// as confirmed, or `None` with nothing written (missing, no longer
/// pending, or a total that would not fit).
async fn confirm_statement_by_statement(
    db: &Db,
    order_id: i64,
    lines: &[PricedLine],
    subtotal_minor: i64,
    now: i64,
) -> Result<Option<Order>, OrderError> {
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(confirm_order_sql()))
        .bind(order_id)
        .bind(subtotal_minor)
        .bind(now)
        .bind(i64::MAX - subtotal_minor.max(0))
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        // The update matched no row: nothing changed or locked.
        tx.rollback().await?;
        return Ok(None);
    };
    let order = order_from_row(&row)?;
    let from_cart: i64 = row.try_get("from_cart")?;

    // Every line's name, price and quantity in one statement (the
    // lines are the order's: inventory reserves what it was asked).
    let values = (0..lines.len())
        .map(|n| format!("(${}, ${}, ${}, ${})", 4 * n + 2, 4 * n + 3, 4 * n + 4, 4 * n + 5))
        .collect::<Vec<_>>()
        .join(", ");
    if !lines.is_empty() {
        let sql = format!(
            "UPDATE order_items SET product_name = v.column2, unit_price_minor = v.column3, quantity = v.column4 \
             FROM (VALUES {values}) AS v WHERE order_items.order_id = $1 AND order_items.product_id = v.column1"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(order_id);
        for line in lines {
            query =
                query.bind(line.product_id).bind(&line.product_name).bind(line.unit_price_minor).bind(line.quantity);
        }
        query.execute(&mut *tx).await?;
    }
    if from_cart == 1 {
        // Placed from the cart: what it ordered leaves the cart with
        // the order's confirmation, never for a rejected order.
        let ordered: Vec<(i64, i64)> = lines.iter().map(|line| (line.product_id, line.quantity)).collect();
        crate::cart::take_ordered(&mut tx, order.user_id, &ordered).await?;
    }
    record_change(&mut tx, order_id, Status::Confirmed, crate::domain::SYSTEM, now).await?;
    record(&mut tx, &confirmed_event(order_id, order.user_id, order.total_minor)).await?;
    tx.commit().await?;
    Ok(Some(order))
}

/// `order.status_changed` for an order just confirmed.
fn confirmed_event(order_id: i64, user_id: i64, total_minor: i64) -> OrderStatusChanged {
    OrderStatusChanged {
        order_id,
        user_id,
        from: Status::Pending.as_str().into(),
        to: Status::Confirmed.as_str().into(),
        actor: crate::domain::SYSTEM.into(),
        total_minor,
        tracking_reference: None,
    }
}

/// The rare ways a reservation finds its order: no longer pending (it is
/// marked as holding stock, and keeps its status), missing, or with a total
/// too large.
async fn not_confirmed(tx: &mut Tx<'_>, order_id: i64, subtotal_minor: i64) -> Result<Status, OrderError> {
    let (status, price, free_above): (String, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT status, delivery_price_minor, delivery_free_above_minor FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(OrderError::NotFound(order_id))?;
    let status = status_of(&status)?;
    // A pending order that the statement above did not confirm has a total
    // too large: refused here, as for any order.
    let delivery_minor = price.map_or(0, |price| crate::domain::delivery_cost(price, free_above, subtotal_minor));
    subtotal_minor.checked_add(delivery_minor).ok_or(OrderError::TotalOverflow)?;
    // Inventory holds stock for this order now, whatever its status.
    sqlx::query("UPDATE orders SET stock_state = 'reserved' WHERE id = $1 AND stock_state = 'none'")
        .bind(order_id)
        .execute(&mut **tx)
        .await?;
    Ok(status)
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

/// Moves an order from `from` to `to` if it is still in `from`, with the
/// tracking reference when shipping. A cash-on-delivery order still unpaid
/// becomes paid as it is delivered, in the same transaction.
/// False when someone else changed it first.
pub async fn transition(
    db: &Db,
    order_id: i64,
    from: Status,
    to: Status,
    actor: &str,
    tracking_reference: Option<&str>,
) -> Result<bool, OrderError> {
    db.observe("transition", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE orders SET status = $3, updated_at_ms = $4, \
                 tracking_reference = CASE WHEN $3 = 'shipped' THEN $5 ELSE tracking_reference END \
             WHERE id = $1 AND status = $2",
        )
        .bind(order_id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(now)
        .bind(tracking_reference)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        record_change(&mut tx, order_id, to, actor, now).await?;
        status_changed(&mut tx, order_id, from, to, actor).await?;
        if to == Status::Delivered {
            let (method,): (Option<String>,) = sqlx::query_as("SELECT payment_method FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_one(&mut *tx)
                .await?;
            if method.as_deref() == Some(PaymentMethod::CashOnDelivery.as_str()) {
                // The carrier collected the money on delivery (a no-op if
                // an admin marked it paid already).
                payment_moved(&mut tx, order_id, PaymentState::Unpaid, PaymentState::Paid, actor, now).await?;
            }
        }
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
        let payments =
            sqlx::query("SELECT state, actor, at_ms FROM order_payment_changes WHERE order_id = $1 ORDER BY id")
                .bind(order_id)
                .fetch_all(&db.pool)
                .await?;
        order.payment_history = payments
            .iter()
            .map(|row| {
                Ok(PaymentChange {
                    state: payment_state_of(row.try_get("state")?)?,
                    actor: row.try_get("actor")?,
                    at_ms: row.try_get("at_ms")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(order)
    })
    .await
}

/// Which orders a list holds: one user's or everyone's; rejected ones
/// (refused checkouts, kept for the record) only when `with_rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub user_id: Option<i64>,
    pub with_rejected: bool,
}

/// Where a page of a list (newest first) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The newest orders.
    First,
    /// The orders just older than this id.
    After(i64),
    /// The orders just newer than this id.
    Before(i64),
    /// The oldest orders.
    Last,
    /// After skipping this many of the newest (old clients' page numbers;
    /// the service bounds it, as skipping costs what is skipped).
    Skip(i64),
}

/// A page of orders, newest first, and what lies around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub orders: Vec<Order>,
    /// The list holds orders newer than the page's first (a page before).
    pub newer: bool,
    /// The list holds orders older than the page's last (a page after).
    pub older: bool,
    /// How many orders the list holds, counted up to [`COUNT_BOUND`] only.
    pub total: i64,
    /// `total` is [`COUNT_BOUND`] and the list holds more.
    pub total_is_lower_bound: bool,
}

/// Counting stops here, so no page costs a scan of every order.
pub const COUNT_BOUND: i64 = 1_000;

/// A statement over the orders a list holds: SQL built from constants and
/// parameter numbers only, with its parameters (all integers).
struct Select {
    sql: String,
    params: Vec<i64>,
}

impl Select {
    /// `SELECT columns FROM orders WHERE <scope> [AND id <op> bound]`. The
    /// rejected orders' condition is literal SQL, not a parameter, so
    /// PostgreSQL and SQLite match it to orders_user_placed_idx.
    fn scoped(scope: Scope, columns: &str, bound: Option<(&str, i64)>) -> Self {
        let mut select = Self { sql: String::new(), params: Vec::new() };
        let mut conditions = Vec::new();
        if let Some(user_id) = scope.user_id {
            conditions.push(format!("user_id = {}", select.param(user_id)));
        }
        if !scope.with_rejected {
            conditions.push("status <> 'rejected'".to_owned());
        }
        if let Some((op, id)) = bound {
            conditions.push(format!("id {op} {}", select.param(id)));
        }
        select.sql = format!("SELECT {columns} FROM orders");
        if !conditions.is_empty() {
            select.sql.push_str(" WHERE ");
            select.sql.push_str(&conditions.join(" AND "));
        }
        select
    }

    fn param(&mut self, value: i64) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// Ordered by id (so every backend walks an index in that order), at
    /// most `limit` rows, skipping `offset`.
    fn ordered(mut self, descending: bool, limit: i64, offset: i64) -> Self {
        let limit = self.param(limit);
        self.sql.push_str(if descending { " ORDER BY id DESC LIMIT " } else { " ORDER BY id LIMIT " });
        self.sql.push_str(&limit);
        if offset > 0 {
            let offset = self.param(offset);
            self.sql.push_str(" OFFSET ");
            self.sql.push_str(&offset);
        }
        self
    }

    async fn fetch_all(self, db: &Db) -> sqlx::Result<Vec<AnyRow>> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for param in self.params {
            query = query.bind(param);
        }
        query.fetch_all(&db.pool).await
    }

    async fn exists(self, db: &Db) -> sqlx::Result<bool> {
        Ok(!self.fetch_all(db).await?.is_empty())
    }
}

/// A page of `limit` orders at `position` in the list of `scope`, newest
/// first, with their items (one query for all the page's items, not one per
/// order). Every statement reads a range of an index as long as the page
/// (or, for the count, [`COUNT_BOUND`]), never the orders before the page:
/// a page costs the same at any depth and in a shop of any size.
pub async fn list(db: &Db, scope: Scope, position: Position, limit: i64) -> Result<Listed, OrderError> {
    db.observe("list", async move {
        // One row more than the page says whether there is more beyond it;
        // `behind` says whether orders may lie on the side the page was
        // read from (a cursor or a skip was given), to be looked for.
        let (page, behind, descending) = match position {
            Position::First => (Some(Select::scoped(scope, ORDER_COLUMNS, None)), false, true),
            Position::After(id) => (Some(Select::scoped(scope, ORDER_COLUMNS, Some(("<", id)))), true, true),
            Position::Before(id) => (Some(Select::scoped(scope, ORDER_COLUMNS, Some((">", id)))), true, false),
            Position::Last => (Some(Select::scoped(scope, ORDER_COLUMNS, None)), false, false),
            Position::Skip(offset) => {
                // Only the index is read to skip; then the page is a range.
                let first = Select::scoped(scope, "id", None).ordered(true, 1, offset).fetch_all(db).await?;
                let first: Option<i64> = first.first().map(|row| row.try_get("id")).transpose()?;
                (first.map(|id| Select::scoped(scope, ORDER_COLUMNS, Some(("<=", id)))), offset > 0, true)
            }
        };
        let rows = match page {
            Some(page) => page.ordered(descending, limit + 1, 0).fetch_all(db).await?,
            None => Vec::new(),
        };
        let mut orders = rows.iter().map(order_from_row).collect::<Result<Vec<_>, _>>()?;
        let more = i64::try_from(orders.len()).unwrap_or(i64::MAX) > limit;
        orders.truncate(usize::try_from(limit).unwrap_or(0));
        if !descending {
            orders.reverse();
        }
        let (newer, older) = match (orders.first(), orders.last()) {
            // Nothing at this position (a cursor past either end): no
            // neighbours to point at; the first and last pages remain.
            (None, _) | (_, None) => (false, false),
            (Some(newest), Some(_)) if descending => {
                let probe = Select::scoped(scope, "id", Some((">", newest.id))).ordered(false, 1, 0);
                (behind && probe.exists(db).await?, more)
            }
            (Some(_), Some(oldest)) => {
                let probe = Select::scoped(scope, "id", Some(("<", oldest.id))).ordered(true, 1, 0);
                (more, behind && probe.exists(db).await?)
            }
        };
        attach_items(db, &mut orders).await?;

        // Counts at most one more than the bound: how many, or "more than".
        let counted = Select::scoped(scope, "1", None).ordered(true, COUNT_BOUND + 1, 0);
        let count = Select { sql: format!("SELECT COUNT(*) FROM ({}) AS bounded", counted.sql), ..counted };
        let (total,): (i64,) = {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(count.sql));
            for param in count.params {
                query = query.bind(param);
            }
            query.fetch_one(&db.pool).await?
        };
        Ok(Listed { orders, newer, older, total: total.min(COUNT_BOUND), total_is_lower_bound: total > COUNT_BOUND })
    })
    .await
}

/// Fills in the items of `orders` in one query.
async fn attach_items(db: &Db, orders: &mut [Order]) -> sqlx::Result<()> {
    if orders.is_empty() {
        return Ok(());
    }
    // Placeholders only; the ids are bound.
    let placeholders = (1..=orders.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT order_id, product_id, quantity, product_name, unit_price_minor FROM order_items \
         WHERE order_id IN ({placeholders}) ORDER BY order_id, product_id"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for order in orders.iter() {
        query = query.bind(order.id);
    }
    let mut items: HashMap<i64, Vec<Item>> = HashMap::new();
    for row in &query.fetch_all(&db.pool).await? {
        let (order_id, item) = item_from_row(row)?;
        items.entry(order_id).or_default().push(item);
    }
    for order in orders {
        order.items = items.remove(&order.id).unwrap_or_default();
    }
    Ok(())
}

/// Pending orders last touched before `before_ms`, oldest first: work for
/// the recovery pass.
pub async fn stale_pending(
    db: &Db,
    before_ms: i64,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(i64, OrderLines)>, OrderError> {
    db.observe("stale_pending", async move {
        // One statement for a whole batch and its lines (`orders_status_idx`
        // finds the pending orders without a scan).
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT i.order_id, i.product_id, i.quantity FROM order_items i \
             WHERE i.order_id IN (SELECT id FROM orders \
                 WHERE status = 'pending' AND updated_at_ms < $1 AND id > $2 ORDER BY id LIMIT $3) \
             ORDER BY i.order_id, i.product_id",
        )
        .bind(before_ms)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
        let mut pending: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
        for (order_id, product_id, quantity) in rows {
            match pending.last_mut() {
                Some((last, lines)) if *last == order_id => lines.push((product_id, quantity)),
                _ => pending.push((order_id, vec![(product_id, quantity)])),
            }
        }
        pending.into_iter().map(|(order_id, lines)| Ok((order_id, OrderLines::parse(lines)?))).collect()
    })
    .await
}

/// Cancelled or rejected orders whose stock inventory may still hold.
pub async fn unreleased(db: &Db, after_id: i64, limit: i64) -> Result<Vec<i64>, OrderError> {
    db.observe("unreleased", async move {
        let ids: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM orders \
         WHERE id > $1 AND ((status IN ('cancelled', 'rejected') AND stock_state = 'reserved') \
            OR (status = 'cancelled' AND stock_state = 'none')) \
         ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    })
    .await
}

/// Moves an order's payment from `from` to `to` if the order is still in
/// `status` and its payment in `from`. False when either changed first.
pub async fn payment_transition(
    db: &Db,
    order_id: i64,
    status: Status,
    from: PaymentState,
    to: PaymentState,
    actor: &str,
) -> Result<bool, OrderError> {
    db.observe("payment_transition", async move {
        let now = now_ms();
        let mut tx = db.pool.begin().await?;
        // Holds the order's row for this transaction (a status change
        // waits), and checks the status it was decided on.
        let held = sqlx::query("UPDATE orders SET updated_at_ms = $3 WHERE id = $1 AND status = $2")
            .bind(order_id)
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if held.rows_affected() == 0 || !payment_moved(&mut tx, order_id, from, to, actor, now).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    })
    .await
}

// --- Delivery methods ---

fn method_from_row(row: &AnyRow) -> Result<DeliveryMethod, sqlx::Error> {
    Ok(DeliveryMethod {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price_minor: row.try_get("price_minor")?,
        free_above_minor: row.try_get("free_above_minor")?,
        active: row.try_get::<i64, _>("active")? == 1,
    })
}

const METHOD_COLUMNS: &str = "id, name, price_minor, free_above_minor, active";

/// The delivery methods in id order: the active ones, or all.
pub async fn delivery_methods(db: &Db, include_inactive: bool) -> Result<Vec<DeliveryMethod>, OrderError> {
    db.observe("delivery_methods", async move {
        let sql = if include_inactive {
            format!("SELECT {METHOD_COLUMNS} FROM delivery_methods ORDER BY id")
        } else {
            format!("SELECT {METHOD_COLUMNS} FROM delivery_methods WHERE active = 1 ORDER BY id")
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&db.pool).await?;
        Ok(rows.iter().map(method_from_row).collect::<Result<_, _>>()?)
    })
    .await
}

pub async fn delivery_method(db: &Db, id: i64) -> Result<DeliveryMethod, OrderError> {
    db.observe("delivery_method", async move {
        let sql = format!("SELECT {METHOD_COLUMNS} FROM delivery_methods WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&db.pool).await?;
        row.as_ref().map(method_from_row).transpose()?.ok_or(OrderError::DeliveryMethodNotFound(id))
    })
    .await
}

pub async fn create_delivery_method(
    db: &Db,
    name: &str,
    price_minor: i64,
    free_above_minor: Option<i64>,
    active: bool,
) -> Result<DeliveryMethod, OrderError> {
    let id = db
        .observe("create_delivery_method", async move {
            let now = now_ms();
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO delivery_methods (name, price_minor, free_above_minor, active, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            )
            .bind(name)
            .bind(price_minor)
            .bind(free_above_minor)
            .bind(i64::from(active))
            .bind(now)
            .fetch_one(&db.pool)
            .await?;
            Ok::<_, OrderError>(id)
        })
        .await?;
    delivery_method(db, id).await
}

/// What an update changes; `None` keeps a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodChanges {
    pub name: Option<String>,
    pub price_minor: Option<i64>,
    /// `Some(None)` clears the threshold.
    pub free_above_minor: Option<Option<i64>>,
    pub active: Option<bool>,
}

pub async fn update_delivery_method(db: &Db, id: i64, changes: &MethodChanges) -> Result<DeliveryMethod, OrderError> {
    db.observe("update_delivery_method", async move {
        // One statement; each field kept unless a new value is given.
        let updated = sqlx::query(
            "UPDATE delivery_methods SET \
                 name = CASE WHEN $2 = 1 THEN $3 ELSE name END, \
                 price_minor = CASE WHEN $4 = 1 THEN $5 ELSE price_minor END, \
                 free_above_minor = CASE WHEN $6 = 1 THEN $7 ELSE free_above_minor END, \
                 active = CASE WHEN $8 = 1 THEN $9 ELSE active END, \
                 updated_at_ms = $10 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(changes.name.is_some()))
        .bind(changes.name.clone().unwrap_or_default())
        .bind(i64::from(changes.price_minor.is_some()))
        .bind(changes.price_minor.unwrap_or_default())
        .bind(i64::from(changes.free_above_minor.is_some()))
        .bind(changes.free_above_minor.flatten())
        .bind(i64::from(changes.active.is_some()))
        .bind(i64::from(changes.active.unwrap_or_default()))
        .bind(now_ms())
        .execute(&db.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(OrderError::DeliveryMethodNotFound(id));
        }
        Ok(())
    })
    .await?;
    delivery_method(db, id).await
}

/// For each user: orders placed (not counting rejected ones), and the
/// totals of their confirmed, shipped and delivered orders not refunded.
pub async fn summarize_customers(db: &Db, user_ids: &[i64]) -> Result<HashMap<i64, (i64, i64)>, OrderError> {
    db.observe("summarize_customers", async move {
        let mut summaries = HashMap::new();
        if user_ids.is_empty() {
            return Ok(summaries);
        }
        // Placeholders only; the ids are bound.
        let placeholders = (1..=user_ids.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT user_id, \
                 COUNT(*) AS orders_count, \
                 CAST(COALESCE(SUM(CASE WHEN status IN ('confirmed', 'shipped', 'delivered') \
                     AND payment_state <> 'refunded' THEN total_minor ELSE 0 END), 0) AS BIGINT) AS spent_minor \
             FROM orders WHERE status <> 'rejected' AND user_id IN ({placeholders}) GROUP BY user_id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in user_ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&db.pool).await? {
            let user_id: i64 = row.try_get("user_id")?;
            let count: i64 = row.try_get("orders_count")?;
            let spent: i64 = row.try_get("spent_minor")?;
            summaries.insert(user_id, (count, spent));
        }
        Ok(summaries)
    })
    .await
}
