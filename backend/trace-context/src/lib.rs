//! W3C trace context (`traceparent`, `tracestate`) across the shop's process
//! boundaries, so one request is one trace: taken from an incoming HTTP or
//! gRPC request, put on every outgoing gRPC call, kept with an event in the
//! outbox and carried in the NATS message that delivers it.
//!
//! Spans are `tracing` spans; the OpenTelemetry layer the binary installs
//! (see `shop::telemetry`) gives them trace and span ids. Without that layer
//! these functions do nothing and cost next to nothing.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and NATS header, and outbox column) the context travels in.
pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` a child of the context an incoming request's `headers`
/// carry; a request without one starts a trace of its own.
pub fn adopt_parent(span: &Span, headers: &http::HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer is installed: nothing to do then.
        let _ = span.set_parent(context);
    }
}

/// Puts `span`'s context on an outgoing request's `headers`.
pub fn inject(span: &Span, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// `span`'s context as a `traceparent` value, to keep beside something that
/// crosses a boundary later (an outbox row); `None` when it has no trace.
pub fn traceparent(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of a `traceparent` kept earlier (see [`traceparent`]).
/// A malformed value is ignored: the span starts a trace of its own.
pub fn adopt_traceparent(span: &Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else { return };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The trace id of `span` in hex, for logs and error pages; `None` when it has none.
pub fn trace_id(span: &Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_span_adopts_the_incoming_trace_and_passes_it_on() {
        with_tracing(|| {
            let span = tracing::info_span!("server");
            let mut incoming = http::HeaderMap::new();
            incoming.insert(TRACEPARENT, http::HeaderValue::from_static(REMOTE));
            adopt_parent(&span, &incoming);
            assert_eq!(trace_id(&span).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));

            let child = span.in_scope(|| tracing::info_span!("client"));
            let mut outgoing = http::HeaderMap::new();
            inject(&child, &mut outgoing);
            let sent = outgoing.get(TRACEPARENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent}");
            assert!(!sent.contains("00f067aa0ba902b7"), "the child's own span id goes out: {sent}");
        });
    }

    #[test]
    fn a_kept_traceparent_round_trips() {
        with_tracing(|| {
            let span = tracing::info_span!("recording");
            let kept = traceparent(&span).expect("a span has a context");
            let later = tracing::info_span!("publishing");
            adopt_traceparent(&later, Some(&kept));
            assert_eq!(trace_id(&later), trace_id(&span));
        });
    }

    #[test]
    fn malformed_or_missing_context_starts_a_new_trace() {
        with_tracing(|| {
            let span = tracing::info_span!("server");
            let mut incoming = http::HeaderMap::new();
            incoming.insert(TRACEPARENT, http::HeaderValue::from_static("00-not-a-trace-01"));
            adopt_parent(&span, &incoming);
            adopt_traceparent(&span, Some("garbage"));
            let id = trace_id(&span).expect("a trace of its own");
            assert_eq!(id.len(), 32);
            assert_ne!(id, "00000000000000000000000000000000");
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_sent() {
        let span = tracing::info_span!("untraced");
        let mut outgoing = http::HeaderMap::new();
        inject(&span, &mut outgoing);
        assert!(outgoing.is_empty());
        assert_eq!(traceparent(&span), None);
    }
}
