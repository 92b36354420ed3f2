//! The log lines as an operator reads them: every request's line reaches
//! stdout as JSON carrying the trace id its caller sent (what Loki and
//! Grafana's trace links read), none is lost when the process stops right
//! after a burst (they are written by a thread of their own, flushed at
//! exit), none is dropped, and text logs written to a pipe carry no colour
//! codes.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::join_all;
use support::{Process, eventually, shop};

/// Requests in the burst before the stop.
const REQUESTS: usize = 400;

fn trace_id(n: usize) -> String {
    format!("{:032x}", 0x5e11_0000_0000_0000_0000_0000_0000_0000_u128 + n as u128)
}

#[tokio::test]
async fn every_request_line_reaches_stdout_as_json_with_its_trace_id_even_at_shutdown() {
    let data = tempfile::tempdir().expect("a temp dir");
    let mut command = shop(data.path());
    command.arg("all");
    let mut started = Process::start(command, "gateway (HTTP) listening");
    let gateway = started.addresses.gateway();
    let metrics = started.addresses.metrics();

    // A burst from 16 clients at once, each request in a trace of its own.
    let client = reqwest::Client::new();
    for chunk in (0..REQUESTS).collect::<Vec<_>>().chunks(16) {
        let answers = join_all(chunk.iter().map(|n| {
            client
                .get(format!("{gateway}/products"))
                .header("Accept", "application/json")
                .header("traceparent", format!("00-{}-{:016x}-01", trace_id(*n), n + 1))
                .send()
        }))
        .await;
        for answer in answers {
            assert_eq!(answer.expect("the gateway answers").status(), 200);
        }
    }
    // Nothing was dropped on the way to stdout (the count is copied to its
    // metric every second).
    let client_for_metrics = client.clone();
    eventually("the unwritten lines' count", Duration::from_secs(5), || {
        let (client, metrics) = (client_for_metrics.clone(), metrics.clone());
        async move {
            let body = client.get(metrics).send().await.ok()?.text().await.ok()?;
            body.lines().any(|line| line == "shop_log_lines_unwritten_total 0").then_some(())
        }
    })
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let status = started.terminate();
        (status, started)
    })
    .await
    .expect("terminate runs");
    let (status, started) = status;
    assert!(status.success(), "a graceful stop exits 0");

    // The last line said so, and every request's line is there before it.
    let stopped = started.wait_for_log(|line| line["message"] == "stopped", Duration::from_secs(10));
    assert_eq!(stopped["level"], "info");
    tokio::task::spawn_blocking(move || {
        for n in 0..REQUESTS {
            let trace = trace_id(n);
            let line = started.wait_for_log(
                |line| line["message"] == "request" && line["trace_id"] == trace.as_str(),
                Duration::from_secs(1),
            );
            assert_eq!(line["route"], "/products", "{line}");
            assert_eq!(line["status"], 200, "{line}");
            assert_eq!(line["target"], "shop_web::observe", "{line}");
            assert!(line["span_id"].as_str().is_some_and(|id| id.len() == 16), "{line}");
            assert!(line["timestamp"].as_str().is_some_and(|at| at.ends_with('Z')), "{line}");
        }
    })
    .await
    .expect("every request's line");
}

#[test]
fn text_logs_written_to_a_pipe_have_no_colour_codes() {
    let data = tempfile::tempdir().expect("a temp dir");
    let mut child = shop(data.path())
        .env("SHOP_LOG_FORMAT", "pretty")
        .arg("all")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("shop starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !seen.iter().any(|line: &String| line.contains("gateway (HTTP) listening")) {
        match read.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push(line),
            Err(error) => panic!("no gateway line ({error}); so far:\n{}", seen.join("\n")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|line| line.contains(" INFO ")), "text lines:\n{}", seen.join("\n"));
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
    }
}
