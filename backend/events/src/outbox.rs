//! The transactional outbox: events are rows written in the same
//! transaction as the change they describe, and a relay publishes them.
//!
//! If the bus is down, the rows wait and flow when it returns; nothing is
//! lost. A relay that dies after publishing and before marking a row
//! publishes it again, and the bus drops the duplicate by event id.

use std::sync::Arc;
use std::time::Duration;

use shop_storage::sqlx::{self, Any, Transaction};
use shop_storage::{Backend, Db, now_ms};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::{Bus, BusError, Event};

/// An outbox row waiting to be published: id, the event, its trace context.
type Row = (i64, String, Option<String>);

/// Writes `event` to the outbox inside the caller's transaction.
pub async fn record(tx: &mut Transaction<'_, Any>, event: &Event) -> Result<(), sqlx::Error> {
    let row = OutboxRow::of(event)?;
    sqlx::query(
        "INSERT INTO outbox (event_id, kind, payload, created_at_ms, trace_parent) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(row.event_id)
    .bind(row.kind)
    .bind(row.payload)
    .bind(row.created_at_ms)
    .bind(row.trace_parent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The columns of an event's outbox row (`event_id, kind, payload,
/// created_at_ms, trace_parent`), for a statement that writes the event
/// beside the change it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub event_id: String,
    pub kind: String,
    /// The event's JSON.
    pub payload: String,
    pub created_at_ms: i64,
    pub trace_parent: Option<String>,
}

impl OutboxRow {
    pub fn of(event: &Event) -> Result<Self, sqlx::Error> {
        Ok(Self {
            event_id: event.id.clone(),
            kind: event.kind.clone(),
            payload: serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            created_at_ms: event.occurred_at_ms,
            trace_parent: event.trace_parent.clone(),
        })
    }
}

/// Tells the relay there is something to publish, so events go out at once
/// rather than at the next poll.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Returns at the next [`Wake::wake`], or at once if one came since the
    /// last wait (a wake is never lost between two waits).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("publishing: {0}")]
    Bus(#[from] BusError),
    #[error("an outbox row that is not an event: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// How many events wait, and for how long the oldest has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub events: i64,
    pub oldest_age_ms: i64,
}

/// Publishes one service's outbox to the bus.
#[derive(Clone)]
pub struct Relay {
    db: Db,
    bus: Bus,
    service: &'static str,
    wake: Wake,
}

const BATCH: i64 = 100;
const POLL: Duration = Duration::from_secs(1);
/// Published rows are kept this long, for inspection, then deleted.
const KEEP_PUBLISHED_MS: i64 = 24 * 60 * 60 * 1000;

impl Relay {
    pub fn new(db: Db, bus: Bus, service: &'static str, wake: Wake) -> Self {
        Self { db, bus, service, wake }
    }

    /// Publishes waiting events in the order they were written, stopping at
    /// the first that cannot be published (to keep the order). Returns how
    /// many went out.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        match self.db.backend {
            // Several replicas may relay at once: each takes rows no other
            // holds, and holds them until they are marked.
            Backend::Postgres => {
                let mut tx = self.db.pool.begin().await?;
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, payload, trace_parent FROM outbox WHERE published_at_ms IS NULL ORDER BY id LIMIT $1 \
                     FOR UPDATE SKIP LOCKED",
                )
                .bind(BATCH)
                .fetch_all(&mut *tx)
                .await?;
                let mut published = Vec::with_capacity(rows.len());
                let mut failure = None;
                for (id, payload, trace_parent) in rows {
                    if let Err(error) = self.publish(&payload, trace_parent).await {
                        failure = Some(error);
                        break;
                    }
                    published.push(id);
                }
                // Marked together, in the transaction that holds them.
                mark(&mut *tx, &published).await?;
                tx.commit().await?;
                failure.map_or(Ok(published.len()), Err)
            }
            // One process owns a SQLite file; no transaction is held while
            // publishing, so the service's single connection stays free.
            Backend::Sqlite => {
                let rows: Vec<Row> = sqlx::query_as(
                    "SELECT id, payload, trace_parent FROM outbox WHERE published_at_ms IS NULL ORDER BY id LIMIT $1",
                )
                .bind(BATCH)
                .fetch_all(&self.db.pool)
                .await?;
                let mut published = Vec::with_capacity(rows.len());
                let mut failure = None;
                for (id, payload, trace_parent) in rows {
                    if let Err(error) = self.publish(&payload, trace_parent).await {
                        failure = Some(error);
                        break;
                    }
                    published.push(id);
                }
                mark(&self.db.pool, &published).await?;
                failure.map_or(Ok(published.len()), Err)
            }
        }
    }

    /// Publishes one event as a span of the trace that wrote it, and hands
    /// that span's context on to the consumers.
    async fn publish(&self, payload: &str, trace_parent: Option<String>) -> Result<(), RelayError> {
        let mut event: Event = serde_json::from_str(payload)?;
        let span = tracing::info_span!(
            "publish",
            otel.name = %format_args!("{} publish", event.kind),
            otel.kind = "producer",
            messaging.system = self.bus.name(),
            messaging.operation.type = "publish",
            messaging.message.id = %event.id,
            otel.status_code = tracing::field::Empty,
        );
        shop_trace_context::adopt_traceparent(&span, trace_parent.as_deref());
        event.trace_parent = shop_trace_context::traceparent(&span).or(trace_parent);
        if let Err(error) = self.bus.publish(&event).instrument(span.clone()).await {
            span.record("otel.status_code", "error");
            return Err(error.into());
        }
        Ok(())
    }

    pub async fn backlog(&self) -> Result<Backlog, RelayError> {
        let (events, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at_ms) FROM outbox WHERE published_at_ms IS NULL")
                .fetch_one(&self.db.pool)
                .await?;
        Ok(Backlog { events, oldest_age_ms: oldest.map_or(0, |oldest| (now_ms() - oldest).max(0)) })
    }

    async fn purge(&self) -> Result<(), RelayError> {
        sqlx::query("DELETE FROM outbox WHERE published_at_ms < $1")
            .bind(now_ms() - KEEP_PUBLISHED_MS)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Relays until the process ends: at once when woken, else every second;
    /// after a failure, with a growing pause (up to 30 s).
    pub async fn run(self) {
        let mut backoff = POLL;
        let mut rounds: u64 = 0;
        let mut measured: Option<tokio::time::Instant> = None;
        loop {
            rounds += 1;
            let outcome = self.relay_once().await;
            // The backlog is a statement of its own: measured after an idle
            // or failed round, and at most once a second while busy (a round
            // an order, under load).
            let idle = !matches!(outcome, Ok(published) if published > 0);
            if (idle || measured.is_none_or(|at| at.elapsed() >= POLL))
                && let Ok(backlog) = self.backlog().await
            {
                measured = Some(tokio::time::Instant::now());
                metrics::gauge!("shop_outbox_backlog", "service" => self.service).set(backlog.events as f64);
                metrics::gauge!("shop_outbox_relay_lag_seconds", "service" => self.service)
                    .set(backlog.oldest_age_ms as f64 / 1000.0);
            }
            if rounds.is_multiple_of(3600)
                && let Err(error) = self.purge().await
            {
                tracing::warn!(service = self.service, %error, "purging published events failed");
            }
            match outcome {
                Ok(published) => {
                    backoff = POLL;
                    if published > 0 {
                        metrics::counter!("shop_outbox_published_total", "service" => self.service)
                            .increment(published as u64);
                    }
                    if published as i64 == BATCH {
                        continue; // more are waiting
                    }
                    tokio::select! {
                        () = self.wake.woken() => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(service = self.service, %error, retry_in = ?backoff, "relaying events failed; they wait in the outbox");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Marks the rows `ids` published, in one statement (at most [`BATCH`]).
async fn mark<'e, E: sqlx::Executor<'e, Database = Any>>(executor: E, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // Placeholders only; the ids are bound.
    let placeholders = (2..ids.len() + 2).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
    let sql = format!("UPDATE outbox SET published_at_ms = $1 WHERE id IN ({placeholders})");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms());
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(executor).await?;
    Ok(())
}
