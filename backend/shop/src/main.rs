//! `shop`: one binary for the whole platform. `shop all` (the default) runs
//! the three services and the gateway in one process, the gateway reaching
//! the services over gRPC on loopback exactly as it would across machines;
//! `shop users|inventory|orders|gateway` runs one of them.

mod config;
mod healthcheck;
mod metrics;
mod telemetry;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use shop_storage::{ConnectOptions, Db, Migrations};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use config::{Cli, Command, Config, Service, redact};

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth stopping for.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("error: reading .env: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { target, timeout_secs }) = &cli.command {
        // Quiet: a probe's answer is its exit status (and a line on failure).
        return match healthcheck::check(target, Duration::from_secs(*timeout_secs)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (role, part) = match &cli.command {
        None | Some(Command::All) => (telemetry::Role::Server, None),
        Some(Command::Users) => (telemetry::Role::Server, Some("users")),
        Some(Command::Inventory) => (telemetry::Role::Server, Some("inventory")),
        Some(Command::Orders) => (telemetry::Role::Server, Some("orders")),
        Some(Command::Gateway) => (telemetry::Role::Server, Some("gateway")),
        Some(_) => (telemetry::Role::Command, None),
    };
    let telemetry =
        telemetry::init(cli.config.log_format, role, &telemetry::service_name(part), cli.config.loki_url.as_deref());
    let outcome = run(cli).await;
    if let Err(error) = &outcome {
        tracing::error!("{error:#}");
    }
    telemetry.shutdown().await;
    if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::All) {
        Command::All => serve(&config, &[Part::Users, Part::Inventory, Part::Orders, Part::Gateway]).await,
        Command::Users => serve(&config, &[Part::Users]).await,
        Command::Inventory => serve(&config, &[Part::Inventory]).await,
        Command::Orders => serve(&config, &[Part::Orders]).await,
        Command::Gateway => serve(&config, &[Part::Gateway]).await,
        Command::Migrate { service } => {
            let services = match service {
                Some(service) => vec![service],
                None => vec![Service::Users, Service::Inventory, Service::Orders],
            };
            for service in services {
                let db = open(&config, service).await?;
                db.close().await;
                println!("{}: migrated", service.name());
            }
            Ok(())
        }
        Command::MakeAdmin { email } => make_admin(&config, &email).await,
        Command::Healthcheck { .. } => unreachable!("answered before logging starts"),
        Command::TailEvents { all } => tail_events(&config, all).await,
        Command::CallerToken { user, admin } => {
            let Some(secret) = &config.internal_secret else {
                bail!("caller-token needs the shop's SHOP_INTERNAL_SECRET")
            };
            let identity = shop_grpc::identity::Identity::new(secret.as_bytes());
            let caller = shop_grpc::identity::Caller::User { id: user, admin };
            println!("{}", identity.token(&caller).unwrap_or_default());
            Ok(())
        }
    }
}

fn migrations(service: Service) -> &'static Migrations {
    match service {
        Service::Users => &shop_users::MIGRATIONS,
        Service::Inventory => &shop_inventory::MIGRATIONS,
        Service::Orders => &shop_orders::MIGRATIONS,
    }
}

/// Connects to a service's database and brings its schema up to date.
async fn open(config: &Config, service: Service) -> Result<Db> {
    let url = config.database_url(service);
    let options = ConnectOptions {
        max_connections: config.db_max_connections,
        service: service.name(),
        ..ConnectOptions::new(url.clone())
    };
    Db::connect_and_migrate(&options, migrations(service))
        .await
        .with_context(|| format!("opening the {} database at {}", service.name(), redact(&url)))
}

async fn tail_events(config: &Config, all: bool) -> Result<()> {
    let Some(url) = &config.nats_url else { bail!("tail-events needs NATS: set SHOP_NATS_URL or --nats-url") };
    let settings = shop_events::NatsSettings {
        url: url.clone(),
        stream: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
    };
    let bus = shop_events::Bus::nats(settings).await.context("connecting to NATS")?;
    let kinds = vec![
        "user.registered",
        "user.deleted",
        "product.changed",
        "stock.low",
        "order.created",
        "order.status_changed",
    ];
    let mut consumer = shop_events::Consumer::per_replica("tail", kinds);
    consumer.from_start = all;
    eprintln!("tailing {} on {} (Ctrl-C to stop)", config.nats_stream, redact(url));
    tokio::select! {
        () = shop_events::run_consumer(bus, consumer, |event| async move {
            println!("{}", serde_json::to_string(&event).map_err(|e| e.to_string())?);
            Ok(())
        }) => Ok(()),
        () = shutdown_signal() => Ok(()),
    }
}

