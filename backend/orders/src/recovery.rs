//! The recovery pass: finishes what a crash or an inventory outage left
//! half done. Pending orders are reserved again (inventory reserves once per
//! order id, so a reservation that did happen is not repeated) and confirmed
//! or rejected; cancelled orders get their stock back.
//!
//! Every step is conditional on the state it expects, so passes running at
//! once on several replicas do the work once between them.

use std::time::Duration;

use tokio::task::JoinSet;

use shop_storage::now_ms;

use crate::{OrderError, OrderService, store};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Pending orders that were reserved and confirmed, or rejected.
    pub settled: usize,
    /// Pending orders left for a later pass: the one inventory could not be
    /// asked about, and those after it in its batch (a pass stops asking at
    /// the first sign that inventory is away, rather than waiting on a
    /// time-out per order).
    pub still_pending: usize,
    /// Cancelled orders whose stock went back.
    pub released: usize,
    /// Idempotency keys older than [`KEEP_KEYS`], forgotten.
    pub expired_keys: u64,
}

/// How long an idempotency key is honoured: a day, with a day to spare.
pub const KEEP_KEYS: Duration = Duration::from_secs(48 * 60 * 60);

/// Orders are left alone this long after their last change by the periodic
/// pass, so it rarely races a request that is still reserving (a race costs
/// a repeated reservation call, never a second reservation).
pub const GRACE: Duration = Duration::from_secs(30);

/// The grace of the passes that follow a request leaving an order pending:
/// that request has finished, so its order need not wait for [`GRACE`].
pub const LEFT_PENDING_GRACE: Duration = Duration::from_secs(1);

/// The first wait before trying again while orders wait for inventory,
/// doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

const BATCH: i64 = 100;

/// Reservations a pass has in flight at once.
const PARALLEL: usize = 8;

/// One pass over orders untouched for `grace`: every such order, batch
/// after batch, until none is left or inventory stops answering.
pub async fn run_once(service: &OrderService, grace: Duration) -> Result<Report, OrderError> {
    let mut report = Report::default();
    let before = now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut after = 0;
    let mut away = false;
    while !away {
        let batch = store::stale_pending(service.db(), before, after, BATCH).await?;
        let full = batch.len() == usize::try_from(BATCH).unwrap_or(usize::MAX);
        // A few at once: each order is a round trip to inventory and two
        // statements here, so one at a time leaves both mostly waiting.
        let mut running = JoinSet::new();
        let mut failed = None;
        for (order_id, lines) in batch {
            after = order_id;
            if away {
                report.still_pending += 1;
                continue;
            }
            if running.len() >= PARALLEL {
                away |= settled(running.join_next().await, &mut report, &mut failed);
            }
            let service = service.clone();
            running.spawn(async move { service.reserve(order_id, &lines).await });
        }
        while let Some(done) = running.join_next().await {
            away |= settled(Some(done), &mut report, &mut failed);
        }
        if let Some(error) = failed {
            return Err(error);
        }
        if !full {
            break;
        }
    }
    let mut after = 0;
    loop {
        let batch = store::unreleased(service.db(), after, BATCH).await?;
        for &order_id in &batch {
            if service.release(order_id).await {
                report.released += 1;
            }
        }
        match batch.last() {
            Some(&last) if batch.len() == usize::try_from(BATCH).unwrap_or(usize::MAX) => after = last,
            _ => break,
        }
    }
    let keys_before = now_ms() - i64::try_from(KEEP_KEYS.as_millis()).unwrap_or(i64::MAX);
    report.expired_keys = store::expire_idempotency_keys(service.db(), keys_before).await?;
    if report != Report::default() {
        tracing::info!(?report, "recovery pass");
    }
    Ok(report)
}

/// Counts one reservation's outcome; true when inventory is away (the
/// pass then stops asking). The first unexpected error is kept for the
/// caller.
fn settled(
    done: Option<Result<Result<(), OrderError>, tokio::task::JoinError>>,
    report: &mut Report,
    failed: &mut Option<OrderError>,
) -> bool {
    match done {
        Some(Ok(Ok(()) | Err(OrderError::Rejected { .. }))) => report.settled += 1,
        Some(Ok(Err(OrderError::InventoryUnavailable(_)))) => {
            report.still_pending += 1;
            return true;
        }
        Some(Ok(Err(error))) => {
            report.still_pending += 1;
            failed.get_or_insert(error);
        }
        // A reservation task that panicked: the order stays pending for the
        // next pass.
        Some(Err(_)) => report.still_pending += 1,
        None => {}
    }
    false
}

/// Runs a pass at once, over every unfinished order (what a crash left),
/// then every `every` over orders untouched for [`GRACE`], until the process
/// stops. The first pass may meet requests still running on other replicas;
/// that costs a repeated reservation call, never a second reservation.
///
/// When a request leaves an order pending (inventory did not answer), it
/// wakes this loop, which then tries again soon and with back-off (a
/// quarter of a second, doubling up to five) until nothing waits: orders
/// left by an outage are settled within seconds of inventory's return, not
/// at the next interval.
pub async fn run_periodically(service: OrderService, every: Duration) {
    let mut grace = Duration::ZERO;
    let mut retry: Option<Duration> = None;
    loop {
        let waiting = match run_once(&service, grace).await {
            Ok(report) => report.still_pending > 0,
            Err(error) => {
                tracing::warn!(%error, "recovery pass failed; will try again");
                true
            }
        };
        retry = waiting.then(|| retry.map_or(FIRST_RETRY, |last| (last * 2).min(MAX_RETRY)));
        let wait = retry.unwrap_or(every).min(every);
        tokio::select! {
            () = tokio::time::sleep(wait) => {
                grace = if retry.is_some() { LEFT_PENDING_GRACE } else { GRACE };
            }
            () = service.recovery_wake().woken() => {
                grace = LEFT_PENDING_GRACE;
                // A burst of requests failing at once wakes once per
                // request: the first wake's pass serves them all.
                tokio::time::sleep(LEFT_PENDING_GRACE).await;
            }
        }
    }
}
