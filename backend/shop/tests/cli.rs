//! The `shop` binary as an operator runs it: `shop all` on free ports,
//! `make-admin` beside it, `migrate` against PostgreSQL, `--help`, and a
//! graceful stop on SIGTERM.

mod support;

use std::process::Command;

use shop_proto::inventory::v1::CreateProductRequest;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::users::v1::user_service_client::UserServiceClient;
use shop_proto::users::v1::{GetUserProfileRequest, RegisterUserRequest, Role};
use support::{Process, SHOP, shop};

#[tokio::test]
async fn shop_all_serves_everything_makes_admins_and_stops_cleanly() {
    let data = tempfile::tempdir().expect("a temp dir");
    let mut started = Process::start(shop(data.path()), "gateway (HTTP) listening");

    let home = reqwest::get(started.addresses.gateway()).await.expect("the gateway answers");
    assert_eq!(home.status(), 200);
    assert!(home.text().await.expect("a body").contains("No products yet"));

    let admin = shop_testkit::sign_as(shop_testkit::admin());
    let mut users = UserServiceClient::with_interceptor(shop_testkit::connect(&started.addresses.users()).await, admin);
    let registration = RegisterUserRequest {
        email: "Admin@Example.com".into(),
        name: "Admin".into(),
        password: "a long enough password".into(),
    };
    let user = users.register_user(registration).await.expect("registered").into_inner().user.expect("a user");
    assert_eq!(user.role(), Role::Customer);

    // A second process on the same SQLite files, while the first one runs.
    let promoted = shop(data.path()).args(["make-admin", "admin@example.com"]).output().expect("make-admin runs");
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stderr));
    assert!(String::from_utf8_lossy(&promoted.stdout).contains("is now an admin"));
    let profile = users.get_user_profile(GetUserProfileRequest { id: user.id }).await.expect("a profile");
    assert_eq!(profile.into_inner().user.map(|u| u.role()), Some(Role::Admin));

    let unknown = shop(data.path()).args(["make-admin", "nobody@example.com"]).output().expect("make-admin runs");
    assert!(!unknown.status.success());
    // One-shot commands log (and fail) on stderr: stdout is their answer.
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("register it first"));
    let malformed = shop(data.path()).args(["make-admin", "not-an-email"]).output().expect("make-admin runs");
    assert!(!malformed.status.success());
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("email"));

    // An operator's signed caller, for calling a service directly.
    let token = shop(data.path()).args(["caller-token", "--user", "1", "--admin"]).output().expect("caller-token runs");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let mut inventory = InventoryServiceClient::new(shop_testkit::connect(&started.addresses.inventory()).await);
    let product = || CreateProductRequest { name: "Teapot".into(), price_minor: 100, stock: 1, ..Default::default() };
    let unsigned = inventory.create_product(product()).await.map_err(|status| status.code());
    assert_eq!(unsigned.err(), Some(tonic::Code::Unauthenticated));
    let mut signed = tonic::Request::new(product());
    signed.metadata_mut().insert("x-shop-caller", token.parse().expect("a metadata value"));
    assert!(inventory.create_product(signed).await.is_ok(), "the token {token:?} is accepted");

    // The process's one registry: RED metrics by route template and gRPC method.
    let metrics = reqwest::get(started.addresses.metrics()).await.expect("metrics").text().await.expect("a body");
    for series in [
        r#"http_requests_total{method="GET",route="/",status="200"} 1"#,
        r#"grpc_server_handled_total{grpc_service="shop.users.v1.UserService",grpc_method="RegisterUser",grpc_code="OK"} 1"#,
        r#"grpc_server_handled_total{grpc_service="shop.users.v1.UserService",grpc_method="GetUserProfile",grpc_code="OK"}"#,
        "http_request_duration_seconds_bucket{",
        "grpc_server_handling_seconds_bucket{",
        r#"shop_outbox_published_total{service="users"}"#,
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}:\n{metrics}");
    }

    drop(users);
    let status = tokio::task::spawn_blocking(move || started.terminate()).await.expect("terminate runs");
    assert!(status.success(), "a graceful stop exits 0");
    for file in ["users.db", "inventory.db", "orders.db"] {
        assert!(data.path().join(file).exists(), "{file} under SHOP_DATA_DIR");
    }
}

