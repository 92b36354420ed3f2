//! The gateway: the shop's face over its gRPC services. It holds no tables;
//! every read and write goes to a service through its gRPC interface, even
//! when all of them run in one process.

mod pages;
mod templates;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::users::v1::user_service_client::UserServiceClient;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Where the gateway finds the services.
#[derive(Debug, Clone)]
pub struct ServiceUrls {
    pub users: String,
    pub inventory: String,
    pub orders: String,
}

/// The gRPC clients every handler shares. Channels connect on first use, so
/// the gateway starts even while a service is still coming up.
#[derive(Clone)]
pub struct AppState {
    pub users: UserServiceClient<Channel>,
    pub inventory: InventoryServiceClient<Channel>,
    pub orders: OrderServiceClient<Channel>,
    pub templates: templates::Templates,
}

fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

impl AppState {
    pub fn new(urls: &ServiceUrls) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            users: UserServiceClient::new(channel(&urls.users)?),
            inventory: InventoryServiceClient::new(channel(&urls.inventory)?),
            orders: OrderServiceClient::new(channel(&urls.orders)?),
            templates: templates::Templates::new(),
        })
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/healthz", get(|| async { "ok" }))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    urls: &ServiceUrls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    let state = AppState::new(urls).map_err(std::io::Error::other)?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
