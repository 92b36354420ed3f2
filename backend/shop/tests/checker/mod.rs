//! The order checker: randomized concurrent shoppers and an admin working
//! through the gateway while a fault schedule kills and restarts the order
//! and inventory processes, pauses inventory's PostgreSQL connections
//! through a chaos proxy and stops NATS; afterwards the outcome is checked
//! against a model of what the clients were told (in the spirit of Jepsen's
//! checks of TigerBeetle: the same ids submitted again and again, invariants
//! read from the databases at the end).
//!
//! A run is fully described by its seed (workload and fault schedule; the
//! machine's timing still varies), printed when it fails so it can be
//! replayed: `SHOP_CHECKER_SEED=<seed>`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shop_events::{Bus, Consumer, Event, OrderCreated, Payload, run_consumer};
use shop_storage::sqlx;
use shop_testkit::chaos::{ChaosProxy, Fault};

use crate::support::{NatsServer, Postgres, Process, Stream, shop};

/// splitmix64: small, seedable, good enough to pick actions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    /// Operations per shopper.
    pub operations: u64,
    pub shoppers: u64,
    pub products: u64,
    pub initial_stock: i64,
    /// Whether the fault schedule runs.
    pub faults: bool,
    /// Arms inventory's deliberately broken reservation (the negative
    /// control): the checker must then find a violation.
    pub broken_reservations: bool,
    /// A shopper's pause before each operation, in ms (from, to); none when
    /// None. The shoppers of a run against a shop that outlives it go on
    /// until every kind of fault has happened, at this pace.
    pub think_ms: Option<(u64, u64)>,
}

/// What happened, for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub violations: Vec<String>,
    pub checkouts: usize,
    pub confirmed: usize,
    pub accepted_pending: usize,
    pub rejected: usize,
    pub retried: usize,
    pub cancels: usize,
    pub restocks: usize,
    pub faults: Vec<String>,
    pub orders: usize,
}

impl Outcome {
    /// What the run did and found, in one line (the faults are apart).
    pub fn summary(&self) -> String {
        format!(
            "{} checkouts ({} confirmed, {} accepted pending, {} refused), {} orders, {} cancels, {} restocks, \
             {} retries, {} violations",
            self.checkouts,
            self.confirmed,
            self.accepted_pending,
            self.rejected,
            self.orders,
            self.cancels,
            self.restocks,
            self.retried,
            self.violations.len()
        )
    }
}

const PASSWORD: &str = "correct horse battery";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn socket_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port.to_socket_addrs().expect("a PostgreSQL address").next().expect("an address")
}

/// The shop as four processes on PostgreSQL and a NATS server of its own,
/// with inventory's database behind a chaos proxy and the order and
/// inventory services on fixed ports, so they can be killed and restarted.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub postgres: Postgres,
    pub nats: NatsServer,
    pub stream: Stream,
    pub database_proxy: ChaosProxy,
    inventory_port: u16,
    orders_port: u16,
    broken: bool,
    /// Kept so that it runs as long as the cluster (and is killed with it).
    _users: Process,
    pub inventory: Option<Process>,
    pub orders: Option<Process>,
    pub gateway: Process,
}

impl Cluster {
    pub async fn start(broken: bool) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let postgres = Postgres::new();
        let nats = NatsServer::start();
        let stream = Stream::new(&nats.url());
        let server = shop_testkit::postgres_server_url();
        let upstream = socket_of(&server);
        let database_proxy = ChaosProxy::start(upstream).await.expect("the proxy");
        let (inventory_port, orders_port) = (free_port(), free_port());
        let base = |role: &str| {
            let mut command = shop(dir.path());
            postgres.env(&mut command);
            stream.env(&mut command);
            command.arg(role);
            command
        };
        let users = tokio::task::block_in_place(|| Process::start(base("users"), "user service"));
        let mut cluster = Self {
            inventory: None,
            orders: None,
            gateway: {
                let mut command = base("gateway");
                command
                    .env("SHOP_USERS_URL", users.addresses.users())
                    .env("SHOP_INVENTORY_URL", format!("http://127.0.0.1:{inventory_port}"))
                    .env("SHOP_ORDERS_URL", format!("http://127.0.0.1:{orders_port}"))
                    .env("SHOP_SIGNIN_LIMIT_PER_ADDRESS", "100000");
                tokio::task::block_in_place(|| Process::start(command, "gateway (HTTP)"))
            },
            _users: users,
            dir,
            database_proxy,
            postgres,
            nats,
            stream,
            inventory_port,
            orders_port,
            broken,
        };
        tokio::task::block_in_place(|| {
            cluster.start_inventory();
            cluster.start_orders();
        });
        cluster
    }

    pub fn start_inventory(&mut self) {
        let mut command = shop(self.dir.path());
        self.postgres.env(&mut command);
        self.stream.env(&mut command);
        let server = shop_testkit::postgres_server_url();
        command
            .arg("inventory")
            .env("SHOP_POSTGRES_URL", self.database_proxy.url_for(&server, socket_of(&server)))
            .env("SHOP_INVENTORY_ADDR", format!("127.0.0.1:{}", self.inventory_port));
        if self.broken {
            command.env("SHOP_TEST_LOST_UPDATE_RESERVE", "true");
        }
        self.inventory = Some(Process::start(command, "inventory service"));
    }

    pub fn start_orders(&mut self) {
        let mut command = shop(self.dir.path());
        self.postgres.env(&mut command);
        self.stream.env(&mut command);
        command
            .arg("orders")
            .env("SHOP_ORDERS_ADDR", format!("127.0.0.1:{}", self.orders_port))
            .env("SHOP_INVENTORY_URL", format!("http://127.0.0.1:{}", self.inventory_port))
            .env("SHOP_RECOVERY_INTERVAL_SECS", "2");
        self.orders = Some(Process::start(command, "order service"));
    }

    pub fn base(&self) -> String {
        self.gateway.addresses.gateway()
    }

    /// Makes `email` an admin, on this cluster's users database.
    pub fn make_admin(&self, email: &str) {
        let mut command = shop(self.dir.path());
        self.postgres.env(&mut command);
        let promoted = command.args(["make-admin", email]).output().expect("make-admin runs");
        assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stdout));
    }
}

