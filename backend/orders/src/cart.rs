//! The cart kept for a signed-in customer: what they mean to order, one
//! line per product, bounded as one order is (shop-order-lines) and, at
//! every change, by the stock on hand that inventory reports.
//!
//! Every change is one SQL statement on the line's row (an upsert adding to
//! the quantity, conditional on the bound), never a read followed by an
//! absolute write, so concurrent adds from two tabs or devices are all
//! counted. The stock a change is bounded by is read just before it; stock
//! moves on afterwards, so each answer says how every line stands now
//! ([`Availability`]), and checkout orders only the lines that can be.
//!
//! A cart of a deleted account is left in place and is harmless: user ids
//! are never reused (AUTOINCREMENT / identity columns), no one can sign in
//! as a deleted user, and nothing reads a cart but its owner.

use std::collections::{BTreeMap, HashMap};

use shop_order_lines::{MAX_LINES, MAX_QUANTITY, OrderLines};
use shop_proto::inventory::v1 as inventory;
use shop_proto::orders::v1 as pb;
use shop_storage::sqlx;
use shop_storage::{Db, now_ms};

use crate::OrderError;
use crate::domain::parse_id;
use crate::service::OrderService;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// A product as inventory has it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Stocked {
    pub name: String,
    pub stock: i64,
    pub price_minor: i64,
    /// The whole answer, passed on with the cart.
    pub product: inventory::Product,
}

/// How a line stands against the stock on hand now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Checkout orders it.
    Available,
    /// Fewer in stock than the line holds.
    Short,
    OutOfStock,
    /// The product was deleted.
    NotSold,
}

impl Availability {
    fn of(quantity: i64, product: Option<&Stocked>) -> Self {
        match product {
            None => Self::NotSold,
            Some(product) if product.stock <= 0 => Self::OutOfStock,
            Some(product) if product.stock < quantity => Self::Short,
            Some(_) => Self::Available,
        }
    }
}

/// A line as the cart table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub product_id: i64,
    pub quantity: i64,
    pub product_name: String,
}

/// A line with how it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub availability: Availability,
    pub available: i64,
    pub unit_price_minor: i64,
    pub product: Option<inventory::Product>,
}

/// The kept lines with today's names, prices and availability.
pub fn assess(kept: Vec<Kept>, products: &HashMap<i64, Stocked>) -> Vec<Line> {
    kept.into_iter()
        .map(|line| {
            let product = products.get(&line.product_id);
            Line {
                product_id: line.product_id,
                availability: Availability::of(line.quantity, product),
                product_name: product.map_or(line.product_name, |p| p.name.clone()),
                quantity: line.quantity,
                available: product.map_or(0, |p| p.stock.max(0)),
                unit_price_minor: product.map_or(0, |p| p.price_minor),
                product: product.map(|p| p.product.clone()),
            }
        })
        .collect()
}

/// The most a line of this product may hold: its stock, within one order's limit.
fn cap(product: &Stocked) -> i64 {
    product.stock.clamp(0, MAX_QUANTITY)
}

/// A guest line MergeCart did not take whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub product_id: i64,
    pub product_name: String,
    pub wanted: i64,
    pub quantity: i64,
    pub available: i64,
    pub cause: pb::cart_adjustment::Cause,
}

// --- SQL (unchanged on SQLite and PostgreSQL) ---

pub async fn kept(db: &Db, user_id: i64) -> Result<Vec<Kept>, OrderError> {
    db.observe("cart_lines", async move {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT product_id, quantity, product_name FROM cart_items WHERE user_id = $1 ORDER BY product_id",
        )
        .bind(user_id)
        .fetch_all(&db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, quantity, product_name)| Kept { product_id, quantity, product_name })
            .collect())
    })
    .await
}

/// Sets a line's quantity (it is inserted if new).
async fn store_set(db: &Db, user_id: i64, product_id: i64, quantity: i64, name: &str) -> Result<(), OrderError> {
    db.observe("cart_set", async move {
        sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity, product_name, added_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, product_id) DO UPDATE \
             SET quantity = excluded.quantity, product_name = excluded.product_name, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(quantity)
        .bind(name)
        .bind(now_ms())
        .execute(&db.pool)
        .await?;
        Ok(())
    })
    .await
}

