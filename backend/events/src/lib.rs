//! The shop's domain events.
//!
//! A service writes each event to its own `outbox` table in the same
//! transaction as the change it describes ([`outbox::record`]); a [`Relay`]
//! then publishes it to the [`Bus`] with the event id as the NATS message
//! id, so a republish after a crash is dropped by JetStream's de-duplication.
//! Consumers acknowledge only what they handled, and handle each event
//! idempotently. The schemas are in `docs/events.md`.

pub mod bus;
pub mod consume;
pub mod outbox;
pub mod payloads;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use bus::{Bus, BusError, NatsSettings};
pub use consume::{Consumer, run_consumer};
pub use outbox::{Relay, Wake};
pub use payloads::*;

/// The envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event; the NATS message id, and what consumers de-duplicate on.
    pub id: String,
    /// What happened: `order.created`, `product.changed`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The version of `data`'s schema for this type.
    pub version: u32,
    pub occurred_at_ms: i64,
    pub data: serde_json::Value,
    /// The W3C `traceparent` of the request that caused the event. Metadata,
    /// not part of the event's JSON: it travels in the outbox's own column
    /// and in the NATS message's headers.
    #[serde(skip)]
    pub trace_parent: Option<String>,
}

/// A typed event body.
pub trait Payload: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const VERSION: u32;
}

impl Event {
    pub fn new<P: Payload>(payload: &P) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: uuid::Uuid::new_v4().to_string(),
            kind: P::KIND.to_owned(),
            version: P::VERSION,
            occurred_at_ms: shop_storage::now_ms(),
            data: serde_json::to_value(payload)?,
            trace_parent: shop_trace_context::traceparent(&tracing::Span::current()),
        })
    }

    /// The body, if this event is of type `P` in a version this code reads.
    pub fn decode<P: Payload>(&self) -> Option<P> {
        (self.kind == P::KIND && self.version == P::VERSION).then(|| serde_json::from_value(self.data.clone()).ok())?
    }
}

/// Describes the outbox's and consumers' metrics to the registry.
pub fn describe_metrics() {
    metrics::describe_gauge!("shop_outbox_backlog", "Events written and not yet published, by service.");
    metrics::describe_gauge!(
        "shop_outbox_relay_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest unpublished event, by service."
    );
    metrics::describe_counter!("shop_outbox_published_total", "Events published to the bus, by service.");
    metrics::describe_counter!(
        "shop_events_redelivered_total",
        "Events delivered again after being handled, recognised and skipped, by consumer."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_refuse_other_types() -> Result<(), serde_json::Error> {
        let event = Event::new(&UserDeleted { user_id: 7 })?;
        let wire = serde_json::to_string(&event)?;
        assert!(wire.contains(r#""type":"user.deleted""#) && wire.contains(r#""version":1"#), "{wire}");
        let back: Event = serde_json::from_str(&wire)?;
        assert_eq!(back.decode::<UserDeleted>(), Some(UserDeleted { user_id: 7 }));
        assert_eq!(back.decode::<UserRegistered>(), None);
        let newer = Event { version: 2, ..back };
        assert_eq!(newer.decode::<UserDeleted>(), None, "a version this code does not know is not guessed at");
        Ok(())
    }
}