/// The shop a run works against: a cluster of the checker's own
/// ([`Cluster`]), or one someone else runs ([`External`]: the compose stack in
/// containers, two replicas of every process). The shoppers, the admin and
/// the checks are the same code for both; what differs is how the shop is
/// reached, how an admin is made, which orders are the checker's to judge and
/// what a fault is.
pub trait Target: Send + 'static {
    /// The gateway's base URL.
    fn base(&self) -> String;
    /// An email address for `who`: the same every run on a cluster of the
    /// checker's own, unique to the run on a shop that outlives it.
    fn email(&self, who: &str) -> String;
    /// Makes `email` an admin.
    fn make_admin(&self, email: &str);
    /// A pool on the database of `service` ("orders" or "inventory").
    fn pool(&self, service: &str) -> impl Future<Output = sqlx::PgPool> + Send;
    /// The event stream, and the name of the durable consumer the checker
    /// reads `order.created` with.
    fn events(&self) -> (shop_events::NatsSettings, String);
    /// Whether others use the shop too (a load generator, earlier tests):
    /// then only the checker's own orders are judged, not every order in the
    /// database.
    fn shared(&self) -> bool;
    /// One fault, healed before it returns (`pause`: how long it lasts); says
    /// what it was.
    fn fault(&mut self, rng: &mut Rng, pause: Duration) -> impl Future<Output = String> + Send;
    /// Whether every kind of fault has happened at least once: the shoppers
    /// go on until then (at once on a cluster of the checker's own, whose
    /// schedule is random).
    fn every_fault_done(&self) -> bool;
    /// Removes what the run left behind on the shop's NATS.
    fn finish(&self) -> impl Future<Output = ()> + Send;
}

impl Target for Cluster {
    fn base(&self) -> String {
        Cluster::base(self)
    }

    fn email(&self, who: &str) -> String {
        format!("{who}@checker.test")
    }

    fn make_admin(&self, email: &str) {
        Cluster::make_admin(self, email);
    }

    async fn pool(&self, service: &str) -> sqlx::PgPool {
        self.postgres.pool(service).await
    }

    fn events(&self) -> (shop_events::NatsSettings, String) {
        (self.stream.settings(), "order-checker".to_owned())
    }

    fn shared(&self) -> bool {
        false
    }

    /// Kills and restarts orders or inventory, pauses inventory's PostgreSQL
    /// connections, or stops NATS.
    async fn fault(&mut self, rng: &mut Rng, pause: Duration) -> String {
        let fault = rng.below(4);
        eprintln!("order checker: fault {fault} for {} ms", pause.as_millis());
        match fault {
            0 => {
                if let Some(mut orders) = self.orders.take() {
                    orders.kill_hard();
                }
                tokio::time::sleep(pause).await;
                // Starting waits on the process's log, a blocking wait: off
                // the runtime's workers, or the tasks queued on this one (the
                // chaos proxy's) would wait with it.
                tokio::task::block_in_place(|| self.start_orders());
                format!("SIGKILL orders, {} ms down", pause.as_millis())
            }
            1 => {
                if let Some(mut inventory) = self.inventory.take() {
                    inventory.kill_hard();
                }
                tokio::time::sleep(pause).await;
                tokio::task::block_in_place(|| self.start_inventory());
                format!("SIGKILL inventory, {} ms down", pause.as_millis())
            }
            2 => {
                self.database_proxy.set(Fault::Blackhole);
                tokio::time::sleep(pause).await;
                self.database_proxy.cut();
                self.database_proxy.set(Fault::Pass);
                format!("inventory's PostgreSQL paused {} ms, connections cut", pause.as_millis())
            }
            _ => {
                self.nats.stop();
                tokio::time::sleep(pause).await;
                self.nats.resume();
                // Healed when JetStream answers again, not when its port
                // does: a process restarted by the next fault meanwhile
                // would wait on its stream.
                jetstream_answers(&self.stream).await;
                format!("NATS stopped {} ms", pause.as_millis())
            }
        }
    }

