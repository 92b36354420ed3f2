//! A whole shop for gateway tests: the three services on random ports, each
//! with its own SQLite database, and the gateway in front of them.

#![allow(dead_code)] // each test binary uses a different part

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use shop_testkit::{Backend, Running, TestDb, loopback};
use shop_web::{GatewayConfig, ServiceUrls};

pub struct Shop {
    pub urls: ServiceUrls,
    pub users_db: TestDb,
    _inventory_db: TestDb,
    _orders_db: TestDb,
    _services: Vec<Running>,
}

impl Shop {
    pub async fn start() -> Self {
        let users_db = TestDb::new(Backend::Sqlite, &shop_users::MIGRATIONS).await;
        let inventory_db = TestDb::new(Backend::Sqlite, &shop_inventory::MIGRATIONS).await;
        let orders_db = TestDb::new(Backend::Sqlite, &shop_orders::MIGRATIONS).await;
        let (users_listener, users) = loopback().await;
        let (inventory_listener, inventory) = loopback().await;
        let (orders_listener, orders) = loopback().await;
        let identity = shop_testkit::identity();
        let users_service =
            shop_users::UserService::new(users_db.db.clone()).with_identity(identity.clone()).into_server();
        let inventory_service = shop_inventory::InventoryService::new(inventory_db.db.clone())
            .with_identity(identity.clone())
            .into_server();
        let channel = shop_orders::service::inventory_channel(&inventory).expect("a channel");
        let orders_service =
            shop_orders::OrderService::new(orders_db.db.clone(), channel).with_identity(identity).into_server();
        let services = vec![
            Running::spawn(|stop| async move {
                shop_grpc::serve(users_listener, users_service, stop).await.expect("users")
            }),
            Running::spawn(|stop| async move {
                shop_grpc::serve(inventory_listener, inventory_service, stop).await.expect("inventory")
            }),
            Running::spawn(|stop| async move {
                shop_grpc::serve(orders_listener, orders_service, stop).await.expect("orders")
            }),
        ];
        Self {
            urls: ServiceUrls { users, inventory, orders },
            users_db,
            _inventory_db: inventory_db,
            _orders_db: orders_db,
            _services: services,
        }
    }

    pub fn config(&self) -> GatewayConfig {
        GatewayConfig { identity: shop_testkit::identity(), ..GatewayConfig::new(self.urls.clone()) }
    }

    /// A gateway in front of this shop, with in-memory sessions and cache.
    pub async fn gateway(&self) -> Gateway {
        Gateway::start(self.config()).await
    }

    /// Registers an account and makes it an admin, the way `shop make-admin` does.
    pub async fn admin(&self, gateway: &Gateway) -> Browser {
        let admin = gateway.browser();
        let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
        admin.register("Admin", &email).await;
        let parsed = shop_users::domain::Email::parse(&email).expect("an email");
        shop_users::store::set_role(&self.users_db.db, &parsed, shop_users::domain::Role::Admin)
            .await
            .expect("promoted");
        let signed_in = admin.json(Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await;
        assert_eq!(signed_in.status(), StatusCode::OK);
        admin
    }
}

pub const PASSWORD: &str = "correct horse battery";

pub struct Gateway {
    pub url: String,
    server: Option<Running>,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Self {
        let gateway = shop_web::Gateway::build(&config).await.expect("the gateway builds");
        let (listener, url) = loopback().await;
        let server = Running::spawn(|stop| async move {
            let app = gateway.router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).with_graceful_shutdown(stop).await.expect("the gateway serves");
        });
        Self { url, server: Some(server) }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// A client with its own cookie jar that does not follow redirects, so
    /// tests see the 303s.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.url)
    }
}

pub struct Browser {
    pub base: String,
    pub client: Client,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let client =
            Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("a client");
        Self { base: base.to_owned(), client }
    }

    /// Another client sharing nothing with this one but the base URL.
    pub fn stranger(&self) -> Self {
        Self::new(&self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// A JSON request with a JSON body (`Value::Null` for none).
    pub async fn json(&self, method: Method, path: &str, body: Value) -> Response {
        let request = self.request(method, path).header(ACCEPT, "application/json");
        let request = if body.is_null() { request } else { request.json(&body) };
        request.send().await.expect("the gateway answers")
    }

    pub async fn get_json(&self, path: &str) -> Response {
        self.json(Method::GET, path, Value::Null).await
    }

    /// A browser's form post.
    pub async fn form(&self, method: Method, path: &str, fields: &[(&str, &str)]) -> Response {
        self.request(method, path).header(ACCEPT, "text/html").form(fields).send().await.expect("the gateway answers")
    }

    /// An HTMX request: the partial alone.
    pub fn htmx(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).header("HX-Request", "true")
    }

    pub async fn page(&self, path: &str) -> Response {
        self.request(Method::GET, path).header(ACCEPT, "text/html").send().await.expect("the gateway answers")
    }

    pub async fn register(&self, name: &str, email: &str) -> Value {
        let response = self
            .json(Method::POST, "/users/register", json!({ "name": name, "email": email, "password": PASSWORD }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "registering {email}");
        response.json().await.expect("a user")
    }

    pub async fn customer(&self, name: &str) -> Value {
        self.register(name, &format!("{}-{}@example.com", name.to_lowercase(), uuid::Uuid::new_v4().simple())).await
    }

    pub async fn product(&self, name: &str, price_minor: i64, stock: i64) -> i64 {
        let response = self
            .json(
                Method::POST,
                "/products",
                json!({ "name": name, "description": "", "price_minor": price_minor, "stock": stock }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating {name}");
        let product: Value = response.json().await.expect("a product");
        product["id"].as_i64().expect("an id")
    }
}

/// Asserts a problem+json answer with this status whose detail (or a field
/// error) mentions `needle`.
pub async fn assert_problem(response: Response, status: StatusCode, needle: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body.to_string().contains(needle), "{body} does not mention {needle:?}");
    body
}

pub fn location(response: &Response) -> String {
    response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

pub async fn text(response: Response) -> String {
    response.text().await.expect("a body")
}
