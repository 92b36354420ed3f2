//! Sign-in limits against the client's real address, behind proxies and
//! across gateway replicas: real `shop gateway` processes in front of a
//! `shop users` process, hit by the test as a client (or as a proxy) on
//! 127.0.0.1. Every gateway lets 3 sign-in attempts a minute through per
//! address; each attempt names a new account, so only the per-address limit
//! can refuse. The Redis tests need a Redis at SHOP_TEST_REDIS_URL (default
//! redis://127.0.0.1:6379), use a cache prefix of their own and delete their
//! keys afterwards.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::interfaces::{ClientLike, KeysInterface};
use fred::types::CustomCommand;
use reqwest::StatusCode;
use serde_json::json;
use shop_testkit::chaos::{ChaosProxy, Fault};
use support::{Process, eventually, shop};

const PER_ADDRESS: u32 = 3;
const READY: &str = "gateway (HTTP) listening";

fn redis_url() -> String {
    std::env::var("SHOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A user service, and gateways in front of it.
struct Shop {
    dir: tempfile::TempDir,
    users: Process,
}

impl Shop {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let mut command = shop(dir.path());
        command.arg("users");
        let users = Process::start(command, "user service");
        Self { dir, users }
    }

    /// `shop gateway` with these settings besides the limits.
    fn gateway(&self, env: &[(&str, &str)]) -> Process {
        let mut command = shop(self.dir.path());
        let users = self.users.addresses.users();
        command
            .env("SHOP_USERS_URL", &users)
            // Never called by sign-in; a gateway needs an address for each.
            .env("SHOP_INVENTORY_URL", &users)
            .env("SHOP_ORDERS_URL", &users)
            .env("SHOP_SIGNIN_LIMIT_PER_ADDRESS", PER_ADDRESS.to_string())
            .env("SHOP_SIGNIN_LIMIT_PER_ACCOUNT", "1000")
            .envs(env.iter().copied())
            .arg("gateway");
        Process::start(command, READY)
    }
}

/// A sign-in with a new account's email each time, from the test's own
/// address, with whatever forwarding headers it claims.
struct Client {
    http: reqwest::Client,
    attempts: AtomicU64,
}

impl Client {
    fn new() -> Self {
        Self { http: reqwest::Client::new(), attempts: AtomicU64::new(0) }
    }

    async fn sign_in(&self, gateway: &Process, headers: &[(&str, &str)]) -> reqwest::Response {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "email": format!("nobody-{n}-{}@example.com", uuid::Uuid::new_v4().simple()), "password": "not the password" });
        let mut request = self
            .http
            .post(format!("{}/users/login", gateway.addresses.gateway()))
            .header("Accept", "application/json")
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the gateway answers")
    }

    async fn status(&self, gateway: &Process, headers: &[(&str, &str)]) -> StatusCode {
        self.sign_in(gateway, headers).await.status()
    }
}

