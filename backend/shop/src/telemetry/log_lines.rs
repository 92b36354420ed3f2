//! Log lines, one per event, written straight into a line buffer: as text
//! for people (`SHOP_LOG_FORMAT=pretty`) or as JSON objects carrying the
//! trace and span id of the span they happened in, so Loki (or `grep`) finds
//! a request's lines from its trace and Grafana links each line to its trace.
//! Loki, when configured, always gets the JSON.
//!
//! A layer of its own rather than `tracing_subscriber::fmt`: reading a
//! span's OpenTelemetry ids needs the dispatcher, which only a layer is
//! handed; and the per-request line was a fifth of a cached read's
//! instructions through `fmt` (every span's fields formatted into a string
//! when it opens, every piece of a line styled, even without colours) and
//! through `serde_json` maps (docs/performance.md).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::loki::{self, level_name};
use super::output;

/// How lines reach stdout (or stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `2026-12-01T04:31:02.123456Z  INFO span{k=v}: target: message k=v`;
    /// the level coloured for a terminal.
    Text {
        ansi: bool,
    },
    Json,
}

/// Writes each event as one line to `output` (the log writer's buffer,
/// `output.rs`), and hands a JSON copy to Loki when it is configured.
pub struct LogLines {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
    output: output::Lines,
    encoding: Encoding,
    loki: Option<loki::Lines>,
}

impl LogLines {
    pub fn new(output: output::Lines, encoding: Encoding, loki: Option<loki::Lines>) -> Self {
        Self { dispatch: std::sync::OnceLock::new(), output, encoding, loki }
    }
}

/// A field's value as recorded.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// Fields in the order recorded; a name recorded again replaces its value.
#[derive(Debug, Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Fields {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(known, _)| *known == name) {
            Some((_, old)) => *old = value,
            None => self.0.push((name, value)),
        }
    }

    fn set_if_absent(&mut self, name: &'static str, value: &Value) {
        if !self.0.iter().any(|(known, _)| *known == name) {
            self.0.push((name, value.clone()));
        }
    }
}

/// A span's own fields, kept for the events inside it.
struct SpanFields(Fields);

/// A span's trace and span id, worked out at its first JSON line.
#[derive(Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// Collects fields; an event's `message` apart.
struct Visitor<'a> {
    fields: &'a mut Fields,
    message: Option<&'a mut String>,
}

impl Visitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        // A message that is not text (`message = 5`) is still the message.
        if field.name() == "message"
            && let Some(message) = self.message.as_deref_mut()
        {
            let _ = match value {
                Value::Str(text) => write!(message, "{text}"),
                Value::I64(n) => write!(message, "{n}"),
                Value::U64(n) => write!(message, "{n}"),
                Value::F64(n) => write!(message, "{n}"),
                Value::Bool(b) => write!(message, "{b}"),
            };
            return;
        }
        self.fields.set(field.name(), value);
    }
}

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message"
            && let Some(message) = self.message.as_deref_mut()
        {
            let _ = write!(message, "{value:?}");
            return;
        }
        self.put(field, Value::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message"
            && let Some(message) = self.message.as_deref_mut()
        {
            message.push_str(value);
            return;
        }
        self.put(field, Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::Str(value.to_string()));
    }
}

impl<S> tracing_subscriber::Layer<S> for LogLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut Visitor { fields: &mut fields, message: None });
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Visitor { fields, message: None });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let now = time::OffsetDateTime::now_utc();
        let mut message = String::new();
        let mut fields = Fields::default();
        event.record(&mut Visitor { fields: &mut fields, message: Some(&mut message) });
        // The line's own keys are not to be shadowed by an event's fields.
        fields.0.retain(|(name, _)| !RESERVED.contains(name));

        // Fields of every span the event is in, the innermost winning;
        // `otel.*` are instructions to the trace exporter, not data.
        let mut span = Fields::default();
        let mut span_name = None;
        let mut ids = None;
        let json_wanted = self.loki.is_some() || self.encoding == Encoding::Json;
        if let Some(scope) = ctx.event_scope(event) {
            // Innermost first.
            for entered in scope {
                if let Some(SpanFields(own)) = entered.extensions().get::<SpanFields>() {
                    for (name, value) in own.0.iter().filter(|(name, _)| !name.starts_with("otel.")) {
                        span.set_if_absent(name, value);
                    }
                }
                span_name = span_name.or(Some(entered.name()));
                // The innermost span that is part of a trace (a library's
                // own span, seen with RUST_LOG=debug, is not).
                if json_wanted && ids.is_none() {
                    ids = self.trace_ids(&entered.id(), &ctx);
                }
            }
        }
        let line = Line {
            at: now,
            level: metadata.level(),
            target: metadata.target(),
            message: (!message.is_empty()).then_some(message.as_str()),
            fields: &fields,
            span: span_name.map(|name| (name, &span)),
            ids: ids.as_ref(),
        };

        // The thread's reused buffer; a fresh one when it cannot be had (a
        // thread being torn down, or a line written while one is).
        let kept = LINE.try_with(|buffer| {
            let Ok(mut text) = buffer.try_borrow_mut() else { return false };
            self.write(&line, &mut text);
            // A burst's long line does not stay allocated per thread.
            if text.capacity() > 16 * 1024 {
                *text = String::new();
            }
            true
        });
        if kept != Ok(true) {
            self.write(&line, &mut String::new());
        }
    }
}

