//! The inventory service: the catalogue, prices and stock, over gRPC
//! (`shop.inventory.v1.InventoryService`).
//!
//! Stock only ever moves by relative, conditional updates inside one
//! transaction per reservation, and a CHECK constraint keeps it from going
//! negative whatever the code does. Reservations are keyed by order id, which
//! makes reserving and releasing idempotent.

pub mod categories;
pub mod demo;
mod demo_pictures;
pub mod domain;
pub mod error;
#[cfg(feature = "fault-hooks")]
pub mod fault_hooks;
pub mod images;
pub mod search;
pub mod service;
pub mod store;

use shop_storage::Migrations;

pub use error::InventoryError;
pub use service::InventoryService;

/// The inventory database's schema, for each backend.
pub const MIGRATIONS: Migrations = shop_storage::migrations!("inventory": 1 => "0001_create_products", 2 => "0002_create_outbox", 3 => "0003_outbox_trace_context", 4 => "0004_categories_search_images", 5 => "0005_keyset_paging_and_words", 6 => "0006_search_at_scale");

/// Describes inventory's metrics to the registry, each at zero so `rate()`
/// sees them before the first event.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "shop_stock_low_events_total",
        "Products whose stock fell to the low-stock threshold or below (each crossing once)."
    );
    metrics::counter!("shop_stock_low_events_total").absolute(0);
}
