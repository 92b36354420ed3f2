//! The resilience matrix's service rows (docs/resilience.md): each gRPC
//! service, and each service's PostgreSQL database, made unreachable through
//! the chaos proxy while a customer and an admin walk every part of the
//! shop; each cell's answer is checked against the promise, and the shop
//! must answer as before once the dependency is back, with no restart.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shop_testkit::chaos::{ChaosProxy, Fault};
use support::{Postgres, Process, shop};

fn socket_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    host_port.to_socket_addrs().expect("an address").next().expect("an address")
}

/// The shop as separate processes, each service's database behind a proxy
/// of its own and each service reached (by the gateway, and by orders for
/// inventory) through another.
struct Split {
    _dir: tempfile::TempDir,
    _postgres: Postgres,
    databases: BTreeMap<&'static str, ChaosProxy>,
    services: BTreeMap<&'static str, ChaosProxy>,
    _processes: Vec<Process>,
    base: String,
}

impl Split {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let postgres = Postgres::new();
        let server = shop_testkit::postgres_server_url();
        let upstream = socket_of(&server);
        let mut databases = BTreeMap::new();
        let mut services: BTreeMap<&'static str, ChaosProxy> = BTreeMap::new();
        let mut processes = Vec::new();
        // Each service on a port of its own choosing (port 0, read from its
        // log), and only then its proxy: choosing ports for them first
        // races the proxies' own ports. Inventory comes before orders,
        // which reaches it through its proxy.
        for (name, ready) in
            [("users", "user service"), ("inventory", "inventory service"), ("orders", "order service")]
        {
            let database = ChaosProxy::start(upstream).await.expect("a proxy");
            let mut command = shop(dir.path());
            postgres.env(&mut command);
            command.arg(name).env("SHOP_POSTGRES_URL", database.url_for(&server, upstream));
            if let Some(inventory) = services.get("inventory") {
                command.env("SHOP_INVENTORY_URL", format!("http://{}", inventory.addr()));
            }
            command.env("SHOP_RECOVERY_INTERVAL_SECS", "1");
            let process = tokio::task::block_in_place(|| Process::start(command, ready));
            let listening = match name {
                "users" => process.addresses.users(),
                "inventory" => process.addresses.inventory(),
                _ => process.addresses.orders(),
            };
            let address = socket_of(&listening);
            services.insert(name, ChaosProxy::start(address).await.expect("a proxy"));
            databases.insert(name, database);
            processes.push(process);
        }
        let url = |name: &str| format!("http://{}", services[name].addr());
        let mut command = shop(dir.path());
        command
            .arg("gateway")
            .env("SHOP_USERS_URL", url("users"))
            .env("SHOP_INVENTORY_URL", url("inventory"))
            .env("SHOP_ORDERS_URL", url("orders"))
            .env("SHOP_SIGNIN_LIMIT_PER_ADDRESS", "100000");
        let gateway = tokio::task::block_in_place(|| Process::start(command, "gateway (HTTP)"));
        let base = gateway.addresses.gateway();
        processes.push(gateway);
        // make-admin needs the users database
        let split = Self { _dir: dir, _postgres: postgres, databases, services, _processes: processes, base };
        split.wait_ready().await;
        split
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Every service serving, not only one (which is enough for /readyz).
            let ready = match reqwest::get(format!("{}/readyz", self.base)).await {
                Ok(answer) => answer.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if ready.as_ref().is_some_and(|r| r["missing"] == json!([]) && r["degraded"] == json!([])) {
                return;
            }
            assert!(Instant::now() < deadline, "the gateway never got ready: {ready:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(base: &str) -> Self {
        let http =
            reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(20)).build().expect("a client");
        Self { http, base: base.to_owned() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value, Duration) {
        let started = Instant::now();
        let mut request =
            self.http.request(method, format!("{}{path}", self.base)).header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null), started.elapsed())
            }
            Err(_) => (0, Value::Null, started.elapsed()),
        }
    }

    async fn page(&self, path: &str) -> (u16, String) {
        match self.http.get(format!("{}{path}", self.base)).header("Accept", "text/html").send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }
}