    fn every_fault_done(&self) -> bool {
        true
    }

    async fn finish(&self) {
        self.stream.delete().await;
    }
}

/// A shop the checker did not start, described by the environment (what
/// `ops/containers/test.sh --replicas 2` sets):
///
/// | variable | |
/// |---|---|
/// | `SHOP_CHECKER_EXTERNAL_GATEWAY` | the base URL shoppers use (the balancer in front of the gateways) |
/// | `SHOP_CHECKER_EXTERNAL_INVENTORY_DATABASE_URL`, `..._ORDERS_DATABASE_URL` | the two databases, read at the end |
/// | `SHOP_CHECKER_EXTERNAL_NATS_URL`, `..._NATS_STREAM`, `..._NATS_SUBJECT_PREFIX` | the event stream (stream `SHOP_EVENTS`, prefix `shop` unless set, as compose.yaml leaves them) |
/// | `SHOP_CHECKER_EXTERNAL_MAKE_ADMIN` | a shell command that makes the email given as its last argument an admin |
/// | `SHOP_CHECKER_EXTERNAL_FAULTS` | a program run as `PROGRAM kill KIND` (kills one replica of KIND, prints which) and `PROGRAM start KIND` (starts it again and returns once it serves; prints how long that took) |
/// | `SHOP_CHECKER_EXTERNAL_FAULT_KINDS` | the kinds, comma-separated (default `users,inventory,orders,notifications,gateway`) |
///
/// The fault schedule takes the kinds in turn, in an order drawn from the
/// seed, and the shoppers go on until every kind has been killed and started
/// again at least once.
pub struct External {
    base: String,
    inventory_database: String,
    orders_database: String,
    nats: shop_events::NatsSettings,
    make_admin: String,
    faults: Option<String>,
    kinds: Vec<String>,
    next: Vec<String>,
    faulted: BTreeSet<String>,
    run_id: String,
}

