//! The resilience matrix's Redis, NATS and SMTP rows (docs/resilience.md),
//! and the health of the services and the gateway, through the chaos proxy
//! (`shop_testkit::chaos`). Redis refused (stopped) or black-holed (paused)
//! under a running gateway: every part of the shop answers without a 500, a
//! request waits on at most one Redis time-out, and the gateway comes back
//! to Redis by itself when it answers again. NATS and SMTP away: writes
//! succeed, events and emails wait and arrive once they are back.
//!
//! Needs a Redis at SHOP_TEST_REDIS_URL (default redis://127.0.0.1:6379), a
//! NATS with JetStream (SHOP_TEST_NATS_URL) and PostgreSQL
//! (SHOP_TEST_POSTGRES_URL); each test uses a cache prefix, a stream and
//! databases of its own and removes them afterwards (sessions expire within
//! 10 minutes).

mod in_process;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use fred::types::CustomCommand;
use futures_util::StreamExt;
use in_process::browser::{Browser, PASSWORD};
use in_process::{Gateway, Shop};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use shop_testkit::chaos::{ChaosProxy, Fault};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One Redis command time-out (500 ms) and the rest of a request: what the
/// request that finds the outage may take, at most.
const ONE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Less than one Redis time-out: a request that waited on Redis takes longer.
const NO_TIMEOUT: Duration = Duration::from_millis(450);

const NOTICE: &str = "you may need to sign in again";

fn redis_url() -> String {
    std::env::var("SHOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let host = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    host.parse().unwrap_or_else(|_| panic!("SHOP_TEST_REDIS_URL must name an IP and a port: {url}"))
}

/// A gateway whose Redis is behind a chaos proxy, with a cache prefix of
/// its own.
struct RedisBehindProxy {
    proxy: ChaosProxy,
    prefix: String,
}

impl RedisBehindProxy {
    async fn start() -> Self {
        let proxy = ChaosProxy::start(redis_addr()).await.expect("the chaos proxy");
        Self { proxy, prefix: format!("shop_test:{}:", uuid::Uuid::new_v4().simple()) }
    }

    async fn gateway(&self, shop: &Shop) -> Gateway {
        let url = self.proxy.url_for(&redis_url(), redis_addr());
        Gateway::start(shop, &["--redis-url", &url, "--cache-prefix", &self.prefix, "--session-idle-minutes", "10"])
            .await
    }

    async fn clean(&self) {
        let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
        let keys: Vec<String> = pool
            .custom(CustomCommand::new_static("KEYS", None, false), vec![format!("{}*", self.prefix)])
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = pool.custom(CustomCommand::new_static("DEL", None, false), keys).await.expect("DEL");
        }
    }
}

/// Every answer of a test, timed: none may be a 500.
#[derive(Default)]
struct Answers(Vec<(String, StatusCode, Duration)>);

impl Answers {
    async fn time(&mut self, what: &str, request: impl Future<Output = Response>) -> (Response, Duration) {
        let started = Instant::now();
        let response = request.await;
        let took = started.elapsed();
        assert!(!response.status().is_server_error() || response.status() == StatusCode::SERVICE_UNAVAILABLE);
        self.0.push((what.to_owned(), response.status(), took));
        (response, took)
    }

    fn assert_no_500s(&self) {
        let failed: Vec<_> =
            self.0.iter().filter(|(_, status, _)| *status == StatusCode::INTERNAL_SERVER_ERROR).collect();
        assert!(failed.is_empty(), "500s: {failed:?}");
    }
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.expect("the gateway answers");
    let status = response.status();
    (status, response.json().await.expect("a readiness report"))
}

async fn wait_until_redis_is_used_again(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, report) = readyz(base).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if !report.to_string().contains("redis down") {
            return;
        }
        assert!(Instant::now() < deadline, "Redis not used again within 20 s: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sign_in(browser: &Browser, email: &str) -> StatusCode {
    browser.json(Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await.status()
}

/// Every column of the Redis row, for Redis stopped and for Redis paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_degrades_every_part_and_recovers() {
    for fault in [Fault::Refuse, Fault::Blackhole] {
        redis_row(fault).await;
    }
}