async fn store_remove(db: &Db, user_id: i64, product_id: i64) -> Result<(), OrderError> {
    db.observe("cart_remove", async move {
        sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2")
            .bind(user_id)
            .bind(product_id)
            .execute(&db.pool)
            .await?;
        Ok(())
    })
    .await
}

/// Adds `quantity` to a line in one statement, if the line then holds at
/// most `cap`; `false` when it would not (nothing changed). A new line
/// needs `quantity <= cap`, checked by the caller.
async fn store_add(
    db: &Db,
    user_id: i64,
    product_id: i64,
    quantity: i64,
    cap: i64,
    name: &str,
) -> Result<bool, OrderError> {
    db.observe("cart_add", async move {
        let added = sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity, product_name, added_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, product_id) DO UPDATE \
             SET quantity = cart_items.quantity + excluded.quantity, product_name = excluded.product_name, \
                 updated_at_ms = excluded.updated_at_ms \
             WHERE cart_items.quantity + excluded.quantity <= $6",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(quantity)
        .bind(name)
        .bind(now_ms())
        .bind(cap)
        .execute(&db.pool)
        .await?;
        Ok(added.rows_affected() == 1)
    })
    .await
}

/// Adds `quantity` to a line, cut to `cap` but never lowering what the line
/// held, in one statement; returns what the line holds afterwards.
async fn store_merge(
    db: &Db,
    user_id: i64,
    product_id: i64,
    quantity: i64,
    cap: i64,
    name: &str,
) -> Result<i64, OrderError> {
    db.observe("cart_merge", async move {
        let (held,): (i64,) = sqlx::query_as(
            "INSERT INTO cart_items (user_id, product_id, quantity, product_name, added_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (user_id, product_id) DO UPDATE \
             SET quantity = CASE \
                     WHEN cart_items.quantity >= $6 THEN cart_items.quantity \
                     WHEN cart_items.quantity + excluded.quantity > $6 THEN $6 \
                     ELSE cart_items.quantity + excluded.quantity END, \
                 product_name = excluded.product_name, updated_at_ms = excluded.updated_at_ms \
             RETURNING quantity",
        )
        .bind(user_id)
        .bind(product_id)
        .bind(quantity.min(cap))
        .bind(name)
        .bind(now_ms())
        .bind(cap)
        .fetch_one(&db.pool)
        .await?;
        Ok(held)
    })
    .await
}

