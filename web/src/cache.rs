//! Read-through cache for user profiles and products: Redis when configured
//! (shared by every gateway replica), in-process otherwise.
//!
//! The cache is an optimisation, never a dependency: any failure is logged,
//! counted and treated as a miss, so the request goes to the service. A
//! Redis that fails is skipped until it answers again ([`Dependency`]), so
//! an outage costs one request one time-out, not every request several;
//! what could not be forgotten meanwhile is forgotten when it is back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use fred::clients::Pool;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::Expiration;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dependency_health::{Dependency, is_redis_outage};

/// Keys kept to forget once Redis is back; past this many, what is left
/// to forget ends with the cache's TTL.
const PENDING_LIMIT: usize = 10_000;

/// Set in the lists' version while Redis cannot say it, so page fragments
/// kept during an outage are never taken for ones kept before or after.
const OUTAGE_VERSION: u64 = 1 << 63;

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    prefix: String,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    failures: AtomicU64,
    /// The in-process store's version of the product lists (with Redis:
    /// the version while Redis is down, moved on by every write here).
    local_list_version: AtomicU64,
}

enum Store {
    Memory(moka::future::Cache<String, Bytes>),
    Redis { pool: Pool, health: Dependency, pending: Pending },
}

/// What could not be done in Redis while it was down, done when it is back.
#[derive(Default)]
struct Pending {
    invalidations: Mutex<HashSet<String>>,
    retire_lists: AtomicBool,
}

/// A value that could not be written as JSON (a bug: views are plain data).
#[derive(Debug)]
pub struct Unencodable(pub String);

/// Counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub failures: u64,
}

