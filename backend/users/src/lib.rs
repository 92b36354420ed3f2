//! The user service: accounts, argon2id credentials and roles, over gRPC
//! (`shop.users.v1.UserService`).

pub mod address;
pub mod domain;
pub mod error;
pub mod password;
pub mod reset;
pub mod service;
pub mod store;

use shop_storage::Migrations;

pub use error::UserError;
pub use service::UserService;

/// The users database's schema, for each backend.
pub const MIGRATIONS: Migrations = shop_storage::migrations!("users": 1 => "0001_create_users", 2 => "0002_create_outbox", 3 => "0003_outbox_trace_context", 4 => "0004_addresses_and_password_resets");
