//! The process's Prometheus registry, served at `/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::app::{Part, Server};

/// HELP lines for what this process's parts record (and, for business
/// counters, a zero before the first event).
fn describe(parts: &[Part]) {
    shop_events::describe_metrics();
    metrics::describe_counter!("shop_log_lines_shipped_total", "Log lines pushed to Loki.");
    metrics::describe_counter!(
        "shop_log_lines_dropped_total",
        "Log lines not pushed to Loki: its buffer was full or Loki refused them."
    );
    metrics::describe_counter!(
        "shop_log_lines_unwritten_total",
        "Log lines dropped on their way to stdout: the writer's queue was full (stdout did not keep up)."
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

/// The process's registry: installed by the first app built in the process
/// and shared by any later one (a test process builds several). Prometheus
/// has one registry per process, whatever runs in it.
fn registry() -> Result<PrometheusHandle> {
    static REGISTRY: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    let installed = REGISTRY.get_or_init(|| {
        // Durations as real Prometheus histograms (not summaries), so they can
        // be aggregated across processes; buckets from 5 ms to 10 s.
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        PrometheusBuilder::new()
            .set_buckets(&buckets)
            .context("histogram buckets")
            .and_then(|builder| builder.install_recorder().context("installing the metrics registry"))
            .inspect(|handle| keep_up(handle.clone()))
            .map_err(|error| format!("{error:#}"))
    });
    installed.clone().map_err(anyhow::Error::msg)
}

/// How often histogram samples are drained into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

/// Drains the registry's histogram samples every [`UPKEEP`], on a thread of
/// its own for the process's life. The registry keeps every sample until a
/// scrape or an upkeep drains it, and `install_recorder` runs no upkeep:
/// without it, a shop that nothing scrapes grew by about 20 bytes a request
/// (11 MiB in 8 s of cached reads; docs/performance.md).
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP);
            handle.run_upkeep();
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no thread for the metrics' upkeep: histograms are drained only by scrapes");
    }
}

/// Binds `/metrics` on `addr` for the registry, described for `parts`; the
/// server runs when the returned future is polled, until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    parts: &[Part],
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, Server)> {
    let handle = registry()?;
    describe(parts);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding /metrics on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(url = %format!("http://{local}/metrics"), "metrics listening");
    let app = axum::Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    let server = Box::pin(async move {
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map(|()| "metrics").context("metrics")
    });
    Ok((local, server))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The registry comes with the thread that drains its histograms.
    #[test]
    fn the_registry_is_kept_up() -> Result<()> {
        registry()?;
        // A new thread names itself once it runs: on a busy machine, a
        // moment after the spawn returned.
        let mut names = Vec::new();
        for _ in 0..200 {
            names = std::fs::read_dir("/proc/self/task")?
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect();
            if names.iter().any(|name| name == "metrics-upkeep") {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no metrics-upkeep thread in 2 s: {names:?}");
    }
}