/// Whether a read was served from the cache; sent as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl Lookup {
    pub fn header(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

impl Cache {
    pub fn memory(prefix: &str, ttl: Duration) -> Self {
        let store = moka::future::Cache::builder().max_capacity(10_000).time_to_live(ttl).build();
        Self::with(Store::Memory(store), prefix, ttl)
    }

    pub fn redis(pool: Pool, prefix: &str, ttl: Duration) -> Self {
        Self::redis_guarded(pool, prefix, ttl, Dependency::new("redis"))
    }

    /// A Redis cache that skips Redis while `health` says it is down.
    pub fn redis_guarded(pool: Pool, prefix: &str, ttl: Duration, health: Dependency) -> Self {
        Self::with(Store::Redis { pool, health, pending: Pending::default() }, prefix, ttl)
    }

    fn with(store: Store, prefix: &str, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                prefix: prefix.to_owned(),
                ttl,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                local_list_version: AtomicU64::new(0),
            }),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.inner.store {
            Store::Memory(_) => "memory",
            Store::Redis { .. } => "redis",
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// Whether to call Redis now; a call skipped because it is down counts
    /// as a failure of the cache.
    fn allowed(&self, health: &Dependency) -> bool {
        let allowed = health.allow();
        if !allowed {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    fn failed(&self, health: &Dependency, what: &'static str, error: &fred::error::Error) {
        self.inner.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shop_cache_failures_total", "operation" => what).increment(1);
        if is_redis_outage(error) {
            // Logged once, by the health flag, for the whole outage.
            health.failed(error);
        } else {
            tracing::warn!(%error, what, "cache refused a command; going to the service");
        }
    }

    /// The cached value, or `fetch`'s (which is then cached). `fetch` is
    /// only called on a miss, so a hit makes no client and no call. `kind`
    /// names what is cached, for the metrics.
    pub async fn get_or_fetch<T, E, F, Fut>(&self, kind: &'static str, key: &str, fetch: F) -> Result<(T, Lookup), E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.get(key).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shop_cache_requests_total", "kind" => kind, "result" => "hit").increment(1);
            return Ok((value, Lookup::Hit));
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shop_cache_requests_total", "kind" => kind, "result" => "miss").increment(1);
        let value = fetch().await?;
        self.put(key, &value).await;
        Ok((value, Lookup::Miss))
    }

    /// Like [`Cache::get_or_fetch`], but answers with the value's JSON as
    /// it is kept, for a JSON client: a hit is neither decoded nor encoded
    /// again. (On Redis, a value an older version of the gateway kept is
    /// sent as it is until it expires, as that version would send it.)
    pub async fn get_or_fetch_json<T, E, F, Fut>(
        &self,
        kind: &'static str,
        key: &str,
        fetch: F,
    ) -> Result<(Bytes, Lookup), E>
    where
        T: Serialize,
        E: From<Unencodable>,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        if let Some(bytes) = self.get_bytes(key).await {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shop_cache_requests_total", "kind" => kind, "result" => "hit").increment(1);
            return Ok((bytes, Lookup::Hit));
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shop_cache_requests_total", "kind" => kind, "result" => "miss").increment(1);
        let value = fetch().await?;
        let bytes = Bytes::from(serde_json::to_vec(&value).map_err(|error| Unencodable(error.to_string()))?);
        self.put_bytes(key, bytes.clone()).await;
        Ok((bytes, Lookup::Miss))
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        // A value that no longer decodes (an older layout) is just a miss.
        self.get_bytes(key).await.and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    async fn get_bytes(&self, key: &str) -> Option<Bytes> {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(cache) => cache.get(&key).await,
            Store::Redis { pool, health, .. } => {
                if !self.allowed(health) {
                    return None;
                }
                match pool.get::<Option<Vec<u8>>, _>(&key).await {
                    Ok(bytes) => bytes.map(Bytes::from),
                    Err(error) => {
                        self.failed(health, "get", &error);
                        None
                    }
                }
            }
        }
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) {
        if let Ok(bytes) = serde_json::to_vec(value) {
            self.put_bytes(key, Bytes::from(bytes)).await;
        }
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(cache) => cache.insert(key, bytes).await,
            Store::Redis { pool, health, .. } => {
                if !self.allowed(health) {
                    return;
                }
                let ttl = i64::try_from(self.inner.ttl.as_secs()).unwrap_or(60).max(1);
                let set: Result<(), _> = pool.set(&key, bytes, Some(Expiration::EX(ttl)), None, false).await;
                if let Err(error) = set {
                    self.failed(health, "set", &error);
                }
            }
        }
    }

    pub async fn invalidate(&self, key: &str) {
        let key = self.key(key);
        match &self.inner.store {
            Store::Memory(cache) => cache.invalidate(&key).await,
            Store::Redis { pool, health, pending } => {
                let deleted: Result<i64, _> = if self.allowed(health) {
                    pool.del(&key).await
                } else {
                    Err(fred::error::Error::new(fred::error::ErrorKind::IO, "Redis is down"))
                };
                if let Err(error) = deleted {
                    if health.is_up() {
                        self.failed(health, "del", &error);
                    }
                    pending.forget_later(key);
                }
            }
        }
    }

    /// The version of the cached product lists; part of their keys, so one
    /// increment retires every cached page at once.
    /// While Redis is down, a version of this process's own, moved on by
    /// every write it hears of meanwhile.
    pub async fn list_version(&self) -> u64 {
        let local = self.inner.local_list_version.load(Ordering::Relaxed);
        match &self.inner.store {
            Store::Memory(_) => local,
            Store::Redis { pool, health, .. } => {
                if !self.allowed(health) {
                    return OUTAGE_VERSION | local;
                }
                match pool.get::<Option<u64>, _>(self.key("products:version")).await {
                    Ok(version) => version.unwrap_or(0) & !OUTAGE_VERSION,
                    Err(error) => {
                        self.failed(health, "get version", &error);
                        OUTAGE_VERSION | local
                    }
                }
            }
        }
    }

    pub async fn retire_lists(&self) {
        self.inner.local_list_version.fetch_add(1, Ordering::Relaxed);
        if let Store::Redis { pool, health, pending } = &self.inner.store {
            let bumped: Result<i64, _> = if self.allowed(health) {
                pool.incr(self.key("products:version")).await
            } else {
                Err(fred::error::Error::new(fred::error::ErrorKind::IO, "Redis is down"))
            };
            if let Err(error) = bumped {
                if health.is_up() {
                    self.failed(health, "incr version", &error);
                }
                pending.retire_lists.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Once Redis answers again: forgets what writes could not forget while
    /// it was down. False if Redis failed again (tried again later).
    pub async fn recover(&self) -> bool {
        let Store::Redis { pool, pending, .. } = &self.inner.store else { return true };
        let keys: Vec<String> =
            pending.invalidations.lock().map(|keys| keys.iter().cloned().collect()).unwrap_or_default();
        for chunk in keys.chunks(500) {
            let deleted: Result<i64, _> = pool.del(chunk.to_vec()).await;
            if deleted.is_err() {
                return false;
            }
            if let Ok(mut waiting) = pending.invalidations.lock() {
                for key in chunk {
                    waiting.remove(key);
                }
            }
        }
        if pending.retire_lists.swap(false, Ordering::Relaxed) {
            let bumped: Result<i64, _> = pool.incr(self.key("products:version")).await;
            if bumped.is_err() {
                pending.retire_lists.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    }

    /// Whether Redis answers now (for the health probe), within `within`.
    pub async fn ping(&self, within: Duration) -> bool {
        match &self.inner.store {
            Store::Memory(_) => true,
            Store::Redis { pool, .. } => ping(pool, within).await,
        }
    }
}

impl Pending {
    fn forget_later(&self, key: String) {
        if let Ok(mut keys) = self.invalidations.lock()
            && keys.len() < PENDING_LIMIT
        {
            keys.insert(key);
        }
    }
}

/// Whether `pool` answers a `PING` within `within`.
pub async fn ping(pool: &Pool, within: Duration) -> bool {
    let pinged = tokio::time::timeout(within, pool.ping::<String>(None)).await;
    matches!(pinged, Ok(Ok(_)))
}

/// Connects a pool to Redis. Commands time out quickly, so a Redis that
/// stops answering costs a request little before it falls back. A Redis
/// that does not answer at start is not waited for (beyond 2 s): the pool
/// keeps trying to connect in the background, and the gateway serves
/// without it meanwhile (a wrong URL still fails at once).
pub async fn connect_redis(url: &str) -> Result<Pool, fred::error::Error> {
    connect_redis_database(url, None).await
}

/// Like [`connect_redis`], to logical database `database` instead of the
/// URL's own (the sessions' database).
pub async fn connect_redis_database(url: &str, database: Option<u8>) -> Result<Pool, fred::error::Error> {
    use fred::prelude::{Builder, Config, ReconnectPolicy};
    let mut config = Config::from_url(url)?;
    if database.is_some() {
        config.database = database;
    }
    // The first connection is retried like any later one.
    config.fail_fast = false;
    let pool = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_millis(500);
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(2);
            connection.internal_command_timeout = Duration::from_secs(2);
            // A connection that stops answering (a black hole, not a
            // refusal) is closed and made again, rather than kept forever.
            connection.unresponsive.max_timeout = Some(Duration::from_secs(2));
            connection.unresponsive.interval = Duration::from_millis(500);
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .build_pool(4)?;
    // The connection tasks run for the pool's life; their handles are not needed.
    drop(pool.connect_pool());
    match tokio::time::timeout(Duration::from_secs(2), pool.wait_for_connect()).await {
        Ok(connected) => connected?,
        Err(_) => tracing::warn!("Redis does not answer at start: serving without it until it does"),
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_through_counts_and_invalidates() {
        let cache = Cache::memory("test:", Duration::from_secs(60));
        let fetch = |value: i64| move || async move { Ok::<_, ()>(value) };
        assert_eq!(cache.get_or_fetch("test", "k", fetch(1)).await, Ok((1, Lookup::Miss)));
        assert_eq!(cache.get_or_fetch("test", "k", fetch(2)).await, Ok((1, Lookup::Hit)));
        cache.invalidate("k").await;
        assert_eq!(cache.get_or_fetch("test", "k", fetch(3)).await, Ok((3, Lookup::Miss)));
        assert_eq!(cache.stats(), CacheStats { hits: 1, misses: 2, failures: 0 });
        let before = cache.list_version().await;
        cache.retire_lists().await;
        assert_eq!(cache.list_version().await, before + 1);
    }

    #[tokio::test]
    async fn json_is_answered_as_kept_and_shared_with_typed_reads() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct View {
            id: i64,
            name: String,
        }
        let cache = Cache::memory("test:", Duration::from_secs(60));
        let view = || async { Ok::<_, Unencodable>(View { id: 7, name: "Teapot".into() }) };
        let (json, lookup) = cache.get_or_fetch_json("test", "k", view).await.expect("fetched");
        assert_eq!((&json[..], lookup), (&br#"{"id":7,"name":"Teapot"}"#[..], Lookup::Miss));
        let never = || async { Err::<View, _>(Unencodable("not called on a hit".into())) };
        let (again, lookup) = cache.get_or_fetch_json("test", "k", never).await.expect("a hit");
        assert_eq!((again, lookup), (json, Lookup::Hit));
        // The typed read finds the same entry, and the JSON read finds a typed one's.
        let typed = cache.get_or_fetch("test", "k", never).await.expect("a hit");
        assert_eq!(typed, (View { id: 7, name: "Teapot".into() }, Lookup::Hit));
        cache
            .get_or_fetch("test", "t", || async { Ok::<_, Unencodable>(View { id: 8, name: "Cup".into() }) })
            .await
            .expect("fetched");
        let (json, _) = cache.get_or_fetch_json("test", "t", never).await.expect("a hit");
        assert_eq!(&json[..], br#"{"id":8,"name":"Cup"}"#);
        assert_eq!(cache.stats(), CacheStats { hits: 3, misses: 2, failures: 0 });
    }

    /// Redis down: every call skipped (the pool never connects), counted as
    /// a failure; the lists' version is this process's own, moved on by
    /// writes; what writes could not forget waits for Redis.
    #[tokio::test]
    async fn with_redis_down_nothing_waits_and_writes_are_remembered() -> Result<(), fred::error::Error> {
        use fred::prelude::{Builder, Config};
        let pool = Builder::from_config(Config::from_url("redis://127.0.0.1:1")?).build_pool(1)?;
        let health = Dependency::new("test");
        health.failed(&"down for the test");
        let cache = Cache::redis_guarded(pool, "test:", Duration::from_secs(60), health);
        let fetch = |value: i64| move || async move { Ok::<_, ()>(value) };
        assert_eq!(cache.get_or_fetch("test", "k", fetch(1)).await, Ok((1, Lookup::Miss)));
        assert_eq!(cache.get_or_fetch("test", "k", fetch(2)).await, Ok((2, Lookup::Miss)), "nothing kept");
        let before = cache.list_version().await;
        assert_eq!(before & OUTAGE_VERSION, OUTAGE_VERSION, "not a version Redis ever had");
        cache.retire_lists().await;
        assert_eq!(cache.list_version().await, before + 1, "a write here retires this replica's pages");
        cache.invalidate("product:7").await;
        let Store::Redis { pending, .. } = &cache.inner.store else { panic!("a Redis cache") };
        assert!(pending.invalidations.lock().expect("pending").contains("test:product:7"));
        assert!(pending.retire_lists.load(Ordering::Relaxed));
        assert_eq!(cache.stats().hits, 0);
        assert!(cache.stats().failures >= 6, "{:?}", cache.stats());
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_cached() {
        let cache = Cache::memory("test:", Duration::from_secs(60));
        assert_eq!(cache.get_or_fetch::<i64, _, _, _>("test", "k", || async { Err("down") }).await, Err("down"));
        assert_eq!(cache.get_or_fetch("test", "k", || async { Ok::<_, &str>(5) }).await, Ok((5, Lookup::Miss)));
    }
}
