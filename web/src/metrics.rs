//! RED metrics for every route: requests by method, route template (not
//! the raw path, so ids do not explode the series) and status, and their
//! duration.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

pub async fn record(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |path| path.as_str()).to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Describes the gateway's metrics to the registry (their HELP lines).
pub fn describe() {
    metrics::describe_counter!("http_requests_total", "HTTP requests answered, by method, route template and status.");
    metrics::describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by method and route template."
    );
    metrics::describe_counter!(
        "shop_cache_requests_total",
        "Cache reads, by kind (user, product, products) and result."
    );
    metrics::describe_counter!(
        "shop_cache_failures_total",
        "Cache operations that failed and fell back to the service."
    );
}
