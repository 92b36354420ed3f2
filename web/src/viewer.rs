//! Who is asking: the signed-in user, a guest's cart (or a signed-in
//! customer's cart count) and a one-time message, all kept in the session
//! (tower-sessions; in memory, or in Redis when configured). Where the
//! session is kept: `session_store`. A signed-in customer's cart itself is
//! kept by the order service (`routes::cart`).

use std::collections::BTreeMap;

use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use shop_grpc::identity::Caller;

use crate::error::AppError;
use crate::events::Revoked;

const USER: &str = "user";
const CART: &str = "cart";
const CART_COUNT: &str = "cart_count";
const FLASH: &str = "flash";
const CHECKOUT: &str = "checkout";

/// Shown on every page while the visitor's session cannot be read (Redis
/// down, see `session_store`): they look signed out until it can.
pub const SESSION_UNREADABLE: &str = "We can't read your session right now: you may need to sign in again.";

/// The signed-in user, as the session remembers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub admin: bool,
    /// When this session signed in (Unix ms): for the absolute lifetime,
    /// and for ending sessions older than a password change.
    #[serde(default)]
    pub signed_in_at_ms: i64,
}

/// Product id → quantity.
pub type Cart = BTreeMap<i64, i64>;

pub fn session_of(parts: &Parts) -> Result<Session, AppError> {
    parts.extensions.get::<Session>().cloned().ok_or(AppError::Missing("the session layer"))
}

/// How long a signed-in session may last, and which have been ended early
/// (a new password, a deleted account).
#[derive(Clone)]
pub struct SessionRules {
    /// However busy, a session ends this long after signing in (ms).
    pub lifetime_ms: i64,
    pub revoked: Revoked,
}

impl SessionRules {
    /// Whether a session of `user` still stands: not too old, not ended by a
    /// new password or a deleted account (here or on another replica).
    pub async fn still_valid(&self, user: &SessionUser) -> bool {
        let too_old = now_ms().saturating_sub(user.signed_in_at_ms) > self.lifetime_ms;
        !too_old && !self.revoked.has_ended(user.id, user.signed_in_at_ms).await
    }
}

/// Anyone: signed in or not, with what their cart holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Viewer {
    pub user: Option<SessionUser>,
    pub cart_count: i64,
    /// What the last form did, when it was posted without scripts and
    /// answered with a redirect (see [`flash`]); shown once, by the page
    /// the browser lands on.
    pub flash: Option<String>,
}

impl Viewer {
    /// Who the session says is asking. A session too old, or of an account
    /// deleted or whose password changed since (here or on another
    /// replica), ends. `take_flash` takes the one-time message with it.
    /// A session that cannot be read (see `session_store`) is a signed-out
    /// one, and a page says so instead of the one-time message.
    pub async fn load(session: &Session, rules: &SessionRules, take_flash: bool) -> Result<Self, AppError> {
        let mut user = session.get::<SessionUser>(USER).await?;
        if take_flash && session.get::<bool>(crate::session_store::UNREADABLE).await?.unwrap_or(false) {
            let cart_count = session.get::<Cart>(CART).await?.unwrap_or_default().values().sum();
            return Ok(Self { user: None, cart_count, flash: Some(SESSION_UNREADABLE.to_owned()) });
        }
        if let Some(signed_in) = &user
            && !rules.still_valid(signed_in).await
        {
            session.flush().await?;
            user = None;
        }
        let cart_count = match user {
            // The count as this session last saw the kept cart: another
            // device's change shows here after this session's next cart
            // action (or sign-in), not before; no call per page for a badge.
            Some(_) => session.get::<i64>(CART_COUNT).await?.unwrap_or(0),
            None => session.get::<Cart>(CART).await?.unwrap_or_default().values().sum(),
        };
        let flash = if take_flash { session.remove::<String>(FLASH).await? } else { None };
        Ok(Self { user, cart_count, flash })
    }

