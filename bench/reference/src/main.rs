//! The references `ops/bench.sh` measures the shop against, in the same run
//! on the same machine, so its figures are ratios rather than raw rates:
//!
//! - `bench-reference serve ADDR DIR`: bare axum (no middleware, no state but
//!   the bodies) answering `GET /NAME` with the bytes of the file `DIR/NAME`,
//!   loaded once at start. The benchmark captures the shop's own answers
//!   (the cached product's JSON, the list page's HTML, …) into DIR, so the
//!   reference sends exactly the bytes the shop sends: what serving them
//!   costs with nothing of the shop's work around it.
//! - `bench-reference argon2 SECONDS THREADS`: the raw argon2id hash rate
//!   with the shop's parameters (`backend/users/src/password.rs`: OWASP's
//!   19 MiB, 2 passes, 1 lane), hashing on THREADS OS threads for SECONDS;
//!   prints `RATE hashes/s ...` on one line. The ceiling of sign-in.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const USAGE: &str = "usage: bench-reference serve ADDR DIR | bench-reference argon2 SECONDS THREADS";

/// The shop's argon2id parameters (keep in step with backend/users/src/password.rs).
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", addr, dir] => serve(addr, dir),
        ["argon2", seconds, threads] => argon2_rate(seconds, threads),
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-reference: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A body and its content type, by the file's extension.
type Bodies = Arc<HashMap<String, (&'static str, Bytes)>>;

fn load(dir: &str) -> Result<Bodies, String> {
    let mut bodies = HashMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{dir}: {e}"))?.path();
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        let content_type = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => "application/json",
            Some("html") => "text/html; charset=utf-8",
            _ => "application/octet-stream",
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        bodies.insert(name, (content_type, Bytes::from(bytes)));
    }
    Ok(Arc::new(bodies))
}

async fn body(State(bodies): State<Bodies>, Path(name): Path<String>) -> Response {
    match bodies.get(&name) {
        Some((content_type, bytes)) => ([(header::CONTENT_TYPE, *content_type)], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn serve(addr: &str, dir: &str) -> Result<(), String> {
    let bodies = load(dir)?;
    let app = Router::new().route("/healthz", get(|| async { "ok" })).route("/{name}", get(body)).with_state(bodies);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("{addr}: {e}"))?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| e.to_string())
    })
}

fn argon2_rate(seconds: &str, threads: &str) -> Result<(), String> {
    let seconds: f64 = seconds.parse().map_err(|_| format!("SECONDS must be a number, not {seconds:?}"))?;
    let threads: usize = threads.parse().map_err(|_| format!("THREADS must be a whole number, not {threads:?}"))?;
    if !seconds.is_finite() || seconds <= 0.0 || threads == 0 {
        return Err("SECONDS and THREADS must be above 0".into());
    }
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|e| e.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let failed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (argon2, done) = (&argon2, &done);
                scope.spawn(move || -> Result<(), String> {
                    // A salt of its own per hash, as the shop's; the password is fixed.
                    let mut salt = [0u8; 16];
                    salt[..8].copy_from_slice(&(thread as u64).to_le_bytes());
                    let mut out = [0u8; 32];
                    let mut n: u64 = 0;
                    while Instant::now() < deadline {
                        salt[8..].copy_from_slice(&n.to_le_bytes());
                        argon2
                            .hash_password_into(b"correct horse battery", &salt, &mut out)
                            .map_err(|e| e.to_string())?;
                        n += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().find_map(|w| w.join().map_or(Some("a hashing thread panicked".to_owned()), Result::err))
    });
    if let Some(error) = failed {
        return Err(error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let hashes = done.load(Ordering::Relaxed);
    println!(
        "{:.1} hashes/s ({hashes} argon2id hashes, m={MEMORY_KIB} KiB t={PASSES} p={LANES}, in {elapsed:.2} s on {threads} threads)",
        hashes as f64 / elapsed
    );
    Ok(())
}
