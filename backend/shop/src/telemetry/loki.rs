//! Shipping log lines to Loki's push API (`POST /loki/api/v1/push`), in
//! batches from a background task: logging never waits for Loki, and a Loki
//! that is down costs a bounded buffer, not memory without end.

use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::Level;

/// A level as Loki and Grafana name it (a label of each stream, and the
/// `level` of each JSON line).
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Lines waiting to be shipped; more than this and new ones are dropped.
const BUFFER: usize = 10_000;
/// At most this many lines per push, and a push at least this often.
const BATCH: usize = 1_000;
const EVERY: Duration = Duration::from_secs(1);

/// One log line on its way: its level (a Loki label), when, and the JSON.
struct Line {
    level: &'static str,
    unix_ns: i128,
    text: String,
}

/// The logging side: hands lines to the shipper without blocking.
#[derive(Clone)]
pub struct Lines(mpsc::Sender<Line>);

impl Lines {
    pub fn send(&self, level: &Level, at: time::OffsetDateTime, mut text: String) {
        text.truncate(text.trim_end().len());
        let line = Line { level: level_name(level), unix_ns: at.unix_timestamp_nanos(), text };
        if self.0.try_send(line).is_err() {
            dropped(1);
        }
    }
}

/// Where the lines go, and the task that takes them there.
pub struct Shipper {
    receiver: mpsc::Receiver<Line>,
    /// Told at exit: push what is buffered, then end.
    stop: oneshot::Receiver<()>,
    client: reqwest::Client,
    url: String,
    service: String,
}

/// A shipper for the Loki at `base_url`, labelling lines with `service`;
/// sending on the third ends it once what is buffered has been pushed.
pub fn shipper(base_url: &str, service: &str) -> Result<(Lines, Shipper, oneshot::Sender<()>), String> {
    if !base_url.starts_with("http://") {
        return Err(format!("the Loki URL must be http://HOST:PORT (no TLS is built in), not {base_url}"));
    }
    let (sender, receiver) = mpsc::channel(BUFFER);
    let (stop_sender, stop) = oneshot::channel();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let url = format!("{}/loki/api/v1/push", base_url.trim_end_matches('/'));
    Ok((Lines(sender), Shipper { receiver, stop, client, url, service: service.to_owned() }, stop_sender))
}

