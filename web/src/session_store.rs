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

use std::collections::HashMap;
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

#[derive(Debug, Clone)]
pub enum SessionStoreKind {
    Memory(MemorySessions),
    Redis(RedisStore<Pool>, Pool),
}

impl SessionStoreKind {
    pub fn memory() -> Self {
        Self::Memory(MemorySessions::default())
    }

    /// Sessions in Redis; `pool` is connected to their own database.
    pub fn redis(pool: Pool) -> Self {
        Self::Redis(RedisStore::new(pool.clone()), pool)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(..) => "redis",
        }
    }

    /// Sessions that have not expired: this process's, or every replica's
    /// in Redis (so take the max across gateways, not the sum).
    pub async fn active(&self) -> Result<usize> {
        match self {
            Self::Memory(store) => store.active().await,
            Self::Redis(_, pool) => {
                let keys: u64 = pool.dbsize().await.map_err(|error| Error::Backend(error.to_string()))?;
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
            Self::Redis(store, _) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        match self {
            Self::Memory(store) => store.save(record).await,
            Self::Redis(store, _) => store.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        match self {
            Self::Memory(store) => store.load(id).await,
            Self::Redis(store, _) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        match self {
            Self::Memory(store) => store.delete(id).await,
            Self::Redis(store, _) => store.delete(id).await,
        }
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
