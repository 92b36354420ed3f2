//! The gateway put together: its stores (memory or Redis), its event
//! consumers, its shared state, and the layers every request passes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::cache::{self, Cache};
use crate::catalog::Catalog;
use crate::config::GatewayConfig;
use crate::events::{self, Live, Revoked};
use crate::profiles::Profiles;
use crate::services::Services;
use crate::session_store::SessionStoreKind;
use crate::state::{AppState, Shared};
use crate::viewer::SessionRules;
use crate::{error_page, observe, routes, security, templates};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a service URL: {0}")]
    ServiceUrl(#[from] tonic::transport::Error),
    #[error("connecting to Redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the sessions' Redis database ({0}) is the one the cache uses: give sessions a database of their own \
         (SHOP_SESSION_REDIS_DB), so they can be counted"
    )]
    SharedSessionDatabase(u8),
    #[error("writing the OpenAPI document: {0}")]
    OpenApi(serde_json::Error),
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
        // One health flag for Redis, shared by all that use it (`dependency_health`).
        let redis_health = config.redis_url.as_ref().map(|_| crate::dependency_health::Dependency::new("redis"));
        let (cache, sessions, revoked) = match (&config.redis_url, &redis_health) {
            (Some(url), Some(health)) => {
                let cache_db = fred::prelude::Config::from_url(url)?.database.unwrap_or(0);
                if cache_db == config.session_db {
                    return Err(StartError::SharedSessionDatabase(cache_db));
                }
                let pool = cache::connect_redis(url).await?;
                let sessions = cache::connect_redis_database(url, Some(config.session_db)).await?;
                (
                    Cache::redis_guarded(pool.clone(), &config.cache_prefix, config.cache_ttl, health.clone()),
                    SessionStoreKind::redis_guarded(sessions, health.clone()),
                    Revoked::redis_guarded(pool, &config.cache_prefix, health.clone()),
                )
            }
            _ => (Cache::memory(&config.cache_prefix, config.cache_ttl), SessionStoreKind::memory(), Revoked::memory()),
        };
        let (catalog, profiles, live) = (Catalog::new(cache.clone()), Profiles::new(cache.clone()), Live::default());
        let mut consumers = match &config.bus {
            Some(bus) => {
                Consumers(events::start(bus, catalog.clone(), profiles.clone(), revoked.clone(), live.clone()))
            }
            None => Consumers::default(),
        };
        consumers.0.push(tokio::spawn(sessions.clone().report_active()));
        if let Some(health) = &redis_health {
            consumers.0.push(crate::dependency_health::watch_redis(health.clone(), cache.clone(), sessions.clone()));
        }
        let (routes, openapi) = routes::router().map_err(StartError::OpenApi)?;
        let state = AppState::new(Shared {
            services: Arc::new(Services::connect(&config.services, config.identity.clone())?),
            templates: templates::Templates::new().keeping_fragments_for(config.cache_ttl / 2),
            cache: cache.clone(),
            catalog,
            images: Default::default(),
            profiles,
            sessions: SessionRules {
                lifetime_ms: i64::try_from(config.session_lifetime.as_millis()).unwrap_or(i64::MAX),
                revoked,
            },
            live,
            limits: security::Limits::for_gateway(config, redis_health.as_ref()).await?,
            readiness: crate::readiness::Readiness::new(&config.services, redis_health)?,
            trusted_proxies: config.trusted_proxies.clone(),
            openapi,
            shop: config.shop.clone(),
        });
        let idle = time::Duration::try_from(config.session_idle).unwrap_or(time::Duration::hours(12));
        let session_layer = SessionManagerLayer::new(sessions.clone())
            .with_name("shop_session")
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(config.cookie_secure)
            .with_expiry(Expiry::OnInactivity(idle));
        // Each `Router::layer` call wraps every route in one more boxed
        // service, and axum clones a route's whole box chain each time a
        // request passes one (`Route::oneshot_inner`): nine single layers
        // cost 37 boxed clones a request, 16 % of a cached read's
        // instructions. So the layers come as two stacks, one box each.
        //
        // Outermost first. A refused cross-site write is rendered like any
        // other error. Assets and the health check never touch a session.
        let pages = routes.layer(
            ServiceBuilder::new()
                .layer(session_layer)
                .layer(error_page::RenderErrorsLayer::new(state.clone()))
                .layer(security::SameOriginWritesLayer),
        );
        let router = routes::sessionless()
            .layer(error_page::RenderErrorsLayer::new(state.clone()))
            .merge(pages)
            .layer(
                ServiceBuilder::new()
                    .layer(observe::ObserveLayer::default())
                    .layer(TimeoutLayer::with_status_code(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        Duration::from_secs(30),
                    ))
                    .layer(DefaultBodyLimit::max(64 * 1024))
                    // HTML, CSS, JS and JSON are sent gzip- or brotli-compressed when
                    // the client accepts it (not images, not the live order stream).
                    .layer(CompressionLayer::new())
                    .layer(MapResponseLayer::new(security::add_headers)),
            )
            .with_state(state);
        Ok(Self { router, cache, sessions, consumers })
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish. `built` is called once the gateway is built,
/// before it takes its first request.
pub async fn serve(
    listener: TcpListener,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    built: impl FnOnce(),
) -> Result<(), StartError> {
    let gateway = Gateway::build(config).await?;
    tracing::info!(cache = gateway.cache.backend(), sessions = gateway.sessions.name(), "gateway ready");
    built();
    let _consumers = gateway.consumers;
    // Client addresses feed the sign-in rate limits.
    let app = gateway.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // axum's `serve` leaves Nagle's algorithm on: an answer written in two
    // pieces (head, then body) would wait for the client's delayed ACK.
    let listener = listener.tap_io(|connection| {
        if let Err(error) = connection.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on a connection");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
