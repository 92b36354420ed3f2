//! Where sessions are kept: in memory (one process) or in Redis (shared by
//! every gateway replica and surviving restarts), and how many are active
//! (`shop_sessions_active`).
//!
//! Both stores are ours rather than tower-sessions' own so they can be
//! counted: the Redis one keeps every session under the shop's key prefix
//! (`<prefix>session:<id>`), not loose in the keyspace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Pool;
use fred::interfaces::KeysInterface;
use fred::types::{Expiration, SetOptions};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result, SessionStore};

#[derive(Debug, Clone)]
pub enum SessionStoreKind {
    Memory(MemorySessions),
    Redis(RedisSessions),
}

impl SessionStoreKind {
    pub fn memory() -> Self {
        Self::Memory(MemorySessions::default())
    }

    pub fn redis(pool: Pool, prefix: &str) -> Self {
        Self::Redis(RedisSessions { pool, prefix: format!("{prefix}session:") })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Sessions that have not expired: this process's, or every replica's
    /// in Redis (so take the max across gateways, not the sum).
    pub async fn active(&self) -> Result<usize> {
        match self {
            Self::Memory(store) => store.active(),
            Self::Redis(store) => store.active().await,
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
            Self::Redis(store) => store.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        match self {
            Self::Memory(store) => store.save(record).await,
            Self::Redis(store) => store.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        match self {
            Self::Memory(store) => store.load(id).await,
            Self::Redis(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        match self {
            Self::Memory(store) => store.delete(id).await,
            Self::Redis(store) => store.delete(id).await,
        }
    }
}

fn unexpired(record: &Record) -> bool {
    record.expiry_date > OffsetDateTime::now_utc()
}

/// Sessions in this process's memory; expired ones are dropped when counted.
#[derive(Debug, Clone, Default)]
pub struct MemorySessions(Arc<Mutex<HashMap<Id, Record>>>);

impl MemorySessions {
    fn map(&self) -> Result<std::sync::MutexGuard<'_, HashMap<Id, Record>>> {
        self.0.lock().map_err(|_| Error::Backend("the session map was poisoned".into()))
    }

    fn active(&self) -> Result<usize> {
        let mut map = self.map()?;
        map.retain(|_, record| unexpired(record));
        Ok(map.len())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, record: &mut Record) -> Result<()> {
        let mut map = self.map()?;
        while map.contains_key(&record.id) {
            record.id = Id::default();
        }
        map.insert(record.id, record.clone());
        Ok(())
    }

    /// Only a session that still exists: a request that loaded it before
    /// sign-out must not bring it back by saving (a cart change, say).
    async fn save(&self, record: &Record) -> Result<()> {
        if let Some(kept) = self.map()?.get_mut(&record.id) {
            *kept = record.clone();
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        Ok(self.map()?.get(id).filter(|record| unexpired(record)).cloned())
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.map()?.remove(id);
        Ok(())
    }
}

/// Sessions in Redis as JSON, each key expiring with its session.
#[derive(Debug, Clone)]
pub struct RedisSessions {
    pool: Pool,
    /// `<cache prefix>session:`
    prefix: String,
}

fn backend(error: fred::error::Error) -> Error {
    Error::Backend(error.to_string())
}

impl RedisSessions {
    fn key(&self, id: &Id) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Writes `record` when `condition` holds: NX (a new id) or XX (a session
    /// that still exists). Whether it was written.
    async fn write(&self, record: &Record, condition: SetOptions) -> Result<bool> {
        let json = serde_json::to_string(record).map_err(|e| Error::Encode(e.to_string()))?;
        let expires = Expiration::EXAT(record.expiry_date.unix_timestamp());
        let written: Option<String> =
            self.pool.set(self.key(&record.id), json, Some(expires), Some(condition), false).await.map_err(backend)?;
        Ok(written.is_some())
    }

    async fn active(&self) -> Result<usize> {
        let mut keys = self.pool.next().scan_buffered(format!("{}*", self.prefix), Some(1000), None);
        let mut count = 0;
        while let Some(key) = keys.next().await {
            key.map_err(backend)?;
            count += 1;
        }
        Ok(count)
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create(&self, record: &mut Record) -> Result<()> {
        while !self.write(record, SetOptions::NX).await? {
            record.id = Id::default(); // taken: a new one
        }
        Ok(())
    }

    /// Only a session that still exists (see `MemorySessions::save`).
    async fn save(&self, record: &Record) -> Result<()> {
        self.write(record, SetOptions::XX).await.map(drop)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let json: Option<String> = self.pool.get(self.key(id)).await.map_err(backend)?;
        json.map(|json| serde_json::from_str(&json).map_err(|e| Error::Decode(e.to_string()))).transpose()
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.pool.del::<(), _>(self.key(id)).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_in: time::Duration) -> Record {
        Record { id: Id::default(), data: HashMap::new(), expiry_date: OffsetDateTime::now_utc() + expires_in }
    }

    #[tokio::test]
    async fn memory_sessions_round_trip_and_expired_ones_are_neither_loaded_nor_counted() {
        let store = MemorySessions::default();
        let mut live = record(time::Duration::hours(1));
        let mut dead = record(time::Duration::seconds(-1));
        store.create(&mut live).await.unwrap();
        store.create(&mut dead).await.unwrap();
        assert_eq!(store.load(&live.id).await.unwrap().map(|r| r.id), Some(live.id));
        assert!(store.load(&dead.id).await.unwrap().is_none());
        assert_eq!(store.active().unwrap(), 1);
        store.delete(&live.id).await.unwrap();
        assert_eq!(store.active().unwrap(), 0);
        // A request still holding the deleted session cannot bring it back.
        store.save(&live).await.unwrap();
        assert!(store.load(&live.id).await.unwrap().is_none());
    }
}