/// Takes an order's quantities out of its customer's cart, in the
/// transaction that confirms the order. Units added meanwhile stay. (On
/// PostgreSQL the confirming statement does the same itself:
/// `store::postgres::confirm`.)
pub(crate) async fn take_ordered(tx: &mut Tx<'_>, user_id: i64, lines: &[(i64, i64)]) -> sqlx::Result<()> {
    for &(product_id, quantity) in lines {
        sqlx::query("DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2 AND quantity <= $3")
            .bind(user_id)
            .bind(product_id)
            .bind(quantity)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE cart_items SET quantity = quantity - $3 WHERE user_id = $1 AND product_id = $2")
            .bind(user_id)
            .bind(product_id)
            .bind(quantity)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

// --- What the service does with them ---

/// The signed-in customer a cart call is for; anyone else is refused.
pub fn owner(caller: &shop_grpc::identity::Caller) -> Result<i64, tonic::Status> {
    match caller {
        shop_grpc::identity::Caller::User { id, .. } => Ok(*id),
        other => other.require(false).map(|()| 0),
    }
}

fn quantity_invalid(range: &str) -> OrderError {
    OrderError::invalid("quantity", format!("must be between {range} and {MAX_QUANTITY}"))
}

impl OrderService {
    /// Today's products, in calls of at most 100 ids (inventory's limit);
    /// ids inventory does not know are left out.
    pub(crate) async fn stocked(&self, ids: Vec<i64>) -> Result<HashMap<i64, Stocked>, OrderError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_LINES) {
            let request = inventory::GetProductsRequest { ids: chunk.to_vec() };
            let answer =
                self.inventory().get_products(request).await.map_err(|status| OrderError::from_inventory(&status))?;
            for product in answer.into_inner().products {
                let stocked = Stocked {
                    name: product.name.clone(),
                    stock: product.stock,
                    price_minor: product.price_minor,
                    product: product.clone(),
                };
                found.insert(product.id, stocked);
            }
        }
        Ok(found)
    }

    /// The customer's cart, with `extra` products looked up in the same call.
    async fn cart_with(&self, user_id: i64, extra: &[i64]) -> Result<(Vec<Kept>, HashMap<i64, Stocked>), OrderError> {
        let kept = kept(self.db(), user_id).await?;
        let mut ids: Vec<i64> = kept.iter().map(|line| line.product_id).collect();
        ids.extend(extra.iter().filter(|id| !ids.contains(id)).collect::<Vec<_>>());
        let products = self.stocked(ids).await?;
        Ok((kept, products))
    }

    /// The customer's cart as it stands now.
    pub(crate) async fn cart(&self, user_id: i64) -> Result<Vec<Line>, OrderError> {
        let (kept, products) = self.cart_with(user_id, &[]).await?;
        Ok(assess(kept, &products))
    }

    /// The cart read again after a change, priced with what was looked up for it.
    async fn cart_after(&self, user_id: i64, products: &HashMap<i64, Stocked>) -> Result<Vec<Line>, OrderError> {
        Ok(assess(kept(self.db(), user_id).await?, products))
    }

    pub(crate) async fn cart_set(&self, user_id: i64, product_id: i64, quantity: i64) -> Result<Vec<Line>, OrderError> {
        let product_id = parse_id("product_id", product_id)?;
        if !(0..=MAX_QUANTITY).contains(&quantity) {
            return Err(quantity_invalid("0"));
        }
        let (kept, products) = self.cart_with(user_id, &[product_id]).await?;
        if quantity == 0 {
            // Taking a line out needs no product: it may be one no longer sold.
            store_remove(self.db(), user_id, product_id).await?;
            return self.cart_after(user_id, &products).await;
        }
        let product = products.get(&product_id).ok_or(OrderError::ProductNotFound(product_id))?;
        if quantity > product.stock {
            return Err(OrderError::StockShort { product_id, requested: quantity, available: product.stock.max(0) });
        }
        refuse_new_line_beyond_limit(&kept, product_id)?;
        store_set(self.db(), user_id, product_id, quantity, &product.name).await?;
        self.cart_after(user_id, &products).await
    }

    pub(crate) async fn cart_add(&self, user_id: i64, product_id: i64, quantity: i64) -> Result<Vec<Line>, OrderError> {
        let product_id = parse_id("product_id", product_id)?;
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(quantity_invalid("1"));
        }
        let (kept, products) = self.cart_with(user_id, &[product_id]).await?;
        let product = products.get(&product_id).ok_or(OrderError::ProductNotFound(product_id))?;
        let held = kept.iter().find(|line| line.product_id == product_id).map_or(0, |line| line.quantity);
        let short =
            || OrderError::StockShort { product_id, requested: held + quantity, available: product.stock.max(0) };
        if held + quantity > MAX_QUANTITY && held + quantity <= product.stock {
            return Err(OrderError::invalid("quantity", format!("a cart holds at most {MAX_QUANTITY} of a product")));
        }
        if quantity > cap(product) {
            return Err(short());
        }
        refuse_new_line_beyond_limit(&kept, product_id)?;
        // The bound is checked by the statement itself, against the quantity
        // the row holds when it runs (another add may have come first).
        if !store_add(self.db(), user_id, product_id, quantity, cap(product), &product.name).await? {
            let held = kept_quantity(self.db(), user_id, product_id).await?;
            return Err(OrderError::StockShort {
                product_id,
                requested: held + quantity,
                available: product.stock.max(0),
            });
        }
        self.cart_after(user_id, &products).await
    }

    pub(crate) async fn cart_merge(
        &self,
        user_id: i64,
        items: &[pb::OrderLine],
    ) -> Result<(Vec<Line>, Vec<Adjustment>), OrderError> {
        if items.is_empty() {
            return Ok((self.cart(user_id).await?, Vec::new()));
        }
        let guest = OrderLines::parse(items.iter().map(|line| (line.product_id, line.quantity)))?;
        let ids: Vec<i64> = guest.iter().map(|(id, _)| id).collect();
        let (kept, products) = self.cart_with(user_id, &ids).await?;
        let held: BTreeMap<i64, i64> = kept.iter().map(|line| (line.product_id, line.quantity)).collect();
        let mut lines = held.len();
        let mut adjustments = Vec::new();
        for (product_id, quantity) in guest.iter() {
            let before = held.get(&product_id).copied().unwrap_or(0);
            let wanted = before + quantity;
            let Some(product) = products.get(&product_id) else {
                adjustments.push(Adjustment {
                    product_id,
                    product_name: String::new(),
                    wanted,
                    quantity: before,
                    available: 0,
                    cause: pb::cart_adjustment::Cause::NotSold,
                });
                continue;
            };
            let adjust = |quantity, cause| Adjustment {
                product_id,
                product_name: product.name.clone(),
                wanted,
                quantity,
                available: product.stock.max(0),
                cause,
            };
            if before == 0 && lines >= MAX_LINES {
                adjustments.push(adjust(0, pb::cart_adjustment::Cause::TooManyLines));
                continue;
            }
            if before == 0 && cap(product) == 0 {
                adjustments.push(adjust(0, pb::cart_adjustment::Cause::StockShort));
                continue;
            }
            let now = store_merge(self.db(), user_id, product_id, quantity, cap(product), &product.name).await?;
            if before == 0 {
                lines += 1;
            }
            if now < wanted {
                let cause = if product.stock > MAX_QUANTITY && now >= MAX_QUANTITY {
                    pb::cart_adjustment::Cause::QuantityLimit
                } else {
                    pb::cart_adjustment::Cause::StockShort
                };
                adjustments.push(adjust(now, cause));
            }
        }
        Ok((self.cart_after(user_id, &products).await?, adjustments))
    }
}

