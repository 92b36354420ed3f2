//! Who is asking: the signed-in user and the cart, both kept in the session
//! (tower-sessions; in memory, or in Redis when configured).

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use axum::response::Response;
use shop_grpc::identity::{CURRENT_CALLER, Caller};

use crate::AppState;
use crate::error::AppError;

const USER: &str = "user";
const CART: &str = "cart";
const FLASH: &str = "flash";

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

async fn session_of<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Session, AppError> {
    Session::from_request_parts(parts, state)
        .await
        .map_err(|(_, message)| AppError::Internal(format!("no session layer: {message}")))
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

impl FromRequestParts<AppState> for Viewer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(viewer) = parts.extensions.get::<Self>() {
            return Ok(viewer.clone());
        }
        let session = session_of(parts, state).await?;
        let mut user = session.get::<SessionUser>(USER).await?;
        // The session is too old, or its account was deleted or its password
        // changed since (here or on another replica): it ends.
        if let Some(signed_in) = &user {
            let too_old = now_ms().saturating_sub(signed_in.signed_in_at_ms) > state.session_lifetime_ms;
            if too_old || state.revoked.has_ended(signed_in.id, signed_in.signed_in_at_ms).await {
                session.flush().await?;
                user = None;
            }
        }
        let cart = session.get::<Cart>(CART).await?.unwrap_or_default();
        // Only a whole page shows the message, so a partial, a JSON call or
        // an asset fetched meanwhile does not use it up.
        let shows_page = parts.method == axum::http::Method::GET
            && crate::negotiate::Want::from_headers(&parts.headers) == crate::negotiate::Want::Page;
        let flash = if shows_page { session.remove::<String>(FLASH).await? } else { None };
        let viewer = Self { user, cart_count: cart.values().sum(), flash };
        parts.extensions.insert(viewer.clone());
        Ok(viewer)
    }
}

impl Viewer {
    /// The signed-in user; anyone else is asked to sign in (401).
    pub fn signed_in(&self) -> Result<CurrentUser, AppError> {
        self.user.clone().map(CurrentUser).ok_or(AppError::Unauthenticated)
    }

    /// Who calls to the services are made for.
    pub fn caller(&self) -> Caller {
        self.user.as_ref().map_or(Caller::Anonymous, |user| Caller::User { id: user.id, admin: user.admin })
    }
}

/// Runs the rest of the request as its viewer: every gRPC call made meanwhile
/// carries their signed identity, and the services check it again.
pub async fn act_for_viewer(viewer: Viewer, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    CURRENT_CALLER.scope(viewer.caller(), next.run(request)).await
}

/// A signed-in user; anyone else is asked to sign in (401).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub SessionUser);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Viewer::from_request_parts(parts, state).await?.signed_in()
    }
}

impl CurrentUser {
    /// May this user see and change what belongs to `owner`?
    pub fn may_access(&self, owner: i64) -> bool {
        self.0.admin || self.0.id == owner
    }

    /// How order history names this user.
    pub fn actor(&self) -> String {
        format!("user:{}", self.0.id)
    }
}

/// A signed-in admin; a customer gets 403, a stranger 401.
#[derive(Debug, Clone)]
pub struct Admin(pub SessionUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.admin { Ok(Self(user)) } else { Err(AppError::Forbidden) }
    }
}

/// Starts a signed-in session under a new id, so an id planted before
/// sign-in (session fixation) is worth nothing after it.
pub async fn sign_in(session: &Session, mut user: SessionUser) -> Result<(), AppError> {
    user.signed_in_at_ms = now_ms();
    session.cycle_id().await?;
    session.insert(USER, user).await?;
    Ok(())
}

/// Ends the session and deletes it from the store.
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session.flush().await?;
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
