//! The gateway with Redis: sessions that outlive a gateway process, a cache
//! shared by every replica, and a cache outage that costs nothing but speed.
//! Needs a Redis at SHOP_TEST_REDIS_URL (default redis://127.0.0.1:6379);
//! ops/test.sh starts one. Every test uses a cache prefix of its own and
//! deletes its keys afterwards.

mod in_process;

use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::types::CustomCommand;
use in_process::browser::Browser;
use in_process::{Gateway, Shop};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shop_web::cache::{Cache, Lookup};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

fn redis_url() -> String {
    std::env::var("SHOP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A cache prefix of this test's own, and the keys under it removed at the end.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        Self(format!("shop_test:{}:", uuid::Uuid::new_v4().simple()))
    }

    /// A gateway with its sessions and cache in Redis, in front of `shop`.
    /// Sessions go to the shared session database under random ids; they
    /// expire within minutes rather than the default 12 hours.
    async fn gateway(&self, shop: &Shop) -> Gateway {
        let url = redis_url();
        Gateway::start(shop, &["--redis-url", &url, "--cache-prefix", &self.0, "--session-idle-minutes", "10"]).await
    }

    async fn clean(&self) {
        let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
        let keys: Vec<String> = pool
            .custom(CustomCommand::new_static("KEYS", None, false), vec![format!("{}*", self.0)])
            .await
            .expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = pool.custom(CustomCommand::new_static("DEL", None, false), keys).await.expect("DEL");
        }
    }
}