/// A cart names at most as many products as one order may.
fn refuse_new_line_beyond_limit(kept: &[Kept], product_id: i64) -> Result<(), OrderError> {
    let new = !kept.iter().any(|line| line.product_id == product_id);
    if new && kept.len() >= MAX_LINES {
        return Err(OrderError::invalid("items", format!("a cart holds at most {MAX_LINES} products")));
    }
    Ok(())
}

async fn kept_quantity(db: &Db, user_id: i64, product_id: i64) -> Result<i64, OrderError> {
    let held: Option<(i64,)> = sqlx::query_as("SELECT quantity FROM cart_items WHERE user_id = $1 AND product_id = $2")
        .bind(user_id)
        .bind(product_id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(held.map_or(0, |(quantity,)| quantity))
}

impl From<Availability> for pb::CartLineAvailability {
    fn from(availability: Availability) -> Self {
        match availability {
            Availability::Available => Self::Available,
            Availability::Short => Self::Short,
            Availability::OutOfStock => Self::OutOfStock,
            Availability::NotSold => Self::NotSold,
        }
    }
}

impl From<Line> for pb::CartLine {
    fn from(line: Line) -> Self {
        Self {
            product_id: line.product_id,
            product_name: line.product_name,
            quantity: line.quantity,
            availability: pb::CartLineAvailability::from(line.availability).into(),
            available: line.available,
            unit_price_minor: line.unit_price_minor,
            product: line.product,
        }
    }
}

pub fn to_proto(lines: Vec<Line>) -> pb::Cart {
    pb::Cart { lines: lines.into_iter().map(pb::CartLine::from).collect() }
}

impl From<Adjustment> for pb::CartAdjustment {
    fn from(adjustment: Adjustment) -> Self {
        Self {
            product_id: adjustment.product_id,
            product_name: adjustment.product_name,
            wanted: adjustment.wanted,
            quantity: adjustment.quantity,
            available: adjustment.available,
            cause: adjustment.cause.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_by_the_stock_on_hand() {
        let stocked = |stock| Stocked { name: "Gyokuro".into(), stock, price_minor: 900, product: Default::default() };
        assert_eq!(Availability::of(2, Some(&stocked(5))), Availability::Available);
        assert_eq!(Availability::of(5, Some(&stocked(5))), Availability::Available);
        assert_eq!(Availability::of(6, Some(&stocked(5))), Availability::Short);
        assert_eq!(Availability::of(1, Some(&stocked(0))), Availability::OutOfStock);
        assert_eq!(Availability::of(1, None), Availability::NotSold);
        assert_eq!(cap(&stocked(20_000)), MAX_QUANTITY);
        assert_eq!(cap(&stocked(-1)), 0);
    }
}
