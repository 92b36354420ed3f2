//! Whether a dependency the gateway can serve without (Redis) is answering:
//! one health flag shared by every user of it (the cache, the session
//! store, the ended-sessions list), so a dependency that is down costs the
//! first call one short time-out and the calls after it nothing.
//!
//! A failed call marks it down at once; from then on callers skip it (and
//! count the skip) until a background probe finds it answering again. The
//! probe, not a request, pays for the waiting, so no request ever waits on
//! more than the one call that found the outage. Recovery needs no restart.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The first probe after an outage is seen, then twice as long each time.
const FIRST_PROBE: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// A dependency's health flag; clones share it.
#[derive(Clone)]
pub struct Dependency {
    inner: Arc<Inner>,
}

struct Inner {
    name: &'static str,
    up: AtomicBool,
    went_down: Notify,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency").field("name", &self.inner.name).field("up", &self.is_up()).finish()
    }
}

impl Dependency {
    /// A dependency taken to be up until a call fails.
    pub fn new(name: &'static str) -> Self {
        metrics::gauge!("shop_dependency_up", "dependency" => name).set(1.0);
        Self { inner: Arc::new(Inner { name, up: AtomicBool::new(true), went_down: Notify::new() }) }
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Whether to make a call now. A call not made is counted
    /// (`shop_dependency_skipped_total`).
    pub fn allow(&self) -> bool {
        let up = self.is_up();
        if !up {
            metrics::counter!("shop_dependency_skipped_total", "dependency" => self.inner.name).increment(1);
        }
        up
    }

    /// A call failed as an outage does (a time-out, a refused or cut
    /// connection): skip the dependency until the probe finds it
    /// answering. Logged once per outage, not once per call.
    pub fn failed(&self, error: &dyn Display) {
        if self.inner.up.swap(false, Ordering::AcqRel) {
            metrics::gauge!("shop_dependency_up", "dependency" => self.inner.name).set(0.0);
            tracing::warn!(dependency = self.inner.name, %error, "dependency down: skipped until it answers again");
            self.inner.went_down.notify_one();
        }
    }

    fn back(&self) {
        if !self.inner.up.swap(true, Ordering::AcqRel) {
            metrics::gauge!("shop_dependency_up", "dependency" => self.inner.name).set(1.0);
            tracing::info!(dependency = self.inner.name, "dependency back: used again");
        }
    }

    /// Watches the dependency until aborted: while it is down, `probe`s it
    /// (250 ms after the outage was seen, then twice as long each time, at
    /// most 5 s apart); once it answers, `recover` does what could not be
    /// done meanwhile (deletions, invalidations), and only when that worked
    /// too is the dependency used again. `probe` must bound its own wait.
    pub async fn watch<P, PF, R, RF>(self, probe: P, recover: R)
    where
        P: Fn() -> PF,
        PF: Future<Output = bool>,
        R: Fn() -> RF,
        RF: Future<Output = bool>,
    {
        loop {
            if self.is_up() {
                self.inner.went_down.notified().await;
                continue;
            }
            let mut wait = FIRST_PROBE;
            loop {
                tokio::time::sleep(wait).await;
                if probe().await && recover().await {
                    self.back();
                    break;
                }
                wait = (wait * 2).min(LONGEST_WAIT);
            }
        }
    }
}

/// Watches the gateway's Redis (the cache's and the sessions' pools) until
/// aborted: probed while down, and once both answer, what the cache and the
/// sessions could not do meanwhile is done before they use it again.
pub fn watch_redis(
    health: Dependency,
    cache: crate::cache::Cache,
    sessions: crate::session_store::SessionStoreKind,
) -> tokio::task::JoinHandle<()> {
    const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
    let (probed_cache, probed_sessions) = (cache.clone(), sessions.clone());
    let probe = move || {
        let (cache, sessions) = (probed_cache.clone(), probed_sessions.clone());
        async move { cache.ping(PROBE_TIMEOUT).await && sessions.ping(PROBE_TIMEOUT).await }
    };
    let recover = move || {
        let (cache, sessions) = (cache.clone(), sessions.clone());
        async move { cache.recover().await && sessions.recover().await }
    };
    tokio::spawn(async move {
        // A Redis that did not answer at start is down from the start.
        if !probe().await {
            health.failed(&"no answer to PING at start");
        }
        health.watch(probe, recover).await;
    })
}

/// Whether a Redis error means Redis is away (rather than a refused
/// command, which says it answers).
pub fn is_redis_outage(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Tls
            | ErrorKind::Protocol
            | ErrorKind::Routing
            | ErrorKind::Unknown
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test(start_paused = true)]
    async fn one_failure_skips_until_the_probe_finds_it_back() {
        let redis = Dependency::new("test");
        assert!(redis.allow());
        redis.failed(&"timed out");
        redis.failed(&"timed out again");
        assert!(!redis.allow(), "skipped once down");

        let answering = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU32::new(0));
        let recovered = Arc::new(AtomicU32::new(0));
        let watcher = tokio::spawn({
            let (answering, probes, recovered) = (answering.clone(), probes.clone(), recovered.clone());
            redis.clone().watch(
                move || {
                    probes.fetch_add(1, Ordering::SeqCst);
                    let answers = answering.load(Ordering::SeqCst);
                    async move { answers }
                },
                move || {
                    recovered.fetch_add(1, Ordering::SeqCst);
                    async { true }
                },
            )
        });
        // 250 + 500 + 1000 + 2000 ms: four probes, all unanswered; backing off.
        tokio::time::sleep(Duration::from_millis(3_800)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 4);
        assert!(!redis.is_up());
        answering.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(redis.is_up(), "back without a restart");
        assert_eq!(recovered.load(Ordering::SeqCst), 1, "what waited was done once, before use");
        // Down again: noticed, probed again.
        redis.failed(&"cut");
        assert!(!redis.is_up());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(redis.is_up());
        watcher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_recovery_keeps_it_down() {
        let redis = Dependency::new("test");
        redis.failed(&"down");
        let watcher = tokio::spawn(redis.clone().watch(|| async { true }, || async { false }));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!redis.is_up(), "not used before what waited is done");
        watcher.abort();
    }
}
