//! The shop's emails: a consumer of the order and user events that tells
//! customers what happened (order confirmed, payment received, shipped,
//! cancelled) and sends password reset links.
//!
//! Each event sends at most one email in the normal course: the ids of
//! events whose email went out are kept in this component's own database
//! ([`sent`]), written after the send succeeds, and an event found there is
//! acknowledged without sending. A crash between the send and that write
//! sends the email again when the event comes back (at least once: a
//! possible duplicate, never a loss); the duplicate carries the same
//! `Message-ID` (`<event id@domain>`), which mail clients use to fold it.
//!
//! An email that cannot go out now (SMTP down, a service down) is never
//! acknowledged: on NATS the event is delivered again two seconds later; on
//! the in-process bus, which cannot deliver again, [`Notifier::deliver`]
//! keeps trying with backoff before taking the next event. See
//! `docs/notifications.md`.

pub mod emails;
pub mod lookup;
pub mod sent;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use shop_events::{Bus, Consumer, Event, OrderPaymentChanged, OrderStatusChanged, PasswordResetRequested, Payload};
use shop_storage::{Db, Migrations};

use emails::{Content, Kind, Templates};
use lookup::Lookup;
use transport::{Outgoing, Transport};

pub const MIGRATIONS: Migrations = shop_storage::migrations!("notifications": 1 => "0001_create_sent_emails");

/// What the emails are signed with and link to.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The From of every email (`Shop <shop@localhost>`).
    pub from: Mailbox,
    /// The shop as customers reach it, without a trailing slash
    /// (`http://localhost:8080`): links in emails start with it.
    pub public_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("SHOP_MAIL_FROM is not an email address (like `Shop <shop@example.com>`): {0}")]
    From(String),
    #[error("SHOP_PUBLIC_URL must start with http:// or https://")]
    PublicUrl,
}

impl Settings {
    pub fn new(from: &str, public_url: &str) -> Result<Self, SettingsError> {
        let from =
            from.parse().map_err(|error: lettre::address::AddressError| SettingsError::From(error.to_string()))?;
        let public_url = public_url.trim().trim_end_matches('/');
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(SettingsError::PublicUrl);
        }
        Ok(Self { from, public_url: public_url.to_owned() })
    }

    /// The name emails are signed with: the From's name, else "the shop".
    fn shop_name(&self) -> String {
        self.from.name.clone().filter(|name| !name.trim().is_empty()).unwrap_or_else(|| "The shop".to_owned())
    }
}

/// Why an email did not go out.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Worth trying again: the event is not acknowledged.
    #[error("{0}")]
    Transient(String),
    /// Never will: the event is acknowledged with this logged.
    #[error("{0}")]
    Permanent(String),
}

/// What handling one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent(Kind),
    /// Its email went out before: nothing sent.
    AlreadySent,
    /// An event that sends no email (an order delivered, a refund).
    NoEmail,
    /// A reset link that expired before it could be sent.
    Expired,
}

/// Which email an event asks for.
enum Trigger {
    Order { kind: Kind, order_id: i64, user_id: i64, tracking_reference: Option<String> },
    Reset(PasswordResetRequested),
}

impl Trigger {
    fn of(event: &Event) -> Option<Self> {
        if let Some(change) = event.decode::<OrderStatusChanged>() {
            let kind = match change.to.as_str() {
                "confirmed" => Kind::OrderConfirmed,
                "shipped" => Kind::OrderShipped,
                "cancelled" => Kind::OrderCancelled,
                _ => return None,
            };
            let tracking_reference = change.tracking_reference.filter(|reference| !reference.trim().is_empty());
            return Some(Self::Order { kind, order_id: change.order_id, user_id: change.user_id, tracking_reference });
        }
        if let Some(change) = event.decode::<OrderPaymentChanged>() {
            return (change.to == "paid").then_some(Self::Order {
                kind: Kind::PaymentReceived,
                order_id: change.order_id,
                user_id: change.user_id,
                tracking_reference: None,
            });
        }
        event.decode::<PasswordResetRequested>().map(Self::Reset)
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Order { kind, .. } => *kind,
            Self::Reset(_) => Kind::PasswordReset,
        }
    }
}

