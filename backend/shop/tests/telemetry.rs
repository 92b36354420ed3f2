//! One checkout is one trace: the four processes run separately (on
//! PostgreSQL and NATS, as in compose) and export their spans over OTLP to a
//! receiver inside this test, which checks that the gateway, orders and
//! inventory spans share one trace id with the right parent chain, through
//! SQL, the outbox and NATS to a consumer; and that the log lines of that
//! request carry the same trace id, and no password or session id; nor does
//! anything recorded keep a secret sent in a query string.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::{Value, json};
use support::{Postgres, Process, Stream, Web, eventually, nats_url, shop};

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    kind: &'static str,
    /// Every attribute, as `key=value`.
    attributes: Vec<String>,
}

/// An OTLP/gRPC trace receiver: what the collector (Tempo) would be.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("the spans");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
                spans.push(Span {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_id: hex(&span.parent_span_id),
                    name: span.name,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|attribute| format!("{}={:?}", attribute.key, attribute.value))
                        .collect(),
                    kind: ["unspecified", "internal", "server", "client", "producer", "consumer"]
                        .get(usize::try_from(span.kind).unwrap_or(0))
                        .copied()
                        .unwrap_or("unspecified"),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{address}")
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().expect("the spans").clone()
    }
}

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_checkout_is_one_trace_across_gateway_orders_and_inventory() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let postgres = Postgres::new();
    let stream = Stream::new(&nats_url());
    let process = |part: &str| {
        let mut command = shop(dir.path());
        postgres.env(&mut command);
        stream.env(&mut command);
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint).env("OTEL_BSP_SCHEDULE_DELAY", "100").arg(part);
        command
    };
    let users = Process::start(process("users"), "user service (gRPC) listening");
    let inventory = Process::start(process("inventory"), "inventory service (gRPC) listening");
    let mut orders = process("orders");
    orders.env("SHOP_INVENTORY_URL", inventory.addresses.inventory());
    let orders = Process::start(orders, "order service (gRPC) listening");
    let mut gateway = process("gateway");
    gateway
        .env("SHOP_USERS_URL", users.addresses.users())
        .env("SHOP_INVENTORY_URL", inventory.addresses.inventory())
        .env("SHOP_ORDERS_URL", orders.addresses.orders());
    let gateway = Process::start(gateway, "gateway (HTTP) listening");

    // An admin (made by the CLI against the same database) stocks a product
    // and orders it.
    let web = Web::new(gateway.addresses.gateway());
    let email = "tracer@example.com";
    let registered = json!({ "name": "Tracer", "email": email, "password": PASSWORD });
    assert_eq!(web.json(reqwest::Method::POST, "/users/register", registered).await.status(), 201);
    let mut make_admin = shop(dir.path());
    postgres.env(&mut make_admin);
    let promoted = make_admin.args(["make-admin", email]).output().expect("make-admin runs");
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stderr));
    let login = web.json(reqwest::Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(login.status(), 200);
    let session = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|cookie| cookie.strip_prefix("shop_session="))
        .and_then(|cookie| cookie.split(';').next())
        .map(str::to_owned)
        .expect("a session cookie");
    let product = web
        .json(reqwest::Method::POST, "/products", json!({ "name": "Traced tea", "price_minor": 450, "stock": 5 }))
        .await;
    assert_eq!(product.status(), 201);
    let product_id = product.json::<Value>().await.expect("a product")["id"].as_i64().expect("an id");
    let order = web
        .json(reqwest::Method::POST, "/orders", json!({ "items": [{ "product_id": product_id, "quantity": 1 }] }))
        .await;
    assert_eq!(order.status(), 201);

    // The checkout's trace: started by the gateway's server span.
    let root = eventually("the gateway's span of the checkout", Duration::from_secs(20), || {
        let spans = receiver.spans();
        async move {
            spans
                .into_iter()
                .find(|span| span.service == "shop-gateway" && span.name == "POST /orders" && span.kind == "server")
        }
    })
    .await;
    assert_eq!(root.parent_id, "", "the checkout starts its trace at the gateway");
    let trace = root.trace_id.clone();
    let in_trace = |service: &str, name: &str, kind: &str| {
        let (service, name, kind, trace) = (service.to_owned(), name.to_owned(), kind.to_owned(), trace.clone());
        let receiver = receiver.clone();
        async move {
            eventually(&format!("{service}'s {kind} span {name}"), Duration::from_secs(20), || {
                let spans = receiver.spans();
                let (service, name, kind, trace) = (service.clone(), name.clone(), kind.clone(), trace.clone());
                async move {
                    spans.into_iter().find(|span| {
                        span.service == service && span.name == name && span.kind == kind && span.trace_id == trace
                    })
                }
            })
            .await
        }
    };
    let reserve = in_trace("shop-inventory", "shop.inventory.v1.InventoryService/ReserveStock", "server").await;
    in_trace("shop-inventory", "inventory reserve", "client").await; // its SQL
    in_trace("shop-orders", "orders insert_pending", "client").await;
    // Through the outbox and NATS: the order's event is published in this
    // trace, and so is the stock change the gateway consumes (cache invalidation).
    in_trace("shop-orders", "order.created publish", "producer").await;
    in_trace("shop-inventory", "product.changed publish", "producer").await;
    in_trace("shop-gateway", "product.changed process", "consumer").await;

    // The parent chain from inventory's work up to the browser's request
    // (each process exports on its own schedule: wait for every link).
    let expected = [
        "shop-inventory server shop.inventory.v1.InventoryService/ReserveStock",
        "shop-orders client shop.inventory.v1.InventoryService/ReserveStock",
        "shop-orders server shop.orders.v1.OrderService/CreateOrder",
        "shop-gateway client shop.orders.v1.OrderService/CreateOrder",
        "shop-gateway server POST /orders",
    ];
    let chain = || {
        let spans: HashMap<String, Span> = receiver
            .spans()
            .into_iter()
            .filter(|span| span.trace_id == trace)
            .map(|span| (span.span_id.clone(), span))
            .collect();
        let mut chain = vec![];
        let mut current = Some(&reserve);
        while let Some(span) = current {
            chain.push(format!("{} {} {}", span.service, span.kind, span.name));
            current = spans.get(&span.parent_id);
        }
        chain
    };
    for _ in 0..100 {
        if chain() == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(chain(), expected, "inventory's span reaches the gateway's through every hop");

    // The request's log lines carry its trace id, in both processes.
    let request_line = gateway.wait_for_log(
        |line| line["message"] == "request" && line["route"] == "/orders" && line["method"] == "POST",
        Duration::from_secs(5),
    );
    assert_eq!(request_line["trace_id"], Value::String(trace.clone()), "{request_line}");
    let placed = orders.wait_for_log(|line| line["message"] == "order placed", Duration::from_secs(5));
    assert_eq!(placed["trace_id"], Value::String(trace.clone()), "{placed}");

    // Nothing secret in any process's log.
    for (name, process) in [("gateway", &gateway), ("users", &users), ("inventory", &inventory), ("orders", &orders)] {
        let log = process.log_text();
        assert!(!log.contains(PASSWORD), "the {name} log holds the password");
        assert!(!log.contains(&session), "the {name} log holds the session id");
        assert!(!log.contains(shop_testkit::TEST_SECRET), "the {name} log holds the internal secret");
    }

    // A secret in a query string (a form that once submitted by GET, a
    // careless client) is recorded nowhere: neither in the request's log line
    // nor in any span's attributes, whatever the route and its answer.
    let secret = format!("hunter2-{}", uuid::Uuid::new_v4().simple());
    let asked = [
        (reqwest::Method::GET, format!("/products?password={secret}")),
        (reqwest::Method::GET, format!("/users/login?next=%2F&password={secret}")),
        (reqwest::Method::POST, format!("/users/login?password={secret}")),
        (reqwest::Method::GET, format!("/users/1/edit?name=x&password={secret}")),
        (reqwest::Method::GET, format!("/no/such/page?password={secret}")),
        // A password reset link's token is a secret in the path itself.
        (reqwest::Method::GET, format!("/users/password-reset/{secret}")),
        (reqwest::Method::POST, format!("/users/password-reset/{secret}")),
    ];
    for (method, path) in &asked {
        web.client.request(method.clone(), format!("{}{path}", web.base)).send().await.expect("an answer");
    }
    gateway.wait_for_log(
        |line| line["message"] == "request" && line["route"] == "unmatched" && line["status"] == 404,
        Duration::from_secs(5),
    );
    eventually("the spans of the requests with a secret", Duration::from_secs(20), || {
        let spans = receiver.spans();
        async move {
            let answered = |name: &str| spans.iter().any(|span| span.service == "shop-gateway" && span.name == name);
            (answered("GET /products")
                && answered("POST /users/login")
                && answered("GET /users/{id}/edit")
                && answered("POST /users/password-reset/{token}")
                && answered("GET unmatched"))
            .then_some(())
        }
    })
    .await;
    assert!(!gateway.log_text().contains(&secret), "the gateway's log holds a query string's secret");
    for span in receiver.spans() {
        for attribute in &span.attributes {
            assert!(!attribute.contains(&secret), "{} span {:?} records {attribute}", span.service, span.name);
        }
    }

    // A failure of the shop's own names its trace, for a customer to quote:
    // with the order service gone, the list of orders is a 503 that says
    // which trace holds the story, and the gateway's log line has the id.
    let mut orders = orders;
    orders.kill_hard();
    let failed = web.json(reqwest::Method::GET, "/orders", Value::Null).await;
    assert_eq!(failed.status(), 503);
    let problem = failed.json::<Value>().await.expect("a problem");
    let reference = problem["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a trace id in {problem}; the gateway's log:\n{}", gateway.log_text()))
        .to_owned();
    let logged = gateway.wait_for_log(
        |line| line["message"] == "request failed" && line["trace_id"] == reference.as_str(),
        Duration::from_secs(5),
    );
    assert_eq!(logged["status"], 503, "{logged}");
    let page = web.client.get(format!("{}/orders", web.base)).send().await.expect("an answer");
    assert_eq!(page.status(), 503);
    assert!(page.text().await.expect("a page").contains("If you tell us about this, quote"));
    stream.delete().await;
}