async fn redis_row(fault: Fault) {
    let shop = Shop::services().await;
    let redis = RedisBehindProxy::start().await;
    let gateway = redis.gateway(&shop).await;
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Sencha tea", 450, 50).await;
    let method = admin.delivery_method().await;
    // Rita's cookie jar is kept, to try her session from before the outage afterwards.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let rita = Browser { base: gateway.url.clone(), client };
    let rita_email = rita.customer("Rita").await["email"].as_str().expect("an email").to_owned();
    let base_url: reqwest::Url = gateway.url.parse().expect("a URL");
    let rita_before = reqwest::cookie::CookieStore::cookies(&*jar, &base_url).expect("Rita's session cookie");
    // Sam signs in before the outage and only looks at pages during it.
    let sam = gateway.browser();
    sam.customer("Sam").await;
    assert_eq!(sam.get_json("/orders").await.status(), StatusCode::OK);
    let product = format!("/products/{tea}");
    for _ in 0..2 {
        assert_eq!(rita.get_json(&product).await.status(), StatusCode::OK);
        assert_eq!(rita.get_json("/products").await.status(), StatusCode::OK);
    }
    assert_eq!(rita.get_json("/products").await.headers()["x-cache"], "hit", "the list is cached in Redis");
    let (status, report) = readyz(&gateway.url).await;
    assert_eq!((status, report["degraded"].clone()), (StatusCode::OK, json!([])), "{fault:?}");

    redis.proxy.set(fault);
    let mut answers = Answers::default();
    // The first request finds the outage: one time-out at most.
    let (first, took) = answers.time("first catalogue read", rita.get_json("/products")).await;
    assert_eq!(first.status(), StatusCode::OK, "{fault:?}");
    assert!(took < ONE_TIMEOUT, "{fault:?}: the first request took {took:?}");

    // browse, product page, search: from the services, no time-out waited on.
    for path in ["/products", product.as_str(), "/products?q=sencha", "/categories", "/"] {
        let (response, took) = answers.time(path, rita.get_json(path)).await;
        assert_eq!(response.status(), StatusCode::OK, "{fault:?} {path}");
        assert!(took < NO_TIMEOUT, "{fault:?} {path} took {took:?}");
    }
    let (search, _) = answers.time("search", rita.get_json("/products?q=sencha")).await;
    assert_eq!(search.json::<Value>().await.expect("a list")["total"], 1);

    // A signed-in customer whose session cannot be read: signed out, told why.
    let (page, took) = answers.time("a page", rita.page("/")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(took < NO_TIMEOUT, "{fault:?}: a signed-in page took {took:?}");
    assert!(page.text().await.expect("a page").contains(NOTICE), "{fault:?}: the notice");
    let (orders, _) = answers.time("orders", rita.get_json("/orders")).await;
    assert_eq!(orders.status(), StatusCode::UNAUTHORIZED, "{fault:?}: asked to sign in, not a 500");
    let (orders_page, _) = answers.time("orders page", rita.page("/orders")).await;
    assert!(orders_page.status().is_client_error() || orders_page.status().is_redirection(), "{fault:?}");
    let (_, _) = answers.time("a page for Sam", sam.page("/products")).await;

    // sign-in / register: work, kept in the fallback.
    let login = json!({ "email": rita_email, "password": PASSWORD });
    let (signed_in, took) = answers.time("sign-in", rita.json(Method::POST, "/users/login", login)).await;
    assert_eq!(signed_in.status(), StatusCode::OK, "{fault:?}: sign-in");
    assert!(took < ONE_TIMEOUT, "{fault:?}: sign-in took {took:?}");
    let (orders, _) = answers.time("orders after sign-in", rita.get_json("/orders")).await;
    assert_eq!(orders.status(), StatusCode::OK, "{fault:?}: signed in again during the outage");
    let (page, _) = answers.time("a page after sign-in", rita.page("/")).await;
    assert!(!page.text().await.expect("a page").contains(NOTICE), "{fault:?}: no notice once signed in again");
    let newcomer = gateway.browser();
    let email = format!("new-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({ "name": "New", "email": email, "password": PASSWORD });
    let (registered, _) = answers.time("register", newcomer.json(Method::POST, "/users/register", body)).await;
    assert_eq!(registered.status(), StatusCode::CREATED, "{fault:?}: register");
    assert_eq!(sign_in(&newcomer, &email).await, StatusCode::OK);
    assert_eq!(newcomer.get_json("/orders").await.status(), StatusCode::OK);

    // cart: a guest's, kept in the fallback.
    let guest = gateway.browser();
    let add = json!({ "product_id": tea, "quantity": 2 });
    let (added, _) = answers.time("guest adds", guest.json(Method::POST, "/cart/items", add)).await;
    assert_eq!(added.status(), StatusCode::OK, "{fault:?}: a guest's cart");
    let (cart, _) = answers.time("guest's cart", guest.get_json("/cart")).await;
    assert!(cart.text().await.expect("a cart").contains("Sencha"), "{fault:?}: the cart kept its line");

    // checkout and order pages: for a session the gateway can read.
    let add = json!({ "product_id": tea, "quantity": 1 });
    assert_eq!(rita.json(Method::POST, "/cart/items", add).await.status(), StatusCode::OK);
    let mut order = Browser::cart_order(method);
    order["idempotency_key"] = json!(format!("outage-{}", uuid::Uuid::new_v4().simple()));
    let (placed, _) = answers.time("checkout", rita.json(Method::POST, "/orders", order)).await;
    assert_eq!(placed.status(), StatusCode::CREATED, "{fault:?}: checkout");
    let placed: Value = placed.json().await.expect("an order");
    let (shown, _) = answers.time("an order", rita.get_json(&format!("/orders/{}", placed["id"]))).await;
    assert_eq!(shown.status(), StatusCode::OK);

    // admin: signed in again, writes work and are seen here at once.
    assert_eq!(admin.get_json("/customers").await.status(), StatusCode::UNAUTHORIZED, "{fault:?}");
    // A new admin signs in during the outage (the first one's session is in Redis).
    let second_admin = shop.admin(&gateway).await;
    let (created, _) = answers
        .time(
            "admin writes",
            second_admin.json(
                Method::POST,
                "/products",
                json!({ "name": "Gyokuro", "description": "", "price_minor": 900, "stock": 5 }),
            ),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED, "{fault:?}: admin");
    let list: Value = rita.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 2, "{fault:?}: the write shows on the list at once");

    // metrics / health.
    let healthz = reqwest::get(format!("{}/healthz", gateway.url)).await.expect("the gateway answers");
    assert_eq!(healthz.status(), StatusCode::OK);
    // (The report is kept a second: the one from before the outage may
    // still be the answer.)
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, report) = readyz(&gateway.url).await;
    assert_eq!(status, StatusCode::OK, "{fault:?}: Redis down is degraded, not unready: {report}");
    assert!(report["degraded"].to_string().contains("redis down"), "{fault:?}: {report}");
    answers.assert_no_500s();
    let slow: Vec<_> = answers.0.iter().skip(1).filter(|(_, _, took)| *took >= ONE_TIMEOUT).collect();
    assert!(slow.is_empty(), "{fault:?}: requests that waited on Redis after the first: {slow:?}");

    // Back: no restart.
    redis.proxy.set(Fault::Pass);
    wait_until_redis_is_used_again(&gateway.url).await;
    assert_eq!(sam.get_json("/orders").await.status(), StatusCode::OK, "{fault:?}: Sam's session is read again");
    assert!(!sam.page("/").await.text().await.expect("a page").contains(NOTICE));
    assert_eq!(rita.get_json("/orders").await.status(), StatusCode::OK, "{fault:?}: the fallback's session stands");
    // Signing in again during the outage ended her session from before it:
    // deleted from Redis once Redis answered (another replica asks Redis).
    let other = redis.gateway(&shop).await;
    let old = reqwest::Client::new()
        .get(format!("{}/orders", other.url))
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::COOKIE, rita_before)
        .send()
        .await
        .expect("an answer");
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "{fault:?}: the ended session stays ended");
    other.stop().await;
    assert_eq!(guest.get_json("/cart").await.status(), StatusCode::OK);
    let _ = rita.get_json(&product).await;
    assert_eq!(rita.get_json(&product).await.headers()["x-cache"], "hit", "{fault:?}: the cache is used again");
    // The list cached before the outage was retired once Redis answered:
    // the product added meanwhile shows.
    let list: Value = rita.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 2, "{fault:?}: a write made during the outage retired the cached lists");
    gateway.stop().await;
    redis.clean().await;
}

