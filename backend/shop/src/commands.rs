//! The one-shot commands beside the servers: `make-admin`, `tail-events`,
//! `caller-token`. `main` prints what they return.

use anyhow::{Context, Result, bail};

use crate::app::shutdown_signal;
use crate::config::{Config, Service, redact};
use crate::databases;

/// `shop make-admin EMAIL`: makes an existing account an admin (admins are
/// never made through the web), and returns it.
pub async fn make_admin(config: &Config, email: &str) -> Result<shop_users::domain::User> {
    let db = databases::open(config, Service::Users).await?;
    let email = shop_users::domain::Email::parse(email)?;
    let result = shop_users::store::set_role(&db, &email, shop_users::domain::Role::Admin).await;
    db.close().await;
    match result {
        Ok(user) => Ok(user),
        Err(shop_users::UserError::NotFound) => {
            bail!("no account has the email {}; register it first, then run this again", email.as_str())
        }
        Err(error) => Err(error.into()),
    }
}

/// `shop demo-catalogue`: fills an empty catalogue with the demo products,
/// in their categories and with the pictures the shop draws for them;
/// returns how many were added (none when it has products already).
pub async fn demo_catalogue(config: &Config) -> Result<u32> {
    let db = databases::open(config, Service::Inventory).await?;
    let added = shop_inventory::demo::load(&db).await;
    db.close().await;
    Ok(added?)
}

/// `shop caller-token`: a signed caller identity for calling a service
/// directly, valid for a minute.
pub fn caller_token(config: &Config, user: i64, admin: bool) -> Result<String> {
    let Some(secret) = &config.internal_secret else { bail!("caller-token needs the shop's SHOP_INTERNAL_SECRET") };
    let identity = shop_grpc::identity::Identity::new(secret.as_bytes());
    let caller = shop_grpc::identity::Caller::User { id: user, admin };
    Ok(identity.token(&caller).unwrap_or_default())
}

/// Every kind of event the shop publishes, for `tail-events`.
const EVENT_KINDS: [&str; 10] = {
    use shop_events::{
        CategoryChanged, OrderCreated, OrderPaymentChanged, OrderStatusChanged, PasswordReset, PasswordResetRequested,
        Payload, ProductChanged, StockLow, UserDeleted, UserRegistered,
    };
    [
        UserRegistered::KIND,
        UserDeleted::KIND,
        PasswordResetRequested::KIND,
        PasswordReset::KIND,
        ProductChanged::KIND,
        CategoryChanged::KIND,
        StockLow::KIND,
        OrderCreated::KIND,
        OrderStatusChanged::KIND,
        OrderPaymentChanged::KIND,
    ]
};

/// An event as `tail-events` prints it: a password reset's token, the
/// secret of the link in its email, shows as `***` (the shop never logs or
/// stores it, and a terminal's scrollback should not hold it either).
fn printable(mut event: shop_events::Event) -> shop_events::Event {
    use shop_events::Payload;
    if event.kind == shop_events::PasswordResetRequested::KIND
        && let Some(token) = event.data.get_mut("token")
    {
        *token = serde_json::Value::from("***");
    }
    event
}

/// `shop tail-events`: prints the shop's events from NATS, one JSON object
/// per line, until Ctrl-C or SIGTERM.
pub async fn tail_events(config: &Config, all: bool) -> Result<()> {
    let Some(url) = &config.nats_url else { bail!("tail-events needs NATS: set SHOP_NATS_URL or --nats-url") };
    let settings = shop_events::NatsSettings {
        url: url.clone(),
        stream: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
    };
    let bus = shop_events::Bus::nats(settings).await.context("connecting to NATS")?;
    let mut consumer = shop_events::Consumer::per_replica("tail", EVENT_KINDS.to_vec());
    consumer.from_start = all;
    eprintln!("tailing {} on {} (Ctrl-C to stop)", config.nats_stream, redact(url));
    tokio::select! {
        () = shop_events::run_consumer(bus, consumer, |event| async move {
            println!("{}", serde_json::to_string(&printable(event)).map_err(|e| e.to_string())?);
            Ok(())
        }) => Ok(()),
        () = shutdown_signal() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_tailed_once() {
        let mut kinds = EVENT_KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), EVENT_KINDS.len());
        for kind in ["order.payment_changed", "user.password_reset_requested", "category.changed"] {
            assert!(EVENT_KINDS.contains(&kind), "{kind}");
        }
    }

    #[test]
    fn a_reset_token_is_not_printed() -> Result<()> {
        let reset = shop_events::PasswordResetRequested {
            user_id: 7,
            email: "ann@example.com".into(),
            name: "Ann".into(),
            token: "s3cret-token".into(),
            expires_at_ms: 1,
        };
        let line = serde_json::to_string(&printable(shop_events::Event::new(&reset)?))?;
        assert!(!line.contains("s3cret-token") && line.contains(r#""token":"***""#), "{line}");
        assert!(line.contains("ann@example.com"), "the rest is printed: {line}");
        let other = shop_events::Event::new(&shop_events::UserDeleted { user_id: 7 })?;
        assert_eq!(printable(other.clone()), other);
        Ok(())
    }
}
