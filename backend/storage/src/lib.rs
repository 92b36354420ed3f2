//! The relational store every service uses: SQLite files by default,
//! PostgreSQL when a `postgres://` URL is given.
//!
//! Services talk to both through `sqlx::Any` with one set of SQL (numbered
//! `$N` parameters work on both), so one storage implementation and one test
//! suite cover both backends. Dialect differences live in the migrations,
//! which exist once per backend under `migrations/<service>/<backend>/`.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateDatabase, Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Executor, SqlStr};
use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::Instrument;

pub use sqlx;
pub mod cursor;

/// Which database server a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, StorageError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StorageError::UnsupportedUrl)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// One migration file, embedded in the binary with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub struct MigrationFile {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// A service's migrations, embedded from `migrations/<service>/<backend>/<name>.sql`:
///
/// ```ignore
/// pub const MIGRATIONS: Migrations = shop_storage::migrations!("users": 1 => "0001_create_users");
/// ```
#[macro_export]
macro_rules! migrations {
    ($service:literal: $($version:literal => $name:literal),+ $(,)?) => {
        $crate::Migrations {
            postgres: &[$($crate::MigrationFile {
                version: $version,
                description: $name,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/", $service, "/postgres/", $name, ".sql")),
            }),+],
            sqlite: &[$($crate::MigrationFile {
                version: $version,
                description: $name,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/", $service, "/sqlite/", $name, ".sql")),
            }),+],
        }
    };
}

/// A service's migrations for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub postgres: &'static [MigrationFile],
    pub sqlite: &'static [MigrationFile],
}

impl Migrations {
    fn migrator(&self, backend: Backend) -> Migrator {
        let files = match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        };
        Migrator::with_migrations(
            files
                .iter()
                .map(|f| {
                    Migration::new(
                        f.version,
                        Cow::Borrowed(f.description),
                        MigrationType::Simple,
                        SqlStr::from_static(f.sql),
                        false,
                    )
                })
                .collect(),
        )
    }
}

/// Errors of the storage layer. Services turn these into their own errors;
/// the text of a database error is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unsupported database URL: use sqlite:<path> or postgres://...")]
    UnsupportedUrl,
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A connection pool and the backend it reaches.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Whose database this is: the `service` label of its metrics.
    pub service: &'static str,
}

/// Whether `error` says the database cannot be reached now (no connection
/// could be had, or one broke), rather than that it refused a query: the
/// service then answers UNAVAILABLE (the gateway: 503, try again), not
/// INTERNAL.
pub fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // A connection closed while it was being made (a proxy in front
            // of a server that is away answers so): not a query's fault.
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// An error type that can tell a failing database (counted in
/// `shop_db_query_errors_total`) from an answer the caller did not like
/// (not found, a broken rule), which is not a database failure.
pub trait StorageFailure {
    fn is_storage_failure(&self) -> bool;
}

impl StorageFailure for sqlx::Error {
    fn is_storage_failure(&self) -> bool {
        !matches!(self, sqlx::Error::RowNotFound) && violation(self).is_none()
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    /// PostgreSQL pool size. SQLite always uses one connection: it has one
    /// writer anyway, and a single connection never sees `SQLITE_BUSY`.
    pub max_connections: u32,
    /// Create the database (file or PostgreSQL database) when it is missing.
    pub create_missing: bool,
    /// Whose database it is, for metrics and traces.
    pub service: &'static str,
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), max_connections: 10, create_missing: true, service: "shop" }
    }
}

impl Db {
    /// Connects without migrating.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, StorageError> {
        install_default_drivers();
        let backend = Backend::of_url(&options.url)?;
        if options.create_missing && !Any::database_exists(&options.url).await? {
            if let Some(dir) = sqlite_parent_dir(&options.url) {
                std::fs::create_dir_all(dir).map_err(|e| StorageError::Sqlx(sqlx::Error::Io(e)))?;
            }
            Any::create_database(&options.url).await?;
            tracing::info!(backend = backend.name(), "created missing database");
        }
        let pool_options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match backend {
            Backend::Sqlite => {
                pool_options
                    .max_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL keeps readers of other processes (the admin CLI)
                            // out of the writer's way; FKs are off by default.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&options.url)
                    .await?
            }
            Backend::Postgres => pool_options.max_connections(options.max_connections).connect(&options.url).await?,
        };
        Ok(Self { pool, backend, service: options.service })
    }

    /// Connects and applies the service's migrations.
    pub async fn connect_and_migrate(options: &ConnectOptions, migrations: &Migrations) -> Result<Self, StorageError> {
        let db = Self::connect(options).await?;
        db.migrate(migrations).await?;
        Ok(db)
    }

    /// Applies pending migrations. Safe to run from several processes at once
    /// on PostgreSQL (sqlx takes an advisory lock).
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), StorageError> {
        migrations.migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs one storage operation (a query, or a transaction of several) as
    /// a span in the current trace, timed in `shop_db_query_duration_seconds`
    /// by service and operation name.
    pub async fn observe<T, E: StorageFailure>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = tracing::info_span!(
            "db",
            otel.name = %format_args!("{} {operation}", self.service),
            otel.kind = "client",
            db.system.name = self.backend.name(),
            db.namespace = self.service,
            db.operation.name = operation,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let outcome = work.instrument(span.clone()).await;
        metrics::histogram!("shop_db_query_duration_seconds", "service" => self.service, "query" => operation)
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &outcome
            && error.is_storage_failure()
        {
            span.record("error.type", "storage");
            span.record("otel.status_code", "error");
            metrics::counter!("shop_db_query_errors_total", "service" => self.service, "query" => operation)
                .increment(1);
        }
        outcome
    }

    /// Sets the pool gauges every few seconds, until the process ends.
    pub async fn report_pool(self) {
        let max = f64::from(self.pool.options().get_max_connections());
        loop {
            let (size, idle) = (self.pool.size(), u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX));
            metrics::gauge!("shop_db_pool_max_connections", "service" => self.service).set(max);
            metrics::gauge!("shop_db_pool_connections", "service" => self.service, "state" => "idle")
                .set(f64::from(idle));
            metrics::gauge!("shop_db_pool_connections", "service" => self.service, "state" => "busy")
                .set(f64::from(size.saturating_sub(idle)));
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Describes the storage metrics to the registry (their HELP lines).
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "shop_db_query_duration_seconds",
        metrics::Unit::Seconds,
        "Time a storage operation (a query or one transaction) takes, by service and operation."
    );
    metrics::describe_counter!(
        "shop_db_query_errors_total",
        "Storage operations that failed in the database (not found and broken rules are not failures)."
    );
    metrics::describe_gauge!(
        "shop_db_pool_connections",
        "Database connections open, by service and state (idle, busy)."
    );
    metrics::describe_gauge!("shop_db_pool_max_connections", "The most connections a service's pool may open.");
}

