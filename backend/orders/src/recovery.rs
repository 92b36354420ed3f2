//! The recovery pass: finishes what a crash or an inventory outage left
//! half done. Pending orders are reserved again (inventory reserves once per
//! order id, so a reservation that did happen is not repeated) and confirmed
//! or rejected; cancelled orders get their stock back.
//!
//! Every step is conditional on the state it expects, so passes running at
//! once on several replicas do the work once between them.

use std::time::Duration;

use shop_storage::now_ms;

use crate::{OrderError, OrderService, store};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Pending orders that were reserved and confirmed, or rejected.
    pub settled: usize,
    /// Pending orders inventory could still not be asked about.
    pub still_pending: usize,
    /// Cancelled orders whose stock went back.
    pub released: usize,
    /// Idempotency keys older than [`KEEP_KEYS`], forgotten.
    pub expired_keys: u64,
}

/// How long an idempotency key is honoured: a day, with a day to spare.
pub const KEEP_KEYS: Duration = Duration::from_secs(48 * 60 * 60);

/// Orders are left alone this long after their last change, so a pass never
/// races a request that is still reserving.
pub const GRACE: Duration = Duration::from_secs(30);
const BATCH: i64 = 100;

/// One pass over orders untouched for `grace`.
pub async fn run_once(service: &OrderService, grace: Duration) -> Result<Report, OrderError> {
    let mut report = Report::default();
    let before = now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    for (order_id, lines) in store::stale_pending(service.db(), before, BATCH).await? {
        match service.reserve(order_id, &lines).await {
            Ok(()) | Err(OrderError::Rejected { .. }) => report.settled += 1,
            Err(OrderError::InventoryUnavailable(_)) => report.still_pending += 1,
            Err(error) => return Err(error),
        }
    }
    for order_id in store::unreleased(service.db(), BATCH).await? {
        if service.release(order_id).await {
            report.released += 1;
        }
    }
    let keys_before = now_ms() - i64::try_from(KEEP_KEYS.as_millis()).unwrap_or(i64::MAX);
    report.expired_keys = store::expire_idempotency_keys(service.db(), keys_before).await?;
    if report != Report::default() {
        tracing::info!(?report, "recovery pass");
    }
    Ok(report)
}

/// Runs a pass at once, over every unfinished order (what a crash left),
/// then every `every` over orders untouched for [`GRACE`], until the process
/// stops. The first pass may meet requests still running on other replicas;
/// that costs a repeated reservation call, never a second reservation.
pub async fn run_periodically(service: OrderService, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    let mut grace = Duration::ZERO;
    loop {
        ticks.tick().await;
        if let Err(error) = run_once(&service, grace).await {
            tracing::warn!(%error, "recovery pass failed; will try again");
        }
        grace = GRACE;
    }
}