/// A gateway (re)started while Redis is stopped starts and serves without
/// it, and uses it once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_while_redis_is_down() {
    let shop = Shop::services().await;
    let redis = RedisBehindProxy::start().await;
    redis.proxy.set(Fault::Refuse);
    let started = Instant::now();
    let gateway = redis.gateway(&shop).await;
    assert!(started.elapsed() < Duration::from_secs(5), "start took {:?}", started.elapsed());
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Oolong", 650, 5).await;
    let report = eventually_readyz(&gateway.url, StatusCode::OK).await;
    assert!(report["degraded"].to_string().contains("redis down"), "{report}");
    let product = format!("/products/{tea}");
    assert_eq!(admin.get_json(&product).await.headers()["x-cache"], "miss");
    assert_eq!(admin.get_json(&product).await.headers()["x-cache"], "miss", "no cache while Redis is down");
    // Counted: the registry is the process's, shared by the shop and this gateway.
    let metrics = format!("http://{}/metrics", shop.addresses.metrics);
    let text = reqwest::get(&metrics).await.expect("metrics").text().await.expect("a body");
    assert_eq!(metric(&text, "shop_dependency_up{dependency=\"redis\"} "), Some(0.0), "{text}");
    assert!(metric(&text, "shop_dependency_skipped_total{dependency=\"redis\"} ").is_some_and(|n| n > 0.0));

    redis.proxy.set(Fault::Pass);
    wait_until_redis_is_used_again(&gateway.url).await;
    let _ = admin.get_json(&product).await;
    assert_eq!(admin.get_json(&product).await.headers()["x-cache"], "hit", "Redis used once it answers");
    let text = reqwest::get(&metrics).await.expect("metrics").text().await.expect("a body");
    assert_eq!(metric(&text, "shop_dependency_up{dependency=\"redis\"} "), Some(1.0));
    gateway.stop().await;
    redis.clean().await;
}

