//! Logs and traces, set up once by `main`.
//!
//! - Logs go to stdout as text or one JSON object per line (`SHOP_LOG_FORMAT`),
//!   filtered by `RUST_LOG`; JSON lines carry the trace and span id of the
//!   span they happened in. With `SHOP_LOKI_URL` they are also pushed to Loki.
//!   A thread of its own writes them (`output.rs`): a request appends its
//!   line to a buffer and goes on, and lines that arrive together leave in
//!   one `write`.
//!   Text has colours only on a terminal.
//! - Every span of the shop's own crates is an OpenTelemetry span, so trace
//!   context flows between processes (and into log lines) in every mode. The
//!   spans are exported over OTLP/gRPC only when the standard variables ask
//!   for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`, or
//!   `OTEL_TRACES_EXPORTER=otlp`); `OTEL_TRACES_EXPORTER=none` turns export
//!   off, and `OTEL_SDK_DISABLED=true` OpenTelemetry altogether (no trace
//!   ids, no context passed on). The SDK itself reads
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`
//!   and the exporter's `OTEL_EXPORTER_OTLP_*` (headers, timeout, ...).

mod log_lines;
mod loki;
mod output;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// How long each flush at exit may take.
const FLUSH: Duration = Duration::from_secs(3);

/// How often the count of dropped lines is copied to its metric.
const COUNT_DROPPED_EVERY: Duration = Duration::from_secs(1);

/// What has to be flushed at exit.
pub struct Telemetry {
    traces: SdkTracerProvider,
    loki: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    output: Output,
}

/// The log lines' writer, and the task copying its count of dropped lines
/// to the metrics.
struct Output {
    writer: output::Output,
    counting: tokio::task::JoinHandle<()>,
}

impl Output {
    fn start(role: Role) -> Self {
        let writer = output::Output::start(match role {
            Role::Server => output::Stream::Stdout,
            Role::Command => output::Stream::Stderr,
        });
        let lines = writer.lines();
        let counting = tokio::spawn(async move {
            let mut every = tokio::time::interval(COUNT_DROPPED_EVERY);
            loop {
                every.tick().await;
                metrics::counter!("shop_log_lines_unwritten_total").absolute(lines.dropped());
            }
        });
        Self { writer, counting }
    }

    /// Writes every buffered line and says on stderr if any was dropped.
    fn finish(self) {
        self.counting.abort();
        let dropped = self.writer.finish();
        if dropped > 0 {
            eprintln!("{dropped} log lines were dropped: the output did not take them as fast as they came");
        }
    }
}

/// How the process is named in traces and in Loki: `OTEL_SERVICE_NAME`, or
/// `shop-<part>` (`shop` for everything in one process).
pub fn service_name(part: Option<&str>) -> String {
    match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.trim().is_empty() => name,
        _ => part.map_or_else(|| "shop".to_owned(), |part| format!("shop-{part}")),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}

/// Whether the `OTEL_*` variables ask for spans to be exported.
fn export_wanted() -> Result<bool, String> {
    let wanted = match env("OTEL_TRACES_EXPORTER").as_deref() {
        Some("none") => false,
        Some("otlp") => true,
        Some(other) => return Err(format!("OTEL_TRACES_EXPORTER={other} is not supported (otlp or none)")),
        None => env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some(),
    };
    if wanted {
        for name in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            if let Some(protocol) = env(name).filter(|protocol| protocol != "grpc") {
                return Err(format!("{name}={protocol} is not supported: the shop exports OTLP over gRPC (grpc)"));
            }
        }
    }
    Ok(wanted)
}

/// What the process is: a server exports spans and ships logs; a one-shot
/// command (`migrate`, `make-admin`, `caller-token`, `tail-events`) only
/// logs, to stderr, so its stdout stays its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Command,
}

/// Installs logging and tracing for the process. Needs the Tokio runtime
/// (the OTLP exporter and the Loki shipper run on it).
pub fn init(format: LogFormat, role: Role, service: &str, loki_url: Option<&str>) -> Telemetry {
    let mut problems = Vec::new();
    let mut traces =
        SdkTracerProvider::builder().with_resource(Resource::builder().with_service_name(service.to_owned()).build());
    let sdk_disabled = env("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let exporting = match export_wanted() {
        _ if sdk_disabled || role == Role::Command => false,
        Ok(true) => match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
            Ok(exporter) => {
                traces = traces.with_batch_exporter(exporter);
                true
            }
            Err(error) => {
                problems.push(format!("traces will not be exported: the OTLP exporter: {error}"));
                false
            }
        },
        Ok(false) => false,
        Err(problem) => {
            problems.push(format!("traces will not be exported: {problem}"));
            false
        }
    };
    let traces = traces.build();
    // Every span of the shop's crates, whatever RUST_LOG says of logs.
    let spans = (!sdk_disabled).then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(traces.tracer("shop"))
            // Every request's thread is a "tokio-runtime-worker": its name
            // and id, copied into each span, said nothing.
            .with_threads(false)
            // A log line inside a span would also become an event of it:
            // only warnings and errors do, since every line reaches the logs
            // with the span's trace id anyway (each INFO event cost a span
            // event's allocations on every request: docs/performance.md).
            // Two filters in turn: joined with `FilterExt::and`, they lost
            // inventory's gRPC server spans (`tests/telemetry.rs` caught it).
            .with_filter(filter_fn(|metadata| metadata.is_span() || *metadata.level() <= Level::WARN))
            .with_filter(Targets::new().with_target("shop", Level::INFO))
    });

    let loki_url = loki_url.filter(|_| role == Role::Server);
    let (loki_lines, loki) = match loki_url.map(|url| loki::shipper(url, service)) {
        Some(Ok((lines, shipper, stop))) => (Some(lines), Some((stop, tokio::spawn(shipper.run())))),
        Some(Err(problem)) => {
            problems.push(format!("logs will not be shipped to Loki: {problem}"));
            (None, None)
        }
        None => (None, None),
    };
    let shipping = loki_lines.is_some();
    let logs = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,shop=info"));
    let output = Output::start(role);
    // Colours are for people at a terminal; in a file or a pipe (a container's
    // log, `| grep`) escape codes are noise, and writing them costs time.
    let ansi = match role {
        Role::Server => std::io::stdout().is_terminal(),
        Role::Command => std::io::stderr().is_terminal(),
    };
    let encoding = match format {
        LogFormat::Pretty => log_lines::Encoding::Text { ansi },
        LogFormat::Json => log_lines::Encoding::Json,
    };
    let lines = log_lines::LogLines::new(output.writer.lines(), encoding, loki_lines);
    tracing_subscriber::registry().with(spans).with(lines.with_filter(logs())).init();
    for problem in problems {
        tracing::warn!("{problem}");
    }
    if exporting {
        tracing::info!(service, "exporting traces over OTLP");
    }
    if let Some(url) = loki_url.filter(|_| shipping) {
        tracing::info!(service, loki = %crate::config::redact(url), "shipping logs to Loki");
    }
    Telemetry { traces, loki, output }
}

impl Telemetry {
    /// Sends what is still buffered: the last spans, then the last log lines
    /// (which say if the spans could not be sent) to Loki and to stdout.
    /// Three seconds each at most (one for stdout),
    /// so a collector that is gone cannot hold the exit up: with the request
    /// drain (SHOP_SHUTDOWN_TIMEOUT_SECS, 10 s) that stays inside compose's
    /// 20 s grace period.
    pub async fn shutdown(self) {
        let traces = self.traces;
        let flushed = tokio::task::spawn_blocking(move || traces.shutdown());
        let _ = tokio::time::timeout(FLUSH, flushed).await;
        if let Some((stop, shipper)) = self.loki {
            let _ = stop.send(());
            let _ = tokio::time::timeout(FLUSH, shipper).await;
        }
        // Blocks while the writer thread empties its queue.
        let output = self.output;
        let _ = tokio::task::spawn_blocking(move || output.finish()).await;
    }
}