#[test]
fn help_explains_every_setting() {
    let help = Command::new(SHOP).arg("--help").output().expect("--help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for setting in [
        "SHOP_DATA_DIR",
        "SHOP_POSTGRES_URL",
        "POSTGRES_DB_USERS",
        "POSTGRES_DB_INVENTORY",
        "POSTGRES_DB_ORDERS",
        "SHOP_HTTP_ADDR",
        "SHOP_USERS_ADDR",
        "SHOP_INVENTORY_URL",
        "SHOP_LOG_FORMAT",
        "make-admin",
        "migrate",
        "caller-token",
        "SHOP_INTERNAL_SECRET",
    ] {
        assert!(help.contains(setting), "--help does not mention {setting}");
    }
}

#[test]
fn a_bad_setting_is_refused_with_a_clear_message() {
    let data = tempfile::tempdir().expect("a temp dir");
    let bad = shop(data.path()).env("SHOP_HTTP_ADDR", "not-an-address").output().expect("shop runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--http-addr"));
    let bad_url = shop(data.path()).env("SHOP_POSTGRES_URL", "mysql://db").arg("migrate").output().expect("shop runs");
    assert!(!bad_url.status.success());
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("unsupported database URL"));
}

#[test]
fn migrate_creates_each_service_database_on_postgresql() {
    let server = shop_testkit::postgres_server_url();
    let prefix = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
    let names = ["users", "inventory", "orders", "notifications"].map(|service| format!("{prefix}_{service}"));
    let data = tempfile::tempdir().expect("a temp dir");
    let migrated = shop(data.path())
        .arg("migrate")
        .env("SHOP_POSTGRES_URL", &server)
        .env("POSTGRES_DB_USERS", &names[0])
        .env("POSTGRES_DB_INVENTORY", &names[1])
        .env("POSTGRES_DB_ORDERS", &names[2])
        .env("SHOP_NOTIFICATIONS_DATABASE_URL", format!("{server}/{}", names[3]))
        .output()
        .expect("migrate runs");
    let stdout = String::from_utf8_lossy(&migrated.stdout).into_owned();
    let log = String::from_utf8_lossy(&migrated.stderr).into_owned();
    let existed = names.clone().map(|name| {
        let query = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
        let found = Command::new("psql").args([&format!("{server}/postgres"), "-XAtc", &query]).output();
        found.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
    });
    let dropped: Vec<_> = names
        .iter()
        .map(|name| {
            Command::new("psql")
                .args([&format!("{server}/postgres"), "-qc", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .status()
                .map(|s| s.success())
        })
        .collect();
    assert!(migrated.status.success(), "{log}");
    assert!(stdout.contains("users: migrated") && stdout.contains("orders: migrated"), "{stdout}");
    // Every database, so one migration Job (ops/kubernetes) does the lot.
    assert!(stdout.contains("notifications: migrated"), "{stdout}");
    assert_eq!(existed, [true; 4], "each of {names:?} was made");
    assert!(dropped.iter().all(|d| matches!(d, Ok(true))), "the test databases are dropped: {dropped:?}");
}

#[test]
fn demo_catalogue_fills_an_empty_shop_once() {
    let data = tempfile::tempdir().expect("a temp dir");
    let first = shop(data.path()).arg("demo-catalogue").output().expect("demo-catalogue runs");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let said = String::from_utf8_lossy(&first.stdout);
    assert_eq!(said.trim(), format!("loaded {} demo products", shop_inventory::demo::PRODUCTS.len()));
    let again = shop(data.path()).arg("demo-catalogue").output().expect("demo-catalogue runs");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing loaded"));
}
