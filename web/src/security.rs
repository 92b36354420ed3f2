//! Defences every response and every unsafe request goes through: security
//! headers, refusal of cross-site writes (CSRF), and rate limits on the
//! doors attackers knock on (sign-in and registration).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Ready;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service};

use crate::dependency_health::Dependency;
use crate::error::AppError;
use crate::shared_limit::SharedCounter;
use crate::state::AppState;

/// Only our own scripts and styles, no framing, no sniffing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The headers every answer carries unless it set its own, as parsed
/// names and values (made once: a name given as text is parsed again for
/// every insert).
const HEADERS: [(HeaderName, HeaderValue); 8] = [
    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
    (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    ),
    // Pages hold one person's session state (cart, orders): never reuse them
    // from a cache (Back after checkout must not show the old cart), and say
    // that one URL answers differently to HTMX and to JSON clients. Assets
    // set their own long-lived caching first.
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (header::VARY, HeaderValue::from_static("HX-Request, Accept")),
];

/// Puts [`HEADERS`] on an answer that did not set them itself. A plain
/// map of the response (`tower::util::MapResponseLayer`), not a `from_fn`
/// middleware: those box the rest of the stack's service and future for
/// every request.
pub fn add_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // Room for them all at once, not a regrowth of the map half way.
    headers.reserve(HEADERS.len());
    for (name, value) in HEADERS {
        headers.entry(name).or_insert(value);
    }
    response
}

/// Refuses unsafe methods sent by another site, whatever they carry (a
/// plain form, an HTMX request, cookie-authenticated JSON): browsers name
/// the sending site in `Origin` (and `Sec-Fetch-Site`), and a page of ours
/// names our own host. Clients that are not browsers send neither and are
/// not at risk: they hold no victim's cookie.
///
/// A tower layer rather than a `from_fn` middleware, which clones and boxes
/// the routes inside it for every request (docs/performance.md).
#[derive(Debug, Clone, Copy, Default)]
pub struct SameOriginWritesLayer;

impl<S> Layer<S> for SameOriginWritesLayer {
    type Service = SameOriginWrites<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SameOriginWrites { inner }
    }
}

/// See [`SameOriginWritesLayer`].
#[derive(Debug, Clone)]
pub struct SameOriginWrites<S> {
    inner: S,
}

impl<S> Service<Request> for SameOriginWrites<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
            || is_same_origin(request.headers())
        {
            Either::Left(self.inner.call(request))
        } else {
            let path = crate::observe::loggable_path(request.uri().path());
            tracing::warn!(method = %request.method(), %path, "cross-site write refused");
            Either::Right(std::future::ready(Ok(AppError::CrossSite.into_response())))
        }
    }
}

fn is_same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let fetched_by = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if origin == "null" {
            // A page sent with `Referrer-Policy: no-referrer` (the password
            // reset link's) posts its forms with `Origin: null`; the browser's
            // fetch metadata still tells our own pages from other sites'.
            return fetched_by == Some("same-origin");
        }
        let authority = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
        return matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    }
    // No Origin: an old browser, or not a browser. Fetch metadata, when
    // present, still says whether another site sent it.
    fetched_by.is_none_or(|site| site != "cross-site")
}

/// The client's address, when the server knows it: the TCP peer, or,
/// when the peer is a trusted proxy (`SHOP_TRUSTED_PROXIES`), the client its
/// forwarding header names (see [`crate::client_address`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl axum::extract::FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(info.map(|info| state.trusted_proxies.client(info.0.ip(), &parts.headers))))
    }
}

/// Fixed-window counters per key: at most `limit` attempts per `window`,
/// kept in this process.
#[derive(Clone)]
pub struct RateLimit {
    limit: u32,
    window: Duration,
    counters: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl RateLimit {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, counters: Arc::default() }
    }

    /// Counts an attempt for `key`; refused with the seconds to wait when
    /// the window's allowance is spent.
    pub fn check(&self, key: &str) -> Result<(), AppError> {
        let now = Instant::now();
        // Counts stay valid if a holder panicked: keep counting.
        let mut counters = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counters.len() > 100_000 {
            counters.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let (start, count) = counters.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count = count.saturating_add(1);
        if *count > self.limit {
            return Err(too_many(self.window.saturating_sub(now.duration_since(*start))));
        }
        Ok(())
    }
}