/// The issue's own check: Redis stopped in the middle of a signed-in
/// customer's visit. Before, every signed-in page was a 500 after 0.5 s and
/// each catalogue read took 1.5 s (three time-outs); now no 500s, and after
/// the first failure the catalogue is as fast as without a cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_session() {
    let shop = Shop::services().await;
    let redis = RedisBehindProxy::start().await;
    let gateway = redis.gateway(&shop).await;
    let admin = shop.admin(&gateway).await;
    for n in 0..5 {
        admin.product(&format!("Tea {n}"), 400 + n, 10).await;
    }
    let customer = gateway.browser();
    customer.customer("Mid").await;
    let guest = gateway.browser();
    // Uncached reads with Redis up: what "normal" is (a miss goes to the service).
    let mut normal = Vec::new();
    for n in 0..10 {
        let started = Instant::now();
        assert_eq!(guest.get_json(&format!("/products?q=tea&min_price={n}")).await.status(), StatusCode::OK);
        normal.push(started.elapsed());
    }

    redis.proxy.set(Fault::Refuse);
    redis.proxy.cut();
    let mut answers = Answers::default();
    for round in 0..10 {
        let (page, _) = answers.time("signed-in page", customer.page("/products")).await;
        assert_eq!(page.status(), StatusCode::OK);
        let (json, _) =
            answers.time("catalogue JSON", guest.get_json(&format!("/products?q=tea&max_price={round}"))).await;
        assert_eq!(json.status(), StatusCode::OK);
        let (mine, _) = answers.time("my orders", customer.get_json("/orders")).await;
        assert_eq!(mine.status(), StatusCode::UNAUTHORIZED, "signed out for now, not a 500");
        let (login, _) = answers.time("sign-in page", customer.page("/users/login")).await;
        assert_eq!(login.status(), StatusCode::OK);
    }
    answers.assert_no_500s();
    let first = answers.0[0].2;
    assert!(first < ONE_TIMEOUT, "the first request: {first:?}");
    let mut after: Vec<Duration> = answers.0.iter().skip(1).map(|(_, _, took)| *took).collect();
    after.sort();
    normal.sort();
    let (median, slowest) = (after[after.len() / 2], after[after.len() - 1]);
    let normal_median = normal[normal.len() / 2];
    eprintln!(
        "Redis stopped: first {first:?}, then median {median:?}, slowest {slowest:?}; normal median {normal_median:?}"
    );
    assert!(slowest < NO_TIMEOUT, "a request after the first waited on Redis: {slowest:?}");
    assert!(median < normal_median * 3 + Duration::from_millis(20), "{median:?} against {normal_median:?}");

    redis.proxy.set(Fault::Pass);
    wait_until_redis_is_used_again(&gateway.url).await;
    assert_eq!(customer.get_json("/orders").await.status(), StatusCode::OK, "signed in again once Redis answers");
    gateway.stop().await;
    redis.clean().await;
}