/// The same cookie jar, talking to another gateway.
fn same_browser_at(browser: &Browser, gateway: &Gateway) -> Browser {
    Browser { base: gateway.url.clone(), client: browser.client.clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_redis_survives_a_gateway_restart() {
    let shop = Shop::services().await;
    let prefix = Prefix::new();
    let first = prefix.gateway(&shop).await;
    let browser = first.browser();
    browser.customer("Rita").await;
    assert_eq!(browser.get_json("/orders").await.status(), StatusCode::OK);
    first.stop().await;

    let second = prefix.gateway(&shop).await;
    let same = same_browser_at(&browser, &second);
    assert_eq!(same.get_json("/orders").await.status(), StatusCode::OK, "still signed in after the restart");
    assert_eq!(same.json(Method::POST, "/users/logout", Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(same.get_json("/orders").await.status(), StatusCode::UNAUTHORIZED, "logout deleted it from Redis");

    // The same restart with sessions in memory signs everyone out: the
    // check above can tell the difference.
    let memory = Gateway::start(&shop, &[]).await;
    let forgetful = memory.browser();
    forgetful.customer("Mo").await;
    memory.stop().await;
    let restarted = Gateway::start(&shop, &[]).await;
    assert_eq!(same_browser_at(&forgetful, &restarted).get_json("/orders").await.status(), StatusCode::UNAUTHORIZED);
    prefix.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_is_shared_by_replicas_and_fresh_after_writes() {
    let shop = Shop::services().await;
    let prefix = Prefix::new();
    let one = prefix.gateway(&shop).await;
    let two = prefix.gateway(&shop).await;

    let ada = one.browser();
    let user = ada.customer("Ada").await;
    let profile = format!("/users/{}", user["id"]);
    assert_eq!(ada.get_json(&profile).await.headers()["x-cache"], "miss");
    assert_eq!(ada.get_json(&profile).await.headers()["x-cache"], "hit");
    let ada_on_two = same_browser_at(&ada, &two);
    assert_eq!(ada_on_two.get_json(&profile).await.headers()["x-cache"], "hit", "the other replica shares the cache");
    let renamed = ada.json(Method::PATCH, &profile, json!({ "name": "Ada Lovelace" })).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let fresh = ada_on_two.get_json(&profile).await;
    assert_eq!(fresh.headers()["x-cache"], "miss");
    assert_eq!(fresh.json::<Value>().await.expect("a user")["name"], "Ada Lovelace");

    // A product changed through one replica is fresh on the other.
    let admin = shop.admin(&one).await;
    let tea = admin.product("Green tea", 450, 10).await;
    let on_two = two.browser();
    let path = format!("/products/{tea}");
    assert_eq!(on_two.get_json(&path).await.headers()["x-cache"], "miss");
    assert_eq!(on_two.get_json(&path).await.headers()["x-cache"], "hit");
    let list: Value = on_two.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 1);
    admin.json(Method::PUT, &path, json!({ "price_minor": 500 })).await;
    admin.product("Black tea", 400, 10).await;
    let read: Value = on_two.get_json(&path).await.json().await.expect("a product");
    assert_eq!(read["price_minor"], 500);
    let list: Value = on_two.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 2, "cached pages are retired by a write on any replica");
    prefix.clean().await;
}

/// A TCP proxy to Redis that can be cut, taking its connections with it.
struct Proxy {
    url: String,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("redis://{}", listener.local_addr().expect("an address"));
        let upstream = redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { url, tasks }
    }

    async fn cut(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_outage_falls_back_to_the_service() {
    let proxy = Proxy::start().await;
    let pool = shop_web::cache::connect_redis(&proxy.url).await.expect("Redis through the proxy");
    let prefix = Prefix::new();
    let cache = Cache::redis(pool, &prefix.0, Duration::from_secs(60));
    let fetch = |n: i64| move || async move { Ok::<_, ()>(n) };
    assert_eq!(cache.get_or_fetch("test", "k", fetch(1)).await, Ok((1, Lookup::Miss)));
    assert_eq!(cache.get_or_fetch("test", "k", fetch(2)).await, Ok((1, Lookup::Hit)));

    proxy.cut().await;
    let started = std::time::Instant::now();
    assert_eq!(cache.get_or_fetch("test", "k", fetch(3)).await, Ok((3, Lookup::Miss)), "the service answers instead");
    assert!(started.elapsed() < Duration::from_secs(5), "a dead cache costs little time: {:?}", started.elapsed());
    cache.invalidate("k").await;
    cache.retire_lists().await;
    assert!(cache.stats().failures >= 2, "{:?}", cache.stats());
    prefix.clean().await;
}

/// Ending sessions only ever moves a user's "valid after" time forward, even
/// when replicas race: a password change made while an account is deleted
/// cannot bring the deleted account's sessions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_stay_ended_whatever_the_order_of_replicas() {
    let prefix = Prefix::new();
    let pool = shop_web::cache::connect_redis(&redis_url()).await.expect("Redis");
    let revoked = shop_web::events::Revoked::redis(pool, &prefix.0);
    let now = 1_800_000_000_000_i64;
    let mut racing = JoinSet::new();
    for n in 0..40 {
        let revoked = revoked.clone();
        racing.spawn(async move {
            // Deletions ("forever") and password changes ("now") at once.
            let before = if n % 2 == 0 { shop_web::events::FOREVER } else { now + n };
            revoked.end_sessions(7, before).await
        });
    }
    while let Some(done) = racing.join_next().await {
        done.expect("a task").expect("recorded");
    }
    assert!(revoked.has_ended(7, now + 10_000).await, "the deletion stands");
    assert!(revoked.end_sessions(7, now).await.is_ok());
    assert!(revoked.has_ended(7, i64::MAX - 1).await, "a later password change does not lower it");
    assert!(revoked.end_sessions(8, now).await.is_ok());
    assert!(
        revoked.has_ended(8, now).await && !revoked.has_ended(8, now + 1).await,
        "a password change ends the older ones only"
    );
    prefix.clean().await;
}

/// Active sessions are counted in their own Redis database: one more after
/// signing in, one fewer after signing out (measured against what the
/// database held before, so a run that died midway cannot skew it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_counted_in_their_own_database() {
    const DB: &str = "14"; // used by no other test
    let shop = Shop::services().await;
    let prefix = Prefix::new();
    let url = redis_url();
    let gateway =
        Gateway::start(&shop, &["--redis-url", &url, "--cache-prefix", &prefix.0, "--session-redis-db", DB]).await;
    let pool = shop_web::cache::connect_redis_database(&url, Some(14)).await.expect("Redis");
    let sessions = shop_web::SessionStoreKind::redis(pool);
    let before = sessions.active().await.expect("a count");
    let rita = gateway.browser();
    rita.customer("Rita").await;
    assert_eq!(sessions.active().await.expect("a count"), before + 1);
    assert_eq!(rita.json(Method::POST, "/users/logout", Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(sessions.active().await.expect("a count"), before);
    prefix.clean().await;
}

#[tokio::test]
async fn sessions_refuse_to_share_the_caches_database() {
    let urls = shop_web::ServiceUrls {
        users: "http://127.0.0.1:9".into(),
        inventory: "http://127.0.0.1:9".into(),
        orders: "http://127.0.0.1:9".into(),
    };
    let config = shop_web::GatewayConfig {
        redis_url: Some(format!("{}/3", redis_url().trim_end_matches('/'))),
        session_db: 3,
        ..shop_web::GatewayConfig::new(urls)
    };
    let refused = shop_web::Gateway::build(&config).await.err().map(|error| error.to_string());
    assert!(refused.is_some_and(|error| error.contains("a database of their own")));
}