impl LogLines {
    /// Writes `line` to stdout's buffer (and Loki's queue), through `text`.
    fn write(&self, line: &Line<'_>, text: &mut String) {
        text.clear();
        match self.encoding {
            Encoding::Text { ansi } => line.text(text, ansi),
            Encoding::Json => line.json(text),
        }
        // One whole line into the writer's buffer; a full buffer counts it
        // as dropped, it does not wait.
        let _ = self.output.make_writer().write_all(text.as_bytes());
        if let Some(loki) = &self.loki {
            if self.encoding != Encoding::Json {
                text.clear();
                line.json(text);
            }
            loki.send(line.level, line.at, text.clone());
        }
    }
}

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

const RESERVED: [&str; 7] = ["timestamp", "level", "message", "target", "span", "trace_id", "span_id"];

/// One event, ready to be written either way.
struct Line<'a> {
    at: time::OffsetDateTime,
    level: &'a Level,
    target: &'a str,
    message: Option<&'a str>,
    fields: &'a Fields,
    /// The innermost span's name and the fields of every span around the event.
    span: Option<(&'a str, &'a Fields)>,
    ids: Option<&'a TraceIds>,
}

impl Line<'_> {
    /// `{"timestamp":…,"level":…,"message":…,"target":…,<fields>,"span":{…,"name":…},"trace_id":…,"span_id":…}`
    fn json(&self, out: &mut String) {
        out.push_str("{\"timestamp\":\"");
        timestamp(out, self.at);
        out.push_str("\",\"level\":\"");
        out.push_str(level_name(self.level));
        out.push('"');
        if let Some(message) = self.message {
            out.push_str(",\"message\":");
            json_str(out, message);
        }
        out.push_str(",\"target\":");
        json_str(out, self.target);
        for (name, value) in &self.fields.0 {
            out.push(',');
            json_str(out, name);
            out.push(':');
            json_value(out, value);
        }
        if let Some((name, fields)) = self.span {
            out.push_str(",\"span\":{");
            for (key, value) in fields.0.iter().filter(|(key, _)| *key != "name") {
                json_str(out, key);
                out.push(':');
                json_value(out, value);
                out.push(',');
            }
            out.push_str("\"name\":");
            json_str(out, name);
            out.push('}');
        }
        if let Some(ids) = self.ids {
            out.push_str(",\"trace_id\":\"");
            out.push_str(&ids.trace_id);
            out.push_str("\",\"span_id\":\"");
            out.push_str(&ids.span_id);
            out.push('"');
        }
        out.push_str("}\n");
    }

    /// `2026-12-01T04:31:02.123456Z  INFO http.server{http.route=/products}: shop_web::observe: request status=200`
    fn text(&self, out: &mut String, ansi: bool) {
        timestamp(out, self.at);
        out.push(' ');
        let (name, colour) = match *self.level {
            Level::ERROR => ("ERROR", "31"),
            Level::WARN => (" WARN", "33"),
            Level::INFO => (" INFO", "32"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::TRACE => ("TRACE", "35"),
        };
        if ansi {
            let _ = write!(out, "\u{1b}[{colour}m{name}\u{1b}[0m ");
        } else {
            out.push_str(name);
            out.push(' ');
        }
        if let Some((name, fields)) = self.span {
            out.push_str(name);
            if !fields.0.is_empty() {
                out.push('{');
                for (n, (key, value)) in fields.0.iter().enumerate() {
                    if n > 0 {
                        out.push(' ');
                    }
                    text_field(out, key, value);
                }
                out.push('}');
            }
            out.push_str(": ");
        }
        out.push_str(self.target);
        out.push(':');
        if let Some(message) = self.message {
            out.push(' ');
            out.push_str(message);
        }
        for (key, value) in &self.fields.0 {
            out.push(' ');
            text_field(out, key, value);
        }
        out.push('\n');
    }
}

/// RFC 3339 in UTC with microseconds, as `tracing_subscriber` wrote it.
fn timestamp(out: &mut String, at: time::OffsetDateTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    );
}