/// What the walk needs: an admin, a customer with an order and a cart line,
/// a product.
struct World {
    admin: Client,
    customer: Client,
    product: i64,
    order: i64,
    n: u32,
}

/// The error lines every process logged, for a failure's message.
fn logged_errors(split: &Split) -> String {
    let mut lines = Vec::new();
    for process in &split._processes {
        let log = process.log_text();
        lines.extend(log.lines().filter(|line| line.contains("\"level\":\"error\"")).map(str::to_owned));
    }
    lines.join("\n")
}

async fn world(split: &Split, dir_env: impl Fn(&mut std::process::Command)) -> World {
    let admin = Client::new(&split.base);
    let body = json!({ "name": "Admin", "email": "admin@outage.test", "password": "correct horse battery" });
    let (status, answer, _) = admin.call(reqwest::Method::POST, "/users/register", Some(body)).await;
    assert_eq!(status, 201, "{answer}\n{}", logged_errors(split));
    let mut command = shop(std::path::Path::new("/tmp"));
    dir_env(&mut command);
    let promoted = command.args(["make-admin", "admin@outage.test"]).output().expect("make-admin runs");
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stdout));
    let login = json!({ "email": "admin@outage.test", "password": "correct horse battery" });
    assert_eq!(admin.call(reqwest::Method::POST, "/users/login", Some(login)).await.0, 200);
    let product = json!({ "name": "Green tea", "price_minor": 450, "stock": 1_000 });
    let (status, product, _) = admin.call(reqwest::Method::POST, "/products", Some(product)).await;
    assert_eq!(status, 201, "{product}\n{}", logged_errors(split));
    let product = product["id"].as_i64().expect("an id");

    let customer = Client::new(&split.base);
    let body = json!({ "name": "Ada", "email": "ada@outage.test", "password": "correct horse battery" });
    assert_eq!(customer.call(reqwest::Method::POST, "/users/register", Some(body)).await.0, 201);
    let login = json!({ "email": "ada@outage.test", "password": "correct horse battery" });
    assert_eq!(customer.call(reqwest::Method::POST, "/users/login", Some(login)).await.0, 200);
    let items = json!({ "items": [{ "product_id": product, "quantity": 1 }] });
    let (status, order, _) = customer.call(reqwest::Method::POST, "/orders", Some(items)).await;
    assert_eq!(status, 201, "{order}");
    let order = order["id"].as_i64().expect("an id");
    let line = json!({ "product_id": product, "quantity": 1 });
    assert_eq!(customer.call(reqwest::Method::POST, "/cart/items", Some(line)).await.0, 200);
    World { admin, customer, product, order, n: 0 }
}

/// Every column of the matrix, as a customer and an admin meet it: each
/// request's status (0: no answer), and the slowest answer.
async fn walk(world: &mut World) -> (BTreeMap<&'static str, Vec<u16>>, Duration) {
    use reqwest::Method as M;
    world.n += 1;
    let (c, a, p, o, n) = (&world.customer, &world.admin, world.product, world.order, world.n);
    let mut cells: BTreeMap<&'static str, Vec<u16>> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut note = |cell: &'static str, (status, _, took): (u16, Value, Duration)| {
        cells.entry(cell).or_default().push(status);
        slowest = slowest.max(took);
    };
    note("browse", c.call(M::GET, "/products", None).await);
    note("browse", (c.page("/").await.0, Value::Null, Duration::ZERO));
    note("product page", c.call(M::GET, &format!("/products/{p}"), None).await);
    note("search", c.call(M::GET, "/products?q=green", None).await);
    note("cart", c.call(M::GET, "/cart", None).await);
    note("cart", c.call(M::POST, "/cart/items", Some(json!({ "product_id": p, "quantity": 1 }))).await);
    let visitor = Client::new(&c.base);
    let email = format!("new{n}@outage.test");
    let body = json!({ "name": "New", "email": email, "password": "correct horse battery" });
    note("sign-in / register", visitor.call(M::POST, "/users/register", Some(body)).await);
    let login = json!({ "email": email, "password": "correct horse battery" });
    note("sign-in / register", Client::new(&c.base).call(M::POST, "/users/login", Some(login)).await);
    let items = json!({ "items": [{ "product_id": p, "quantity": 1 }] });
    note("checkout", c.call(M::POST, "/orders", Some(items)).await);
    note("order pages", c.call(M::GET, "/orders", None).await);
    note("order pages", c.call(M::GET, &format!("/orders/{o}"), None).await);
    note("admin", a.call(M::GET, "/customers", None).await);
    note("admin", a.call(M::PUT, &format!("/products/{p}"), Some(json!({ "stock_delta": 1 }))).await);
    note("metrics / health", c.call(M::GET, "/healthz", None).await);
    note("metrics / health", c.call(M::GET, "/readyz", None).await);
    (cells, slowest)
}

