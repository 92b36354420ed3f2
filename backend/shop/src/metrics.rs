//! The process's Prometheus registry, served at `/metrics`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::task::JoinSet;

use crate::Part;

/// HELP lines for what this process's parts record (and, for business
/// counters, a zero before the first event).
fn describe(parts: &[Part]) {
    shop_events::describe_metrics();
    metrics::describe_counter!("shop_log_lines_shipped_total", "Log lines pushed to Loki.");
    metrics::describe_counter!(
        "shop_log_lines_dropped_total",
        "Log lines not pushed to Loki: its buffer was full or Loki refused them."
    );
    if parts.iter().any(|part| *part != Part::Gateway) {
        shop_grpc::observe::describe();
        shop_storage::describe_metrics();
    }
    if parts.contains(&Part::Inventory) {
        shop_inventory::describe_metrics();
    }
    if parts.contains(&Part::Orders) {
        shop_orders::metrics::describe();
    }
    if parts.contains(&Part::Gateway) {
        shop_grpc::observe::describe();
        shop_web::metrics::describe();
    }
}

/// Installs the registry and serves it on `addr` beside the other servers.
pub async fn serve(
    addr: SocketAddr,
    parts: &[Part],
    servers: &mut JoinSet<Result<&'static str>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Durations as real Prometheus histograms (not summaries), so they can
    // be aggregated across processes; buckets from 5 ms to 10 s.
    let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets(&buckets)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics registry")?;
    describe(parts);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding /metrics on {addr}"))?;
    tracing::info!(url = %format!("http://{}/metrics", listener.local_addr()?), "metrics listening");
    let app = axum::Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    servers.spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map(|()| "metrics").context("metrics")
    });
    Ok(())
}
