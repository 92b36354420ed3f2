//! Running `shop` processes in tests: fresh ports, JSON logs read for the
//! addresses they bound, killed if a test fails, and PostgreSQL databases and
//! NATS servers of their own.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shop_storage::sqlx::{self, Executor};

pub const SHOP: &str = env!("CARGO_BIN_EXE_shop");

/// `shop` with a clean environment: nothing of the developer's leaks in.
/// `SHOP_TEST_BINARY` names another build to run (a long run of the order
/// checker keeps a copy, so a rebuild meanwhile does not change it).
pub fn shop(dir: &Path) -> Command {
    let binary = std::env::var("SHOP_TEST_BINARY").unwrap_or_else(|_| SHOP.to_owned());
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SHOP_DATA_DIR", dir)
        .env("SHOP_LOG_FORMAT", "json")
        .env("SHOP_HTTP_ADDR", "127.0.0.1:0")
        .env("SHOP_USERS_ADDR", "127.0.0.1:0")
        .env("SHOP_INVENTORY_ADDR", "127.0.0.1:0")
        .env("SHOP_ORDERS_ADDR", "127.0.0.1:0")
        .env("SHOP_METRICS_ADDR", "127.0.0.1:0")
        .env("SHOP_INTERNAL_SECRET", shop_testkit::TEST_SECRET)
        .env("RUST_LOG", "info")
        .current_dir(dir);
    command
}

/// Where a started process listens, by what it logged.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub users: Option<String>,
    pub inventory: Option<String>,
    pub orders: Option<String>,
    pub gateway: Option<String>,
    pub metrics: Option<String>,
}

impl Addresses {
    pub fn users(&self) -> String {
        self.users.clone().expect("the user service's address")
    }
    pub fn inventory(&self) -> String {
        self.inventory.clone().expect("the inventory service's address")
    }
    pub fn orders(&self) -> String {
        self.orders.clone().expect("the order service's address")
    }
    pub fn gateway(&self) -> String {
        self.gateway.clone().expect("the gateway's address")
    }
    pub fn metrics(&self) -> String {
        self.metrics.clone().expect("the metrics address")
    }
}

type Log = Arc<(Mutex<Vec<serde_json::Value>>, Condvar)>;

/// The field of the log's last entry once the process's stdout has closed.
const STDOUT_CLOSED: &str = "__stdout_closed";

/// A running `shop`; killed when dropped.
pub struct Process {
    child: Option<Child>,
    log: Log,
    pub addresses: Addresses,
}

impl Process {
    /// Starts `command` and waits until it logs that `ready` is listening
    /// (the message's start, e.g. "gateway (HTTP) listening").
    pub fn start(mut command: Command, ready: &str) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("shop starts");
        let stdout = child.stdout.take().expect("stdout");
        let log: Log = Arc::default();
        let reader_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "message": line }));
                let (lines, changed) = &*reader_log;
                if let Ok(mut lines) = lines.lock() {
                    lines.push(event);
                }
                changed.notify_all();
            }
            // Stdout closed: the process exited (or closed it). A waiter for
            // a line that has not come stops waiting now, not at its time-out.
            let (lines, changed) = &*reader_log;
            if let Ok(mut lines) = lines.lock() {
                lines
                    .push(serde_json::json!({ STDOUT_CLOSED: true, "message": "(stdout closed: the process exited)" }));
            }
            changed.notify_all();
        });
        let mut process = Self { child: Some(child), log, addresses: Addresses::default() };
        process.wait_for_log(|event| message(event).starts_with(ready), Duration::from_secs(60));
        process.addresses = process.read_addresses();
        process
    }

    fn read_addresses(&self) -> Addresses {
        let lines = self.log.0.lock().expect("the log");
        let mut addresses = Addresses::default();
        for event in lines.iter() {
            let field = |name: &str| event[name].as_str().map(str::to_owned);
            let http = |name: &str| field(name).map(|addr| format!("http://{addr}"));
            let message = message(event);
            if message.starts_with("user service") {
                addresses.users = http("addr");
            } else if message.starts_with("inventory service") {
                addresses.inventory = http("addr");
            } else if message.starts_with("order service") {
                addresses.orders = http("addr");
            } else if message.starts_with("gateway (HTTP)") {
                addresses.gateway = field("url");
            } else if message.starts_with("metrics listening") {
                addresses.metrics = field("url");
            }
        }
        addresses
    }

    /// Waits until a log line matches, and returns it.
    pub fn wait_for_log(&self, matches: impl Fn(&serde_json::Value) -> bool, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.log;
        let mut guard = lines.lock().expect("the log");
        loop {
            if let Some(found) = guard.iter().find(|event| matches(event)) {
                return found.clone();
            }
            assert!(
                !guard.iter().any(|event| event[STDOUT_CLOSED] == true),
                "the process exited before logging such a line; its log:\n{}",
                render(&guard)
            );
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no such log line within {timeout:?}; the log so far:\n{}", render(&guard)));
            guard = changed.wait_timeout(guard, left).expect("the log").0;
        }
    }

    /// Every line logged so far, as text.
    pub fn log_text(&self) -> String {
        render(&self.log.0.lock().expect("the log"))
    }

    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, rustix::process::Signal::KILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status (within 10 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running process");
        signal(&child, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("a status") {
                return status;
            }
            assert!(Instant::now() < deadline, "shop did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn message(event: &serde_json::Value) -> &str {
    event["message"].as_str().unwrap_or_default()
}

fn render(lines: &[serde_json::Value]) -> String {
    lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("a pid")).expect("a pid");
    let _ = rustix::process::kill_process(pid, signal);
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Three PostgreSQL databases of this test's own, dropped afterwards (even
/// when the test fails), and the environment that points `shop` at them.
pub struct Postgres {
    pub names: BTreeMap<&'static str, String>,
}

impl Postgres {
    pub fn new() -> Self {
        let prefix = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
        let names = ["users", "inventory", "orders"].into_iter().map(|s| (s, format!("{prefix}_{s}"))).collect();
        Self { names }
    }

    pub fn env(&self, command: &mut Command) {
        command
            .env("SHOP_POSTGRES_URL", shop_testkit::postgres_server_url())
            .env("POSTGRES_DB_USERS", &self.names["users"])
            .env("POSTGRES_DB_INVENTORY", &self.names["inventory"])
            .env("POSTGRES_DB_ORDERS", &self.names["orders"]);
    }

    pub async fn pool(&self, service: &str) -> sqlx::PgPool {
        let url = format!("{}/{}", shop_testkit::postgres_server_url(), self.names[service]);
        sqlx::PgPool::connect(&url).await.expect("the test database")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let names: Vec<String> = self.names.values().cloned().collect();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin =
                    sqlx::PgPool::connect(&format!("{}/postgres", shop_testkit::postgres_server_url())).await.ok()?;
                for name in names {
                    let _ = admin
                        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .await;
                }
                admin.close().await;
                Some(())
            })
        })
        .join();
    }
}

