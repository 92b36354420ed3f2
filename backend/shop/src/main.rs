//! `shop`: one binary for the whole platform. `shop all` (the default) runs
//! the three services and the gateway in one process, the gateway reaching
//! the services over gRPC on loopback exactly as it would across machines;
//! `shop users|inventory|orders|gateway` runs one of them.
//!
//! Everything is put together by the library (`shop::App`); this is the
//! command line around it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use shop::{App, Cli, Command, Config, Part, Service, commands, databases, healthcheck, shutdown_signal, telemetry};

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
        Some(Command::Notifications) => (telemetry::Role::Server, Some("notifications")),
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
        Command::All => serve(&config, &Part::ALL).await,
        Command::Users => serve(&config, &[Part::Users]).await,
        Command::Inventory => serve(&config, &[Part::Inventory]).await,
        Command::Orders => serve(&config, &[Part::Orders]).await,
        Command::Gateway => serve(&config, &[Part::Gateway]).await,
        Command::Notifications => serve(&config, &[Part::Notifications]).await,
        Command::Migrate { service } => {
            let services = match service {
                Some(service) => vec![service],
                None => vec![Service::Users, Service::Inventory, Service::Orders],
            };
            for service in services {
                let db = databases::open(&config, service).await?;
                db.close().await;
                println!("{}: migrated", service.name());
            }
            // Every database when none is named, so one Job (Kubernetes) or
            // one command brings the whole shop's schema up to date.
            if service.is_none() {
                databases::open_notifications(&config).await?.close().await;
                println!("notifications: migrated");
            }
            Ok(())
        }
        Command::MakeAdmin { email } => {
            let user = commands::make_admin(&config, &email).await?;
            println!("user {} <{}> is now an admin", user.id, user.email);
            Ok(())
        }
        Command::DemoCatalogue => {
            match commands::demo_catalogue(&config).await? {
                0 => println!("the catalogue has products already: nothing loaded"),
                added => println!("loaded {added} demo products"),
            }
            Ok(())
        }
        Command::Healthcheck { .. } => unreachable!("answered before logging starts"),
        Command::TailEvents { all } => commands::tail_events(&config, all).await,
        Command::CallerToken { user, admin } => {
            println!("{}", commands::caller_token(&config, user, admin)?);
            Ok(())
        }
    }
}

/// Runs `parts` until Ctrl-C or SIGTERM (or until one of them fails).
async fn serve(config: &Config, parts: &[Part]) -> Result<()> {
    App::build(config, parts).await?.run(shutdown_signal()).await
}
