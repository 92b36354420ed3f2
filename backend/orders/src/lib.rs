//! The order service: orders priced and reserved through inventory, and their
//! status, over gRPC (`shop.orders.v1.OrderService`).
//!
//! An order is recorded as `pending` before any stock is touched, then
//! inventory reserves all of its items or none, keyed by the order id. A
//! crash or an inventory outage in between leaves a pending order that the
//! [`recovery`] pass finishes or rejects; nothing is reserved twice because
//! reservations are idempotent by order id.

pub mod domain;
pub mod error;
pub mod recovery;
pub mod service;
pub mod store;

use shop_storage::{MigrationFile, Migrations};

pub use error::OrderError;
pub use service::OrderService;

/// The order database's schema, for each backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[
        MigrationFile {
            version: 1,
            description: "create orders",
            sql: include_str!("../../../migrations/orders/postgres/0001_create_orders.sql"),
        },
        MigrationFile {
            version: 2,
            description: "idempotency keys",
            sql: include_str!("../../../migrations/orders/postgres/0002_idempotency_keys.sql"),
        },
    ],
    sqlite: &[
        MigrationFile {
            version: 1,
            description: "create orders",
            sql: include_str!("../../../migrations/orders/sqlite/0001_create_orders.sql"),
        },
        MigrationFile {
            version: 2,
            description: "idempotency keys",
            sql: include_str!("../../../migrations/orders/sqlite/0002_idempotency_keys.sql"),
        },
    ],
};
