//! The composition root: [`App::build`] turns the configuration into the
//! parts one process runs, and [`App::run`] serves them until shutdown. The
//! `shop` binary and the in-process test harness both come through here, so
//! what tests start is what production runs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use shop_storage::Db;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Service, redact};
use crate::{databases, metrics};

/// What a process can run; `shop all` runs them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Users,
    Inventory,
    Orders,
    Gateway,
    /// The emails (a consumer of events, no listener of its own).
    Notifications,
}

impl Part {
    /// Everything, in one process (`shop all`).
    pub const ALL: [Self; 5] = [Self::Users, Self::Inventory, Self::Orders, Self::Gateway, Self::Notifications];
}

/// A server, ready to serve until its shutdown signal; it names itself when
/// it stops.
pub(crate) type Server = Pin<Box<dyn Future<Output = Result<&'static str>> + Send>>;

/// Work beside the servers (relays, recovery, pool reports), stopped with them.
type Background = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where an app's servers listen: the addresses actually bound, so a port 0
/// in the configuration reads here as the port the system chose.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub metrics: SocketAddr,
    pub users: Option<SocketAddr>,
    pub inventory: Option<SocketAddr>,
    pub orders: Option<SocketAddr>,
    /// The gateway's HTTP address.
    pub gateway: Option<SocketAddr>,
}

/// The parts of one process, built and bound, not yet serving.
pub struct App {
    addresses: Addresses,
    servers: Vec<Server>,
    background: Vec<Background>,
    stop: watch::Sender<bool>,
    shutdown_timeout: Duration,
    /// Whether start-up's freed memory goes back to the system as soon as
    /// the app runs; otherwise the gateway's server does it once built.
    trim_at_start: bool,
}

impl App {
    /// Opens the databases of `parts` (migrating them), binds every
    /// listener, connects the event bus, and makes the relays, the recovery
    /// pass, the services and the gateway, as `config` says. Nothing serves
    /// until [`App::run`]; the gateway connects its sessions and cache as it
    /// starts.
    pub async fn build(config: &Config, parts: &[Part]) -> Result<Self> {
        Self::build_with(config, parts, |_| {}).await
    }