fn sqlite_parent_dir(url: &str) -> Option<&std::path::Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
}

/// What a failed statement says about the data, for mapping to client errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Unique,
    Check,
    ForeignKey,
}

/// The constraint a database error violated, if it was one.
pub fn violation(error: &sqlx::Error) -> Option<Violation> {
    let db_error = error.as_database_error()?;
    match db_error.kind() {
        sqlx::error::ErrorKind::UniqueViolation => Some(Violation::Unique),
        sqlx::error::ErrorKind::CheckViolation => Some(Violation::Check),
        sqlx::error::ErrorKind::ForeignKeyViolation => Some(Violation::ForeignKey),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch: how every table stores time, the same
/// way on both backends.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// A validated page request: 1-based page, bounded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    pub const DEFAULT_SIZE: u32 = 20;
    pub const MAX_SIZE: u32 = 100;
    /// Deep enough for any real catalogue, small enough that the offset can
    /// never overflow.
    pub const MAX_NUMBER: u32 = 1_000_000;

    /// `0` means "the default" for both, as in proto3 where unset is zero.
    pub fn new(number: u32, size: u32) -> Result<Self, PageError> {
        let number = if number == 0 { 1 } else { number };
        let size = if size == 0 { Self::DEFAULT_SIZE } else { size };
        if size > Self::MAX_SIZE {
            return Err(PageError::Size);
        }
        if number > Self::MAX_NUMBER {
            return Err(PageError::Number);
        }
        Ok(Self { number, size })
    }

    pub fn limit(self) -> i64 {
        i64::from(self.size)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page_size must be between 1 and 100")]
    Size,
    #[error("page must be between 1 and 1000000")]
    Number,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_bound() {
        assert_eq!(Page::new(0, 0), Ok(Page { number: 1, size: 20 }));
        assert_eq!(Page::new(3, 10).map(|p| (p.limit(), p.offset())), Ok((10, 20)));
        assert_eq!(Page::new(1, 101), Err(PageError::Size));
        assert_eq!(Page::new(1_000_001, 1), Err(PageError::Number));
        assert_eq!(Page::new(u32::MAX, 100), Err(PageError::Number));
    }

    #[test]
    fn recognises_backends() {
        assert_eq!(Backend::of_url("sqlite:data/users.db").ok(), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/db").ok(), Some(Backend::Postgres));
        assert!(Backend::of_url("mysql://h/db").is_err());
    }

    #[test]
    fn finds_the_directory_of_a_sqlite_file() {
        assert_eq!(sqlite_parent_dir("sqlite://data/users.db?mode=rwc"), Some(std::path::Path::new("data")));
        assert_eq!(sqlite_parent_dir("sqlite:users.db"), None);
    }

    #[tokio::test]
    async fn sqlite_database_is_created_and_migrated() -> Result<(), StorageError> {
        static FILES: &[MigrationFile] =
            &[MigrationFile { version: 1, description: "t", sql: "CREATE TABLE t (x INTEGER NOT NULL)" }];
        let dir = tempfile::tempdir().map_err(|e| StorageError::Sqlx(sqlx::Error::Io(e)))?;
        let url = format!("sqlite://{}/nested/t.db", dir.path().display());
        let migrations = Migrations { postgres: FILES, sqlite: FILES };
        let db = Db::connect_and_migrate(&ConnectOptions::new(url.clone()), &migrations).await?;
        sqlx::query("INSERT INTO t (x) VALUES ($1)").bind(7_i64).execute(&db.pool).await?;
        db.migrate(&migrations).await?; // a second run is a no-op
        let (x,): (i64,) = sqlx::query_as("SELECT x FROM t").fetch_one(&db.pool).await?;
        assert_eq!(x, 7);
        Ok(())
    }
}
