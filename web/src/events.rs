//! What the gateway does with the shop's events. Every gateway replica has
//! consumers of its own, so each one hears every event:
//!
//! - `product.changed`: forget the cached product and product pages;
//! - `category.changed`: forget product pages and the category list;
//! - `user.deleted`: end the user's sessions, forget the cached profile;
//! - `user.password_reset`: end the sessions begun before the reset;
//! - `order.status_changed`, `order.payment_changed`: tell browser pages
//!   watching the order.
//!
//! Each handler is idempotent: hearing an event twice changes nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fred::clients::Pool;
use fred::interfaces::SortedSetsInterface;
use fred::types::sorted_sets::Ordering;
use shop_events::{
    Bus, CategoryChanged, Consumer, OrderPaymentChanged, OrderStatusChanged, PasswordReset, Payload, ProductChanged,
    UserDeleted, run_consumer,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::profiles::Profiles;

/// Per user, the moment before which their sessions are no longer valid:
/// set to "forever" when the account is deleted, to "now" when the password
/// changes. Shared through Redis by every replica, or kept in memory.
#[derive(Clone)]
pub enum Revoked {
    Memory(Arc<Mutex<HashMap<i64, i64>>>),
    /// `health`: Redis shared with the cache and the sessions, skipped
    /// while it is down (`dependency_health`).
    Redis {
        pool: Pool,
        key: String,
        health: crate::dependency_health::Dependency,
    },
}

/// Sessions of a deleted user end whenever they began.
pub const FOREVER: i64 = i64::MAX;

impl Revoked {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Kept as a sorted set (member: the user id, score: the time), so that
    /// moving a time on is one atomic `ZADD … GT`: a password change can
    /// never bring a deleted account's "forever" back down.
    pub fn redis(pool: Pool, prefix: &str) -> Self {
        Self::redis_guarded(pool, prefix, crate::dependency_health::Dependency::new("redis"))
    }

    pub fn redis_guarded(pool: Pool, prefix: &str, health: crate::dependency_health::Dependency) -> Self {
        Self::Redis { pool, key: format!("{prefix}sessions_valid_after_by_user"), health }
    }

    /// Ends every session of `user_id` that began before `before_ms`.
    pub async fn end_sessions(&self, user_id: i64, before_ms: i64) -> Result<(), String> {
        match self {
            Self::Memory(map) => {
                let mut map = map.lock().map_err(|e| e.to_string())?;
                let entry = map.entry(user_id).or_insert(before_ms);
                *entry = (*entry).max(before_ms);
                Ok(())
            }
            Self::Redis { pool, key, health } => {
                if !health.allow() {
                    return Err("Redis is down".into());
                }
                // Milliseconds since 1970 are exact in a double until the year 285,000.
                let score = before_ms as f64;
                let added: Result<i64, _> =
                    pool.zadd(key, None, Some(Ordering::GreaterThan), false, false, (score, user_id)).await;
                if let Err(error) = &added
                    && crate::dependency_health::is_redis_outage(error)
                {
                    health.failed(error);
                }
                added.map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    /// Whether a session of `user_id` that began at `signed_in_at_ms` has
    /// ended. If Redis cannot say, the session stands: the services still
    /// refuse anything for a deleted account.
    pub async fn has_ended(&self, user_id: i64, signed_in_at_ms: i64) -> bool {
        let valid_after = match self {
            Self::Memory(map) => map.lock().ok().and_then(|map| map.get(&user_id).copied()),
            Self::Redis { health, .. } if !health.allow() => None,
            Self::Redis { pool, key, health } => match pool.zscore::<Option<f64>, _, _>(key, user_id).await {
                Ok(valid_after) => valid_after.map(|ms| ms as i64),
                Err(error) if crate::dependency_health::is_redis_outage(&error) => {
                    health.failed(&error);
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot check ended sessions");
                    None
                }
            },
        };
        valid_after.is_some_and(|valid_after| signed_in_at_ms <= valid_after)
    }
}

/// An order changed (its status or its payment): the pages watching it
/// (server-sent events) show it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderChanged {
    pub order_id: i64,
}

/// Order changes, for the pages watching them.
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<OrderChanged>,
}

impl Default for Live {
    fn default() -> Self {
        Self { sender: broadcast::channel(1024).0 }
    }
}

impl Live {
    pub fn subscribe(&self) -> broadcast::Receiver<OrderChanged> {
        self.sender.subscribe()
    }

    pub fn tell(&self, change: OrderChanged) {
        // Nobody watching is fine.
        let _ = self.sender.send(change);
    }
}

/// Starts this replica's consumers; they run until their handles are aborted.
pub fn start(bus: &Bus, catalog: Catalog, profiles: Profiles, revoked: Revoked, live: Live) -> Vec<JoinHandle<()>> {
    let products = Consumer::per_replica("gateway-products", vec![ProductChanged::KIND, CategoryChanged::KIND]);
    let users = Consumer::per_replica("gateway-users", vec![UserDeleted::KIND, PasswordReset::KIND]);
    let orders = Consumer::per_replica("gateway-orders", vec![OrderStatusChanged::KIND, OrderPaymentChanged::KIND]);
    vec![
        tokio::spawn(run_consumer(bus.clone(), products, move |event| {
            let catalog = catalog.clone();
            async move {
                if let Some(changed) = event.decode::<ProductChanged>() {
                    catalog.forget(changed.product_id).await;
                }
                // Lists and the category list go at once; a product's own
                // copy names its categories until the cache's TTL ends it.
                if event.decode::<CategoryChanged>().is_some() {
                    catalog.forget_lists().await;
                }
                Ok(())
            }
        })),
        tokio::spawn(run_consumer(bus.clone(), users, move |event| {
            let (profiles, revoked) = (profiles.clone(), revoked.clone());
            async move {
                if let Some(deleted) = event.decode::<UserDeleted>() {
                    revoked.end_sessions(deleted.user_id, FOREVER).await?;
                    profiles.forget(deleted.user_id).await;
                    tracing::info!(user_id = deleted.user_id, "sessions of a deleted user revoked");
                }
                if let Some(reset) = event.decode::<PasswordReset>() {
                    // Moves forward only (ZADD GT): never undoes a later end.
                    revoked.end_sessions(reset.user_id, reset.at_ms).await?;
                    tracing::info!(user_id = reset.user_id, "sessions from before a password reset ended");
                }
                Ok(())
            }
        })),
        tokio::spawn(run_consumer(bus.clone(), orders, move |event| {
            let live = live.clone();
            async move {
                if let Some(change) = event.decode::<OrderStatusChanged>() {
                    live.tell(OrderChanged { order_id: change.order_id });
                }
                if let Some(change) = event.decode::<OrderPaymentChanged>() {
                    live.tell(OrderChanged { order_id: change.order_id });
                }
                Ok(())
            }
        })),
    ]
}
