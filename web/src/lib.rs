//! The gateway: the shop's face over its gRPC services. Every URL answers
//! with a full HTML page, the HTMX partial alone (`HX-Request`), or JSON
//! (`Accept: application/json`), from one handler per route. It holds no
//! tables: every read and write goes to a service over gRPC, even when all
//! of them run in one process.

pub mod cache;
pub mod error;
pub mod events;
pub mod extract;
pub mod metrics;
pub mod negotiate;
pub mod observe;
pub mod routes;
pub mod security;
pub mod session;
pub mod sessions;
pub mod templates;
pub mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use shop_grpc::identity::{Identity, SignAs, Signed};
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::users::v1::user_service_client::UserServiceClient;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tower_http::timeout::TimeoutLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use cache::Cache;
pub use sessions::SessionStoreKind;

/// Where the gateway finds the services.
#[derive(Debug, Clone)]
pub struct ServiceUrls {
    pub users: String,
    pub inventory: String,
    pub orders: String,
}

/// Everything the gateway is configured with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub services: ServiceUrls,
    /// Sessions and the cache live here when set; in memory otherwise.
    pub redis_url: Option<String>,
    /// Put before every cache key, so several shops (or tests) can share a Redis.
    pub cache_prefix: String,
    pub cache_ttl: Duration,
    /// Mark the session cookie `Secure` (set it when served over HTTPS).
    pub cookie_secure: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after signing in, however busy.
    pub session_lifetime: Duration,
    /// Where the shop's events arrive; none, and caches only expire.
    pub bus: Option<shop_events::Bus>,
    /// Signs who each call to a service is for (`SHOP_INTERNAL_SECRET`).
    pub identity: Identity,
}

impl GatewayConfig {
    pub fn new(services: ServiceUrls) -> Self {
        Self {
            services,
            redis_url: None,
            cache_prefix: "shop:cache:".into(),
            cache_ttl: Duration::from_secs(60),
            cookie_secure: false,
            session_idle: Duration::from_secs(12 * 60 * 60),
            session_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            bus: None,
            identity: Identity::random(),
        }
    }
}

/// What every handler shares: gRPC clients, templates and the cache.
#[derive(Clone)]
pub struct AppState {
    /// Every call carries the signed identity of the person the request is
    /// for (see `identity::act_for`), so the services decide for themselves.
    pub users: UserServiceClient<Signed>,
    pub inventory: InventoryServiceClient<Signed>,
    pub orders: OrderServiceClient<Signed>,
    pub templates: templates::Templates,
    pub cache: Cache,
    pub revoked: events::Revoked,
    pub live: events::Live,
    pub limits: security::Limits,
    pub session_lifetime_ms: i64,
    pub openapi: Arc<utoipa::openapi::OpenApi>,
}

/// Channels connect on first use, so the gateway starts even while a
/// service is still coming up.
fn channel(url: &str) -> Result<shop_grpc::observe::Observed<Channel>, tonic::transport::Error> {
    Ok(shop_grpc::observe::client(
        Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy(),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a service URL: {0}")]
    ServiceUrl(#[from] tonic::transport::Error),
    #[error("connecting to Redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The gateway's router, the stores it uses, and its event consumers.
pub struct Gateway {
    pub router: Router,
    pub cache: Cache,
    pub sessions: SessionStoreKind,
    pub consumers: Consumers,
}

/// This replica's event consumers and its session count; they stop when
/// this is dropped.
#[derive(Default)]
pub struct Consumers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for consumer in &self.0 {
            consumer.abort();
        }
    }
}

impl Gateway {
    pub async fn build(config: &GatewayConfig) -> Result<Self, StartError> {
        let (cache, sessions, revoked) = match &config.redis_url {
            Some(url) => {
                let pool = cache::connect_redis(url).await?;
                (
                    Cache::redis(pool.clone(), &config.cache_prefix, config.cache_ttl),
                    SessionStoreKind::redis(pool.clone(), &config.cache_prefix),
                    events::Revoked::redis(pool, &config.cache_prefix),
                )
            }
            None => (
                Cache::memory(&config.cache_prefix, config.cache_ttl),
                SessionStoreKind::memory(),
                events::Revoked::memory(),
            ),
        };
        let live = events::Live::default();
        let mut consumers = match &config.bus {
            Some(bus) => Consumers(events::start(bus, cache.clone(), revoked.clone(), live.clone())),
            None => Consumers::default(),
        };
        consumers.0.push(tokio::spawn(sessions.clone().report_active()));
        let (routes, openapi) = routes::router();
        let sign = SignAs::current(config.identity.clone());
        let state = AppState {
            users: UserServiceClient::with_interceptor(channel(&config.services.users)?, sign.clone()),
            inventory: InventoryServiceClient::with_interceptor(channel(&config.services.inventory)?, sign.clone()),
            orders: OrderServiceClient::with_interceptor(channel(&config.services.orders)?, sign),
            templates: templates::Templates::new(),
            cache: cache.clone(),
            revoked,
            live,
            limits: security::Limits::default(),
            session_lifetime_ms: i64::try_from(config.session_lifetime.as_millis()).unwrap_or(i64::MAX),
            openapi: Arc::new(openapi),
        };
        let idle = time::Duration::try_from(config.session_idle).unwrap_or(time::Duration::hours(12));
        let session_layer = SessionManagerLayer::new(sessions.clone())
            .with_name("shop_session")
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(config.cookie_secure)
            .with_expiry(Expiry::OnInactivity(idle));
        // Innermost first: a refused cross-site write is rendered like any
        // other error, and every response gets the security headers.
        let router = routes
            .layer(axum::middleware::from_fn(security::same_origin_writes))
            .layer(axum::middleware::from_fn_with_state(state.clone(), session::act_for_viewer))
            .layer(axum::middleware::from_fn_with_state(state.clone(), error::render_errors))
            .layer(session_layer)
            .layer(axum::middleware::from_fn(security::headers))
            .layer(DefaultBodyLimit::max(64 * 1024))
            .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
            .layer(axum::middleware::from_fn(observe::request))
            .with_state(state);
        Ok(Self { router, cache, sessions, consumers })
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let gateway = Gateway::build(config).await?;
    tracing::info!(cache = gateway.cache.backend(), sessions = gateway.sessions.name(), "gateway ready");
    let _consumers = gateway.consumers;
    // Client addresses feed the sign-in rate limits.
    let app = gateway.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
