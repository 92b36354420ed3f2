//! The gateway's metrics, described once for the registry (HELP lines);
//! they are recorded where they happen (`observe`, `cache`, `sessions`).

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
    metrics::describe_gauge!(
        "shop_sessions_active",
        "Sessions not yet expired: this gateway's in memory, or every replica's in Redis (take the max, not the sum)."
    );
    metrics::describe_gauge!(
        "shop_dependency_up",
        "1 while a dependency the gateway can serve without (Redis) answers, 0 while it is skipped."
    );
    metrics::describe_counter!(
        "shop_dependency_skipped_total",
        "Calls not made to a dependency because it was down (each would have waited on a time-out)."
    );
    metrics::describe_counter!(
        "shop_sessions_unreadable_total",
        "Requests whose session was in Redis while Redis was down: shown as signed out, with a notice."
    );
}
