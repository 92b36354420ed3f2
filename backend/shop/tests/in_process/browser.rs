//! A browser for gateway tests: a cookie jar, redirects not followed, and
//! the requests a page, a form, HTMX or a JSON client make.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery";

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

    /// (An admin) a delivery method checkout can use: €4.90, never free.
    pub async fn delivery_method(&self) -> i64 {
        let response =
            self.json(Method::POST, "/delivery-methods", json!({ "name": "Standard", "price_minor": 490 })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "creating a delivery method");
        let method: Value = response.json().await.expect("a delivery method");
        method["id"].as_i64().expect("an id")
    }

    /// (A customer) the checkout's first steps as a form-posting browser
    /// makes them: a new address, delivery by `method`, bank transfer. Then
    /// `place_order` orders the cart.
    pub async fn choose_delivery(&self, method: i64) {
        let address = [
            ("address_id", "new"),
            ("name", "Carol Customer"),
            ("line1", "1 rue de la Paix"),
            ("postcode", "75002"),
            ("city", "Paris"),
            ("country", "FR"),
        ];
        let steps: [(&str, Vec<(&str, String)>); 3] = [
            ("/checkout/address", address.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()),
            ("/checkout/delivery", vec![("delivery_method_id", method.to_string())]),
            ("/checkout/payment", vec![("payment_method", "bank_transfer".to_owned())]),
        ];
        for (path, fields) in steps {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let answer = self.form(Method::POST, path, &fields).await;
            assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{path}: {:?}", answer.text().await);
        }
    }

    /// (A customer who chose delivery) the review step's form, sent with `key`.
    pub async fn place_order(&self, key: &str) -> Response {
        self.form(Method::POST, "/checkout", &[("idempotency_key", key), ("terms", "on")]).await
    }

    /// The JSON body that orders the cart: address, method, payment, terms.
    pub fn cart_order(method: i64) -> Value {
        json!({
            "delivery_address": { "name": "Carol Customer", "line1": "1 rue de la Paix", "postcode": "75002",
                                  "city": "Paris", "country": "FR" },
            "delivery_method_id": method, "payment_method": "bank_transfer", "terms_accepted": true,
        })
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
