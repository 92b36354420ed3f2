//! Running one of the shop's gRPC services: health checking, reflection and
//! graceful shutdown are wired here once, for every service.

pub mod identity;
pub mod observe;
pub mod rich_error;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

const HEALTH: &str = "grpc.health.v1.Health";

/// Serves `service` on `listener` beside `grpc.health.v1.Health` and both
/// versions of server reflection, until `shutdown` resolves. Health turns to
/// NOT_SERVING as soon as shutdown starts, so load balancers stop sending
/// requests while the ones in flight finish.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    S: tower::Service<http::Request<Body>, Error = Infallible> + NamedService + Clone + Send + Sync + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<S>().await;
    health.set_service_status("", ServingStatus::Serving).await;

    // Reflection lists what this port serves: its service and health, not
    // every service in the shop's descriptors.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shop_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(S::NAME)
            .with_service_name(HEALTH)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let shutdown = async move {
        shutdown.await;
        health.set_not_serving::<S>().await;
        health.set_service_status("", ServingStatus::NotServing).await;
    };

    Server::builder()
        .timeout(Duration::from_secs(30))
        .layer(observe::ServerLayer::serving(&[
            S::NAME,
            HEALTH,
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        // TCP_NODELAY on every accepted connection: tonic's own setting is
        // ignored for an incoming stream, and without it a response written
        // in pieces (headers, message, trailers) waits for the client's
        // delayed ACK, 40 ms on Linux.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await?;
    Ok(())
}
