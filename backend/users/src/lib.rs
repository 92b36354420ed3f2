//! The user service: accounts, argon2id credentials and roles, over gRPC
//! (`shop.users.v1.UserService`).

pub mod domain;
pub mod error;
pub mod password;
pub mod service;
pub mod store;

use shop_storage::{MigrationFile, Migrations};

pub use error::UserError;
pub use service::UserService;

/// The user database's schema, for each backend.
pub const MIGRATIONS: Migrations = Migrations {
    postgres: &[MigrationFile {
        version: 1,
        description: "create users",
        sql: include_str!("../../../migrations/users/postgres/0001_create_users.sql"),
    }],
    sqlite: &[MigrationFile {
        version: 1,
        description: "create users",
        sql: include_str!("../../../migrations/users/sqlite/0001_create_users.sql"),
    }],
};
