//! What every gRPC call leaves behind, on both sides: a span in the
//! request's trace (its W3C context read from, or put on, the call's
//! metadata) and RED metrics by service, method and status code.
//!
//! A server names only what it serves: a call to a service it does not
//! have, or to a method it answers UNIMPLEMENTED, is `unknown`, so callers
//! cannot mint new series or span names.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

/// The server side, layered once around every service a port serves.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    services: Arc<[&'static str]>,
}

impl ServerLayer {
    /// For a port serving `services` (full names, health and reflection included).
    pub fn serving(services: &[&'static str]) -> Self {
        Self { services: services.into() }
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Server { inner, services: Arc::clone(&self.services) }
    }
}

#[derive(Debug, Clone)]
pub struct Server<S> {
    inner: S,
    services: Arc<[&'static str]>,
}

const UNKNOWN: &str = "unknown";

/// "/shop.users.v1.UserService/GetUserProfile" → its service and method.
fn service_and_method(path: &str) -> (String, String) {
    let path = path.trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    (service.to_owned(), method.to_owned())
}

/// Health checks and reflection are asked every few seconds by probes and
/// tools: counted, but not worth a trace each.
fn is_plumbing(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

/// A call's status code: a failed call answers "trailers only", its code in
/// the headers; a successful one sends it in trailers after the body: OK.
fn status_code<B>(response: &http::Response<B>) -> &'static str {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or("OK", code_name)
}

impl<S, B, R> Service<http::Request<B>> for Server<S>
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
        let (mut service, mut method) = service_and_method(request.uri().path());
        if !self.services.contains(&service.as_str()) {
            (service, method) = (UNKNOWN.to_owned(), UNKNOWN.to_owned());
        }
        let span = if is_plumbing(&service) { tracing::Span::none() } else { Side::Server.span(&service, &method) };
        shop_trace_context::adopt_parent(&span, request.headers());
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let response = future.await?;
                let code = status_code(&response);
                if code == "UNIMPLEMENTED" {
                    method = UNKNOWN.to_owned();
                    recorded.record("otel.name", format!("{service}/{UNKNOWN}"));
                }
                Side::Server.record(&recorded, service, method, code, started);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The client side: wrap a channel with [`client`] before handing it to a
/// generated client, and every call gets a child span whose context goes
/// out in the call's `traceparent` header.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
}

pub fn client<S>(channel: S) -> Observed<S> {
    Observed { inner: channel }
}

impl<S, B, R> Service<http::Request<B>> for Observed<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = service_and_method(request.uri().path());
        let span = Side::Client.span(&service, &method);
        shop_trace_context::inject(&span, request.headers_mut());
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let outcome = future.await;
                // No answer at all (refused, timed out at the transport) is
                // counted as UNAVAILABLE.
                let code = outcome.as_ref().map_or("UNAVAILABLE", status_code);
                Side::Client.record(&recorded, service, method, code, started);
                outcome
            }
            .instrument(span),
        )
    }
}

/// Which end of a call is observed: the same span and metrics, named for it.
#[derive(Debug, Clone, Copy)]
enum Side {
    Server,
    Client,
}

impl Side {
    fn span(self, service: &str, method: &str) -> tracing::Span {
        tracing::info_span!(
            "grpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = match self { Self::Server => "server", Self::Client => "client" },
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
        )
    }

    /// Records the outcome on the call's span and in the metrics.
    fn record(self, span: &tracing::Span, service: String, method: String, code: &'static str, started: Instant) {
        span.record("rpc.grpc.status_code", code);
        if self.is_error(code) {
            span.record("otel.status_code", "error");
        }
        let (handled, seconds) = match self {
            Self::Server => ("grpc_server_handled_total", "grpc_server_handling_seconds"),
            Self::Client => ("grpc_client_handled_total", "grpc_client_handling_seconds"),
        };
        metrics::counter!(handled, "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_code" => code)
            .increment(1);
        metrics::histogram!(seconds, "grpc_service" => service, "grpc_method" => method)
            .record(started.elapsed().as_secs_f64());
    }
}

impl Side {
    /// Whether `code` marks the span failed (OpenTelemetry's conventions for
    /// gRPC): for a client, anything but OK; for a server, only what is the
    /// server's fault, not a refused request.
    fn is_error(self, code: &str) -> bool {
        match self {
            Self::Client => code != "OK",
            Self::Server => {
                matches!(
                    code,
                    "UNKNOWN" | "DEADLINE_EXCEEDED" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS"
                )
            }
        }
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
    metrics::describe_counter!(
        "grpc_client_handled_total",
        "gRPC calls made to another service, by service, method and status code."
    );
    metrics::describe_histogram!(
        "grpc_client_handling_seconds",
        metrics::Unit::Seconds,
        "Time for another service to answer a gRPC call, by service and method."
    );
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