async fn make_admin(config: &Config, email: &str) -> Result<()> {
    let db = open(config, Service::Users).await?;
    let email = shop_users::domain::Email::parse(email)?;
    let result = shop_users::store::set_role(&db, &email, shop_users::domain::Role::Admin).await;
    db.close().await;
    match result {
        Ok(user) => {
            println!("user {} <{}> is now an admin", user.id, user.email);
            Ok(())
        }
        Err(shop_users::UserError::NotFound) => {
            bail!("no account has the email {}; register it first, then run this again", email.as_str())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Users,
    Inventory,
    Orders,
    Gateway,
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

/// Starts `parts`, runs until Ctrl-C or SIGTERM (or until one of them
/// fails), then shuts every server down gracefully.
async fn serve(config: &Config, parts: &[Part]) -> Result<()> {
    let (stop, stop_rx) = watch::channel(false);
    let mut servers: JoinSet<Result<&'static str>> = JoinSet::new();
    let mut background = JoinSet::new();
    metrics::serve(config.metrics_addr, parts, &mut servers, stopped(stop_rx.clone())).await?;
    let bus = event_bus(config, parts).await?;
    let identity = identity(config, parts)?;
    // Publishes a service's outbox, when there is somewhere to publish to,
    // and reports its connection pool.
    let mut relay = |db: &Db, service: &'static str| {
        background.spawn(db.clone().report_pool());
        let wake = shop_events::Wake::default();
        if let Some(bus) = &bus {
            background.spawn(shop_events::Relay::new(db.clone(), bus.clone(), service, wake.clone()).run());
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
        let db = open(config, Service::Users).await?;
        let (listener, addr) = bind("the user service", config.users_addr).await?;
        tracing::info!(%addr, database = %redact(&config.database_url(Service::Users)), backend = db.backend.name(), "user service (gRPC) listening");
        gateway_urls.users = format!("http://{addr}");
        let service = shop_users::UserService::new(db.clone())
            .with_outbox(relay(&db, "users"))
            .with_identity(identity.clone())
            .into_server();
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            shop_grpc::serve(listener, service, shutdown).await.map(|()| "users").context("user service")
        });
    }
    if parts.contains(&Part::Inventory) {
        let db = open(config, Service::Inventory).await?;
        let (listener, addr) = bind("the inventory service", config.inventory_addr).await?;
        tracing::info!(%addr, database = %redact(&config.database_url(Service::Inventory)), backend = db.backend.name(), "inventory service (gRPC) listening");
        inventory_url = format!("http://{addr}");
        gateway_urls.inventory = inventory_url.clone();
        let service = shop_inventory::InventoryService::new(db.clone())
            .with_outbox(relay(&db, "inventory"))
            .with_low_stock_threshold(config.low_stock_threshold)
            .with_identity(identity.clone())
            .into_server();
        let shutdown = stopped(stop_rx.clone());
        servers.spawn(async move {
            shop_grpc::serve(listener, service, shutdown).await.map(|()| "inventory").context("inventory service")
        });
    }
    if parts.contains(&Part::Orders) {
        let db = open(config, Service::Orders).await?;
        let (listener, addr) = bind("the order service", config.orders_addr).await?;
        tracing::info!(%addr, database = %redact(&config.database_url(Service::Orders)), backend = db.backend.name(), inventory = %inventory_url, "order service (gRPC) listening");
        gateway_urls.orders = format!("http://{addr}");
        let channel = shop_orders::service::inventory_channel(&inventory_url).context("the inventory URL")?;
        let service = shop_orders::OrderService::new(db.clone(), channel)
            .with_outbox(relay(&db, "orders"))
            .with_identity(identity.clone());
        background.spawn(shop_orders::recovery::run_periodically(
            service.clone(),
            Duration::from_secs(config.recovery_interval_secs),
        ));
        let shutdown = stopped(stop_rx.clone());
        let server = service.into_server();
        servers.spawn(async move {
            shop_grpc::serve(listener, server, shutdown).await.map(|()| "orders").context("order service")
        });
    }
    if parts.contains(&Part::Gateway) {
        let (listener, addr) = bind("the gateway", config.http_addr).await?;
        tracing::info!(url = %format!("http://{addr}"), users = %gateway_urls.users, inventory = %gateway_urls.inventory, orders = %gateway_urls.orders, "gateway (HTTP) listening");
        let shutdown = stopped(stop_rx.clone());
        let gateway = shop_web::GatewayConfig {
            redis_url: config.redis_url.clone(),
            session_db: config.session_redis_db,
            cache_prefix: config.cache_prefix.clone(),
            cache_ttl: Duration::from_secs(config.cache_ttl_secs),
            cookie_secure: config.cookie_secure,
            session_idle: Duration::from_secs(config.session_idle_minutes * 60),
            session_lifetime: Duration::from_secs(config.session_lifetime_hours * 60 * 60),
            bus: bus.clone(),
            identity: identity.clone(),
            ..shop_web::GatewayConfig::new(gateway_urls.clone())
        };
        if let Some(url) = &config.redis_url {
            tracing::info!(redis = %redact(url), "gateway sessions and cache in Redis");
        }
        servers.spawn(async move {
            shop_web::serve(listener, &gateway, shutdown).await.map(|()| "gateway").context("gateway")
        });
    }

    let outcome = tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        Some(finished) = servers.join_next() => match finished {
            Ok(Ok(name)) => Err(anyhow::anyhow!("the {name} server stopped unexpectedly")),
            Ok(Err(error)) => Err(error),
            Err(panic) => Err(anyhow::anyhow!("a server task failed: {panic}")),
        },
    };
    let _ = stop.send(true);
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
    let grace = Duration::from_secs(config.shutdown_timeout_secs);
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            seconds = config.shutdown_timeout_secs,
            "connections still open after the shutdown timeout; closing them"
        );
    }
    tracing::info!("stopped");
    outcome
}

/// Ctrl-C, or SIGTERM (how container runtimes and systemd stop processes).
async fn shutdown_signal() {
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
