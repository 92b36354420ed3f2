//! Where events go: NATS JetStream, or, in one process with no NATS, an
//! in-process broadcast with the same de-duplication by event id.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::{OnceCell, broadcast};

use crate::Event;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the in-process bus is closed")]
    Closed,
}

fn nats_error(error: impl std::fmt::Display) -> BusError {
    BusError::Nats(error.to_string())
}

/// Where JetStream keeps the shop's events.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    /// The stream's name; created at start if missing.
    pub stream: String,
    /// Events are published on `<prefix>.<type>`, e.g. `shop.order.created`.
    pub subject_prefix: String,
}

impl NatsSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), stream: "SHOP_EVENTS".into(), subject_prefix: "shop".into() }
    }
}

#[derive(Clone)]
pub enum Bus {
    InProcess(Arc<InProcess>),
    Nats(Arc<Nats>),
}

pub struct InProcess {
    sender: broadcast::Sender<Event>,
    /// Recently published ids: a republish is dropped, as JetStream would.
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

pub struct Nats {
    jetstream: jetstream::Context,
    settings: NatsSettings,
    stream: OnceCell<stream::Stream>,
}

const REMEMBERED_IDS: usize = 10_000;
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InProcess(_) => f.write_str("Bus::InProcess"),
            Self::Nats(nats) => write!(f, "Bus::Nats({:?})", nats.settings),
        }
    }
}

impl Bus {
    pub fn in_process() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self::InProcess(Arc::new(InProcess { sender, seen: Mutex::new((HashSet::new(), VecDeque::new())) }))
    }

    /// Connects to NATS. A server that is down now is retried in the
    /// background: writes keep succeeding and their events wait in the outbox.
    pub async fn nats(settings: NatsSettings) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("shop")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.url.as_str())
            .await
            .map_err(nats_error)?;
        let jetstream = jetstream::new(client);
        Ok(Self::Nats(Arc::new(Nats { jetstream, settings, stream: OnceCell::new() })))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::InProcess(_) => "in-process",
            Self::Nats(_) => "nats",
        }
    }

    /// Publishes and waits for the server's acknowledgement.
    pub async fn publish(&self, event: &Event) -> Result<(), BusError> {
        match self {
            Self::InProcess(bus) => bus.publish(event),
            Self::Nats(nats) => tokio::time::timeout(PUBLISH_TIMEOUT, nats.publish(event))
                .await
                .map_err(|_| BusError::Nats("no acknowledgement within 5 s".into()))?,
        }
    }

    pub(crate) async fn subscribe(&self, consumer: &crate::Consumer) -> Result<Subscription, BusError> {
        match self {
            Self::InProcess(bus) => {
                Ok(Subscription::InProcess { receiver: bus.sender.subscribe(), kinds: consumer.kinds.clone() })
            }
            Self::Nats(nats) => nats.subscribe(consumer).await,
        }
    }
}

impl InProcess {
    fn publish(&self, event: &Event) -> Result<(), BusError> {
        {
            let mut seen = self.seen.lock().map_err(|_| BusError::Closed)?;
            let (ids, order) = &mut *seen;
            if !ids.insert(event.id.clone()) {
                return Ok(());
            }
            order.push_back(event.id.clone());
            if order.len() > REMEMBERED_IDS
                && let Some(oldest) = order.pop_front()
            {
                ids.remove(&oldest);
            }
        }
        // No subscriber yet is not an error: nobody was listening.
        let _ = self.sender.send(event.clone());
        Ok(())
    }
}

impl Nats {
    fn subject(&self, kind: &str) -> String {
        format!("{}.{kind}", self.settings.subject_prefix)
    }

    /// The stream, created on first use (idempotently: every process may try).
    async fn stream(&self) -> Result<&stream::Stream, BusError> {
        self.stream
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: self.settings.stream.clone(),
                    subjects: vec![format!("{}.>", self.settings.subject_prefix)],
                    storage: stream::StorageType::File,
                    max_age: Duration::from_secs(7 * 24 * 60 * 60),
                    // Republished events (a relay that crashed after publishing,
                    // before recording it) are dropped within this window.
                    duplicate_window: Duration::from_secs(10 * 60),
                    ..Default::default()
                };
                self.jetstream.get_or_create_stream(config).await.map_err(nats_error)
            })
            .await
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.stream().await?;
        let payload = serde_json::to_vec(event)?;
        let mut message =
            jetstream::message::PublishMessage::build().payload(payload.into()).message_id(event.id.as_str());
        if let Some(trace_parent) = &event.trace_parent {
            message = message.header(shop_trace_context::TRACEPARENT, trace_parent.as_str());
        }
        let ack = self.jetstream.send_publish(self.subject(&event.kind), message).await.map_err(nats_error)?;
        ack.await.map_err(nats_error)?;
        Ok(())
    }

    async fn subscribe(&self, consumer: &crate::Consumer) -> Result<Subscription, BusError> {
        let stream = self.stream().await?;
        let config = consumer::pull::Config {
            durable_name: consumer.durable.then(|| consumer.name.clone()),
            name: Some(consumer.name.clone()),
            filter_subjects: consumer.kinds.iter().map(|kind| self.subject(kind)).collect(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            deliver_policy: if consumer.from_start {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::New
            },
            // A replica's own consumer goes away a while after the replica does.
            inactive_threshold: if consumer.durable { Duration::ZERO } else { Duration::from_secs(300) },
            ..Default::default()
        };
        let pull = stream.get_or_create_consumer(&consumer.name, config).await.map_err(nats_error)?;
        let messages = pull.messages().await.map_err(nats_error)?;
        Ok(Subscription::Nats { messages: Box::new(messages) })
    }
}

pub(crate) enum Subscription {
    InProcess { receiver: broadcast::Receiver<Event>, kinds: Vec<&'static str> },
    Nats { messages: Box<consumer::pull::Stream> },
}

/// One event handed to a consumer, to be acknowledged once handled.
pub(crate) struct Delivery {
    pub event: Event,
    message: Option<jetstream::Message>,
}

impl Delivery {
    pub async fn ack(self) {
        // Confirmed by the server, so a lost acknowledgement is seen here.
        if let Some(message) = self.message
            && let Err(error) = message.double_ack().await
        {
            tracing::warn!(%error, "acknowledging an event failed; it will be delivered again");
        }
    }

    /// Not handled: deliver it again a little later.
    pub async fn retry_later(self) {
        if let Some(message) = self.message {
            let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
        }
    }
}

impl Subscription {
    /// The next event, or `None` when the subscription has ended and must be
    /// made again.
    pub async fn next(&mut self) -> Option<Delivery> {
        match self {
            Self::InProcess { receiver, kinds } => loop {
                match receiver.recv().await {
                    Ok(event) if kinds.iter().any(|kind| *kind == event.kind) => {
                        return Some(Delivery { event, message: None });
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "an in-process consumer fell behind and missed events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            },
            Self::Nats { messages } => loop {
                match messages.next().await? {
                    Ok(message) => match serde_json::from_slice::<Event>(&message.payload) {
                        Ok(mut event) => {
                            event.trace_parent = message
                                .headers
                                .as_ref()
                                .and_then(|headers| headers.get(shop_trace_context::TRACEPARENT))
                                .map(|value| value.as_str().to_owned());
                            return Some(Delivery { event, message: Some(message) });
                        }
                        Err(error) => {
                            // Not an event of ours: never deliverable, so not redelivered.
                            tracing::warn!(%error, subject = %message.subject, "dropping a malformed event");
                            let _ = message.ack_with(AckKind::Term).await;
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "the event stream failed");
                        return None;
                    }
                }
            },
        }
    }
}