/// `/readyz` names a service the gateway cannot reach (503) and is ready
/// again when it answers; `/healthz` stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_an_unreachable_service_and_healthz_stays_up() {
    let shop = Shop::services().await;
    let proxy_to = |addr: Option<SocketAddr>| async move {
        ChaosProxy::start(addr.expect("the service")).await.expect("the chaos proxy")
    };
    let users = proxy_to(shop.addresses.users).await;
    let inventory = proxy_to(shop.addresses.inventory).await;
    let orders = proxy_to(shop.addresses.orders).await;
    let urls = [&users, &inventory, &orders].map(|proxy| format!("http://{}", proxy.addr()));
    let gateway = Gateway::start_adjusted(&shop, &[], |config| {
        config.services.users = urls[0].clone();
        config.services.inventory = urls[1].clone();
        config.services.orders = urls[2].clone();
    })
    .await;
    let (status, report) = readyz(&gateway.url).await;
    assert_eq!((status, report.clone()), (StatusCode::OK, json!({ "ready": true, "missing": [], "degraded": [] })));

    // One service away: named, but the gateway stays ready. Every replica
    // shares the services, so an unready answer would take every replica
    // out of the ingress at once, and with it the parts that still work.
    users.set(Fault::Refuse);
    let report =
        eventually_readyz_report(&gateway.url, |report| report["missing"] == json!(["users unreachable"])).await;
    assert_eq!(report["ready"], json!(true), "{report}");
    assert_eq!(readyz(&gateway.url).await.0, StatusCode::OK);
    let healthz = reqwest::get(format!("{}/healthz", gateway.url)).await.expect("an answer");
    assert_eq!(healthz.status(), StatusCode::OK, "liveness does not follow a dependency");
    // The catalogue still answers; sign-in is refused with a 503, not a 500.
    let browser = gateway.browser();
    assert_eq!(browser.get_json("/products").await.status(), StatusCode::OK);
    let login = json!({ "email": "nobody@example.com", "password": PASSWORD });
    assert_eq!(browser.json(Method::POST, "/users/login", login).await.status(), StatusCode::SERVICE_UNAVAILABLE);

    // No service at all (black holes): unready, and a check costs at most
    // its time-out: many callers at once wait for one check.
    for proxy in [&users, &inventory, &orders] {
        proxy.set(Fault::Blackhole);
        proxy.cut();
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let started = Instant::now();
    let many = (0..20).map(|_| readyz(&gateway.url));
    let answers = futures_util::future::join_all(many).await;
    assert!(started.elapsed() < Duration::from_millis(2_500), "{:?}", started.elapsed());
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::SERVICE_UNAVAILABLE), "{answers:?}");
    assert_eq!(answers[0].1["missing"], json!(["users unreachable", "inventory unreachable", "orders unreachable"]));

    for proxy in [&users, &inventory, &orders] {
        proxy.set(Fault::Pass);
    }
    let report = eventually_readyz(&gateway.url, StatusCode::OK).await;
    let report = if report["missing"] == json!([]) {
        report
    } else {
        eventually_readyz_report(&gateway.url, |report| report["missing"] == json!([])).await
    };
    assert_eq!(report["missing"], json!([]));
    gateway.stop().await;
}

