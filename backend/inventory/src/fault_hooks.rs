//! Fault injection for the order checker, compiled only with the
//! `fault-hooks` feature: `shop`'s tests enable it through their
//! dev-dependency on this crate, so the `shop` binary cargo builds for them
//! has it, and a binary built for use (`cargo build`, `--release`, the
//! Dockerfile) does not.
//!
//! Even when compiled in, nothing changes unless the process was started
//! with `SHOP_TEST_LOST_UPDATE_RESERVE=true`: then a reservation takes stock
//! the way the shop must never do it, by reading the stock and writing it
//! back as an absolute value (two reservations at once both read the same
//! stock, and one of them is lost). The order checker must catch it: that is
//! the checker's own test.

use std::sync::OnceLock;
use std::time::Duration;

use shop_storage::sqlx::{self, Row};

use crate::InventoryError;

/// The variable that arms the broken reservation.
pub const LOST_UPDATE_RESERVE: &str = "SHOP_TEST_LOST_UPDATE_RESERVE";

pub(crate) fn lost_update_armed() -> bool {
    static ARMED: OnceLock<bool> = OnceLock::new();
    *ARMED.get_or_init(|| std::env::var(LOST_UPDATE_RESERVE).is_ok_and(|value| value == "true"))
}

/// The broken way to take `quantity`: read, wait a moment (so concurrent
/// reservations overlap), write back the absolute value. Answers the row as
/// the correct statement's `RETURNING name, price_minor, stock` would.
pub(crate) async fn take_by_absolute_write(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    product_id: i64,
    quantity: i64,
    now: i64,
) -> Result<Option<sqlx::any::AnyRow>, InventoryError> {
    let read: Option<(i64,)> =
        sqlx::query_as("SELECT stock FROM products WHERE id = $1").bind(product_id).fetch_optional(&mut **tx).await?;
    let Some((stock,)) = read.filter(|(stock,)| *stock >= quantity) else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let row = sqlx::query(
        "UPDATE products SET stock = $2, updated_at_ms = $3 WHERE id = $1 RETURNING name, price_minor, stock",
    )
    .bind(product_id)
    .bind(stock - quantity)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let _: i64 = row.try_get("stock")?;
    Ok(Some(row))
}
