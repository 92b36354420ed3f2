//! The order service: orders priced and reserved through inventory, and their
//! status, over gRPC (`shop.orders.v1.OrderService`).
//!
//! An order is recorded as `pending` before any stock is touched, then
//! inventory reserves all of its items or none, keyed by the order id. A
//! crash or an inventory outage in between leaves a pending order that the
//! [`recovery`] pass finishes or rejects; nothing is reserved twice because
//! reservations are idempotent by order id.

pub mod cart;
pub mod domain;
pub mod error;
#[cfg(feature = "fault-hooks")]
pub mod fault_hooks;
pub mod metrics;
pub mod recovery;
pub mod service;
pub mod store;

use shop_storage::Migrations;

pub use error::OrderError;
pub use service::OrderService;

/// The orders database's schema, for each backend.
pub const MIGRATIONS: Migrations = shop_storage::migrations!("orders": 1 => "0001_create_orders", 2 => "0002_idempotency_keys", 3 => "0003_create_outbox", 4 => "0004_outbox_trace_context", 5 => "0005_rejection_reason", 6 => "0006_carts", 7 => "0007_delivery_and_payment", 8 => "0008_order_list_index");
