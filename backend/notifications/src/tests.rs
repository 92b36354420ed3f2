//! The notifier with a fake transport and fake services, on both database
//! backends: once per event, outages, and which events send what.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use shop_testkit::{Backend, TestDb};

use super::*;
use crate::emails::{OrderView, PaymentView};
use crate::lookup::{Customer, LookupError};
use crate::transport::SendError;

/// Records what it is given; fails while `down` says so.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String)>>,
    down: AtomicUsize,
}

impl Recorder {
    /// Event ids and the raw emails sent, in order.
    fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().expect("not poisoned").clone()
    }

    /// Fails the next `times` sends.
    fn fail_next(&self, times: usize) {
        self.down.store(times, Ordering::SeqCst);
    }
}

impl Transport for Recorder {
    async fn send(&self, email: &Outgoing<'_>) -> Result<(), SendError> {
        if self.down.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(SendError::transient("connection refused"));
        }
        let raw = String::from_utf8_lossy(&email.message.formatted()).into_owned();
        self.sent.lock().expect("not poisoned").push((email.event_id.to_owned(), raw));
        Ok(())
    }

    fn describe(&self) -> String {
        "a recorder".into()
    }
}

struct Services;

impl Lookup for Services {
    async fn customer(&self, user_id: i64) -> Result<Customer, LookupError> {
        match user_id {
            7 => Ok(Customer { email: "ada@example.com".into(), name: "Ada Lovelace".into() }),
            _ => Err(LookupError { transient: false, message: "NotFound: no such user".into() }),
        }
    }

    async fn order(&self, order_id: i64) -> Result<OrderView, LookupError> {
        Ok(OrderView {
            id: order_id,
            url: String::new(),
            status: "confirmed".into(),
            lines: vec![],
            subtotal: "10.00".into(),
            delivery: None,
            total: "10.00".into(),
            vat: None,
            address: None,
            payment: PaymentView {
                method: "bank_transfer",
                state: "unpaid",
                reference: format!("ORDER-{order_id:06}"),
            },
        })
    }
}

async fn notifier(test: &TestDb) -> Notifier<Services, Recorder> {
    let settings = Settings::new("Tea Shop <shop@tea.example>", "https://tea.example/").expect("settings");
    Notifier::new(test.db.clone(), Services, Recorder::default(), settings)
        .expect("templates")
        .with_max_backoff(Duration::from_millis(50))
}

fn status_changed(order_id: i64, to: &str, tracking: Option<&str>) -> Event {
    Event::new(&OrderStatusChanged {
        order_id,
        user_id: 7,
        from: "pending".into(),
        to: to.into(),
        actor: "system".into(),
        total_minor: 1000,
        tracking_reference: tracking.map(str::to_owned),
    })
    .expect("an event")
}

async fn a_redelivered_event_sends_nothing_twice(backend: Backend) {
    let test = TestDb::new(backend, &MIGRATIONS).await;
    let notifier = notifier(&test).await;
    let event = status_changed(42, "confirmed", None);
    assert_eq!(notifier.handle(&event).await.expect("sent"), Outcome::Sent(Kind::OrderConfirmed));
    // The same event again (a redelivery), even through a new notifier (a
    // restarted process): recognised by its id in the database.
    assert_eq!(notifier.handle(&event).await.expect("handled"), Outcome::AlreadySent);
    let restarted = self::notifier(&test).await;
    assert_eq!(restarted.handle(&event).await.expect("handled"), Outcome::AlreadySent);
    let sent = notifier.transport().sent();
    assert_eq!(sent.len(), 1);
    let (id, raw) = &sent[0];
    assert_eq!(id, &event.id);
    for needle in [
        "Subject: Your order #42 is confirmed",
        "From: \"Tea Shop\" <shop@tea.example>",
        "To: \"Ada Lovelace\" <ada@example.com>",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "ORDER-000042",
        "https://tea.example/orders/42",
    ] {
        assert!(raw.contains(needle), "{needle:?} missing from\n{raw}");
    }
    assert!(raw.contains(&format!("Message-ID: <{}@tea.example>", event.id)), "{raw}");
    // Another event about the same order is another email.
    let shipped = status_changed(42, "shipped", Some("1Z999"));
    assert_eq!(notifier.handle(&shipped).await.expect("sent"), Outcome::Sent(Kind::OrderShipped));
    let sent = notifier.transport().sent();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].1.contains("Subject: Your order #42 has shipped") && sent[1].1.contains("1Z999"));
}