/// A wrong password is 401; a refused attempt 429.
const LET_THROUGH: StatusCode = StatusCode::UNAUTHORIZED;
const REFUSED: StatusCode = StatusCode::TOO_MANY_REQUESTS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_change_nothing_from_an_untrusted_peer() {
    let shop = Shop::start();
    // No trusted proxies at all, and trusted proxies the test is not one of.
    for trusted in ["", "10.0.0.0/8, fd00::/8"] {
        let gateway = shop.gateway(&[("SHOP_TRUSTED_PROXIES", trusted)]);
        let client = Client::new();
        for n in 0..PER_ADDRESS {
            let spoofed = format!("203.0.113.{n}");
            assert_eq!(client.status(&gateway, &[("x-forwarded-for", &spoofed)]).await, LET_THROUGH);
        }
        for spoofed in [
            [("x-forwarded-for", "198.51.100.1")],
            [("x-forwarded-for", "198.51.100.2, 10.0.0.1")],
            [("forwarded", "for=198.51.100.3")],
            [("x-real-ip", "198.51.100.4")],
        ] {
            let refused = client.sign_in(&gateway, &spoofed).await;
            assert_eq!(refused.status(), REFUSED, "trusting {trusted:?}, {spoofed:?} is still 127.0.0.1");
            let wait: u64 =
                refused.headers()["retry-after"].to_str().ok().and_then(|s| s.parse().ok()).expect("a wait");
            assert!((1..=60).contains(&wait), "{wait}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_has_its_own_limit() {
    let shop = Shop::start();
    // The test is the proxy (127.0.0.1), naming the clients it forwards.
    let gateway = shop.gateway(&[("SHOP_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]);
    let proxy = Client::new();
    let one = [("x-forwarded-for", "203.0.113.1")];
    for _ in 0..PER_ADDRESS {
        assert_eq!(proxy.status(&gateway, &one).await, LET_THROUGH);
    }
    assert_eq!(proxy.status(&gateway, &one).await, REFUSED, "the first client's limit is spent");
    for n in 0..PER_ADDRESS {
        // The second client's own limit, whoever the proxies in between.
        let chain = if n == 0 { "203.0.113.2" } else { "203.0.113.2, 10.0.0.5" };
        assert_eq!(proxy.status(&gateway, &[("x-forwarded-for", chain)]).await, LET_THROUGH, "{chain}");
    }
    assert_eq!(proxy.status(&gateway, &[("x-forwarded-for", "203.0.113.2")]).await, REFUSED);
    // What the first client writes itself is left of what the proxy
    // appended: it cannot escape its limit by naming someone else.
    for n in 0..5 {
        let spoofed = format!("198.51.100.{n}, 203.0.113.1");
        assert_eq!(proxy.status(&gateway, &[("x-forwarded-for", &spoofed)]).await, REFUSED, "{spoofed}");
    }
    let spoofed = "198.51.100.9, 203.0.113.1, 10.0.0.5";
    assert_eq!(proxy.status(&gateway, &[("x-forwarded-for", spoofed)]).await, REFUSED, "two proxies");
    // A garbled header is the proxy's own request: its own limit, no error.
    for garbage in ["unknown", "not, an address", "999.0.0.1"] {
        assert_eq!(proxy.status(&gateway, &[("x-forwarded-for", garbage)]).await, LET_THROUGH, "{garbage}");
    }
    assert_eq!(proxy.status(&gateway, &[]).await, REFUSED, "the proxy's own address spent its limit too");
}

/// A cache prefix of this test's own, its keys deleted at the end.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        Self(format!("shop_test:{}:", uuid::Uuid::new_v4().simple()))
    }

    async fn keys(&self) -> Vec<String> {
        let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
        pool.custom(CustomCommand::new_static("KEYS", None, false), vec![format!("{}*", self.0)]).await.expect("KEYS")
    }

    async fn count(&self, key: &str) -> Option<i64> {
        let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
        pool.get(format!("{}{key}", self.0)).await.expect("GET")
    }

    async fn clean(&self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
            let _: i64 = pool.custom(CustomCommand::new_static("DEL", None, false), keys).await.expect("DEL");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_redis_enforce_one_limit() {
    let shop = Shop::start();
    let prefix = Prefix::new();
    let redis = redis_url();
    let env = [("SHOP_REDIS_URL", redis.as_str()), ("SHOP_CACHE_PREFIX", prefix.0.as_str())];
    let gateways = [shop.gateway(&env), shop.gateway(&env)];
    let client = Client::new();
    for n in 0..PER_ADDRESS as usize {
        assert_eq!(client.status(&gateways[n % 2], &[]).await, LET_THROUGH, "attempt {n}");
    }
    for gateway in &gateways {
        let refused = client.sign_in(gateway, &[]).await;
        assert_eq!(refused.status(), REFUSED, "each replica refuses what both let through");
        let wait: u64 = refused.headers()["retry-after"].to_str().ok().and_then(|s| s.parse().ok()).expect("a wait");
        assert!((1..=60).contains(&wait), "the shared window's time left: {wait}");
    }
    assert_eq!(prefix.count("limit:login:ip:127.0.0.1").await, Some(i64::from(PER_ADDRESS) + 2));
    let pool = shop_web::cache::connect_redis(&redis).await.expect("Redis");
    let left: i64 = pool.pttl(format!("{}limit:login:ip:127.0.0.1", prefix.0)).await.expect("PTTL");
    assert!((1..=60_000).contains(&left), "the window expires: {left} ms");
    prefix.clean().await;
}

/// The shared counter itself: counts are atomic under concurrency, and a
/// window ends with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_windows_count_atomically_and_expire() {
    let prefix = Prefix::new();
    let counter = std::sync::Arc::new(
        shop_web::shared_limit::SharedCounter::connect(&redis_url(), &prefix.0, None).await.expect("Redis"),
    );
    let window = Duration::from_millis(1_500);
    // The client connects in the background.
    eventually("Redis answers", Duration::from_secs(5), || async { counter.count("warm-up", window).await.ok() }).await;
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let counter = counter.clone();
        racing.spawn(async move { counter.count("k", window).await.expect("counted").count });
    }
    let mut counts = racing.join_all().await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>(), "every attempt counted once");
    let next = counter.count("k", window).await.expect("counted");
    assert!(next.count == 41 && next.left <= window, "{next:?}");
    assert_eq!(counter.count("other", window).await.expect("counted").count, 1, "keys apart");
    eventually("the window ends", Duration::from_secs(5), || async {
        (prefix.count("limit:k").await.is_none()).then_some(())
    })
    .await;
    assert_eq!(counter.count("k", window).await.expect("counted").count, 1, "a new window");

    // Redis known to be down (the cache or the sessions found it so): not
    // asked, and the caller counts in-process at once.
    let redis = shop_web::dependency_health::Dependency::new("redis-test");
    let guarded = shop_web::shared_limit::SharedCounter::connect(&redis_url(), &prefix.0, Some(redis.clone()))
        .await
        .expect("Redis");
    assert_eq!(guarded.count("g", window).await.expect("counted").count, 1);
    redis.failed(&"a test outage");
    let started = Instant::now();
    let skipped = guarded.count("g", window).await;
    assert!(matches!(skipped, Err(shop_web::shared_limit::Unavailable::Skipped)), "{skipped:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "no wait: {:?}", started.elapsed());
    assert_eq!(prefix.count("limit:g").await, Some(1), "nothing counted in Redis");
    prefix.clean().await;
}

fn upstream(url: &str) -> SocketAddr {
    let authority = url.trim_start_matches("redis://").split('/').next().unwrap_or_default();
    std::net::ToSocketAddrs::to_socket_addrs(authority).expect("Redis's address").next().expect("an address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_limits_fail_closed_while_redis_is_unreachable() {
    let shop = Shop::start();
    let prefix = Prefix::new();
    let redis = redis_url();
    let upstream = upstream(&redis);
    let chaos = ChaosProxy::start(upstream).await.expect("a proxy");
    let through = chaos.url_for(&redis, upstream);
    let gateway = shop.gateway(&[("SHOP_REDIS_URL", through.as_str()), ("SHOP_CACHE_PREFIX", prefix.0.as_str())]);
    let client = Client::new();
    for _ in 0..PER_ADDRESS - 1 {
        assert_eq!(client.status(&gateway, &[]).await, LET_THROUGH);
    }
    assert_eq!(prefix.count("limit:login:ip:127.0.0.1").await, Some(i64::from(PER_ADDRESS) - 1), "counted in Redis");

    // Redis stops answering: this gateway counts on by itself, never more
    // than the limit, each attempt waiting at most a short time-out. Then
    // Redis comes back, and the count is kept there again, with no restart.
    let key = "limit:login:ip:127.0.0.1";
    for fault in [Fault::Blackhole, Fault::Refuse] {
        chaos.set(fault);
        if fault == Fault::Refuse {
            chaos.cut();
        }
        for _ in 0..3 {
            let started = Instant::now();
            let status = client.status(&gateway, &[]).await;
            assert!(status == LET_THROUGH || status == REFUSED, "{fault:?}: {status}, never a 500");
            assert!(started.elapsed() < Duration::from_secs(2), "{fault:?}: {:?}", started.elapsed());
        }
        assert_eq!(client.status(&gateway, &[]).await, REFUSED, "{fault:?}: past the limit, refused");
        let before = prefix.count(key).await.unwrap_or_default();
        chaos.set(Fault::Pass);
        eventually(&format!("attempts counted in Redis again after {fault:?}"), Duration::from_secs(15), || async {
            assert_eq!(client.status(&gateway, &[]).await, REFUSED);
            (prefix.count(key).await.unwrap_or_default() > before.max(i64::from(PER_ADDRESS))).then_some(())
        })
        .await;
    }
    gateway.wait_for_log(
        |line| line["message"].as_str().is_some_and(|m| m.starts_with("sign-in limits counted in this process")),
        Duration::from_secs(5),
    );
    gateway.wait_for_log(
        |line| line["message"].as_str().is_some_and(|m| m.starts_with("sign-in limits shared through Redis again")),
        Duration::from_secs(5),
    );
    let fallbacks =
        reqwest::get(gateway.addresses.metrics()).await.expect("metrics").text().await.expect("metrics text");
    let counted: f64 = fallbacks
        .lines()
        .filter(|line| line.starts_with("shop_rate_limit_fallbacks_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(counted >= 8.0, "fallbacks counted: {counted}\n{fallbacks}");
    prefix.clean().await;
}

#[test]
fn trusted_proxies_that_are_not_addresses_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("a data directory");
    let mut command = shop(dir.path());
    command.env("SHOP_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal").arg("gateway");
    let refused = command.output().expect("shop runs");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("`proxy.internal` is not an IP address or a CIDR"), "{said}");
    let mut command = shop(dir.path());
    command.env("SHOP_CLIENT_ADDRESS_HEADER", "x-real-ip").arg("gateway");
    let refused = command.output().expect("shop runs");
    assert!(!refused.status.success(), "{}", String::from_utf8_lossy(&refused.stderr));
}
