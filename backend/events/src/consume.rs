//! Running a consumer: acknowledge what was handled, ask again for what was
//! not, and subscribe again after the bus goes away.

use std::future::Future;
use std::time::Duration;

use std::collections::{HashSet, VecDeque};

use tracing::Instrument;

use crate::{Bus, Event};

/// The ids of the last events handled, oldest forgotten first.
#[derive(Default)]
struct RecentIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    const KEEP: usize = 10_000;

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::KEEP
                && let Some(oldest) = self.order.pop_front()
            {
                self.ids.remove(&oldest);
            }
        }
    }
}

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
/// delivered again later.
///
/// Delivery is at least once: an acknowledgement lost with a NATS server
/// that dies brings the event again. Events handled recently (the last
/// 10,000 ids) are recognised and acknowledged without calling `handle`
/// again; handlers must still be idempotent, for redeliveries after this
/// process restarts.
pub async fn run_consumer<F, Fut>(bus: Bus, consumer: Consumer, mut handle: F)
where
    F: FnMut(Event) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Duration::from_millis(200);
    let mut handled = RecentIds::default();
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
            if handled.contains(&delivery.event.id) {
                metrics::counter!("shop_events_redelivered_total", "consumer" => consumer.name.clone()).increment(1);
                delivery.ack().await;
                continue;
            }
            let span = tracing::info_span!(
                "consume",
                otel.name = %format_args!("{} process", delivery.event.kind),
                otel.kind = "consumer",
                messaging.system = bus.name(),
                messaging.operation.type = "process",
                messaging.consumer.group.name = %consumer.name,
                messaging.message.id = %delivery.event.id,
                otel.status_code = tracing::field::Empty,
            );
            shop_trace_context::adopt_traceparent(&span, delivery.event.trace_parent.as_deref());
            match handle(delivery.event.clone()).instrument(span.clone()).await {
                Ok(()) => {
                    handled.insert(delivery.event.id.clone());
                    delivery.ack().await;
                }
                Err(error) => {
                    span.record("otel.status_code", "error");
                    span.in_scope(|| tracing::warn!(consumer = %consumer.name, kind = %delivery.event.kind, %error, "handling an event failed; it will come again"));
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
