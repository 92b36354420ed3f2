//! What the gateway does with the shop's events. Every gateway replica has
//! consumers of its own, so each one hears every event:
//!
//! - `product.changed`: forget the cached product and product pages;
//! - `user.deleted`: end the user's sessions, forget the cached profile;
//! - `order.status_changed`: tell browser pages watching the order.
//!
//! Each handler is idempotent: hearing an event twice changes nothing more.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use fred::clients::Pool;
use fred::interfaces::SetsInterface;
use shop_events::{Bus, Consumer, OrderStatusChanged, Payload, ProductChanged, UserDeleted, run_consumer};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::cache::Cache;

/// Users whose sessions must end (their accounts are gone). Ids are never
/// reused, so the set only grows with deletions.
#[derive(Clone)]
pub enum Revoked {
    Memory(Arc<Mutex<HashSet<i64>>>),
    Redis { pool: Pool, key: String },
}

impl Revoked {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    pub fn redis(pool: Pool, prefix: &str) -> Self {
        Self::Redis { pool, key: format!("{prefix}revoked_users") }
    }

    pub async fn revoke(&self, user_id: i64) -> Result<(), String> {
        match self {
            Self::Memory(set) => {
                set.lock().map_err(|e| e.to_string())?.insert(user_id);
                Ok(())
            }
            Self::Redis { pool, key } => {
                let _: i64 = pool.sadd(key, user_id).await.map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }

    /// Whether a session of this user must end. If Redis cannot say, the
    /// session stands: the deletion reached the services already, and every
    /// call for a deleted user fails there.
    pub async fn is_revoked(&self, user_id: i64) -> bool {
        match self {
            Self::Memory(set) => set.lock().is_ok_and(|set| set.contains(&user_id)),
            Self::Redis { pool, key } => match pool.sismember::<bool, _, _>(key, user_id).await {
                Ok(revoked) => revoked,
                Err(error) => {
                    tracing::warn!(%error, "cannot check revoked sessions");
                    false
                }
            },
        }
    }
}

/// Order status changes, for the pages watching them (server-sent events).
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<OrderStatusChanged>,
}

impl Default for Live {
    fn default() -> Self {
        Self { sender: broadcast::channel(1024).0 }
    }
}

impl Live {
    pub fn subscribe(&self) -> broadcast::Receiver<OrderStatusChanged> {
        self.sender.subscribe()
    }

    pub fn tell(&self, change: OrderStatusChanged) {
        // Nobody watching is fine.
        let _ = self.sender.send(change);
    }
}

/// Starts this replica's consumers; they run until their handles are aborted.
pub fn start(bus: &Bus, cache: Cache, revoked: Revoked, live: Live) -> Vec<JoinHandle<()>> {
    let products = Consumer::per_replica("gateway-products", vec![ProductChanged::KIND]);
    let users = Consumer::per_replica("gateway-users", vec![UserDeleted::KIND]);
    let orders = Consumer::per_replica("gateway-orders", vec![OrderStatusChanged::KIND]);
    let product_cache = cache.clone();
    vec![
        tokio::spawn(run_consumer(bus.clone(), products, move |event| {
            let cache = product_cache.clone();
            async move {
                if let Some(changed) = event.decode::<ProductChanged>() {
                    cache.invalidate(&format!("product:{}", changed.product_id)).await;
                    cache.retire_lists().await;
                }
                Ok(())
            }
        })),
        tokio::spawn(run_consumer(bus.clone(), users, move |event| {
            let (cache, revoked) = (cache.clone(), revoked.clone());
            async move {
                if let Some(deleted) = event.decode::<UserDeleted>() {
                    revoked.revoke(deleted.user_id).await?;
                    cache.invalidate(&format!("user:{}", deleted.user_id)).await;
                    tracing::info!(user_id = deleted.user_id, "sessions of a deleted user revoked");
                }
                Ok(())
            }
        })),
        tokio::spawn(run_consumer(bus.clone(), orders, move |event| {
            let live = live.clone();
            async move {
                if let Some(change) = event.decode::<OrderStatusChanged>() {
                    live.tell(change);
                }
                Ok(())
            }
        })),
    ]
}
