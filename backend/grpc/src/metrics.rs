//! RED metrics for every gRPC method a server answers: calls by service,
//! method and status code, and their duration.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // "/shop.users.v1.UserService/GetUserProfile"
        let path = request.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let (service, method) = (service.to_owned(), method.to_owned());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A failed call answers "trailers only", its code in the headers;
            // a successful one sends it in trailers after the body: OK.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .map_or("OK", code_name);
            metrics::counter!("grpc_server_handled_total", "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_code" => code)
                .increment(1);
            metrics::histogram!("grpc_server_handling_seconds", "grpc_service" => service, "grpc_method" => method)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: usize) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code).copied().unwrap_or("UNKNOWN")
}

/// Describes this module's metrics to the registry (their HELP lines).
pub fn describe() {
    metrics::describe_counter!("grpc_server_handled_total", "gRPC calls answered, by service, method and status code.");
    metrics::describe_histogram!(
        "grpc_server_handling_seconds",
        metrics::Unit::Seconds,
        "Time to answer a gRPC call, by service and method."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_have_their_canonical_names() {
        assert_eq!(super::code_name(0), "OK");
        assert_eq!(super::code_name(9), "FAILED_PRECONDITION");
        assert_eq!(super::code_name(16), "UNAUTHENTICATED");
        assert_eq!(super::code_name(99), "UNKNOWN");
    }
}
