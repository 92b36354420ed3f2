//! The whole shop inside the test's process, started by `shop::App::build`
//! exactly as `shop all` starts it: from flags an operator could write (a
//! data directory of its own, so SQLite files of its own; port 0
//! everywhere), with the in-process event bus. Gateways started beside it
//! are `shop gateway` processes in front of its services. (Tests of the
//! binary as a process use `support`.)

#![allow(dead_code)] // each test binary uses a different part

pub mod browser;

use clap::{CommandFactory, FromArgMatches};
use reqwest::{Method, StatusCode};
use serde_json::json;
use shop::{Addresses, App, Cli, Config, Part};
use shop_testkit::Running;

use browser::{Browser, PASSWORD};

/// A running shop and the directory its databases live in.
pub struct Shop {
    pub addresses: Addresses,
    config: Config,
    _app: Running,
    _dir: tempfile::TempDir,
}

impl Shop {
    /// `shop all`: the three services and the gateway, events on the
    /// in-process bus.
    pub async fn start() -> Self {
        Self::with(&Part::ALL).await
    }

    /// The three services without a gateway, for gateways started beside
    /// them with [`Gateway::start`].
    pub async fn services() -> Self {
        Self::with(&[Part::Users, Part::Inventory, Part::Orders]).await
    }

    async fn with(parts: &[Part]) -> Self {
        let dir = tempfile::tempdir().expect("a data directory");
        let data_dir = dir.path().to_str().expect("a UTF-8 path").to_owned();
        let config = settings(&["--data-dir", &data_dir]);
        let (app, addresses) = start(&config, parts, |_| {}).await;
        Self { addresses, config, _app: app, _dir: dir }
    }

    /// This shop's own gateway (`shop all`'s).
    pub fn gateway(&self) -> Gateway {
        let addr = self.addresses.gateway.expect("a shop with a gateway");
        Gateway { url: format!("http://{addr}"), app: None }
    }

    /// Registers an account and makes it an admin with `shop make-admin`'s
    /// own function and this shop's settings.
    pub async fn admin(&self, gateway: &Gateway) -> Browser {
        let admin = gateway.browser();
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        admin.register("Admin", &email).await;
        shop::commands::make_admin(&self.config, &email).await.expect("promoted");
        let signed_in = admin.json(Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await;
        assert_eq!(signed_in.status(), StatusCode::OK);
        admin
    }

    /// The flags that point a gateway of another process at these services.
    fn service_urls(&self) -> Vec<String> {
        let url = |addr: Option<std::net::SocketAddr>| format!("http://{}", addr.expect("a shop with its services"));
        vec![
            "--users-url".into(),
            url(self.addresses.users),
            "--inventory-url".into(),
            url(self.addresses.inventory),
            "--orders-url".into(),
            url(self.addresses.orders),
        ]
    }
}

/// A gateway: a shop's own, or one started beside it.
pub struct Gateway {
    pub url: String,
    app: Option<Running>,
}

impl Gateway {
    /// `shop gateway` with these extra flags, in front of `shop`'s services.
    pub async fn start(shop: &Shop, flags: &[&str]) -> Self {
        Self::start_adjusted(shop, flags, |_| {}).await
    }

    /// [`Gateway::start`] with a setting no flag can say (a session lifetime
    /// of milliseconds).
    pub async fn start_adjusted(
        shop: &Shop,
        flags: &[&str],
        adjust: impl FnOnce(&mut shop_web::GatewayConfig),
    ) -> Self {
        let urls = shop.service_urls();
        let mut args: Vec<&str> = urls.iter().map(String::as_str).collect();
        args.extend_from_slice(flags);
        let (app, addresses) = start(&settings(&args), &[Part::Gateway], adjust).await;
        Self { url: format!("http://{}", addresses.gateway.expect("a gateway")), app: Some(app) }
    }

    /// Stops a gateway started beside a shop, and waits until it has.
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// A client with its own cookie jar that does not follow redirects, so
    /// tests see the 303s.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.url)
    }
}

/// The settings of `shop <flags>`, from the flags alone: like the process
/// harness's cleared environment, no SHOP_* variable of the developer's
/// reaches them.
fn settings(flags: &[&str]) -> Config {
    let secret = shop_testkit::TEST_SECRET;
    let mut args = vec!["shop", "--internal-secret", secret, "--metrics-addr", "127.0.0.1:0"];
    for flag in ["--http-addr", "--users-addr", "--inventory-addr", "--orders-addr"] {
        args.extend([flag, "127.0.0.1:0"]);
    }
    args.extend_from_slice(flags);
    let matches = Cli::command()
        .mut_args(|arg| arg.env(None))
        .try_get_matches_from(&args)
        .unwrap_or_else(|error| panic!("shop {}: {error}", args[1..].join(" ")));
    Cli::from_arg_matches(&matches).expect("the shop's settings").config
}

/// Builds and runs an app in the background until the `Running` is stopped
/// or dropped; returns where it listens.
async fn start(
    config: &Config,
    parts: &[Part],
    adjust: impl FnOnce(&mut shop_web::GatewayConfig),
) -> (Running, Addresses) {
    let app = App::build_with(config, parts, adjust).await.expect("the shop builds");
    let addresses = app.addresses();
    let running = Running::spawn(|stop| async move { app.run(stop).await.expect("the shop runs") });
    (running, addresses)
}