async fn eventually_readyz_report(base: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, report) = readyz(base).await;
        if wanted(&report) {
            return report;
        }
        assert!(Instant::now() < deadline, "/readyz never as wanted within 20 s: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn eventually_readyz(base: &str, wanted: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, report) = readyz(base).await;
        if status == wanted {
            return report;
        }
        assert!(Instant::now() < deadline, "/readyz not {wanted} within 20 s: {status} {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The databases of the PostgreSQL rows' metrics/health cells: every
/// service's gRPC health turns NOT_SERVING while its database does not
/// answer (not on one slow query) and SERVING when it does again; the
/// gateway stays ready, naming them; requests that need a database are
/// refused with a 503, not a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_turns_its_service_not_serving_and_back() {
    let postgres = support::Postgres::new();
    let server: SocketAddr = "127.0.0.1:5432".parse().expect("an address");
    let upstream = shop_testkit::postgres_server_url();
    assert!(upstream.contains("127.0.0.1:5432"), "this test proxies PostgreSQL at 127.0.0.1:5432: {upstream}");
    let proxy = ChaosProxy::start(server).await.expect("the chaos proxy");
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = support::shop(dir.path());
    postgres.env(&mut command);
    command.env("SHOP_POSTGRES_URL", proxy.url_for(&upstream, server));
    let running = support::Process::start(command, "gateway (HTTP) listening");
    let services = [
        ("users", running.addresses.users()),
        ("inventory", running.addresses.inventory()),
        ("orders", running.addresses.orders()),
    ];
    let base = running.addresses.gateway();
    for (name, url) in &services {
        assert_eq!(health(url).await, Some(ServingStatus::Serving), "{name}");
    }

    // One slow moment (2.5 s: one check times out) is not an outage.
    proxy.set(Fault::Delay(Duration::from_millis(2_500)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set(Fault::Pass);
    for (name, url) in &services {
        assert_eq!(health(url).await, Some(ServingStatus::Serving), "{name} flapped on one slow check");
    }

    proxy.set(Fault::Refuse);
    for (name, url) in &services {
        support::eventually(&format!("{name} NOT_SERVING"), Duration::from_secs(20), || async {
            (health(url).await == Some(ServingStatus::NotServing)).then_some(())
        })
        .await;
    }
    let report = eventually_readyz(&base, StatusCode::OK).await;
    for name in ["users", "inventory", "orders"] {
        assert!(report["degraded"].to_string().contains(&format!("{name} not serving")), "{report}");
    }
    // Refused clearly, not a 500: a catalogue read and a sign-in.
    let browser = Browser::new(&base);
    let login = json!({ "email": "nobody@example.com", "password": PASSWORD });
    for answer in [browser.get_json("/products").await, browser.json(Method::POST, "/users/login", login).await] {
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{:?}", answer.text().await);
    }
    proxy.set(Fault::Pass);
    for (name, url) in &services {
        support::eventually(&format!("{name} SERVING again"), Duration::from_secs(30), || async {
            (health(url).await == Some(ServingStatus::Serving)).then_some(())
        })
        .await;
    }
    assert_eq!(browser.get_json("/products").await.status(), StatusCode::OK, "back without a restart");
}

async fn health(url: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).ok()?.connect().await.ok()?;
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let answer = HealthClient::new(channel).check(request).await.ok()?;
    Some(answer.into_inner().status())
}

/// An admin signed in on the gateway at `base` of the `shop` whose data
/// directory is `dir` (made one by `shop make-admin`).
async fn admin_at(base: &str, dir: &std::path::Path) -> Browser {
    let admin = Browser::new(base);
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    admin.register("Admin", &email).await;
    let promoted = support::shop(dir).args(["make-admin", &email]).output().expect("make-admin runs");
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stdout));
    assert_eq!(sign_in(&admin, &email).await, StatusCode::OK);
    admin
}

/// A customer's order of the cart, placed through the gateway's JSON API.
async fn order_one(customer: &Browser, product: i64, method: i64) -> Value {
    let add = json!({ "product_id": product, "quantity": 1 });
    assert_eq!(customer.json(Method::POST, "/cart/items", add).await.status(), StatusCode::OK);
    let mut body = Browser::cart_order(method);
    body["idempotency_key"] = json!(uuid::Uuid::new_v4().to_string());
    let placed = customer.json(Method::POST, "/orders", body).await;
    assert_eq!(placed.status(), StatusCode::CREATED, "the order is placed");
    placed.json().await.expect("an order")
}

/// The `.eml` files of `kind` the shop wrote (the embedded mail transport).
fn emails(dir: &std::path::Path, kind: &str) -> usize {
    std::fs::read_dir(dir.join("mail"))
        .map(|entries| {
            entries.filter_map(Result::ok).filter(|entry| entry.file_name().to_string_lossy().starts_with(kind)).count()
        })
        .unwrap_or(0)
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(prefix)?.trim().parse().ok())
}

