//! The gateway: the shop's face over its gRPC services. Every URL answers
//! with a full HTML page, the HTMX partial alone (`HX-Request`), or JSON
//! (`Accept: application/json`), from one handler per route. It holds no
//! tables: every read and write goes to a service over gRPC, as the person
//! asking, even when all of them run in one process.
//!
//! Layers, from the request in: `observe` (span, metrics, log line),
//! compression, `security::add_headers`, the session, `error_page` (renders
//! every error once), `security::SameOriginWritesLayer` (refuses cross-site
//! writes, rendered like any error); then a handler in `routes`, which gets a
//! [`context::Ctx`] (who, what representation, clients signed for them),
//! asks the services, and answers through `Ctx`. `catalog` and `profiles`
//! read through the cache; `events` keeps it fresh across replicas.

pub mod cache;
pub mod cart_view;
pub mod catalog;
pub mod client_address;
pub mod config;
pub mod context;
pub mod dependency_health;
pub mod error;
pub mod error_page;
pub mod events;
pub mod extract;
pub mod gateway;
pub mod image_cache;
pub mod metrics;
pub mod negotiate;
pub mod observe;
pub mod pager;
pub mod product_query;
pub mod profiles;
pub mod readiness;
pub mod return_to;
pub mod routes;
pub mod security;
pub mod services;
pub mod session_store;
pub mod shared_limit;
pub mod state;
pub mod templates;
pub mod viewer;
pub mod views;

pub use cache::Cache;
pub use config::{GatewayConfig, ServiceUrls};
pub use gateway::{Consumers, Gateway, StartError, serve};
pub use session_store::SessionStoreKind;