pub fn nats_url() -> String {
    std::env::var("SHOP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A stream and subject prefix of this test's own on the shared NATS server.
pub struct Stream {
    pub name: String,
    pub prefix: String,
    pub url: String,
}

impl Stream {
    pub fn new(url: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self { name: format!("SHOP_TEST_{id}"), prefix: format!("shoptest{id}"), url: url.to_owned() }
    }

    pub fn env(&self, command: &mut Command) {
        command
            .env("SHOP_NATS_URL", &self.url)
            .env("SHOP_NATS_STREAM", &self.name)
            .env("SHOP_NATS_SUBJECT_PREFIX", &self.prefix);
    }

    pub fn settings(&self) -> shop_events::NatsSettings {
        shop_events::NatsSettings {
            url: self.url.clone(),
            stream: self.name.clone(),
            subject_prefix: self.prefix.clone(),
        }
    }

    /// Deletes the stream (and its consumers).
    pub async fn delete(&self) {
        if let Ok(client) = async_nats::connect(self.url.as_str()).await {
            let _ = async_nats::jetstream::new(client).delete_stream(&self.name).await;
        }
    }
}

/// A NATS server with JetStream of the test's own, to stop and start.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: tempfile::TempDir,
}

fn nats_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SHOP_TEST_NATS_SERVER") {
        return PathBuf::from(path);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/local/bin"]) {
        let candidate = Path::new(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("nats-server is needed for this test (ops/test.sh installs it; or set SHOP_TEST_NATS_SERVER)")
}

impl NatsServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = Self { child: None, port, store: tempfile::tempdir().expect("a store dir") };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store, and waits until it answers.
    pub fn resume(&mut self) {
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway as a JSON client with a cookie jar.
pub struct Web {
    pub client: reqwest::Client,
    pub base: String,
}

impl Web {
    pub fn new(base: String) -> Self {
        let client = reqwest::Client::builder().cookie_store(true).build().expect("a client");
        Self { client, base }
    }

    pub async fn json(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> reqwest::Response {
        let request = self.client.request(method, format!("{}{path}", self.base)).header("Accept", "application/json");
        let request = if body.is_null() { request } else { request.json(&body) };
        request.send().await.expect("the gateway answers")
    }
}

pub async fn admin_on(web: &Web, dir: &std::path::Path, email: &str) {
    let body = serde_json::json!({ "name": "Admin", "email": email, "password": "correct horse battery" });
    assert_eq!(web.json(reqwest::Method::POST, "/users/register", body).await.status(), 201);
    let promoted = shop(dir).args(["make-admin", email]).output().expect("make-admin runs");
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stdout));
    let login = serde_json::json!({ "email": email, "password": "correct horse battery" });
    assert_eq!(web.json(reqwest::Method::POST, "/users/login", login).await.status(), 200);
}