/// The NATS row: NATS refused under the running shop. Checkout, browsing,
/// sign-in and the order pages work; the confirmation email (an event's
/// consumer) waits, the outbox backlog shows it, and it is sent once NATS
/// is back, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_writes_succeed_and_events_arrive_later() {
    let nats: SocketAddr =
        support::nats_url().trim_start_matches("nats://").parse().expect("SHOP_TEST_NATS_URL as IP:port");
    let proxy = ChaosProxy::start(nats).await.expect("the chaos proxy");
    let stream = support::Stream::new(&format!("nats://{}", proxy.addr()));
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = support::shop(dir.path());
    stream.env(&mut command);
    let running = support::Process::start(command, "gateway (HTTP) listening");
    let base = running.addresses.gateway();
    let admin = admin_at(&base, dir.path()).await;
    let tea = admin.product("Assam", 500, 20).await;
    let method = admin.delivery_method().await;
    let customer = Browser::new(&base);
    let email = customer.customer("Nat").await["email"].as_str().expect("an email").to_owned();
    order_one(&customer, tea, method).await;
    support::eventually("the first confirmation email", Duration::from_secs(30), || async {
        (emails(dir.path(), "order_confirmed") == 1).then_some(())
    })
    .await;

    proxy.set(Fault::Refuse);
    proxy.cut();
    let started = Instant::now();
    let placed = order_one(&customer, tea, method).await;
    assert!(started.elapsed() < Duration::from_secs(2), "a write does not wait on NATS: {:?}", started.elapsed());
    assert_eq!(placed["status"], "confirmed", "{placed}");
    let shown = customer.get_json(&format!("/orders/{}", placed["id"])).await;
    assert_eq!(shown.status(), StatusCode::OK, "order pages");
    assert_eq!(customer.get_json("/products?q=assam").await.status(), StatusCode::OK, "browse and search");
    assert_eq!(customer.json(Method::POST, "/users/logout", Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(sign_in(&customer, &email).await, StatusCode::OK, "sign-in");
    let (status, report) = readyz(&base).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let metrics = running.addresses.metrics();
    support::eventually("the outbox backlog shows", Duration::from_secs(15), || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        (metric(&text, "shop_outbox_backlog{service=\"orders\"} ")? > 0.0).then_some(())
    })
    .await;
    assert_eq!(emails(dir.path(), "order_confirmed"), 1, "the event waits while NATS is away");

    // The order's open page: an admin's status change succeeds, and the
    // page hears of it once NATS is back (not before).
    let events = customer
        .request(Method::GET, &format!("/orders/{}/events", placed["id"]))
        .send()
        .await
        .expect("the event stream opens");
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut body = events.bytes_stream();
    let cancelled =
        admin.json(Method::PATCH, &format!("/orders/{}/status", placed["id"]), json!({ "status": "cancelled" })).await;
    assert_eq!(cancelled.status(), StatusCode::OK, "an admin's write succeeds without NATS");
    let mut received = String::new();
    let heard = |received: &str| received.contains("event: status") && received.contains(">cancelled<");
    let early = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(chunk)) = body.next().await {
            received.push_str(&String::from_utf8_lossy(&chunk));
            if heard(&received) {
                return;
            }
        }
    })
    .await;
    assert!(early.is_err(), "the live status waits for NATS: {received}");

    proxy.set(Fault::Pass);
    let late = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(chunk)) = body.next().await {
            received.push_str(&String::from_utf8_lossy(&chunk));
            if heard(&received) {
                return;
            }
        }
    })
    .await;
    assert!(late.is_ok(), "the page heard the change once NATS was back: {received}");
    support::eventually("the second confirmation email, after NATS is back", Duration::from_secs(60), || async {
        (emails(dir.path(), "order_confirmed") == 2).then_some(())
    })
    .await;
    stream.delete().await;
}

/// The NATS row's browse, product page and admin cells: with NATS away,
/// another gateway replica (in-memory caches) does not hear a write made
/// through the first, and serves what it cached for at most the cache's
/// TTL (4 s here), then the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_other_replicas_lag_by_at_most_the_cache_ttl() {
    let nats: SocketAddr =
        support::nats_url().trim_start_matches("nats://").parse().expect("SHOP_TEST_NATS_URL as IP:port");
    let proxy = ChaosProxy::start(nats).await.expect("the chaos proxy");
    let stream = support::Stream::new(&format!("nats://{}", proxy.addr()));
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = support::shop(dir.path());
    stream.env(&mut command);
    command.env("SHOP_CACHE_TTL_SECS", "4");
    let first = support::Process::start(command, "gateway (HTTP) listening");
    let mut command = support::shop(dir.path());
    stream.env(&mut command);
    command
        .env("SHOP_CACHE_TTL_SECS", "4")
        .env("SHOP_USERS_URL", first.addresses.users())
        .env("SHOP_INVENTORY_URL", first.addresses.inventory())
        .env("SHOP_ORDERS_URL", first.addresses.orders())
        .arg("gateway");
    let second = support::Process::start(command, "gateway (HTTP) listening");
    let admin = admin_at(&first.addresses.gateway(), dir.path()).await;
    let tea = admin.product("Genmaicha", 450, 10).await;
    let other = Browser::new(&second.addresses.gateway());
    let path = format!("/products/{tea}");
    let price =
        |response: Response| async move { response.json::<Value>().await.expect("a product")["price_minor"].clone() };
    assert_eq!(price(other.get_json(&path).await).await, 450);

    proxy.set(Fault::Refuse);
    proxy.cut();
    let changed = admin.json(Method::PUT, &path, json!({ "price_minor": 500 })).await;
    assert_eq!(changed.status(), StatusCode::OK, "an admin's write succeeds without NATS");
    let written = Instant::now();
    assert_eq!(price(admin.get_json(&path).await).await, 500, "fresh on the replica that wrote it");
    let stale = other.get_json(&path).await;
    assert_eq!(stale.headers()["x-cache"], "hit");
    assert_eq!(price(stale).await, 450, "the other replica has not heard (NATS is away)");
    support::eventually("the other replica serves the change", Duration::from_secs(10), || async {
        (price(other.get_json(&path).await).await == 500).then_some(())
    })
    .await;
    assert!(written.elapsed() < Duration::from_secs(6), "stale for {:?}, more than the TTL", written.elapsed());
    proxy.set(Fault::Pass);
    stream.delete().await;
}