#[test]
fn healthcheck_answers_for_a_running_process_and_fails_for_a_missing_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = Process::start(shop(dir.path()), "gateway (HTTP) listening");
    let check = |target: &str| {
        Command::new(support::SHOP).args(["healthcheck", target]).output().expect("healthcheck runs").status.success()
    };
    assert!(check(&format!("{}/healthz", running.addresses.gateway())));
    assert!(check(&running.addresses.users().replace("http://", "grpc://")));
    assert!(check(&running.addresses.orders().replace("http://", "grpc://")));
    assert!(!check("grpc://127.0.0.1:9"), "nothing listens on the discard port");
    assert!(!check(&format!("{}/no-such-page", running.addresses.gateway())));
    assert!(!check("ftp://example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_cannot_mint_metric_series() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = Process::start(shop(dir.path()), "gateway (HTTP) listening");
    let client = reqwest::Client::new();
    let gateway = running.addresses.gateway();
    for method in ["XYZZY", "FOO1"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        client.request(method, format!("{gateway}/")).send().await.expect("an answer");
    }
    // Services and methods that are not there, on a service's own port.
    let channel = tonic::transport::Endpoint::from_shared(running.addresses.users())
        .expect("a URL")
        .connect()
        .await
        .expect("a connection");
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in ["/evil.Svc/A1", "/shop.users.v1.UserService/NoSuchMethod"] {
        grpc.ready().await.expect("ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        let answer = grpc
            .unary::<(), (), _>(tonic::Request::new(()), path, tonic_prost::ProstCodec::default())
            .await
            .expect_err("no such method");
        assert_eq!(answer.code(), tonic::Code::Unimplemented);
    }

    let metrics = client.get(running.addresses.metrics()).send().await.expect("metrics").text().await.expect("text");
    for minted in ["XYZZY", "FOO1", "evil", "A1", "NoSuchMethod"] {
        assert!(!metrics.contains(minted), "{minted} became a label:\n{metrics}");
    }
    assert!(metrics.contains(r#"method="_OTHER""#), "{metrics}");
    assert!(metrics.contains(r#"grpc_service="unknown",grpc_method="unknown""#), "{metrics}");
    assert!(metrics.contains(r#"grpc_service="shop.users.v1.UserService",grpc_method="unknown""#), "{metrics}");
}
