//! Test helpers: each test gets its own database (a SQLite file in a temp
//! directory, or a uniquely named PostgreSQL database dropped afterwards,
//! even when the test panics), and servers bound to random ports.

pub mod chaos;

use std::future::Future;

use shop_storage::sqlx::{self, Executor};
use shop_storage::{ConnectOptions, Db, Migrations};
use tokio::net::TcpListener;

/// The PostgreSQL server tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("SHOP_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated database that disappears with this value.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend, migrations: &Migrations) -> Self {
        let (url, dir, postgres_name) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                (format!("sqlite://{}/test.db", dir.path().display()), Some(dir), None)
            }
            Backend::Postgres => {
                let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
                let server = postgres_server_url();
                let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await.unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL is needed at {server} (set SHOP_TEST_POSTGRES_URL, or run ops/test.sh, which starts it): {error}"
                    )
                });
                admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("CREATE DATABASE");
                admin.close().await;
                (format!("{server}/{name}"), None, Some(name))
            }
        };
        let options = ConnectOptions { create_missing: backend == Backend::Sqlite, ..ConnectOptions::new(url.clone()) };
        let db = Db::connect_and_migrate(&options, migrations).await.expect("a migrated test database");
        Self { db, url, _dir: dir, postgres_name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async code (and maybe during a panic): use a
        // runtime of our own on a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&format!("{}/postgres", postgres_server_url())).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.execute(sqlx::AssertSqlSafe(sql)).await.ok()?;
                admin.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop a test database; ops/test.sh removes leftovers");
        }
    }
}

/// A listener on a random loopback port, and the URL clients use for it.
/// Bind first, then connect: no sleeping until the server is up.
pub async fn loopback() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("a bound address"));
    (listener, url)
}

/// Stops a server spawned for a test when dropped.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Runs `serve(shutdown)` in the background until this value is dropped.
    pub fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(shutdown));
        Self { stop: Some(stop), task }
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Declares each listed `async fn(Backend)` as two tests, one per backend:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Asserts that a call failed with `code` and a message containing `needle`
/// (the field it names, say).
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            assert!(status.message().contains(needle), "{:?} does not mention {needle:?}", status.message());
        }
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
    }
}

/// Asserts that a call was refused with `code` and the stable `reason`
/// (read as a client reads it, from the status details), and returns the
/// status for checks of its metadata and field violations.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: shop_grpc::rich_error::ErrorReason,
) -> tonic::Status {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            assert_eq!(shop_grpc::rich_error::reason(&status), Some(reason), "unexpected reason: {status:?}");
            status
        }
        Ok(value) => panic!("expected {code:?} ({reason:?}), got {value:?}"),
    }
}

/// The secret test services check callers with, and test clients sign with.
/// (`shop` processes started by tests get it as `SHOP_INTERNAL_SECRET`.)
pub const TEST_SECRET: &str = "the shop's test secret, never a real one";

pub fn identity() -> shop_grpc::identity::Identity {
    shop_grpc::identity::Identity::new(TEST_SECRET.as_bytes())
}

/// The admin most tests act as (user 99, which owns nothing).
pub fn admin() -> shop_grpc::identity::Caller {
    shop_grpc::identity::Caller::User { id: 99, admin: true }
}

/// Signs every call of a client as `caller`.
pub fn sign_as(caller: shop_grpc::identity::Caller) -> shop_grpc::identity::SignAs {
    shop_grpc::identity::SignAs::fixed(identity(), caller)
}

/// A connection to a test server.
pub async fn connect(url: &str) -> shop_grpc::observe::Observed<tonic::transport::Channel> {
    shop_grpc::observe::client(
        tonic::transport::Endpoint::from_shared(url.to_owned()).expect("a URL").connect().await.expect("a connection"),
    )
}
