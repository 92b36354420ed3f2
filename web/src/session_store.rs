//! Where sessions are kept, on the design card's crates: Redis through
//! `tower-sessions-redis-store` (shared by every gateway replica, surviving
//! restarts), or tower-sessions' own `MemoryStore` (one process); and how
//! many are active (`shop_sessions_active`).
//!
//! Neither store lets a request that loaded a session before sign-out write
//! it back afterwards: the Redis store saves with `SET … XX` (only a key
//! that still exists) and creates with `SET … NX`; in memory,
//! [`MemorySessions`] saves only sessions it knows are still open.
//!
//! In Redis the sessions live in a logical database of their own
//! (`SHOP_SESSION_REDIS_DB`, 1 by default), keyed by the bare session id as
//! the store writes them, so counting them is `DBSIZE` and they never mix
//! with the cache's keys.
//!
//! While Redis is down ([`Dependency`]) no call waits on it, and no session
//! call fails for it:
//! - a session begun (or signed into) meanwhile is kept in this process's
//!   memory (the fallback), and stays there until it ends;
//! - a session in Redis that cannot be read loads as an empty one marked
//!   [`UNREADABLE`] under the same id: the visitor is shown as signed out
//!   with a notice, and their cookie is kept, so once Redis answers they
//!   are signed in again; what they do meanwhile (a guest's cart) is kept
//!   in the fallback under that id until Redis answers;
//! - a session ended meanwhile (sign-out, a new id at sign-in) is deleted
//!   from Redis when it answers again, before Redis is used again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Pool;
use fred::interfaces::ServerInterface;
use time::OffsetDateTime;
use tower_sessions::MemoryStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result, SessionStore};
use tower_sessions_redis_store::RedisStore;

use crate::dependency_health::Dependency;

/// The key of the session data that says the session could not be read
/// (Redis down): its visitor is shown as signed out, with a notice.
pub const UNREADABLE: &str = "session_unreadable";

/// How long a session that could not be read is kept in the fallback if
/// written to meanwhile (a guest's cart during an outage).
const UNREADABLE_FOR: time::Duration = time::Duration::hours(1);

#[derive(Debug, Clone)]
pub enum SessionStoreKind {
    Memory(MemorySessions),
    Redis(Arc<RedisSessions>),
}

/// Sessions in Redis, with the fallback used while Redis is down.
#[derive(Debug)]
pub struct RedisSessions {
    store: RedisStore<Pool>,
    pool: Pool,
    health: Dependency,
    /// Sessions begun or written while Redis was down.
    fallback: MemorySessions,
    /// Sessions ended while Redis was down, to delete from it once back.
    ended: Mutex<HashSet<Id>>,
}

impl SessionStoreKind {
    pub fn memory() -> Self {
        Self::Memory(MemorySessions::default())
    }

    /// Sessions in Redis; `pool` is connected to their own database.
    pub fn redis(pool: Pool) -> Self {
        Self::redis_guarded(pool, Dependency::new("redis"))
    }

    /// Sessions in Redis, kept in memory while `health` says it is down.
    pub fn redis_guarded(pool: Pool, health: Dependency) -> Self {
        Self::Redis(Arc::new(RedisSessions {
            store: RedisStore::new(pool.clone()),
            pool,
            health,
            fallback: MemorySessions::default(),
            ended: Mutex::default(),
        }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(..) => "redis",
        }
    }

    /// Once Redis answers again: deletes the sessions ended while it was
    /// down. False if Redis failed again (tried again later).
    pub async fn recover(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(sessions) => sessions.recover().await,
        }
    }

    /// Whether the sessions' Redis answers within `within` (the probe).
    pub async fn ping(&self, within: Duration) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(sessions) => crate::cache::ping(&sessions.pool, within).await,
        }
    }

    /// Sessions that have not expired: this process's, or every replica's
    /// in Redis (so take the max across gateways, not the sum).
    pub async fn active(&self) -> Result<usize> {
        match self {
            Self::Memory(store) => store.active().await,
            Self::Redis(sessions) => {
                // Frees the fallback's expired sessions as it counts them.
                sessions.fallback.active().await?;
                if !sessions.health.is_up() {
                    return Err(Error::Backend("Redis is down".into()));
                }
                let keys: u64 = sessions.pool.dbsize().await.map_err(|error| Error::Backend(error.to_string()))?;
                Ok(usize::try_from(keys).unwrap_or(usize::MAX))
            }
        }
    }

    /// Sets `shop_sessions_active` every 15 s, until aborted.
    pub async fn report_active(self) {
        loop {
            match self.active().await {
                Ok(active) => metrics::gauge!("shop_sessions_active").set(active as f64),
                Err(error) => tracing::debug!(%error, "counting sessions failed"),
            }
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    }
}

