//! Log lines as JSON objects, one per event, carrying the trace and span id
//! of the span they happened in, so Loki (or `grep`) finds a request's lines
//! from its trace and Grafana links each line to its trace.
//!
//! A layer of its own rather than a `fmt` formatter: reading a span's
//! OpenTelemetry ids needs the dispatcher, which only a layer is handed.

use std::collections::BTreeMap;
use std::io::Write;

use opentelemetry::trace::TraceContextExt;
use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::loki::{self, level_name};
use super::output;

/// Writes each event as one JSON line to `output` (the log writer's buffer,
/// `output.rs`), and hands a copy to Loki when it is configured.
pub struct JsonLog {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
    /// `None`: only to Loki (or, without it, nowhere: the layer then does nothing).
    output: Option<output::Lines>,
    loki: Option<loki::Lines>,
}

impl JsonLog {
    pub fn new(output: Option<output::Lines>, loki: Option<loki::Lines>) -> Self {
        Self { dispatch: std::sync::OnceLock::new(), output, loki }
    }

    fn is_idle(&self) -> bool {
        self.output.is_none() && self.loki.is_none()
    }
}

/// A span's own fields, kept for the events inside it.
struct SpanFields(Map<String, Value>);

/// A span's trace and span id, worked out at its first log line.
#[derive(Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

impl<S> tracing_subscriber::Layer<S> for JsonLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.is_idle() {
            return;
        }
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if self.is_idle() {
            return;
        }
        let metadata = event.metadata();
        let now = time::OffsetDateTime::now_utc();
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields.remove("message");
        // The line's own keys are not to be shadowed by an event's fields.
        for reserved in RESERVED {
            fields.remove(reserved);
        }
        let mut line = Line {
            timestamp: now.format(&Rfc3339).unwrap_or_default(),
            level: level_name(metadata.level()),
            message,
            target: metadata.target(),
            fields,
            span: None,
            trace_id: None,
            span_id: None,
        };

        if let Some(scope) = ctx.event_scope(event) {
            // Fields of every span the event is in, the innermost winning;
            // `otel.*` are instructions to the trace exporter, not data.
            let mut span_fields = BTreeMap::new();
            let mut spans = Vec::new();
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (key, value) in fields.iter().filter(|(key, _)| !key.starts_with("otel.")) {
                        span_fields.insert(key.clone(), value.clone());
                    }
                }
                spans.push((span.id(), span.name()));
            }
            if let Some((_, name)) = spans.last() {
                span_fields.insert("name".into(), Value::String((*name).to_owned()));
                line.span = Some(Value::Object(span_fields.into_iter().collect()));
            }
            // The innermost span that is part of a trace (a library's own
            // span, seen with RUST_LOG=debug, is not).
            if let Some(ids) = spans.iter().rev().find_map(|(id, _)| self.trace_ids(id, &ctx)) {
                line.trace_id = Some(ids.trace_id);
                line.span_id = Some(ids.span_id);
            }
        }

        let Ok(mut text) = serde_json::to_string(&line) else { return };
        text.push('\n');
        if let Some(output) = &self.output {
            // One whole line into the writer's buffer; a full buffer counts
            // it as dropped, it does not wait.
            let _ = output.make_writer().write_all(text.as_bytes());
        }
        if let Some(loki) = &self.loki {
            loki.send(metadata.level(), now, text);
        }
    }
}

/// One log line, its keys in the order people read them.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Value>,
    target: &'a str,
    #[serde(flatten)]
    fields: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<String>,
}

const RESERVED: [&str; 6] = ["timestamp", "level", "target", "span", "trace_id", "span_id"];

impl JsonLog {
    /// The span's ids from the OpenTelemetry layer, asked once per span.
    fn trace_ids<S>(&self, id: &Id, ctx: &Context<'_, S>) -> Option<TraceIds>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span = ctx.span(id)?;
        if let Some(ids) = span.extensions().get::<TraceIds>() {
            return Some(ids.clone());
        }
        // No extensions may be held here: this locks them itself.
        let dispatch = self.dispatch.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span_context = context.span().span_context().clone();
        if !span_context.is_valid() {
            return None;
        }
        let ids =
            TraceIds { trace_id: span_context.trace_id().to_string(), span_id: span_context.span_id().to_string() };
        span.extensions_mut().insert(ids.clone());
        Some(ids)
    }
}