/// The events this component consumes.
pub const KINDS: [&str; 3] = [OrderStatusChanged::KIND, OrderPaymentChanged::KIND, PasswordResetRequested::KIND];

/// One durable consumer shared by every replica. It starts from the events
/// published after it is first made, not from the stream's week of history:
/// deploying it must not mail last week's orders.
pub fn consumer() -> Consumer {
    Consumer { from_start: false, ..Consumer::durable("notifications", KINDS.to_vec()) }
}

/// Turns events into emails and sends them.
pub struct Notifier<L, T> {
    db: Db,
    lookup: L,
    transport: T,
    templates: Templates,
    settings: Settings,
    /// The longest wait between tries on a bus that cannot deliver again.
    max_backoff: Duration,
}

impl<L: Lookup, T: Transport> Notifier<L, T> {
    pub fn new(db: Db, lookup: L, transport: T, settings: Settings) -> Result<Self, minijinja::Error> {
        let templates = Templates::new(&settings.shop_name(), &settings.public_url)?;
        Ok(Self { db, lookup, transport, templates, settings, max_backoff: Duration::from_secs(30) })
    }

    /// Waits at most this long between tries on the in-process bus (tests).
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Sends `event`'s email unless it went out before; records it once sent.
    pub async fn handle(&self, event: &Event) -> Result<Outcome, Failure> {
        let Some(trigger) = Trigger::of(event) else { return Ok(Outcome::NoEmail) };
        let kind = trigger.kind();
        let transient =
            |error: shop_storage::sqlx::Error| Failure::Transient(format!("the sent emails' table: {error}"));
        if sent::contains(&self.db, &event.id).await.map_err(transient)? {
            tracing::info!(event_id = %event.id, kind = kind.as_str(), "email sent before for this event: not again");
            return Ok(Outcome::AlreadySent);
        }
        let Some((customer, content)) = self.compose(trigger).await? else { return Ok(Outcome::Expired) };
        let rendered =
            self.templates.render(&customer.name, &content).map_err(|error| Failure::Permanent(error.to_string()))?;
        let to = customer
            .email
            .parse()
            .map_err(|error| Failure::Permanent(format!("the customer's address cannot be mailed: {error}")))?;
        let domain = self.settings.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.settings.from.clone())
            .to(Mailbox::new(Some(customer.name.clone()), to))
            .subject(rendered.subject)
            // The same event gives the same Message-ID, so a duplicate after a
            // crash is recognisable as one.
            .message_id(Some(format!("<{}@{domain}>", event.id)))
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .map_err(|error| Failure::Permanent(format!("building the email: {error}")))?;
        let outgoing = Outgoing { event_id: &event.id, kind: kind.as_str(), message: &message };
        self.transport.send(&outgoing).await.map_err(|error| {
            if error.transient { Failure::Transient(error.message) } else { Failure::Permanent(error.message) }
        })?;
        metrics::counter!("shop_emails_sent_total", "kind" => kind.as_str()).increment(1);
        tracing::info!(event_id = %event.id, kind = kind.as_str(), "email sent");
        // Sent: from here on, failing would send it twice. A record that
        // cannot be written is logged; run_consumer still remembers the id
        // for this process's life.
        if let Err(error) = sent::record(&self.db, &event.id, kind.as_str(), shop_storage::now_ms()).await {
            tracing::error!(event_id = %event.id, kind = kind.as_str(), %error, "email sent but not recorded: a redelivery after a restart would send it again");
        }
        Ok(Outcome::Sent(kind))
    }

    /// Who the email goes to and what it says; `None` for a reset link that
    /// has expired (sending it would only disappoint).
    async fn compose(&self, trigger: Trigger) -> Result<Option<(lookup::Customer, Content)>, Failure> {
        let from_lookup = |error: lookup::LookupError| {
            if error.transient { Failure::Transient(error.message) } else { Failure::Permanent(error.message) }
        };
        match trigger {
            Trigger::Reset(reset) => {
                if reset.expires_at_ms <= shop_storage::now_ms() {
                    tracing::warn!(
                        user_id = reset.user_id,
                        "a password reset link expired before it could be sent: not sent"
                    );
                    return Ok(None);
                }
                if reset.token.is_empty()
                    || !reset.token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
                {
                    return Err(Failure::Permanent("the reset token is not URL-safe".into()));
                }
                let link = format!("{}/users/password-reset/{}", self.settings.public_url, reset.token);
                let content = Content::PasswordReset { link, expires_at: utc_minute(reset.expires_at_ms) };
                Ok(Some((lookup::Customer { email: reset.email, name: reset.name }, content)))
            }
            Trigger::Order { kind, order_id, user_id, tracking_reference } => {
                let (customer, order) = tokio::join!(self.lookup.customer(user_id), self.lookup.order(order_id));
                let (customer, mut order) = (customer.map_err(from_lookup)?, order.map_err(from_lookup)?);
                order.url = format!("{}/orders/{}", self.settings.public_url, order.id);
                let content = match kind {
                    Kind::OrderConfirmed => Content::OrderConfirmed { order },
                    Kind::PaymentReceived => Content::PaymentReceived { order },
                    Kind::OrderShipped => Content::OrderShipped { order, tracking_reference },
                    Kind::OrderCancelled => Content::OrderCancelled { order },
                    Kind::PasswordReset => unreachable!("reset links come as Trigger::Reset"),
                };
                Ok(Some((customer, content)))
            }
        }
    }

    /// [`Notifier::handle`] with the retry policy of the bus the event came
    /// on. `Ok` acknowledges the event: sent, sent before, or never sendable
    /// (logged and counted). A failure worth retrying is handed back as
    /// `Err` when the bus delivers again (`redelivers`, NATS); otherwise
    /// (the in-process bus) it is tried again here with backoff (1 s
    /// doubling up to `max_backoff`) until it succeeds, holding up only
    /// this consumer.
    pub async fn deliver(&self, event: &Event, redelivers: bool) -> Result<(), String> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let failure = match self.handle(event).await {
                Ok(_) => return Ok(()),
                Err(failure) => failure,
            };
            let kind = Trigger::of(event).map_or("unknown", |trigger| trigger.kind().as_str());
            match failure {
                Failure::Permanent(error) => {
                    metrics::counter!("shop_email_failures_total", "kind" => kind, "retried" => "false").increment(1);
                    tracing::error!(event_id = %event.id, kind, %error, "email cannot be sent: given up");
                    return Ok(());
                }
                Failure::Transient(error) => {
                    metrics::counter!("shop_email_failures_total", "kind" => kind, "retried" => "true").increment(1);
                    if redelivers {
                        tracing::warn!(event_id = %event.id, kind, %error, "email not sent; the event comes again");
                        return Err(error);
                    }
                    tracing::warn!(event_id = %event.id, kind, %error, retry_in_secs = backoff.as_secs(), "email not sent; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}

/// "2026-11-30 18:05 UTC".
fn utc_minute(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_or_else(
        |_| "a few minutes from now".to_owned(),
        |t| format!("{}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()),
    )
}

/// Consumes the events until the process ends (or the bus closes).
pub async fn run<L, T>(bus: Bus, notifier: Arc<Notifier<L, T>>)
where
    L: Lookup + 'static,
    T: Transport + 'static,
{
    let redelivers = matches!(bus, Bus::Nats(_));
    shop_events::run_consumer(bus, consumer(), move |event| {
        let notifier = Arc::clone(&notifier);
        async move { notifier.deliver(&event, redelivers).await }
    })
    .await;
}

/// Describes the component's metrics (HELP lines, and a zero for each kind).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "shop_emails_sent_total",
        "Emails handed to the SMTP server (or written as .eml), by kind."
    );
    metrics::describe_counter!(
        "shop_email_failures_total",
        "Emails that could not be sent, by kind and whether they are tried again (retried=false: given up)."
    );
    for kind in Kind::ALL {
        metrics::counter!("shop_emails_sent_total", "kind" => kind.as_str()).increment(0);
    }
}

#[cfg(test)]
mod tests;
