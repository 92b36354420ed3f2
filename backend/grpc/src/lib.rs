//! Running one of the shop's gRPC services: health checking, reflection and
//! graceful shutdown are wired here once, for every service.

pub mod breaker;
pub mod identity;
pub mod observe;
pub mod rich_error;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
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

/// Whether a service can do its work now (its database answers); asked by
/// [`serve_checked`]'s health checking. It must answer within a few seconds
/// (it is given [`CHECK_TIMEOUT`]).
pub type Check = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How often a service's [`Check`] runs, how long it may take, and how many
/// failures in a row make it NOT_SERVING: one slow query does not.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const FAILURES_TO_NOT_SERVING: u32 = 3;

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
    serve_checked(listener, service, None, shutdown).await
}

/// [`serve`], with health that also follows `check`: NOT_SERVING after
/// [`FAILURES_TO_NOT_SERVING`] failed checks in a row, SERVING again at the
/// first that passes. Each change is logged once.
pub async fn serve_checked<S>(
    listener: TcpListener,
    service: S,
    check: Option<Check>,
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
    let checking = check.map(|check| tokio::spawn(follow::<S>(health.clone(), check)));

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
        if let Some(checking) = checking {
            checking.abort();
        }
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

/// Sets `S`'s health (and the server's) from `check`, until aborted.
async fn follow<S: NamedService>(health: tonic_health::server::HealthReporter, check: Check) {
    let mut failures = 0u32;
    let mut serving = true;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let passed = matches!(tokio::time::timeout(CHECK_TIMEOUT, check()).await, Ok(true));
        failures = if passed { 0 } else { failures.saturating_add(1) };
        let now_serving = if passed {
            true
        } else if failures >= FAILURES_TO_NOT_SERVING {
            false
        } else {
            serving
        };
        if now_serving == serving {
            continue;
        }
        serving = now_serving;
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        health.set_service_status(S::NAME, status).await;
        health.set_service_status("", status).await;
        if serving {
            tracing::info!(service = S::NAME, "its database answers again: SERVING");
        } else {
            tracing::warn!(service = S::NAME, failures, "its database does not answer: NOT_SERVING");
        }
    }
}