    /// [`App::build`], with the gateway's settings adjusted after they are
    /// made from `config`: for what no flag says (tests end sessions after
    /// milliseconds, not hours).
    pub async fn build_with(
        config: &Config,
        parts: &[Part],
        adjust_gateway: impl FnOnce(&mut shop_web::GatewayConfig),
    ) -> Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let mut servers: Vec<Server> = Vec::new();
        let mut background: Vec<Background> = Vec::new();
        let (metrics_addr, metrics_server) =
            metrics::serve(config.metrics_addr, parts, stopped(stop_rx.clone())).await?;
        servers.push(metrics_server);
        let mut addresses =
            Addresses { metrics: metrics_addr, users: None, inventory: None, orders: None, gateway: None };
        let bus = event_bus(config, parts).await?;
        let identity = identity(config, parts)?;
        // Publishes a service's outbox, when there is somewhere to publish to,
        // and reports its connection pool.
        let mut relay = |db: &Db, service: &'static str| {
            background.push(Box::pin(db.clone().report_pool()));
            let wake = shop_events::Wake::default();
            if let Some(bus) = &bus {
                background
                    .push(Box::pin(shop_events::Relay::new(db.clone(), bus.clone(), service, wake.clone()).run()));
            }
            wake
        };
        // In one process the gateway and orders use the addresses actually bound
        // (which may be port 0 in tests), not the configured URLs.
        let mut inventory_url = config.service_url(Service::Inventory);
        let mut gateway_urls = shop_web::ServiceUrls {
            users: config.service_url(Service::Users),
            inventory: inventory_url.clone(),
            orders: config.service_url(Service::Orders),
        };

        if parts.contains(&Part::Users) {
            let db = databases::open(config, Service::Users).await?;
            let (listener, addr) = bind("the user service", config.users_addr).await?;
            tracing::info!(%addr, database = %redact(&config.database_url(Service::Users)), backend = db.backend.name(), "user service (gRPC) listening");
            addresses.users = Some(addr);
            gateway_urls.users = format!("http://{addr}");
            let service = shop_users::UserService::new(db.clone())
                .with_outbox(relay(&db, "users"))
                .with_identity(identity.clone())
                .into_server();
            let (shutdown, check) = (stopped(stop_rx.clone()), database_check(&db));
            servers.push(Box::pin(async move {
                shop_grpc::serve_checked(listener, service, check, shutdown)
                    .await
                    .map(|()| "users")
                    .context("user service")
            }));
        }
        if parts.contains(&Part::Inventory) {
            let db = databases::open(config, Service::Inventory).await?;
            let (listener, addr) = bind("the inventory service", config.inventory_addr).await?;
            tracing::info!(%addr, database = %redact(&config.database_url(Service::Inventory)), backend = db.backend.name(), "inventory service (gRPC) listening");
            addresses.inventory = Some(addr);
            inventory_url = format!("http://{addr}");
            gateway_urls.inventory = inventory_url.clone();
            let service = shop_inventory::InventoryService::new(db.clone())
                .with_outbox(relay(&db, "inventory"))
                .with_low_stock_threshold(config.low_stock_threshold)
                .with_identity(identity.clone())
                .into_server();
            let (shutdown, check) = (stopped(stop_rx.clone()), database_check(&db));
            servers.push(Box::pin(async move {
                shop_grpc::serve_checked(listener, service, check, shutdown)
                    .await
                    .map(|()| "inventory")
                    .context("inventory service")
            }));
        }
        if parts.contains(&Part::Orders) {
            let db = databases::open(config, Service::Orders).await?;
            let (listener, addr) = bind("the order service", config.orders_addr).await?;
            tracing::info!(%addr, database = %redact(&config.database_url(Service::Orders)), backend = db.backend.name(), inventory = %inventory_url, "order service (gRPC) listening");
            addresses.orders = Some(addr);
            gateway_urls.orders = format!("http://{addr}");
            let channel = shop_orders::service::inventory_channel(&inventory_url).context("the inventory URL")?;
            let service = shop_orders::OrderService::new(db.clone(), channel)
                .with_outbox(relay(&db, "orders"))
                .with_identity(identity.clone())
                .with_settings(config.order_settings());
            background.push(Box::pin(shop_orders::recovery::run_periodically(
                service.clone(),
                Duration::from_secs(config.recovery_interval_secs),
            )));
            let (shutdown, check) = (stopped(stop_rx.clone()), database_check(&db));
            let server = service.into_server();
            servers.push(Box::pin(async move {
                shop_grpc::serve_checked(listener, server, check, shutdown)
                    .await
                    .map(|()| "orders")
                    .context("order service")
            }));
        }
        if parts.contains(&Part::Gateway) {
            let (listener, addr) = bind("the gateway", config.http_addr).await?;
            tracing::info!(url = %format!("http://{addr}"), users = %gateway_urls.users, inventory = %gateway_urls.inventory, orders = %gateway_urls.orders, "gateway (HTTP) listening");
            addresses.gateway = Some(addr);
            let mut settings = shop_web::GatewayConfig {
                redis_url: config.redis_url.clone(),
                session_db: config.session_redis_db,
                cache_prefix: config.cache_prefix.clone(),
                cache_ttl: Duration::from_secs(config.cache_ttl_secs),
                cookie_secure: config.cookie_secure,
                session_idle: Duration::from_secs(config.session_idle_minutes * 60),
                session_lifetime: Duration::from_secs(config.session_lifetime_hours * 60 * 60),
                bus: bus.clone(),
                identity: identity.clone(),
                limits: shop_web::security::LimitSettings {
                    per_address_per_minute: config.signin_limit_per_address,
                    per_account_per_quarter_hour: config.signin_limit_per_account,
                },
                trusted_proxies: config.trusted_proxies.clone().reading(config.client_address_header),
                shop: shop_web::config::ShopDetails {
                    name: config.shop_name.clone(),
                    bank_details: config.bank_details.clone().filter(|details| !details.trim().is_empty()),
                },
                ..shop_web::GatewayConfig::new(gateway_urls.clone())
            };
            adjust_gateway(&mut settings);
            if let Some(url) = &config.redis_url {
                tracing::info!(redis = %redact(url), "gateway sessions and cache in Redis");
            }
            if !settings.trusted_proxies.is_empty() {
                let proxies = &settings.trusted_proxies;
                tracing::info!(proxies = %proxies.describe(), header = proxies.header().name(), "client addresses read from trusted proxies");
            }
            let shutdown = stopped(stop_rx.clone());
            // The gateway connects its stores and starts its event consumers
            // as it starts serving; requests wait in the listener's queue.
            // The gateway is the last part to be ready (it waits for its
            // stores): what start-up freed goes back to the system then.
            let built = || drop(tokio::task::spawn_blocking(crate::memory::release_freed));
            servers.push(Box::pin(async move {
                shop_web::serve(listener, &settings, shutdown, built).await.map(|()| "gateway").context("gateway")
            }));
        }
        if parts.contains(&Part::Notifications) {
            let Some(bus) = &bus else {
                bail!("shop notifications needs SHOP_NATS_URL: the services' events reach it through NATS")
            };
            let urls = (gateway_urls.users.as_str(), gateway_urls.orders.as_str());
            background.push(notifications(config, bus.clone(), urls, &identity).await?);
        }
        Ok(Self {
            addresses,
            servers,
            background,
            stop,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            trim_at_start: !parts.contains(&Part::Gateway),
        })
    }

    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// Serves until `shutdown` resolves (or until a server fails), then shuts
    /// every server down gracefully: requests in flight get
    /// `SHOP_SHUTDOWN_TIMEOUT_SECS` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut servers = JoinSet::new();
        for server in self.servers {
            servers.spawn(server);
        }
        let mut background = JoinSet::new();
        for work in self.background {
            background.spawn(work);
        }
        if self.trim_at_start {
            // No gateway to wait for: what start-up freed (the migrations)
            // goes back to the system now.
            drop(tokio::task::spawn_blocking(crate::memory::release_freed));
        }
        let outcome = tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down");
                Ok(())
            }
            Some(finished) = servers.join_next() => match finished {
                Ok(Ok(name)) => Err(anyhow::anyhow!("the {name} server stopped unexpectedly")),
                Ok(Err(error)) => Err(error),
                Err(panic) => Err(anyhow::anyhow!("a server task failed: {panic}")),
            },
        };
        let _ = self.stop.send(true);
        background.abort_all();
        // Requests in flight may finish; a client that never lets go may not
        // hold the process hostage.
        let drain = async {
            while let Some(finished) = servers.join_next().await {
                if let Ok(Err(error)) = finished {
                    tracing::warn!("{error:#}");
                }
            }
        };
        if tokio::time::timeout(self.shutdown_timeout, drain).await.is_err() {
            tracing::warn!(
                seconds = self.shutdown_timeout.as_secs(),
                "connections still open after the shutdown timeout; closing them"
            );
        }
        tracing::info!("stopped");
        outcome
    }
}

