//! Running a consumer: acknowledge what was handled, ask again for what was
//! not, and subscribe again after the bus goes away.

use std::future::Future;
use std::time::Duration;

use crate::{Bus, Event};

/// Who consumes which event types.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// A durable consumer's name; for a per-replica one, unique to the process.
    pub name: String,
    pub kinds: Vec<&'static str>,
    /// Durable: one shared position (each event handled once, by one
    /// replica). Not durable: this process sees every new event (every gateway
    /// replica invalidates its own cache).
    pub durable: bool,
    /// A per-replica consumer starts with every event still in the stream,
    /// not only new ones.
    pub from_start: bool,
}

impl Consumer {
    /// A consumer every replica has its own of.
    pub fn per_replica(purpose: &str, kinds: Vec<&'static str>) -> Self {
        Self { name: format!("{purpose}-{}", uuid::Uuid::new_v4().simple()), kinds, durable: false, from_start: false }
    }

    /// One consumer shared by every replica.
    pub fn durable(name: &str, kinds: Vec<&'static str>) -> Self {
        Self { name: name.to_owned(), kinds, durable: true, from_start: true }
    }
}

/// Feeds every event of `consumer`'s types to `handle` until the process
/// ends. An event is acknowledged only when `handle` succeeds; a failure is
/// delivered again later. Handlers must be idempotent: delivery is at least
/// once.
pub async fn run_consumer<F, Fut>(bus: Bus, consumer: Consumer, mut handle: F)
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut subscription = match bus.subscribe(&consumer).await {
            Ok(subscription) => {
                backoff = Duration::from_millis(200);
                subscription
            }
            Err(error) => {
                tracing::warn!(consumer = %consumer.name, %error, "cannot subscribe yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        while let Some(delivery) = subscription.next().await {
            match handle(delivery.event.clone()).await {
                Ok(()) => delivery.ack().await,
                Err(error) => {
                    tracing::warn!(consumer = %consumer.name, kind = %delivery.event.kind, %error, "handling an event failed; it will come again");
                    delivery.retry_later().await;
                }
            }
        }
        if matches!(bus, Bus::InProcess(_)) {
            return; // the process is shutting down
        }
        tokio::time::sleep(backoff).await;
    }
}
