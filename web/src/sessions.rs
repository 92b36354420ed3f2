//! Where sessions are kept: in memory (one process) or in Redis (shared by
//! every gateway replica and surviving restarts).

use async_trait::async_trait;
use fred::clients::Pool;
use tower_sessions::MemoryStore;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Result, SessionStore};
use tower_sessions_redis_store::RedisStore;

#[derive(Debug, Clone)]
pub enum SessionStoreKind {
    Memory(MemoryStore),
    Redis(RedisStore<Pool>),
}

impl SessionStoreKind {
    pub fn memory() -> Self {
        Self::Memory(MemoryStore::default())
    }

    pub fn redis(pool: Pool) -> Self {
        Self::Redis(RedisStore::new(pool))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
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