/// A service's health follows its own database (`SELECT 1`): see
/// `shop_grpc::serve_checked`.
fn database_check(db: &Db) -> Option<shop_grpc::Check> {
    let pool = db.pool.clone();
    Some(Box::new(move || {
        let pool = pool.clone();
        Box::pin(async move { shop_storage::sqlx::query("SELECT 1").execute(&pool).await.is_ok() })
    }))
}

async fn bind(what: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {what} on {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The secret callers' identities are signed with: the configured one, or,
/// when everything runs in this process, one of its own.
fn identity(config: &Config, parts: &[Part]) -> Result<shop_grpc::identity::Identity> {
    match &config.internal_secret {
        Some(secret) if secret.chars().count() < 16 => bail!("SHOP_INTERNAL_SECRET must be 16 characters at least"),
        Some(secret) => Ok(shop_grpc::identity::Identity::new(secret.as_bytes())),
        None if parts.len() > 1 => Ok(shop_grpc::identity::Identity::random()),
        None => bail!(
            "set SHOP_INTERNAL_SECRET (the same value for every process of this shop): services check who calls them"
        ),
    }
}

/// The notifications component: its database, its transport (SMTP, or
/// `.eml` files under the data directory) and its consumer, already
/// subscribed. On the in-process bus an event published before a consumer
/// subscribes never reaches it, and the relays publish as soon as the app
/// runs; so the consumer is polled once here, which subscribes it.
async fn notifications(
    config: &Config,
    bus: shop_events::Bus,
    (users_url, orders_url): (&str, &str),
    identity: &shop_grpc::identity::Identity,
) -> Result<Background> {
    use shop_notifications::transport::{Configured, Files, Smtp, Transport};
    shop_notifications::describe_metrics();
    let db = databases::open_notifications(config).await?;
    let settings = shop_notifications::Settings::new(&config.mail_from, &config.public_url)?;
    let transport = match &config.smtp_url {
        Some(url) => Configured::Smtp(
            Smtp::new(url, Duration::from_secs(config.smtp_timeout_secs))
                .map_err(|error| anyhow::anyhow!("SHOP_SMTP_URL: {error}"))?,
        ),
        None => Configured::Files(Files::new(config.mail_dir())),
    };
    let lookup = shop_notifications::lookup::Grpc::new(identity, users_url, orders_url)
        .context("the user or order service URL")?;
    tracing::info!(emails = %transport.describe(), database = %redact(&config.notifications_database_url()), from = %config.mail_from, users = %users_url, orders = %orders_url, "notifications sending emails");
    let notifier = shop_notifications::Notifier::new(db, lookup, transport, settings).context("the email templates")?;
    let mut consumer: Background = Box::pin(shop_notifications::run(bus, std::sync::Arc::new(notifier)));
    let mut finished = false;
    std::future::poll_fn(|cx| {
        finished = consumer.as_mut().poll(cx).is_ready();
        std::task::Poll::Ready(())
    })
    .await;
    Ok(if finished { Box::pin(std::future::ready(())) } else { consumer })
}

/// NATS when configured; in one process without it, an in-process bus; a
/// single service without NATS keeps its events in its outbox.
async fn event_bus(config: &Config, parts: &[Part]) -> Result<Option<shop_events::Bus>> {
    if let Some(url) = &config.nats_url {
        let settings = shop_events::NatsSettings {
            url: url.clone(),
            stream: config.nats_stream.clone(),
            subject_prefix: config.nats_subject_prefix.clone(),
        };
        tracing::info!(nats = %redact(url), stream = %settings.stream, subjects = %format!("{}.>", settings.subject_prefix), "events on NATS JetStream");
        return Ok(Some(shop_events::Bus::nats(settings).await.context("connecting to NATS")?));
    }
    if parts.len() > 1 {
        tracing::info!("events on the in-process bus");
        return Ok(Some(shop_events::Bus::in_process()));
    }
    if parts != [Part::Gateway] {
        tracing::warn!("no SHOP_NATS_URL: events wait in the outbox until NATS is configured");
    }
    Ok(None)
}

/// Resolves when `stop` is set: each server's shutdown signal.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Ctrl-C, or SIGTERM (how container runtimes and systemd stop processes).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