    /// The signed-in user; anyone else is asked to sign in (401).
    pub fn user(&self) -> Result<&SessionUser, AppError> {
        self.user.as_ref().ok_or(AppError::Unauthenticated)
    }

    /// A signed-in admin; a customer gets 403, a stranger 401.
    pub fn admin(&self) -> Result<&SessionUser, AppError> {
        let user = self.user()?;
        if user.admin { Ok(user) } else { Err(AppError::Forbidden) }
    }

    /// Who calls to the services are made for.
    pub fn caller(&self) -> Caller {
        self.user.as_ref().map_or(Caller::Anonymous, |user| Caller::User { id: user.id, admin: user.admin })
    }
}

/// Starts a signed-in session under a new id, so an id planted before
/// sign-in (session fixation) is worth nothing after it.
pub async fn sign_in(session: &Session, mut user: SessionUser) -> Result<(), AppError> {
    user.signed_in_at_ms = now_ms();
    // A new id, so an id planted before sign-in is worth nothing after it.
    // A session that came without one has nothing to replace (it gets its
    // id when first saved), and `cycle_id` would ask the store to delete a
    // random id it never held: a wasted round trip to Redis a sign-in.
    if session.id().is_some() {
        session.cycle_id().await?;
    }
    session.insert(USER, user).await?;
    Ok(())
}

/// Ends the session and deletes it from the store. Whatever the session
/// holds afterwards (a one-time message) goes under a new id: `flush` keeps
/// the old one in the record, and saving would bring that id back.
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session.flush().await?;
    session.cycle_id().await?;
    Ok(())
}

/// Keeps the session's copy of the user in step with a profile change.
/// After a password change the session counts as signed in again, so it
/// outlives the other sessions the change ended.
pub async fn refresh_user(session: &Session, mut user: SessionUser, signed_in_again: bool) -> Result<(), AppError> {
    let previous = session.get::<SessionUser>(USER).await?;
    user.signed_in_at_ms = match previous {
        Some(previous) if !signed_in_again => previous.signed_in_at_ms,
        _ => now_ms().saturating_add(1),
    };
    if signed_in_again {
        session.cycle_id().await?;
    }
    session.insert(USER, user).await?;
    Ok(())
}

/// Leaves a message for the next page this session shows: what a form
/// posted without scripts did, told on the page it is redirected to (with
/// scripts, the partial that answers says it).
pub async fn flash(session: &Session, message: impl Into<String>) -> Result<(), AppError> {
    session.insert(FLASH, message.into()).await?;
    Ok(())
}

/// Remembers the cart's last checkout (its form key and the order it
/// placed), so a second submit of the same form finds the order rather
/// than an empty cart.
pub async fn remember_checkout(session: &Session, key: &str, order_id: i64) -> Result<(), AppError> {
    if !key.is_empty() {
        session.insert(CHECKOUT, (key.to_owned(), order_id)).await?;
    }
    Ok(())
}

/// The order the checkout form with `key` placed, if it was this session's last.
pub async fn placed_with(session: &Session, key: &str) -> Result<Option<i64>, AppError> {
    let last = session.get::<(String, i64)>(CHECKOUT).await?;
    Ok(last.filter(|(placed, _)| !key.is_empty() && placed == key).map(|(_, order_id)| order_id))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A guest's cart (a signed-in customer's is kept by the order service).
pub async fn cart(session: &Session) -> Result<Cart, AppError> {
    Ok(session.get::<Cart>(CART).await?.unwrap_or_default())
}

pub async fn save_cart(session: &Session, cart: &Cart) -> Result<(), AppError> {
    if cart.is_empty() {
        session.remove_value(CART).await?;
    } else {
        session.insert(CART, cart).await?;
    }
    Ok(())
}

/// Remembers how many units a signed-in customer's kept cart holds, for the
/// navigation's badge; set after every cart change and at sign-in.
pub async fn remember_cart_count(session: &Session, count: i64) -> Result<(), AppError> {
    session.insert(CART_COUNT, count).await?;
    Ok(())
}