#[async_trait]
impl SessionStore for SessionStoreKind {
    async fn create(&self, record: &mut Record) -> Result<()> {
        match self {
            Self::Memory(store) => store.create(record).await,
            Self::Redis(sessions) => sessions.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        match self {
            Self::Memory(store) => store.save(record).await,
            Self::Redis(sessions) => sessions.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        match self {
            Self::Memory(store) => store.load(id).await,
            Self::Redis(sessions) => sessions.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        match self {
            Self::Memory(store) => store.delete(id).await,
            Self::Redis(sessions) => sessions.delete(id).await,
        }
    }
}

impl RedisSessions {
    /// A store error that says Redis is away (not a record that does not
    /// decode): Redis is skipped from now on.
    fn failed(&self, error: &Error) -> bool {
        let outage = matches!(error, Error::Backend(_));
        if outage {
            self.health.failed(error);
        }
        outage
    }

    /// A new session (a new id): in Redis, or in the fallback while Redis
    /// is down. A new id is a session that can be read, whatever the one
    /// it replaces was.
    async fn create(&self, record: &mut Record) -> Result<()> {
        record.data.remove(UNREADABLE);
        if self.health.allow() {
            match self.store.create(record).await {
                Ok(()) => return Ok(()),
                Err(error) if self.failed(&error) => {}
                Err(error) => return Err(error),
            }
        }
        self.fallback.create(record).await
    }

    /// A session begun in the fallback is saved there; one that could not
    /// be read, or whose Redis is down, is kept there (under its id) until
    /// Redis answers; any other is saved in Redis.
    async fn save(&self, record: &Record) -> Result<()> {
        if self.fallback.is_open(&record.id)? {
            return self.fallback.save(record).await;
        }
        if record.data.contains_key(UNREADABLE) {
            let mut kept = record.clone();
            kept.expiry_date = kept.expiry_date.min(OffsetDateTime::now_utc() + UNREADABLE_FOR);
            return self.fallback.keep(&kept).await;
        }
        if self.health.allow() {
            match self.store.save(record).await {
                Ok(()) => return Ok(()),
                Err(error) if self.failed(&error) => {}
                Err(error) => return Err(error),
            }
        }
        self.fallback.keep(record).await
    }

    /// Redis first (a session kept in the fallback because it could not be
    /// read is the one in Redis again once Redis answers), then the
    /// fallback; while Redis is down, a session not in the fallback loads
    /// as an unreadable one.
    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        if self.is_ended(id)? {
            return Ok(None);
        }
        if self.health.allow() {
            match self.store.load(id).await {
                Ok(Some(record)) => {
                    // Read again: what was kept of it meanwhile goes.
                    if self.fallback.is_open(id)? {
                        self.fallback.delete(id).await?;
                    }
                    return Ok(Some(record));
                }
                // One kept while Redis was down, whose Redis record is gone
                // since: it is this session now, and readable.
                Ok(None) => {
                    return Ok(self.fallback.load(id).await?.map(|mut record| {
                        record.data.remove(UNREADABLE);
                        record
                    }));
                }
                Err(error) if self.failed(&error) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(record) = self.fallback.load(id).await? {
            return Ok(Some(record));
        }
        metrics::counter!("shop_sessions_unreadable_total").increment(1);
        let data = HashMap::from([(UNREADABLE.to_owned(), serde_json::Value::Bool(true))]);
        Ok(Some(Record { id: *id, data, expiry_date: OffsetDateTime::now_utc() + UNREADABLE_FOR }))
    }

    /// Gone from the fallback at once, and from Redis now or, while it is
    /// down, once it answers (until then this process loads it as nothing).
    async fn delete(&self, id: &Id) -> Result<()> {
        self.fallback.delete(id).await?;
        if self.health.allow() {
            match self.store.delete(id).await {
                Ok(()) => return Ok(()),
                Err(error) if self.failed(&error) => {}
                Err(error) => return Err(error),
            }
        }
        self.ended()?.insert(*id);
        Ok(())
    }

    fn ended(&self) -> Result<std::sync::MutexGuard<'_, HashSet<Id>>> {
        self.ended.lock().map_err(|_| Error::Backend("the ended sessions were poisoned".into()))
    }

    fn is_ended(&self, id: &Id) -> Result<bool> {
        Ok(self.ended()?.contains(id))
    }

    async fn recover(&self) -> bool {
        let Ok(ended) = self.ended().map(|ended| ended.iter().copied().collect::<Vec<_>>()) else { return false };
        for id in ended {
            if self.store.delete(&id).await.is_err() {
                return false;
            }
            if let Ok(mut waiting) = self.ended() {
                waiting.remove(&id);
            }
        }
        true
    }
}

/// tower-sessions' `MemoryStore`, with the open sessions' expiry times
/// beside it: to count them, and because `MemoryStore::save` inserts
/// whatever it is given, to save only a session that is still open.
#[derive(Debug, Clone, Default)]
pub struct MemorySessions {
    store: MemoryStore,
    open: Arc<Mutex<HashMap<Id, OffsetDateTime>>>,
}

impl MemorySessions {
    fn open(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Id, OffsetDateTime>>> {
        self.open.lock().map_err(|_| Error::Backend("the session index was poisoned".into()))
    }

    fn is_open(&self, id: &Id) -> Result<bool> {
        Ok(self.open()?.get(id).is_some_and(|expiry| *expiry > OffsetDateTime::now_utc()))
    }

    /// Keeps `record` under its own id, open (a session begun elsewhere:
    /// in Redis, before it went down).
    async fn keep(&self, record: &Record) -> Result<()> {
        self.open()?.insert(record.id, record.expiry_date);
        self.store.save(record).await
    }

    /// Counts the open sessions, and frees the expired ones (MemoryStore
    /// never drops a record by itself).
    async fn active(&self) -> Result<usize> {
        let now = OffsetDateTime::now_utc();
        let (expired, active) = {
            let mut open = self.open()?;
            let expired: Vec<Id> = open.iter().filter(|(_, expiry)| **expiry <= now).map(|(id, _)| *id).collect();
            open.retain(|_, expiry| *expiry > now);
            (expired, open.len())
        };
        for id in expired {
            self.store.delete(&id).await?;
        }
        Ok(active)
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, record: &mut Record) -> Result<()> {
        self.store.create(record).await?;
        self.open()?.insert(record.id, record.expiry_date);
        Ok(())
    }

    /// Only a session that is still open: a request that loaded it before
    /// sign-out must not bring it back by saving (a cart change, say). A
    /// sign-out that lands while this saves is seen afterwards, and the
    /// record goes again.
    async fn save(&self, record: &Record) -> Result<()> {
        let still_open = match self.open()?.get_mut(&record.id) {
            Some(expiry) => {
                *expiry = record.expiry_date;
                true
            }
            None => false,
        };
        if !still_open {
            return Ok(());
        }
        self.store.save(record).await?;
        if !self.is_open(&record.id)? {
            self.store.delete(&record.id).await?;
        }
        Ok(())
    }

    /// Only an open session loads, whatever the store still holds.
    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        if !self.is_open(id)? {
            return Ok(None);
        }
        self.store.load(id).await
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.open()?.remove(id);
        self.store.delete(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_in: time::Duration) -> Record {
        Record { id: Id::default(), data: HashMap::new(), expiry_date: OffsetDateTime::now_utc() + expires_in }
    }

    /// Redis down: nothing is asked of it (the pool never connects), and no
    /// call fails.
    #[tokio::test]
    async fn with_redis_down_sessions_go_to_the_fallback_and_unreadable_ones_are_marked() -> Result<()> {
        use fred::prelude::{Builder, Config};
        let config = Config::from_url("redis://127.0.0.1:1").map_err(|e| Error::Backend(e.to_string()))?;
        let pool = Builder::from_config(config).build_pool(1).map_err(|e| Error::Backend(e.to_string()))?;
        let health = Dependency::new("test");
        health.failed(&"down for the test");
        let store = SessionStoreKind::redis_guarded(pool, health);

        // A session from before the outage: unreadable, under its own id.
        let old = Id::default();
        let unreadable = store.load(&old).await?.expect("a placeholder");
        assert_eq!((unreadable.id, unreadable.data.get(UNREADABLE)), (old, Some(&serde_json::Value::Bool(true))));
        // Written to meanwhile (a guest's cart): kept, still marked.
        let mut with_cart = unreadable.clone();
        with_cart.data.insert("cart".into(), serde_json::json!({ "7": 2 }));
        store.save(&with_cart).await?;
        let again = store.load(&old).await?.expect("kept");
        assert_eq!(again.data.get("cart"), Some(&serde_json::json!({ "7": 2 })));
        assert!(again.data.contains_key(UNREADABLE));

        // Signing in makes a new session: readable, in the fallback.
        let mut fresh = again.clone();
        store.create(&mut fresh).await?;
        assert_ne!(fresh.id, old);
        let loaded = store.load(&fresh.id).await?.expect("in the fallback");
        assert!(!loaded.data.contains_key(UNREADABLE));

        // Ended while Redis is down: gone here, and kept to delete from Redis.
        store.delete(&old).await?;
        assert!(store.load(&old).await?.is_none());
        store.delete(&fresh.id).await?;
        assert!(store.load(&fresh.id).await?.is_none());
        let SessionStoreKind::Redis(sessions) = &store else { panic!("a Redis store") };
        assert_eq!(sessions.ended()?.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn memory_sessions_round_trip_and_expired_ones_are_neither_loaded_nor_counted() -> Result<()> {
        let store = MemorySessions::default();
        let mut live = record(time::Duration::hours(1));
        let mut dead = record(time::Duration::seconds(-1));
        store.create(&mut live).await?;
        store.create(&mut dead).await?;
        assert_eq!(store.load(&live.id).await?.map(|r| r.id), Some(live.id));
        assert!(store.load(&dead.id).await?.is_none());
        assert_eq!(store.active().await?, 1);
        store.delete(&live.id).await?;
        assert_eq!(store.active().await?, 0);
        // A request still holding the deleted session cannot bring it back.
        store.save(&live).await?;
        assert!(store.load(&live.id).await?.is_none());
        Ok(())
    }
}