async fn an_outage_delays_the_email_and_loses_none(backend: Backend) {
    let test = TestDb::new(backend, &MIGRATIONS).await;
    let notifier = notifier(&test).await;
    let event = status_changed(5, "cancelled", None);
    notifier.transport().fail_next(1);
    assert!(matches!(notifier.handle(&event).await, Err(Failure::Transient(_))));
    assert!(!sent::contains(&test.db, &event.id).await.expect("read"), "a failed send is not recorded");
    // On NATS the failure is handed back (the event is not acknowledged and
    // comes again); the in-process bus cannot deliver again, so the
    // notifier keeps trying until it succeeds.
    notifier.transport().fail_next(1);
    assert!(notifier.deliver(&event, true).await.is_err());
    assert!(notifier.transport().sent().is_empty());
    notifier.transport().fail_next(3);
    assert_eq!(notifier.deliver(&event, false).await, Ok(()));
    assert_eq!(notifier.transport().sent().len(), 1, "sent once, after the outage");
    assert!(sent::contains(&test.db, &event.id).await.expect("read"));
    assert_eq!(notifier.deliver(&event, false).await, Ok(()));
    assert_eq!(notifier.transport().sent().len(), 1);
}

async fn events_that_send_nothing_and_ones_that_never_can(backend: Backend) {
    let test = TestDb::new(backend, &MIGRATIONS).await;
    let notifier = notifier(&test).await;
    assert_eq!(notifier.handle(&status_changed(1, "delivered", None)).await.expect("ok"), Outcome::NoEmail);
    assert_eq!(notifier.handle(&status_changed(1, "rejected", None)).await.expect("ok"), Outcome::NoEmail);
    let refunded = Event::new(&OrderPaymentChanged {
        order_id: 1,
        user_id: 7,
        from: "paid".into(),
        to: "refunded".into(),
        actor: "user:1".into(),
    })
    .expect("an event");
    assert_eq!(notifier.handle(&refunded).await.expect("ok"), Outcome::NoEmail);
    let other = Event::new(&shop_events::UserDeleted { user_id: 7 }).expect("an event");
    assert_eq!(notifier.handle(&other).await.expect("ok"), Outcome::NoEmail);
    // A customer deleted since: never sendable, acknowledged (not retried forever).
    let gone =
        Event::new(&OrderStatusChanged { user_id: 99, ..status_changed(1, "confirmed", None).decode().expect("it") })
            .expect("an event");
    assert!(matches!(notifier.handle(&gone).await, Err(Failure::Permanent(_))));
    assert_eq!(notifier.deliver(&gone, false).await, Ok(()));
    assert!(notifier.transport().sent().is_empty());

    let paid = Event::new(&OrderPaymentChanged {
        order_id: 3,
        user_id: 7,
        from: "unpaid".into(),
        to: "paid".into(),
        actor: "user:1".into(),
    })
    .expect("an event");
    assert_eq!(notifier.handle(&paid).await.expect("sent"), Outcome::Sent(Kind::PaymentReceived));
    assert!(notifier.transport().sent()[0].1.contains("Subject: Payment received for your order #3"));
}

async fn reset_links_are_sent_while_they_work(backend: Backend) {
    let test = TestDb::new(backend, &MIGRATIONS).await;
    let notifier = notifier(&test).await;
    let reset = |expires_at_ms| {
        Event::new(&PasswordResetRequested {
            user_id: 7,
            email: "ada@example.com".into(),
            name: "Ada".into(),
            token: "tok_en-123".into(),
            expires_at_ms,
        })
        .expect("an event")
    };
    let now = shop_storage::now_ms();
    assert_eq!(notifier.handle(&reset(now - 1)).await.expect("handled"), Outcome::Expired);
    let fresh = reset(now + 30 * 60 * 1000);
    assert_eq!(notifier.handle(&fresh).await.expect("sent"), Outcome::Sent(Kind::PasswordReset));
    let sent = notifier.transport().sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.contains("Subject: Reset your password"));
    assert!(sent[0].1.contains("https://tea.example/users/password-reset/tok_en-123"), "{}", sent[0].1);
}

shop_testkit::on_both_backends!(
    a_redelivered_event_sends_nothing_twice,
    an_outage_delays_the_email_and_loses_none,
    events_that_send_nothing_and_ones_that_never_can,
    reset_links_are_sent_while_they_work,
);

#[test]
fn settings_are_checked() {
    assert!(Settings::new("not an address", "http://localhost:8080").is_err());
    assert!(Settings::new("Shop <shop@localhost>", "localhost:8080").is_err());
    let settings = Settings::new("Shop <shop@localhost>", "http://localhost:8080/").expect("valid");
    assert_eq!(settings.public_url, "http://localhost:8080");
    assert_eq!(settings.shop_name(), "Shop");
    assert_eq!(utc_minute(1_795_572_255_329), "2026-11-25 02:04 UTC");
    assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
}