fn format_row(row: &BTreeMap<&'static str, Vec<u16>>) -> String {
    row.iter().map(|(cell, statuses)| format!("{cell}: {statuses:?}")).collect::<Vec<_>>().join("; ")
}

/// `fault` on `proxy`: the walk answers as `expected` (every cell named,
/// each request's status in order), never a 500, no request waits more than
/// `patience`; then the proxy passes again and every cell answers as before.
async fn row(
    world: &mut World,
    split: &Split,
    proxy: &ChaosProxy,
    what: &str,
    expected: &[(&'static str, &[u16])],
    patience: Duration,
) {
    let (before, _) = walk(world).await;
    proxy.set(Fault::Refuse);
    proxy.cut();
    // The first walk may meet connections that were open, and /readyz
    // answers from a result up to a second old; the second walk, after
    // that, is the steady state the matrix promises.
    let _ = walk(world).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (during, slowest) = walk(world).await;
    println!("{what} away: {}", format_row(&during));
    if during.values().flatten().any(|status| *status == 500) {
        for process in &split._processes {
            let log = process.log_text();
            for line in log.lines().filter(|line| line.contains("\"level\":\"error\"")) {
                println!("ERROR LOG {}", &line[..line.len().min(500)]);
            }
        }
    }
    let expected: BTreeMap<&'static str, Vec<u16>> =
        expected.iter().map(|(cell, statuses)| (*cell, statuses.to_vec())).collect();
    assert_eq!(during, expected, "{what} away");
    assert!(slowest < patience, "{what} away: a request took {slowest:?}");
    proxy.set(Fault::Pass);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (after, _) = walk(world).await;
        let same = after.iter().all(|(cell, statuses)| {
            // Sign-in registers a new address each walk, so compare codes.
            before.get(cell).is_some_and(|was| was == statuses)
        });
        if same {
            break;
        }
        assert!(Instant::now() < deadline, "{what} back: still {}", format_row(&after));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The split shop with its admin, customer, product and order.
async fn started() -> (Split, World) {
    let split = Split::start().await;
    let names = split._postgres.names.clone();
    let postgres_env = move |command: &mut std::process::Command| {
        command
            .env("SHOP_POSTGRES_URL", shop_testkit::postgres_server_url())
            .env("POSTGRES_DB_USERS", &names["users"])
            .env("POSTGRES_DB_INVENTORY", &names["inventory"])
            .env("POSTGRES_DB_ORDERS", &names["orders"]);
    };
    let world = world(&split, postgres_env).await;
    (split, world)
}

/// No answer in these rows takes a time-out: a refused connection is
/// answered at once.
const PATIENCE: Duration = Duration::from_secs(2);

const UP: [u16; 2] = [200, 200];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_service_away() {
    let (split, mut world) = started().await;
    let expected: &[(&str, &[u16])] = &[
        ("admin", &[503, 200]),
        ("browse", &UP),
        ("cart", &UP),
        ("checkout", &[201]),
        ("metrics / health", &UP),
        ("order pages", &UP),
        ("product page", &[200]),
        ("search", &[200]),
        ("sign-in / register", &[503, 503]),
    ];
    row(&mut world, &split, &split.services["users"], "the users service", expected, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_database_away() {
    let (split, mut world) = started().await;
    let expected: &[(&str, &[u16])] = &[
        ("admin", &[503, 200]),
        ("browse", &UP),
        ("cart", &UP),
        ("checkout", &[201]),
        ("metrics / health", &UP),
        ("order pages", &UP),
        ("product page", &[200]),
        ("search", &[200]),
        ("sign-in / register", &[503, 503]),
    ];
    row(&mut world, &split, &split.databases["users"], "the users database", expected, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_service_away() {
    let (split, mut world) = started().await;
    // Checkout: the JSON API's order with items is recorded and answered
    // 202, pending (docs/resilience.md, "Checkout when inventory is away").
    let expected: &[(&str, &[u16])] = &[
        ("admin", &[200, 503]),
        ("browse", &[503, 503]),
        ("cart", &[503, 503]),
        ("checkout", &[202]),
        ("metrics / health", &UP),
        ("order pages", &UP),
        ("product page", &[503]),
        ("search", &[503]),
        ("sign-in / register", &[201, 200]),
    ];
    row(&mut world, &split, &split.services["inventory"], "the inventory service", expected, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_database_away() {
    let (split, mut world) = started().await;
    let expected: &[(&str, &[u16])] = &[
        ("admin", &[200, 503]),
        ("browse", &[503, 503]),
        ("cart", &[503, 503]),
        ("checkout", &[202]),
        ("metrics / health", &UP),
        ("order pages", &UP),
        ("product page", &[503]),
        ("search", &[503]),
        ("sign-in / register", &[201, 200]),
    ];
    row(&mut world, &split, &split.databases["inventory"], "the inventory database", expected, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_service_away() {
    let (split, mut world) = started().await;
    let expected: &[(&str, &[u16])] = &[
        ("admin", &UP),
        ("browse", &UP),
        ("cart", &[503, 503]),
        ("checkout", &[503]),
        ("metrics / health", &UP),
        ("order pages", &[503, 503]),
        ("product page", &[200]),
        ("search", &[200]),
        ("sign-in / register", &[201, 200]),
    ];
    row(&mut world, &split, &split.services["orders"], "the orders service", expected, PATIENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_database_away() {
    let (split, mut world) = started().await;
    let expected: &[(&str, &[u16])] = &[
        ("admin", &UP),
        ("browse", &UP),
        ("cart", &[503, 503]),
        ("checkout", &[503]),
        ("metrics / health", &UP),
        ("order pages", &[503, 503]),
        ("product page", &[200]),
        ("search", &[200]),
        ("sign-in / register", &[201, 200]),
    ];
    row(&mut world, &split, &split.databases["orders"], "the orders database", expected, PATIENCE).await;
}

/// A black-holed service (nothing answers; only a time-out ends a wait)
/// costs one request its time-out: the gateway's breaker then refuses the
/// calls after it at once, and lets one through now and then, so the
/// service is used again within seconds of answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_service_costs_one_time_out_then_nothing() {
    let (split, world) = started().await;
    let users = &split.services["users"];
    let login = |n: u32| json!({ "email": format!("nobody{n}@outage.test"), "password": "correct horse battery" });
    users.set(Fault::Blackhole);
    users.cut();
    let (status, _, took) = world.admin.call(reqwest::Method::GET, "/customers", None).await;
    assert_eq!(status, 503, "the first call waits for its time-out, then 503");
    assert!(took <= Duration::from_secs(12), "{took:?}");
    for n in 0..5 {
        let (status, _, took) =
            Client::new(&split.base).call(reqwest::Method::POST, "/users/login", Some(login(n))).await;
        assert_eq!(status, 503);
        assert!(took < Duration::from_millis(500), "skipped at once, not another time-out: {took:?}");
    }
    users.set(Fault::Pass);
    let back = Instant::now();
    loop {
        let (status, _, _) = world.admin.call(reqwest::Method::GET, "/customers", None).await;
        if status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(8), "still {status} {:?} after it answers again", back.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
