//! Every request, observed once at the edge: a server span that continues
//! the caller's trace (W3C `traceparent`) or starts one, RED metrics by
//! method, route template (not the raw path, so ids do not explode the
//! series) and status, and one log line when it is answered.
//!
//! Nothing from the request's headers, body or query is logged: cookies,
//! passwords and tokens never reach the logs. Nothing a client chooses
//! freely becomes a label or a span name: an unknown method is `_OTHER`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

/// Probes ask every few seconds: counted, but neither traced nor logged.
const QUIET_ROUTES: [&str; 1] = ["/healthz"];

/// The request's span, whose trace id an error's answer quotes: worked out
/// only then (formatting it for every request cost 4 % of a cached read).
#[derive(Debug, Clone)]
pub struct TraceId(tracing::Span);

impl TraceId {
    pub fn get(&self) -> Option<String> {
        shop_trace_context::trace_id(&self.0)
    }
}

/// The layer that observes every request ([`Observe`]). The metrics
/// recorder must be installed before the first request: each series'
/// handle is registered at its first request and kept.
#[derive(Debug, Clone, Default)]
pub struct ObserveLayer {
    series: Series,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, series: self.series.clone() }
    }
}

/// The request metrics' handles by route, method and status, registered
/// once each: looking a labelled series up in the registry on every
/// request (its key built from owned labels, hashed, dropped) cost a cached
/// read 4 % of its instructions. Bounded: routes are templates, methods
/// HTTP's own, statuses what the shop answers.
#[derive(Debug, Clone, Default)]
struct Series(Arc<RwLock<HashMap<String, Vec<RouteSeries>>>>);

#[derive(Debug)]
struct RouteSeries {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl Series {
    fn record(&self, method: &'static str, route: &str, status: StatusCode, elapsed: Duration) {
        let found = |all: &HashMap<String, Vec<RouteSeries>>| {
            all.get(route)?
                .iter()
                .find(|series| series.method == method && series.status == status.as_u16())
                .map(|series| (series.requests.clone(), series.duration.clone()))
        };
        let read = found(&self.0.read().unwrap_or_else(PoisonError::into_inner));
        let (requests, duration) = read.unwrap_or_else(|| {
            let mut all = self.0.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(known) = found(&all) {
                return known;
            }
            let series = RouteSeries {
                method,
                status: status.as_u16(),
                requests: metrics::counter!("http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.as_str().to_owned()),
                duration: metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
            };
            let handles = (series.requests.clone(), series.duration.clone());
            all.entry(route.to_owned()).or_default().push(series);
            handles
        });
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

/// A tower service rather than a `from_fn` middleware: it hands the request
/// straight to the service inside, where `from_fn` clones that service (and
/// every boxed route within it) and boxes it again for each request.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    series: Series,
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The matched route is shared text (an `Arc<str>`): kept, not copied.
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
        let method = method_label(request.method());
        let quiet = QUIET_ROUTES.contains(&route);
        let span = if quiet {
            tracing::Span::none()
        } else {
            // Fields given as text, not `%` (Display): every layer would
            // format each of them again (5 % of a cached read's instructions).
            tracing::info_span!(
                "http.server",
                otel.name = format!("{method} {route}").as_str(),
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method,
                http.route = route,
                url.path = &*loggable_path(request.uri().path()),
                http.response.status_code = Empty,
            )
        };
        shop_trace_context::adopt_parent(&span, request.headers());
        request.extensions_mut().insert(TraceId(span.clone()));
        let started = Instant::now();
        // Not called in the span's scope (entering it costs a read 1.5 %):
        // the services inside do their work when polled, in the span; a
        // route's `call` only wraps the request in a future.
        let answer = self.inner.call(request).instrument(span.clone());
        let series = self.series.clone();
        Box::pin(async move {
            let Ok(response) = answer.await;
            let (elapsed, status) = (started.elapsed(), response.status());
            let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
            answered(&span, quiet, method, route, elapsed, status);
            series.record(method, route, status, elapsed);
            Ok(response)
        })
    }
}

/// The span's status and the log line of an answered request.
fn answered(
    span: &tracing::Span,
    quiet: bool,
    method: &'static str,
    route: &str,
    elapsed: Duration,
    status: StatusCode,
) {
    span.record("http.response.status_code", status.as_u16());
    if !quiet {
        span.in_scope(|| {
            let duration_ms = elapsed.as_micros() as f64 / 1000.0;
            if status.is_server_error() {
                tracing::Span::current().record("otel.status_code", "error");
                tracing::warn!(method, route, status = status.as_u16(), duration_ms, "request failed");
            } else {
                tracing::info!(method, route, status = status.as_u16(), duration_ms, "request");
            }
        });
    }
}

/// The request's method if it is one of HTTP's own, else `_OTHER`
/// (OpenTelemetry's convention): a client cannot mint new series.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("_OTHER", Method::as_str)
}

/// A request's path as logs and traces may keep it: a password reset
/// link's secret token is replaced, so a live link never reaches a log line,
/// Loki or Tempo.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    const RESET: &str = "/users/password-reset/";
    match path.strip_prefix(RESET) {
        Some(token) if !token.is_empty() => std::borrow::Cow::Owned(format!("{RESET}[token]")),
        _ => std::borrow::Cow::Borrowed(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_tokens_never_reach_a_log() {
        assert_eq!(loggable_path("/users/password-reset/0123abcd"), "/users/password-reset/[token]");
        assert_eq!(loggable_path("/users/password-reset/"), "/users/password-reset/");
        assert_eq!(loggable_path("/users/password-reset"), "/users/password-reset");
        assert_eq!(loggable_path("/products/3"), "/products/3");
    }

    #[test]
    fn only_http_methods_become_labels() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"XYZZY").unwrap()), "_OTHER");
    }
}
