//! The inventory service: the catalogue, prices and stock, over gRPC
//! (`shop.inventory.v1.InventoryService`).
//!
//! Stock only ever moves by relative, conditional updates inside one
//! transaction per reservation, and a CHECK constraint keeps it from going
//! negative whatever the code does. Reservations are keyed by order id, which
//! makes reserving and releasing idempotent.

pub mod domain;
pub mod error;
pub mod service;
pub mod store;

use shop_storage::{MigrationFile, Migrations};

pub use error::InventoryError;
pub use service::InventoryService;

/// The inventory database's schema, for each backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[MigrationFile {
        version: 1,
        description: "create products",
        sql: include_str!("../../../migrations/inventory/postgres/0001_create_products.sql"),
    }],
    sqlite: &[MigrationFile {
        version: 1,
        description: "create products",
        sql: include_str!("../../../migrations/inventory/sqlite/0001_create_products.sql"),
    }],
};