fn json_value(out: &mut String, value: &Value) {
    match value {
        Value::Str(text) => json_str(out, text),
        Value::I64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::U64(n) => {
            let _ = write!(out, "{n}");
        }
        // JSON has no NaN or infinity.
        Value::F64(n) if !n.is_finite() => out.push_str("null"),
        Value::F64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// `key=value`; a string that would not read back as one word is quoted.
fn text_field(out: &mut String, key: &str, value: &Value) {
    out.push_str(key);
    out.push('=');
    match value {
        // Control characters (a terminal's escape codes) and backslashes
        // are escaped, as Rust writes a string literal.
        Value::Str(text)
            if text.is_empty() || text.chars().any(|c| c.is_control() || matches!(c, ' ' | '"' | '=' | '\\')) =>
        {
            let _ = write!(out, "{text:?}");
        }
        Value::Str(text) => out.push_str(text),
        Value::I64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::U64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::F64(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

impl LogLines {
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
        // `replace`: another thread may have put them there meanwhile.
        span.extensions_mut().replace(ids.clone());
        Some(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(fields: &'a Fields, span: Option<(&'a str, &'a Fields)>, message: Option<&'a str>) -> Line<'a> {
        Line {
            at: time::OffsetDateTime::from_unix_timestamp_nanos(1796099462123456789).expect("a time"),
            level: &Level::INFO,
            target: "shop_web::observe",
            message,
            fields,
            span,
            ids: None,
        }
    }

    fn fields(pairs: &[(&'static str, Value)]) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.set(name, value.clone());
        }
        fields
    }

    #[test]
    fn json_lines_are_json_whatever_the_values() {
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{7} and é";
        let event = fields(&[
            ("route", Value::Str("/products/{id}".into())),
            ("status", Value::U64(200)),
            ("delta", Value::I64(-3)),
            ("duration_ms", Value::F64(0.25)),
            ("nan", Value::F64(f64::NAN)),
            ("cached", Value::Bool(true)),
            ("odd", Value::Str(awkward.into())),
        ]);
        let span = fields(&[("http.route", Value::Str("/products/{id}".into()))]);
        let mut out = String::new();
        line(&event, Some(("http.server", &span)), Some(awkward)).json(&mut out);
        assert!(out.ends_with("}\n"), "{out}");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["timestamp"], "2026-12-01T04:31:02.123456Z");
        assert_eq!(parsed["level"], "info");
        assert_eq!(parsed["message"], awkward);
        assert_eq!(parsed["odd"], awkward);
        assert_eq!(parsed["status"], 200);
        assert_eq!(parsed["delta"], -3);
        assert_eq!(parsed["duration_ms"], 0.25);
        assert!(parsed["nan"].is_null());
        assert_eq!(parsed["cached"], true);
        assert_eq!(parsed["span"]["name"], "http.server");
        assert_eq!(parsed["span"]["http.route"], "/products/{id}");
        assert!(parsed.get("trace_id").is_none());
    }

    #[test]
    fn a_span_field_called_name_does_not_make_a_second_key() {
        let span = fields(&[("name", Value::Str("shadow".into()))]);
        let mut out = String::new();
        line(&Fields::default(), Some(("http.server", &span)), None).json(&mut out);
        assert_eq!(out.matches("\"name\"").count(), 1, "{out}");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["span"]["name"], "http.server");
        assert!(parsed.get("message").is_none());
    }

    #[test]
    fn text_lines_read_as_words_and_colour_only_for_a_terminal() {
        let event = fields(&[("status", Value::U64(200)), ("detail", Value::Str("no such product".into()))]);
        let span = fields(&[("http.route", Value::Str("/products".into()))]);
        let mut out = String::new();
        line(&event, Some(("http.server", &span)), Some("request")).text(&mut out, false);
        assert_eq!(
            out,
            "2026-12-01T04:31:02.123456Z  INFO http.server{http.route=/products}: shop_web::observe: request \
             status=200 detail=\"no such product\"\n"
        );
        let sneaky = fields(&[("detail", Value::Str("\u{1b}[31mred\\".into()))]);
        let mut escaped = String::new();
        line(&sneaky, None, Some("request")).text(&mut escaped, false);
        assert!(escaped.ends_with("detail=\"\\u{1b}[31mred\\\\\"\n"), "{escaped}");
        assert!(!escaped.contains('\u{1b}'), "no escape code reaches a terminal: {escaped}");
        let mut coloured = String::new();
        line(&event, None, Some("request")).text(&mut coloured, true);
        assert!(coloured.contains("\u{1b}[32m INFO\u{1b}[0m"), "{coloured}");
    }

    #[test]
    fn a_field_recorded_again_replaces_its_value() {
        let mut kept = fields(&[("status", Value::U64(0)), ("route", Value::Str("/".into()))]);
        kept.set("status", Value::U64(503));
        assert_eq!(kept.0, vec![("status", Value::U64(503)), ("route", Value::Str("/".into()))]);
    }
}