fn too_many(wait: Duration) -> AppError {
    AppError::TooManyRequests { retry_after_secs: wait.as_secs().max(1) }
}

/// The limits on sign-in, registration and password resets: per client
/// address, and per account (so spreading a guessing run over many
/// addresses does not help). With Redis, counted there for every replica
/// at once; without it, or while Redis fails, counted in this process:
/// never let through uncounted.
#[derive(Clone)]
pub struct Limits {
    pub per_address: RateLimit,
    pub per_account: RateLimit,
    shared: Option<Arc<SharedCounter>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(LimitSettings::default())
    }
}

/// How many sign-in and registration attempts are let through: per client
/// address a minute, per account a quarter of an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// `SHOP_SIGNIN_LIMIT_PER_ADDRESS`: attempts a minute from one address.
    pub per_address_per_minute: u32,
    /// `SHOP_SIGNIN_LIMIT_PER_ACCOUNT`: attempts a quarter hour for one account.
    pub per_account_per_quarter_hour: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self { per_address_per_minute: 30, per_account_per_quarter_hour: 10 }
    }
}

impl Limits {
    /// Limits counted in this process.
    pub fn new(settings: LimitSettings) -> Self {
        metrics::describe_counter!(
            "shop_rate_limit_fallbacks_total",
            "Sign-in, registration and reset attempts counted in this process because Redis failed, was slow \
             (timeout) or had just failed (skipped)."
        );
        Self {
            per_address: RateLimit::new(settings.per_address_per_minute, Duration::from_secs(60)),
            per_account: RateLimit::new(settings.per_account_per_quarter_hour, Duration::from_secs(15 * 60)),
            shared: None,
        }
    }

    /// Limits counted in Redis, shared by every replica, falling back to
    /// this process's counters.
    pub fn shared(settings: LimitSettings, counter: SharedCounter) -> Self {
        Self { shared: Some(Arc::new(counter)), ..Self::new(settings) }
    }

    /// The gateway's limits: in Redis when it has one (keys under the cache
    /// prefix; not asked while `redis` says it is down), else in this process.
    pub async fn for_gateway(
        config: &crate::config::GatewayConfig,
        redis: Option<&Dependency>,
    ) -> Result<Self, fred::error::Error> {
        Ok(match &config.redis_url {
            Some(url) => {
                let counter = SharedCounter::connect(url, &config.cache_prefix, redis.cloned()).await?;
                Self::shared(config.limits, counter)
            }
            None => Self::new(config.limits),
        })
    }

    /// Counts an attempt at `what` from `address` for `account`.
    pub async fn check(&self, what: &str, address: Option<IpAddr>, account: &str) -> Result<(), AppError> {
        self.check_address(what, address).await?;
        // No email is this long: a longer one is cut rather than kept whole
        // as a key (cutting only merges keys, so it never loosens a limit).
        let account: String = account.trim().to_lowercase().chars().take(320).collect();
        let key = format!("{what}:account:{account}");
        self.count(&self.per_account, &key).await
    }

    /// Counts an attempt at `what` from `address` (no account involved).
    pub async fn check_address(&self, what: &str, address: Option<IpAddr>) -> Result<(), AppError> {
        let address = address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        self.count(&self.per_address, &format!("{what}:ip:{address}")).await
    }

