//! Each service's database: where it is (from the configuration) and its
//! schema, brought up to date whenever it is opened.

use anyhow::{Context, Result};
use shop_storage::{ConnectOptions, Db, Migrations};

use crate::config::{Config, Service, redact};

pub fn migrations(service: Service) -> &'static Migrations {
    match service {
        Service::Users => &shop_users::MIGRATIONS,
        Service::Inventory => &shop_inventory::MIGRATIONS,
        Service::Orders => &shop_orders::MIGRATIONS,
    }
}

/// Connects to a service's database and brings its schema up to date.
pub async fn open(config: &Config, service: Service) -> Result<Db> {
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

/// Connects to the notifications component's database and brings its schema
/// up to date.
pub async fn open_notifications(config: &Config) -> Result<Db> {
    let url = config.notifications_database_url();
    let options = ConnectOptions {
        max_connections: config.db_max_connections.min(4),
        service: "notifications",
        ..ConnectOptions::new(url.clone())
    };
    Db::connect_and_migrate(&options, &shop_notifications::MIGRATIONS)
        .await
        .with_context(|| format!("opening the notifications database at {}", redact(&url)))
}
