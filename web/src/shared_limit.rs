//! Attempt counters every gateway replica shares, in Redis: one fixed
//! window per key, counted in one round trip (`MULTI`: create the key with
//! the window as its expiry if it is new, increment it, read what is left of
//! the window), so N replicas enforce one limit and a key never outlives its
//! window.
//!
//! Redis is asked with a short time-out; when it fails or is slow the caller
//! counts in its own process instead ([`crate::security::Limits`]), and Redis
//! is left alone for a moment, so an outage costs at most one short wait now
//! and then rather than one per attempt.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::interfaces::{ClientLike, KeysInterface, TransactionInterface};
use fred::prelude::{Builder, Config, ReconnectPolicy};
use fred::types::{Expiration, SetOptions, Value};

use crate::dependency_health::Dependency;

/// The longest an attempt waits for Redis before counting in-process.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is not asked after it failed.
const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// A window's count after this attempt, and the time left in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub count: u64,
    pub left: Duration,
}

/// Why the shared count was not read; the caller counts in-process.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("Redis did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("Redis failed: {0}")]
    Failed(#[from] fred::error::Error),
    #[error("Redis failed a moment ago or is known to be down; not asked")]
    Skipped,
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(String),
}

impl Unavailable {
    /// The metric's label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TimedOut(_) => "timeout",
            Self::Failed(_) | Self::Unexpected(_) => "error",
            Self::Skipped => "skipped",
        }
    }
}

/// Counters in Redis under `<prefix>limit:`.
pub struct SharedCounter {
    client: Client,
    prefix: String,
    timeout: Duration,
    /// Redis is not asked before this instant (it failed just before).
    skip_until: Mutex<Option<Instant>>,
    /// Whether the last answer was a failure: only changes are logged.
    failing: AtomicBool,
    /// The gateway's Redis health flag: while the cache or the sessions
    /// know Redis is down, it is not asked here either.
    health: Option<Dependency>,
    connection: tokio::task::JoinHandle<Result<(), fred::error::Error>>,
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl SharedCounter {
    /// A client of its own for `url` (one connection, commands pipelined on
    /// it), with a short time-out.
    pub async fn connect(url: &str, prefix: &str, health: Option<Dependency>) -> Result<Self, fred::error::Error> {
        let mut config = Config::from_url(url)?;
        // Keep reconnecting, even when the first connection fails.
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_performance_config(|performance| performance.default_command_timeout = TIMEOUT)
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(1);
                connection.internal_command_timeout = Duration::from_secs(1);
                // A transaction is several small writes: with Nagle's
                // algorithm on, the later ones wait for Redis's delayed ACK
                // (40 ms on Linux).
                connection.tcp.nodelay = Some(true);
                // A connection that stops answering (a black hole, not a
                // refusal) is closed and made again, not kept forever.
                connection.unresponsive.max_timeout = Some(Duration::from_secs(2));
                connection.unresponsive.interval = Duration::from_millis(500);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build()?;
        // Waited for briefly (a reachable Redis answers within
        // milliseconds), never long: the gateway starts whether or not Redis
        // answers, and attempts made before it does are counted in-process.
        let connection = client.connect();
        if tokio::time::timeout(Duration::from_millis(500), client.wait_for_connect()).await.is_err() {
            tracing::warn!("Redis not reached for the sign-in limits yet; counting in this process until it is");
        }
        Ok(Self {
            client,
            prefix: format!("{prefix}limit:"),
            timeout: TIMEOUT,
            skip_until: Mutex::new(None),
            failing: AtomicBool::new(false),
            health,
            connection,
        })
    }

    /// Counts an attempt for `key` in its fixed window of `window`.
    pub async fn count(&self, key: &str, window: Duration) -> Result<Window, Unavailable> {
        let failed_just_now =
            self.skip_until.lock().ok().and_then(|until| *until).is_some_and(|until| Instant::now() < until);
        if failed_just_now || self.health.as_ref().is_some_and(|redis| !redis.is_up()) {
            return Err(Unavailable::Skipped);
        }
        let answer = match tokio::time::timeout(self.timeout, self.count_in_redis(key, window)).await {
            Ok(answer) => answer,
            Err(_) => Err(Unavailable::TimedOut(self.timeout)),
        };
        match &answer {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("sign-in limits shared through Redis again");
                }
            }
            Err(error) => {
                if let Ok(mut until) = self.skip_until.lock() {
                    *until = Some(Instant::now() + SKIP_AFTER_FAILURE);
                }
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "sign-in limits counted in this process: Redis is unavailable");
                }
            }
        }
        answer
    }

    async fn count_in_redis(&self, key: &str, window: Duration) -> Result<Window, Unavailable> {
        let key = format!("{}{key}", self.prefix);
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let transaction = self.client.multi();
        let () = transaction.set(&key, 0, Some(Expiration::PX(window_ms)), Some(SetOptions::NX), false).await?;
        let () = transaction.incr(&key).await?;
        let () = transaction.pttl(&key).await?;
        let (_, count, left): (Value, i64, i64) = transaction.exec(true).await?;
        let count = u64::try_from(count).map_err(|_| Unavailable::Unexpected(format!("a count of {count}")))?;
        let left = match u64::try_from(left) {
            Ok(left) => Duration::from_millis(left),
            Err(_) => {
                // A key without expiry (not made here: written by hand)
                // would count forever; give it this window.
                let _: Result<(), _> = self.client.pexpire(&key, window_ms, None).await;
                window
            }
        };
        Ok(Window { count, left })
    }
}