impl External {
    /// The shop the environment names; None when it names none.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(format!("SHOP_CHECKER_EXTERNAL_{name}")).ok().filter(|v| !v.is_empty());
        let required = |name: &str| var(name).unwrap_or_else(|| panic!("SHOP_CHECKER_EXTERNAL_{name} is not set"));
        let base = var("GATEWAY")?;
        let kinds = var("FAULT_KINDS").unwrap_or_else(|| "users,inventory,orders,notifications,gateway".to_owned());
        Some(Self {
            base: base.trim_end_matches('/').to_owned(),
            inventory_database: required("INVENTORY_DATABASE_URL"),
            orders_database: required("ORDERS_DATABASE_URL"),
            nats: shop_events::NatsSettings {
                url: required("NATS_URL"),
                stream: var("NATS_STREAM").unwrap_or_else(|| "SHOP_EVENTS".to_owned()),
                subject_prefix: var("NATS_SUBJECT_PREFIX").unwrap_or_else(|| "shop".to_owned()),
            },
            make_admin: required("MAKE_ADMIN"),
            faults: var("FAULTS"),
            kinds: kinds.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect(),
            next: Vec::new(),
            faulted: BTreeSet::new(),
            run_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
        })
    }

    /// `PROGRAM ACTION KIND`, off the runtime's workers; its output.
    fn replica(&self, action: &str, kind: &str) -> String {
        let program = self.faults.as_deref().expect("SHOP_CHECKER_EXTERNAL_FAULTS names the fault program");
        let output = tokio::task::block_in_place(|| std::process::Command::new(program).args([action, kind]).output())
            .unwrap_or_else(|error| panic!("{program} {action} {kind}: {error}"));
        assert!(
            output.status.success(),
            "{program} {action} {kind}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Target for External {
    fn base(&self) -> String {
        self.base.clone()
    }

    fn email(&self, who: &str) -> String {
        format!("{who}-{}@checker.test", self.run_id)
    }

    fn make_admin(&self, email: &str) {
        // The command is the operator's (`podman exec <users> shop make-admin`):
        // a shell line, the email its last argument.
        let output = std::process::Command::new("sh")
            .args(["-c", &format!("{} \"$1\"", self.make_admin), "make-admin", email])
            .output()
            .expect("the make-admin command runs");
        assert!(
            output.status.success(),
            "{} {email}: {}\n{}{}",
            self.make_admin,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn pool(&self, service: &str) -> sqlx::PgPool {
        let url = match service {
            "orders" => &self.orders_database,
            "inventory" => &self.inventory_database,
            other => panic!("no database for {other}"),
        };
        sqlx::PgPool::connect(url).await.unwrap_or_else(|error| panic!("the {service} database: {error}"))
    }

    fn events(&self) -> (shop_events::NatsSettings, String) {
        (self.nats.clone(), format!("order-checker-{}", self.run_id))
    }

    fn shared(&self) -> bool {
        true
    }

    /// Kills one replica of the next kind (SIGKILL: a crash), leaves it down
    /// for `pause`, starts it again and waits until it serves.
    async fn fault(&mut self, rng: &mut Rng, pause: Duration) -> String {
        if self.next.is_empty() {
            // The next round: every kind once, in an order from the seed.
            let mut kinds = self.kinds.clone();
            while !kinds.is_empty() {
                let i = usize::try_from(rng.below(kinds.len() as u64)).unwrap_or(0);
                self.next.push(kinds.swap_remove(i));
            }
        }
        let Some(kind) = self.next.pop() else { return "no fault kinds".to_owned() };
        let killed_at = Instant::now();
        let replica = self.replica("kill", &kind);
        eprintln!("order checker: killed {replica} for {} ms", pause.as_millis());
        tokio::time::sleep(pause).await;
        let started = self.replica("start", &kind);
        self.faulted.insert(kind);
        format!(
            "SIGKILL {replica}, started again after {} ms, back {:.1} s after the kill ({started})",
            pause.as_millis(),
            killed_at.elapsed().as_secs_f64()
        )
    }

    fn every_fault_done(&self) -> bool {
        self.faults.is_none() || self.kinds.iter().all(|kind| self.faulted.contains(kind))
    }

    /// Deletes the checker's consumer; the stream is the shop's.
    async fn finish(&self) {
        if let Ok(client) = async_nats::connect(self.nats.url.as_str()).await
            && let Ok(stream) = async_nats::jetstream::new(client).get_stream(&self.nats.stream).await
        {
            let _ = stream.delete_consumer(&self.events().1).await;
        }
    }
}

/// A client of the gateway's JSON API with its own cookie jar, retrying
/// what a careful client retries: a checkout or a status change whose
/// answer was lost or was a 5xx, with the same idempotency key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// An answer: its status (0 when none came) and its body.
type Answer = (u16, Value);

impl Client {
    pub fn new(base: &str) -> Self {
        let http =
            reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(15)).build().expect("a client");
        Self { http, base: base.to_owned() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: &Value, key: Option<&str>) -> Answer {
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header("Accept", "application/json").json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Sends until the answer is not "unknown" (no answer, or a 5xx), at
    /// most `tries` times; answers the last one and how many retries it took.
    /// A 429 (sign-ins and registrations from one address are limited, and on
    /// a shared shop others sign in too) is waited out, for up to two
    /// minutes, without counting as a try.
    async fn retried(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
        tries: u32,
    ) -> (Answer, u32) {
        let mut answer = (0, Value::Null);
        let mut attempt = 0;
        let limited_until = Instant::now() + Duration::from_secs(120);
        while attempt < tries {
            answer = self.send(method.clone(), path, body, key).await;
            if answer.0 == 429 && Instant::now() < limited_until {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            if answer.0 != 0 && answer.0 < 500 {
                return (answer, attempt);
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (answer, tries)
    }

    /// A page, as a browser asks for it: the status and the HTML.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let request = self.http.get(format!("{}{path}", self.base)).header("Accept", "text/html");
        match request.send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// `POST /orders` with `lines` under `key`, once: the status and body.
    pub async fn order(&self, key: &str, lines: &[(i64, i64)]) -> (u16, Value) {
        let items: Vec<Value> = lines.iter().map(|(id, n)| json!({ "product_id": id, "quantity": n })).collect();
        self.send(reqwest::Method::POST, "/orders", &json!({ "items": items }), Some(key)).await
    }

    pub async fn sign_up(&self, name: &str, email: &str) {
        let body = json!({ "name": name, "email": email, "password": PASSWORD });
        let ((status, body), _) = self.retried(reqwest::Method::POST, "/users/register", &body, None, 20).await;
        assert!(status == 201 || status == 409, "registering {email}: {status} {body}");
        self.sign_in(email).await;
    }

    pub async fn sign_in(&self, email: &str) {
        let body = json!({ "email": email, "password": PASSWORD });
        let ((status, body), _) = self.retried(reqwest::Method::POST, "/users/login", &body, None, 20).await;
        assert_eq!(status, 200, "signing in {email}: {body}");
    }
}

/// What one checkout was finally told.
#[derive(Debug, Clone)]
struct Checkout {
    key: String,
    user: usize,
    lines: Vec<(i64, i64)>,
    status: u16,
    order: Option<(i64, String)>,
}

#[derive(Default, Clone)]
struct Record {
    checkouts: Vec<Checkout>,
    /// Order id -> the user whose cancel of it was answered 200.
    cancelled: BTreeSet<i64>,
    /// Restocks answered 200, and those whose answer was lost (applied or not).
    restocked: BTreeMap<i64, i64>,
    maybe_restocked: Vec<(i64, i64)>,
    retried: usize,
    violations: Vec<String>,
}

fn key_for(rng: &mut Rng) -> String {
    format!("chk-{:016x}{:016x}", rng.next(), rng.next())
}

/// One shopper: checkouts with fresh keys and with keys used before (the
/// same request again), and cancels of its own orders.
async fn shopper(
    client: Client,
    user: usize,
    mut rng: Rng,
    plan: Plan,
    products: Vec<i64>,
    record: Arc<Mutex<Record>>,
    faulted: Arc<AtomicBool>,
) {
    let mut mine: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
    let mut orders: Vec<i64> = Vec::new();
    let mut done = 0;
    while done < plan.operations || !faulted.load(Ordering::Relaxed) {
        done += 1;
        if let Some((from, to)) = plan.think_ms {
            tokio::time::sleep(rng.millis(from, to)).await;
        }
        if !orders.is_empty() && rng.chance(15) {
            let id = orders[usize::try_from(rng.below(orders.len() as u64)).unwrap_or(0)];
            let body = json!({ "status": "cancelled" });
            let ((status, body), retries) =
                client.retried(reqwest::Method::PATCH, &format!("/orders/{id}/status"), &body, None, 40).await;
            let mut record = record.lock().expect("the record");
            record.retried += retries as usize;
            match status {
                200 => {
                    record.cancelled.insert(id);
                }
                409 => {} // shipped, rejected or cancelled already: the state machine says no
                other => record.violations.push(format!("cancelling order {id}: answered {other} {body}")),
            }
            continue;
        }
        let (key, lines) = if !mine.is_empty() && rng.chance(20) {
            mine[usize::try_from(rng.below(mine.len() as u64)).unwrap_or(0)].clone()
        } else {
            let mut lines = BTreeMap::new();
            for _ in 0..1 + rng.below(2) {
                let product = products[usize::try_from(rng.below(products.len() as u64)).unwrap_or(0)];
                *lines.entry(product).or_insert(0) += 1 + i64::try_from(rng.below(3)).unwrap_or(0);
            }
            let lines: Vec<(i64, i64)> = lines.into_iter().collect();
            let key = key_for(&mut rng);
            mine.push((key.clone(), lines.clone()));
            (key, lines)
        };
        let items: Vec<Value> = lines.iter().map(|(id, n)| json!({ "product_id": id, "quantity": n })).collect();
        let body = json!({ "items": items });
        let ((status, answer), retries) = client.retried(reqwest::Method::POST, "/orders", &body, Some(&key), 40).await;
        let order = match status {
            201 | 202 => {
                let id = answer["id"].as_i64();
                let state = answer["status"].as_str().unwrap_or_default().to_owned();
                id.map(|id| (id, state))
            }
            _ => None,
        };
        if let Some((id, _)) = &order {
            orders.push(*id);
        }
        let mut record = record.lock().expect("the record");
        record.retried += retries as usize;
        if !matches!(status, 201 | 202 | 409) {
            record.violations.push(format!("checkout {key}: answered {status} {answer} after {retries} retries"));
        }
        record.checkouts.push(Checkout { key, user, lines, status, order });
    }
}

/// The admin: restocks, and ships and delivers confirmed orders.
async fn admin(
    client: Client,
    mut rng: Rng,
    plan: Plan,
    products: Vec<i64>,
    record: Arc<Mutex<Record>>,
    faulted: Arc<AtomicBool>,
) {
    let mut done = 0;
    while done < plan.operations / 2 || !faulted.load(Ordering::Relaxed) {
        done += 1;
        tokio::time::sleep(rng.millis(20, 120)).await;
        if rng.chance(50) {
            let product = products[usize::try_from(rng.below(products.len() as u64)).unwrap_or(0)];
            let delta = 1 + i64::try_from(rng.below(5)).unwrap_or(0);
            // Not retried: a restock is not idempotent, so an unanswered one
            // may or may not have happened, and the model keeps both.
            let (status, body) = client
                .send(reqwest::Method::PUT, &format!("/products/{product}"), &json!({ "stock_delta": delta }), None)
                .await;
            let mut record = record.lock().expect("the record");
            match status {
                200 => *record.restocked.entry(product).or_insert(0) += delta,
                0 | 500..=599 => record.maybe_restocked.push((product, delta)),
                other => record.violations.push(format!("restocking {product}: answered {other} {body}")),
            }
        } else {
            let candidates: Vec<i64> = {
                let record = record.lock().expect("the record");
                record
                    .checkouts
                    .iter()
                    .filter_map(|c| c.order.as_ref().filter(|(_, s)| s == "confirmed").map(|(id, _)| *id))
                    .collect()
            };
            if candidates.is_empty() {
                continue;
            }
            let id = candidates[usize::try_from(rng.below(candidates.len() as u64)).unwrap_or(0)];
            let next = if rng.chance(50) { "shipped" } else { "delivered" };
            let body = json!({ "status": next, "tracking_reference": "TRACK-1" });
            let ((status, body), _) =
                client.retried(reqwest::Method::PATCH, &format!("/orders/{id}/status"), &body, None, 40).await;
            if !matches!(status, 200 | 409) {
                record.lock().expect("the record").violations.push(format!("moving {id} to {next}: {status} {body}"));
            }
        }
    }
}

/// The fault schedule, until `until`: each step one fault, healed before
/// the next. Sets `faulted` once every kind of fault has happened (or the
/// schedule ends, however it ends).
async fn faults<T: Target>(
    target: Arc<tokio::sync::Mutex<T>>,
    mut rng: Rng,
    until: Arc<AtomicBool>,
    faulted: Arc<AtomicBool>,
) -> Vec<String> {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _faulted_at_the_end = SetOnDrop(Arc::clone(&faulted));
    let mut done = Vec::new();
    while !until.load(Ordering::Relaxed) {
        tokio::time::sleep(rng.millis(300, 1_200)).await;
        let pause = rng.millis(200, 1_500);
        let mut target = target.lock().await;
        done.push(target.fault(&mut rng, pause).await);
        if target.every_fault_done() {
            faulted.store(true, Ordering::Relaxed);
        }
    }
    done
}

async fn jetstream_answers(stream: &Stream) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(client) = async_nats::connect(stream.url.as_str()).await
            && async_nats::jetstream::new(client).get_stream(&stream.name).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("JetStream did not answer within 30 s of NATS starting again");
}

/// Every `order.created` a durable consumer receives.
fn collect_created(bus: Bus, name: &str) -> (Arc<Mutex<Vec<Event>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let consumer = Consumer::durable(name, vec![OrderCreated::KIND]);
    let task = tokio::spawn(run_consumer(bus, consumer, move |event| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().map_err(|e| e.to_string())?.push(event);
            Ok(())
        }
    }));
    (seen, task)
}

/// An admin, signed in, and `count` products with `stock` each.
pub async fn stocked<T: Target>(target: &T, count: u64, stock: i64) -> (Client, Vec<i64>) {
    let admin = Client::new(&target.base());
    let email = target.email("admin");
    admin.sign_up("Admin", &email).await;
    target.make_admin(&email);
    admin.sign_in(&email).await;
    let mut products = Vec::new();
    for n in 0..count {
        let body = json!({ "name": format!("Product {n}"), "price_minor": 100 + n, "stock": stock });
        let ((status, body), _) = admin.retried(reqwest::Method::POST, "/products", &body, None, 20).await;
        assert_eq!(status, 201, "a product: {body}");
        products.push(body["id"].as_i64().expect("the product id"));
    }
    (admin, products)
}

/// Runs `plan` on a fresh cluster and checks the outcome.
pub async fn run(plan: Plan) -> Outcome {
    let cluster = Cluster::start(plan.broken_reservations).await;
    run_on(cluster, plan).await
}

/// Runs `plan` against `target` and checks the outcome.
pub async fn run_on<T: Target>(target: T, plan: Plan) -> Outcome {
    let mut rng = Rng::new(plan.seed);
    let base = target.base();
    let (events, consumer_name) = target.events();
    let bus = Bus::nats(events).await.expect("NATS");
    let (seen, consumer) = collect_created(bus, &consumer_name);

    let (admin_client, products) = stocked(&target, plan.products, plan.initial_stock).await;
    let mut shoppers = Vec::new();
    for user in 0..plan.shoppers {
        let client = Client::new(&base);
        client.sign_up(&format!("Shopper {user}"), &target.email(&format!("shopper{user}"))).await;
        shoppers.push(client);
    }

    let record: Arc<Mutex<Record>> = Arc::default();
    let faulted = Arc::new(AtomicBool::new(!plan.faults || target.every_fault_done()));
    let target = Arc::new(tokio::sync::Mutex::new(target));
    let stop = Arc::new(AtomicBool::new(false));
    let fault_task = plan.faults.then(|| {
        tokio::spawn(faults(Arc::clone(&target), Rng::new(rng.next()), Arc::clone(&stop), Arc::clone(&faulted)))
    });
    let mut tasks = Vec::new();
    for (user, client) in shoppers.into_iter().enumerate() {
        let rng = Rng::new(rng.next());
        let (products, record, faulted) = (products.clone(), Arc::clone(&record), Arc::clone(&faulted));
        tasks.push(tokio::spawn(shopper(client, user, rng, plan, products, record, faulted)));
    }
    let (admin_rng, record_, faulted_) = (Rng::new(rng.next()), Arc::clone(&record), Arc::clone(&faulted));
    tasks.push(tokio::spawn(admin(admin_client, admin_rng, plan, products.clone(), record_, faulted_)));
    for task in tasks {
        task.await.expect("a client task");
    }
    stop.store(true, Ordering::Relaxed);
    let fault_log = match fault_task {
        Some(task) => task.await.expect("the fault schedule"),
        None => Vec::new(),
    };
    let target = Arc::try_unwrap(target).ok().expect("the shop, back").into_inner();

    let outcome = check(&target, plan, &products, &record, &seen).await;
    consumer.abort();
    target.finish().await;
    Outcome { faults: fault_log, ..outcome }
}

async fn check<T: Target>(
    target: &T,
    plan: Plan,
    products: &[i64],
    record: &Mutex<Record>,
    seen: &Mutex<Vec<Event>>,
) -> Outcome {
    let orders_db = target.pool("orders").await;
    let inventory_db = target.pool("inventory").await;
    let record = record.lock().expect("the record").clone();
    // On a shop others use too, the checker's own orders: those its keys
    // made (every checkout it sends has one). None: every order.
    let own: Option<Vec<i64>> = if target.shared() {
        let keys: Vec<String> = record.checkouts.iter().map(|checkout| checkout.key.clone()).collect();
        let ids: Vec<(i64,)> =
            sqlx::query_as("SELECT DISTINCT order_id FROM idempotency_keys WHERE idempotency_key = ANY($1)")
                .bind(&keys)
                .fetch_all(&orders_db)
                .await
                .expect("the checker's orders");
        Some(ids.into_iter().map(|(id,)| id).collect())
    } else {
        None
    };
    // Settled: nothing pending, nothing waiting to be given back, both
    // outboxes drained.
    let settled_by = Instant::now() + Duration::from_secs(90);
    loop {
        let (pending,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM orders WHERE (status = 'pending' \
             OR (status IN ('cancelled', 'rejected') AND stock_state = 'reserved') \
             OR (status = 'cancelled' AND stock_state = 'none')) \
             AND ($1::BIGINT[] IS NULL OR id = ANY($1))",
        )
        .bind(&own)
        .fetch_one(&orders_db)
        .await
        .expect("a count");
        let (unpublished_orders,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL")
            .fetch_one(&orders_db)
            .await
            .expect("a count");
        let (unpublished_inventory,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL")
                .fetch_one(&inventory_db)
                .await
                .expect("a count");
        if pending + unpublished_orders + unpublished_inventory == 0 {
            break;
        }
        assert!(
            Instant::now() < settled_by,
            "seed {}: not settled 90 s after the run ({pending} orders unfinished, outboxes {unpublished_orders}/{unpublished_inventory})",
            plan.seed
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut violations = record.violations.clone();

    // Stock: never negative; initial + restocked = on hand + held. Both read
    // in one snapshot (on a shared shop, others' orders go on meanwhile).
    let mut snapshot = inventory_db.begin().await.expect("a transaction");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *snapshot)
        .await
        .expect("a snapshot");
    let stock: BTreeMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>("SELECT id, stock FROM products")
        .fetch_all(&mut *snapshot)
        .await
        .expect("the stock")
        .into_iter()
        .collect();
    let held: BTreeMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT i.product_id, SUM(i.quantity)::BIGINT FROM reservation_items i \
         JOIN reservations r ON r.order_id = i.order_id WHERE r.state = 'reserved' GROUP BY i.product_id",
    )
    .fetch_all(&mut *snapshot)
    .await
    .expect("what is held")
    .into_iter()
    .collect();
    snapshot.rollback().await.expect("the snapshot, closed");
    for &product in products {
        let on_hand = stock.get(&product).copied().unwrap_or(0);
        if on_hand < 0 {
            violations.push(format!("product {product}: stock {on_hand} is negative"));
        }
        let expected = plan.initial_stock + record.restocked.get(&product).copied().unwrap_or(0);
        let maybe: Vec<i64> =
            record.maybe_restocked.iter().filter(|(p, _)| *p == product).map(|(_, delta)| *delta).collect();
        let found = on_hand + held.get(&product).copied().unwrap_or(0);
        if !subset_sums(&maybe).contains(&(found - expected)) {
            violations.push(format!(
                "product {product}: initial {} + restocked {} (+ any of {maybe:?} unanswered) != on hand {on_hand} + held {}",
                plan.initial_stock,
                expected - plan.initial_stock,
                held.get(&product).copied().unwrap_or(0)
            ));
        }
    }

    // Orders against reservations: a live order's stock taken exactly once,
    // as ordered; a cancelled or rejected one's given back (or never taken).
    let orders: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE $1::BIGINT[] IS NULL OR id = ANY($1)")
            .bind(&own)
            .fetch_all(&orders_db)
            .await
            .expect("the orders");
    let lines: BTreeMap<i64, Vec<(i64, i64)>> = group(
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT order_id, product_id, quantity FROM order_items ORDER BY order_id, product_id",
        )
        .fetch_all(&orders_db)
        .await
        .expect("the lines"),
    );
    let reservations: BTreeMap<i64, String> =
        sqlx::query_as::<_, (i64, String)>("SELECT order_id, state FROM reservations")
            .fetch_all(&inventory_db)
            .await
            .expect("the reservations")
            .into_iter()
            .collect();
    let reserved: BTreeMap<i64, Vec<(i64, i64)>> = group(
        sqlx::query_as::<_, (i64, i64, i64)>(
            "SELECT order_id, product_id, quantity FROM reservation_items ORDER BY order_id, product_id",
        )
        .fetch_all(&inventory_db)
        .await
        .expect("the reserved lines"),
    );
    let status_of: BTreeMap<i64, String> = orders.iter().cloned().collect();
    for (id, status) in &orders {
        let reservation = reservations.get(id).map(String::as_str);
        match status.as_str() {
            "confirmed" | "shipped" | "delivered" => {
                if reservation != Some("reserved") || reserved.get(id) != lines.get(id) {
                    violations.push(format!(
                        "order {id} is {status}: reservation {reservation:?} holds {:?}, the order {:?}",
                        reserved.get(id),
                        lines.get(id)
                    ));
                }
            }
            "cancelled" | "rejected" => {
                if reservation == Some("reserved") {
                    violations.push(format!("order {id} is {status} but its stock is still held"));
                }
            }
            other => violations.push(format!("order {id} is {other} after settling")),
        }
    }

    // What clients were told against what became of their orders.
    let keyed: BTreeMap<(i64, String), i64> =
        sqlx::query_as::<_, (i64, String, i64)>("SELECT user_id, idempotency_key, order_id FROM idempotency_keys")
            .fetch_all(&orders_db)
            .await
            .expect("the keys")
            .into_iter()
            .map(|(user, key, order)| ((user, key), order))
            .collect();
    let mut order_of_key: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for ((_, key), order) in &keyed {
        order_of_key.entry(key.as_str()).or_default().insert(*order);
    }
    let mut told: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut outcome = Outcome::default();
    for checkout in &record.checkouts {
        outcome.checkouts += 1;
        let recorded = order_of_key.get(checkout.key.as_str());
        if recorded.is_some_and(|ids| ids.len() > 1) {
            violations.push(format!("key {} has orders {recorded:?}", checkout.key));
        }
        let final_status = recorded.and_then(|ids| ids.first()).and_then(|id| status_of.get(id));
        match (&checkout.order, checkout.status) {
            (Some((id, said)), 201 | 202) => {
                told.entry(checkout.key.as_str()).or_default().insert(*id);
                if said == "pending" {
                    outcome.accepted_pending += 1;
                } else {
                    outcome.confirmed += 1;
                }
                if recorded.is_none_or(|ids| !ids.contains(id)) {
                    violations
                        .push(format!("checkout {} was told order {id}; the key records {recorded:?}", checkout.key));
                }
                let now = status_of.get(id).map(String::as_str);
                // A retry's answer is the order as it is by then (shipped,
                // or cancelled by its customer); a pending one may have
                // been confirmed or rejected since.
                let fine = match said.as_str() {
                    "pending" => now.is_some(),
                    "rejected" => false,
                    _ => matches!(now, Some("confirmed" | "shipped" | "delivered" | "cancelled")),
                };
                if !fine || (now == Some("cancelled") && !record.cancelled.contains(id)) {
                    violations.push(format!("order {id} was answered {said}; it is now {now:?}"));
                }
            }
            (_, 409) => {
                outcome.rejected += 1;
                if final_status.is_some_and(|s| s != "rejected") {
                    violations
                        .push(format!("checkout {} was refused, but its order is {final_status:?}", checkout.key));
                }
            }
            _ => {}
        }
        let _ = (checkout.user, &checkout.lines);
    }
    for (key, ids) in &told {
        if ids.len() > 1 {
            violations.push(format!("key {key} was answered with orders {ids:?}"));
        }
    }

    // Each order announced once to a durable consumer (after de-duplication
    // by event id: a redelivery is allowed, a second event is not).
    let announced = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = announcements(seen);
            if orders.iter().all(|(id, _)| counts.contains_key(id)) || Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    for (id, _) in &orders {
        match announced.get(id) {
            Some(1) => {}
            other => violations.push(format!("order {id}: {other:?} distinct order.created events")),
        }
    }

    orders_db.close().await;
    inventory_db.close().await;
    Outcome {
        violations,
        retried: record.retried,
        cancels: record.cancelled.len(),
        restocks: record.restocked.len() + record.maybe_restocked.len(),
        orders: orders.len(),
        ..outcome
    }
}

fn group(rows: Vec<(i64, i64, i64)>) -> BTreeMap<i64, Vec<(i64, i64)>> {
    let mut grouped: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (order, product, quantity) in rows {
        grouped.entry(order).or_default().push((product, quantity));
    }
    grouped
}

/// Distinct `order.created` event ids per order.
fn announcements(seen: &Mutex<Vec<Event>>) -> BTreeMap<i64, usize> {
    let mut ids: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for event in seen.lock().expect("the events").iter() {
        if let Some(created) = event.decode::<OrderCreated>() {
            ids.entry(created.order_id).or_default().insert(event.id.clone());
        }
    }
    ids.into_iter().map(|(order, ids)| (order, ids.len())).collect()
}

/// Every sum of a subset of `values` (few values: restocks whose answer was
/// lost).
fn subset_sums(values: &[i64]) -> BTreeSet<i64> {
    let mut sums = BTreeSet::from([0]);
    for value in values {
        let more: Vec<i64> = sums.iter().map(|sum| sum + value).collect();
        sums.extend(more);
    }
    sums
}