    /// Always counted in this process too, so that when Redis fails the
    /// fallback starts from this replica's recent attempts, not from zero.
    /// An attempt either count refuses is refused: this replica alone
    /// seeing more than the limit is reason enough, whatever Redis's window.
    async fn count(&self, limit: &RateLimit, key: &str) -> Result<(), AppError> {
        let local = limit.check(key);
        let Some(shared) = &self.shared else { return local };
        match shared.count(key, limit.window).await {
            Ok(window) if window.count > u64::from(limit.limit) => Err(too_many(window.left)),
            Ok(_) => local,
            Err(unavailable) => {
                metrics::counter!("shop_rate_limit_fallbacks_total", "reason" => unavailable.reason()).increment(1);
                local
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_is_told_from_cross_site() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(is_same_origin(&headers(&[("host", "shop.example"), ("origin", "https://shop.example")])));
        assert!(is_same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!is_same_origin(&headers(&[("host", "shop.example"), ("origin", "https://evil.example")])));
        assert!(!is_same_origin(&headers(&[("host", "shop.example"), ("origin", "null")])));
        let null_from = |site| headers(&[("host", "shop.example"), ("origin", "null"), ("sec-fetch-site", site)]);
        assert!(is_same_origin(&null_from("same-origin")), "a no-referrer page of ours");
        assert!(!is_same_origin(&null_from("cross-site")) && !is_same_origin(&null_from("same-site")));
        assert!(!is_same_origin(&headers(&[("host", "shop.example"), ("sec-fetch-site", "cross-site")])));
        assert!(is_same_origin(&headers(&[("host", "shop.example")])), "curl and other non-browsers");
        assert!(is_same_origin(&headers(&[("host", "shop.example"), ("sec-fetch-site", "same-origin")])));
    }

    #[tokio::test]
    async fn the_operator_sets_the_limits() {
        let limits = Limits::new(LimitSettings { per_address_per_minute: 1000, per_account_per_quarter_hour: 2 });
        let here = Some(IpAddr::from([127, 0, 0, 1]));
        assert!(limits.check("sign-in", here, "a@example.com").await.is_ok());
        assert!(limits.check("sign-in", here, " A@example.com").await.is_ok(), "one account whatever its case");
        assert!(limits.check("sign-in", here, "a@example.com").await.is_err(), "the third try for one account");
        let long = |n| "b".repeat(n);
        assert!(limits.check("sign-in", here, &long(400)).await.is_ok());
        assert!(limits.check("sign-in", here, &long(500)).await.is_ok());
        assert!(limits.check("sign-in", here, &long(600)).await.is_err(), "overlong names cut to one key");
        for n in 0..100 {
            assert!(limits.check("sign-in", here, &format!("{n}@example.com")).await.is_ok(), "a busy address, raised");
        }
        assert_eq!(
            LimitSettings::default(),
            LimitSettings { per_address_per_minute: 30, per_account_per_quarter_hour: 10 }
        );
    }

    #[tokio::test]
    async fn addresses_are_limited_apart() {
        let limits = Limits::new(LimitSettings { per_address_per_minute: 2, per_account_per_quarter_hour: 1000 });
        let (one, two) = (Some(IpAddr::from([203, 0, 113, 1])), Some(IpAddr::from([203, 0, 113, 2])));
        for n in 0..2 {
            assert!(limits.check("login", one, &format!("{n}@example.com")).await.is_ok());
        }
        assert!(limits.check("login", one, "x@example.com").await.is_err());
        assert!(limits.check("login", two, "x@example.com").await.is_ok(), "another address has its own");
        assert!(limits.check_address("reset", one).await.is_ok(), "another door has its own");
        assert!(limits.check("login", None, "y@example.com").await.is_ok(), "an unknown address is one key");
    }

    #[test]
    fn limits_count_per_key_and_say_how_long_to_wait() {
        let limit = RateLimit::new(2, Duration::from_secs(60));
        assert!(limit.check("a").is_ok() && limit.check("a").is_ok());
        assert!(
            matches!(limit.check("a"), Err(AppError::TooManyRequests { retry_after_secs }) if retry_after_secs > 0)
        );
        assert!(limit.check("b").is_ok(), "other keys are not affected");
        let expired = RateLimit::new(1, Duration::ZERO);
        assert!(expired.check("a").is_ok() && expired.check("a").is_ok(), "a new window starts afresh");
    }
}