/// A tiny SMTP server that keeps what it is sent.
struct MailSink {
    addr: SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MailSink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("an address");
        let received = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let kept = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, kept.clone()));
            }
        });
        Self { addr, received, task }
    }

    fn count(&self, needle: &str) -> usize {
        self.received.lock().expect("the mails").iter().filter(|mail| mail.contains(needle)).count()
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, received: std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut data: Option<String> = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(body) = data.as_mut() {
            if line == "." {
                received.lock().expect("the mails").push(std::mem::take(body));
                data = None;
                let _ = write.write_all(b"250 queued\r\n").await;
            } else {
                body.push_str(&line);
                body.push('\n');
            }
            continue;
        }
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            "DATA" => {
                data = Some(String::new());
                b"354 end with .\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 not here\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The SMTP row: the mail server refused, then black-holed. Password reset
/// and checkout answer as usual; their emails wait (tried again) and are
/// sent once SMTP answers, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_emails_are_delayed_not_lost() {
    let sink = MailSink::start().await;
    let proxy = ChaosProxy::start(sink.addr).await.expect("the chaos proxy");
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut command = support::shop(dir.path());
    command.env("SHOP_SMTP_URL", format!("smtp://{}", proxy.addr())).env("SHOP_SMTP_TIMEOUT_SECS", "1");
    let running = support::Process::start(command, "gateway (HTTP) listening");
    let base = running.addresses.gateway();
    let admin = admin_at(&base, dir.path()).await;
    let tea = admin.product("Darjeeling", 700, 20).await;
    let method = admin.delivery_method().await;
    let customer = Browser::new(&base);
    let email = customer.customer("Sue").await["email"].as_str().expect("an email").to_owned();
    let reset = || customer.json(Method::POST, "/users/password-reset", json!({ "email": email }));
    assert_eq!(reset().await.status(), StatusCode::ACCEPTED);
    support::eventually("the first reset email", Duration::from_secs(30), || async {
        (sink.count("Subject: Reset your password") == 1).then_some(())
    })
    .await;

    for fault in [Fault::Refuse, Fault::Blackhole] {
        let (resets, confirmations) = (sink.count("Subject: Reset your password"), sink.count("is confirmed"));
        proxy.set(fault);
        proxy.cut();
        let started = Instant::now();
        assert_eq!(reset().await.status(), StatusCode::ACCEPTED, "{fault:?}: sign-in's password reset answers");
        let placed = order_one(&customer, tea, method).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{fault:?}: nothing waits on SMTP: {:?}",
            started.elapsed()
        );
        assert_eq!(placed["status"], "confirmed");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(sink.count("Subject: Reset your password"), resets, "{fault:?}: no email while SMTP is away");
        let (status, _) = readyz(&base).await;
        assert_eq!(status, StatusCode::OK);

        proxy.set(Fault::Pass);
        support::eventually(&format!("{fault:?}: the waiting emails sent"), Duration::from_secs(60), || async {
            (sink.count("Subject: Reset your password") == resets + 1
                && sink.count("is confirmed") == confirmations + 1)
                .then_some(())
        })
        .await;
    }
    drop(running);
}