impl Shipper {
    /// Ships until stopped (or every `Lines` is dropped), then pushes what is left.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut retry_in = EVERY;
        let mut failing = false;
        let mut stopping = false;
        loop {
            // Gather lines until the batch is full or a second has passed. A
            // stop closes the channel: lines sent before it still arrive, then
            // recv_many gives 0.
            let deadline = tokio::time::sleep(EVERY);
            tokio::pin!(deadline);
            let mut drained = false;
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                tokio::select! {
                    biased;
                    _ = &mut self.stop, if !stopping => {
                        stopping = true;
                        self.receiver.close();
                    }
                    received = self.receiver.recv_many(&mut batch, room) => if received == 0 {
                        drained = true;
                        stopping = true;
                        break;
                    },
                    () = &mut deadline => break,
                }
            }
            if !batch.is_empty() {
                match self.push(&batch).await {
                    Ok(()) => {
                        batch.clear();
                        retry_in = EVERY;
                        failing = false;
                    }
                    Err(Failure::Refused(reason)) => {
                        // Loki will never take these lines (too long, too old):
                        // trying again would only hold the next ones up.
                        eprintln!("Loki refused {} log lines: {reason}", batch.len());
                        dropped(batch.len());
                        batch.clear();
                    }
                    Err(Failure::Unreachable(error)) => {
                        // Not logged through tracing: that would feed the failure back here.
                        if !failing {
                            eprintln!("shipping logs to Loki failed; retrying: {error}");
                            failing = true;
                        }
                        // A full batch (or one at exit) is given up; a smaller
                        // one waits and grows until the next try.
                        if batch.len() >= BATCH || stopping {
                            dropped(batch.len());
                            batch.clear();
                        }
                        if !stopping {
                            tokio::select! {
                                biased;
                                _ = &mut self.stop => {
                                    stopping = true;
                                    self.receiver.close();
                                }
                                () = tokio::time::sleep(retry_in) => {}
                            }
                            retry_in = (retry_in * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
            if drained {
                return;
            }
        }
    }

    async fn push(&self, batch: &[Line]) -> Result<(), Failure> {
        // One stream per level; Loki takes them in one request.
        let streams: Vec<_> = ["error", "warn", "info", "debug", "trace"]
            .into_iter()
            .filter_map(|level| {
                let values: Vec<_> = batch
                    .iter()
                    .filter(|line| line.level == level)
                    .map(|line| json!([line.unix_ns.to_string(), line.text]))
                    .collect();
                (!values.is_empty())
                    .then(|| json!({ "stream": { "service_name": self.service, "level": level }, "values": values }))
            })
            .collect();
        let response = self
            .client
            .post(&self.url)
            .json(&json!({ "streams": streams }))
            .send()
            .await
            .map_err(|error| Failure::Unreachable(error.to_string()))?;
        let status = response.status();
        if status.is_success() {
            metrics::counter!("shop_log_lines_shipped_total").increment(batch.len() as u64);
            Ok(())
        } else if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Refused(format!("{status}: {}", response.text().await.unwrap_or_default().trim())))
        } else {
            Err(Failure::Unreachable(format!("Loki answered {status}")))
        }
    }
}

/// Why a push did not land.
enum Failure {
    /// Loki said no to these lines: sending them again will not help.
    Refused(String),
    /// Loki was not reached, or is busy: worth another try.
    Unreachable(String),
}

fn dropped(lines: usize) {
    metrics::counter!("shop_log_lines_dropped_total").increment(lines as u64);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::routing::post;

    use super::*;

    /// A stand-in for Loki's push endpoint that keeps what it was sent.
    async fn fake_loki() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let pushed = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&pushed);
        let app = axum::Router::new().route(
            "/loki/api/v1/push",
            post(move |Json(body): Json<serde_json::Value>| async move {
                kept.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, pushed)
    }

    #[tokio::test]
    async fn lines_are_pushed_in_batches_by_level_and_flushed_when_stopped() {
        let (url, pushed) = fake_loki().await;
        let (lines, shipper, stop) = shipper(&url, "shop-test").unwrap();
        let running = tokio::spawn(shipper.run());
        let now = time::OffsetDateTime::now_utc();
        lines.send(&Level::INFO, now, "{\"message\":\"one\"}\n".into());
        lines.send(&Level::WARN, now, "{\"message\":\"two\"}\n".into());
        lines.send(&Level::INFO, now, "{\"message\":\"three\"}\n".into());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), running).await.unwrap().unwrap();

        let pushed = pushed.lock().unwrap();
        let streams: Vec<_> = pushed.iter().flat_map(|body| body["streams"].as_array().unwrap().clone()).collect();
        let of_level = |level: &str| -> Vec<String> {
            streams
                .iter()
                .filter(|stream| stream["stream"]["level"] == level)
                .inspect(|stream| assert_eq!(stream["stream"]["service_name"], "shop-test"))
                .flat_map(|stream| stream["values"].as_array().unwrap().clone())
                .map(|value| value[1].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(of_level("info"), ["{\"message\":\"one\"}", "{\"message\":\"three\"}"]);
        assert_eq!(of_level("warn"), ["{\"message\":\"two\"}"]);
        let stamp = streams[0]["values"][0][0].as_str().unwrap();
        assert!(stamp.parse::<i128>().unwrap() >= now.unix_timestamp_nanos(), "nanoseconds as a string: {stamp}");
    }

    #[tokio::test]
    async fn a_loki_that_is_away_costs_lines_not_the_process() {
        // Nothing listens on the discard port: every push fails.
        let (lines, shipper, stop) = shipper("http://127.0.0.1:9", "shop-test").unwrap();
        let running = tokio::spawn(shipper.run());
        for _ in 0..(BUFFER + 10) {
            lines.send(&Level::INFO, time::OffsetDateTime::now_utc(), "{}".into());
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), running).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn lines_loki_refuses_are_dropped_not_retried_and_tls_urls_are_refused_at_start() {
        let app = axum::Router::new().route(
            "/loki/api/v1/push",
            post(|| async { (axum::http::StatusCode::BAD_REQUEST, "entry too far behind") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (lines, shipper, stop) = shipper(&url, "shop-test").unwrap();
        let running = tokio::spawn(shipper.run());
        lines.send(&Level::INFO, time::OffsetDateTime::now_utc(), "{}".into());
        // A refusal is not retried: the shipper is idle again within a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), running).await.unwrap().unwrap();

        assert!(super::shipper("https://loki.example.com", "shop-test").is_err());
    }
}
