//! Every setting of the `shop` binary, from flags, environment variables and
//! a `.env` file (in that order of precedence), each explained by `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "shop",
    version,
    about = "An e-commerce platform: users, inventory and orders behind an HTMX gateway."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    /// What to run; `all` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The three services and the gateway in one process (the default).
    All,
    /// The user service alone (gRPC).
    Users,
    /// The inventory service alone (gRPC).
    Inventory,
    /// The order service alone (gRPC); reaches inventory at --inventory-url.
    Orders,
    /// The HTTP gateway alone; reaches the services at their --*-url.
    Gateway,
    /// The emails alone: consumes order and user events from NATS (needs
    /// --nats-url) and reads customers and orders at --users-url and
    /// --orders-url.
    Notifications,
    /// Applies database migrations and exits (they also run at start).
    Migrate {
        /// Which service's database; all three and the notifications' when omitted.
        #[arg(value_enum)]
        service: Option<Service>,
    },
    /// Prints the shop's events as they arrive on NATS, one JSON object per
    /// line (needs --nats-url). Reads nothing from the stream's position:
    /// a watcher of its own.
    TailEvents {
        /// Start with every event still in the stream, not only new ones.
        #[arg(long)]
        all: bool,
    },
    /// Prints a signed caller identity, valid for a minute, for calling a
    /// service directly (grpcurl -H "x-shop-caller: $(shop caller-token ...)").
    /// Needs the shop's SHOP_INTERNAL_SECRET.
    CallerToken {
        /// The user to act as.
        #[arg(long)]
        user: i64,
        /// Act as an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Exits 0 when the process at TARGET is healthy, 1 otherwise: for
    /// container health checks (the image has no curl or grpcurl).
    /// TARGET is http://HOST:PORT/PATH (a 2xx answer) or grpc://HOST:PORT
    /// (grpc.health.v1 says SERVING).
    Healthcheck {
        target: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Makes an existing account an admin (register it first). Admins are
    /// never made through the web.
    MakeAdmin {
        /// The account's email address.
        email: String,
    },
    /// Fills an empty catalogue with a few dozen demo products, to try the
    /// shop (a catalogue with products is left alone).
    DemoCatalogue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    Users,
    Inventory,
    Orders,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Inventory => "inventory",
            Self::Orders => "orders",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct Config {
    /// Directory of the SQLite files used when no PostgreSQL is configured.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// PostgreSQL server (e.g. postgres://shop:secret@localhost:5432); each
    /// service then uses its own database on it, named below. Unset: SQLite.
    #[arg(long, env = "SHOP_POSTGRES_URL", global = true)]
    pub postgres_url: Option<String>,
    /// The user service's database on --postgres-url.
    #[arg(long, env = "POSTGRES_DB_USERS", default_value = "users", global = true)]
    pub postgres_db_users: String,
    /// The inventory service's database on --postgres-url.
    #[arg(long, env = "POSTGRES_DB_INVENTORY", default_value = "inventory", global = true)]
    pub postgres_db_inventory: String,
    /// The order service's database on --postgres-url.
    #[arg(long, env = "POSTGRES_DB_ORDERS", default_value = "orders", global = true)]
    pub postgres_db_orders: String,
    /// PostgreSQL connections per service.
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 10, global = true)]
    pub db_max_connections: u32,

    /// Where the gateway listens for HTTP.
    #[arg(long, env = "SHOP_HTTP_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub http_addr: SocketAddr,
    /// Where the user service listens for gRPC.
    #[arg(long, env = "SHOP_USERS_ADDR", default_value = "127.0.0.1:50051", global = true)]
    pub users_addr: SocketAddr,
    /// Where the inventory service listens for gRPC.
    #[arg(long, env = "SHOP_INVENTORY_ADDR", default_value = "127.0.0.1:50052", global = true)]
    pub inventory_addr: SocketAddr,
    /// Where the order service listens for gRPC.
    #[arg(long, env = "SHOP_ORDERS_ADDR", default_value = "127.0.0.1:50053", global = true)]
    pub orders_addr: SocketAddr,

    /// How other processes reach the user service (default: http://<users-addr>).
    /// Ignored by `shop all`, which uses the address it bound.
    #[arg(long, env = "SHOP_USERS_URL", global = true)]
    pub users_url: Option<String>,
    /// How other processes reach the inventory service.
    #[arg(long, env = "SHOP_INVENTORY_URL", global = true)]
    pub inventory_url: Option<String>,
    /// How other processes reach the order service.
    #[arg(long, env = "SHOP_ORDERS_URL", global = true)]
    pub orders_url: Option<String>,

    /// Redis for the gateway's sessions and cache (e.g. redis://127.0.0.1:6379).
    /// Unset: both in memory, which suits one gateway process.
    #[arg(long, env = "SHOP_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// The Redis logical database (0-15) that holds only the gateway's sessions,
    /// so they can be counted; the cache stays in the URL's own database.
    #[arg(long, env = "SHOP_SESSION_REDIS_DB", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=15), global = true)]
    pub session_redis_db: u8,
    /// Prefix of every cache key in Redis.
    #[arg(long, env = "SHOP_CACHE_PREFIX", default_value = "shop:cache:", global = true)]
    pub cache_prefix: String,
    /// Seconds a cached profile or product is kept.
    #[arg(long, env = "SHOP_CACHE_TTL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400), global = true)]
    pub cache_ttl_secs: u64,
    /// Sign-in and registration attempts let through a minute from one client
    /// address (behind a proxy, set --trusted-proxies so that each client has
    /// its own); with --redis-url, counted once for every gateway replica.
    #[arg(long, env = "SHOP_SIGNIN_LIMIT_PER_ADDRESS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub signin_limit_per_address: u32,
    /// Sign-in attempts let through a quarter of an hour for one account.
    #[arg(long, env = "SHOP_SIGNIN_LIMIT_PER_ACCOUNT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub signin_limit_per_account: u32,
    /// The proxies in front of the gateway (addresses or CIDRs, comma-separated,
    /// e.g. 10.0.0.0/8,127.0.0.1): only from these is the client read from the
    /// forwarding header (its right-most address that is not one of them).
    /// Empty: the TCP peer is the client and forwarding headers are ignored.
    #[arg(long, env = "SHOP_TRUSTED_PROXIES", default_value = "", value_parser = parse_trusted_proxies, global = true)]
    pub trusted_proxies: shop_web::client_address::TrustedProxies,
    /// The header the trusted proxies name the client in: x-forwarded-for or
    /// forwarded (RFC 7239). The other is a client's to write and is ignored.
    #[arg(long, env = "SHOP_CLIENT_ADDRESS_HEADER", default_value = "x-forwarded-for", value_parser = parse_forwarded_header, global = true)]
    pub client_address_header: shop_web::client_address::ForwardedHeader,
    /// The shop's name, on confirmation pages and packing slips.
    #[arg(long, env = "SHOP_NAME", default_value = "Shop", global = true)]
    pub shop_name: String,
    /// Where customers send a bank transfer (e.g. "IBAN FR76 3000 6000 0112 3456 7890 189, BIC AGRIFRPP,
    /// Tea & Co"), shown with the amount and the order's reference. Unset: customers are told to ask.
    #[arg(long, env = "SHOP_BANK_DETAILS", global = true)]
    pub bank_details: Option<String>,
    /// Mark the session cookie Secure; set it when the shop is served over HTTPS.
    #[arg(long, env = "SHOP_COOKIE_SECURE", default_value_t = false, global = true)]
    pub cookie_secure: bool,
    /// Minutes of inactivity after which a session ends.
    #[arg(long, env = "SHOP_SESSION_IDLE_MINUTES", default_value_t = 720, value_parser = clap::value_parser!(u64).range(1..=525_600), global = true)]
    pub session_idle_minutes: u64,

    /// NATS server with JetStream for events (e.g. nats://127.0.0.1:4222).
    /// Unset: `shop all` uses an in-process bus; a single service keeps its
    /// events in its outbox until NATS is configured.
    #[arg(long, env = "SHOP_NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// The JetStream stream holding the shop's events (created if missing).
    #[arg(long, env = "SHOP_NATS_STREAM", default_value = "SHOP_EVENTS", global = true)]
    pub nats_stream: String,
    /// Events are published on <prefix>.<type>, e.g. shop.order.created.
    #[arg(long, env = "SHOP_NATS_SUBJECT_PREFIX", default_value = "shop", global = true)]
    pub nats_subject_prefix: String,
    /// Stock at or below this raises a stock.low event.
    #[arg(long, env = "SHOP_LOW_STOCK_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(i64).range(0..), global = true)]
    pub low_stock_threshold: i64,
    /// Where Prometheus scrapes /metrics (one registry for the whole process).
    #[arg(long, env = "SHOP_METRICS_ADDR", default_value = "127.0.0.1:2112", global = true)]
    pub metrics_addr: SocketAddr,

    /// Hours after signing in at which a session ends, however busy.
    #[arg(long, env = "SHOP_SESSION_LIFETIME_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=8760), global = true)]
    pub session_lifetime_hours: u64,

    /// The secret every process of this shop signs and checks callers'
    /// identities with (16 characters at least). Needed when the services run
    /// as separate processes; `shop all` makes one of its own when unset.
    #[arg(long, env = "SHOP_INTERNAL_SECRET", hide_env_values = true, global = true)]
    pub internal_secret: Option<String>,

    /// Seconds between recovery passes over unfinished orders.
    #[arg(long, env = "SHOP_RECOVERY_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub recovery_interval_secs: u64,

    /// The VAT rate included in the shop's prices, as a percentage (e.g. 20,
    /// 5.5): orders record it and show the VAT their total includes.
    #[arg(long, env = "SHOP_VAT_RATE", default_value = "20", value_parser = parse_vat_rate, global = true)]
    pub vat_rate: u32,

    /// Ship orders paid by bank transfer before the money has arrived (by
    /// default an admin marks them paid first).
    #[arg(long, env = "SHOP_SHIP_UNPAID_BANK_TRANSFER", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub ship_unpaid_bank_transfer: bool,

    /// Seconds to let requests in flight finish after Ctrl-C or SIGTERM.
    #[arg(long, env = "SHOP_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub shutdown_timeout_secs: u64,

    /// Log lines as readable text or as JSON objects.
    #[arg(long, env = "SHOP_LOG_FORMAT", value_enum, default_value = "pretty", global = true)]
    pub log_format: LogFormat,

    /// Also push log lines (as JSON) to this Loki, e.g. http://loki:3100;
    /// batched in the background. Traces are exported when the standard
    /// OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over gRPC, e.g. http://tempo:4317).
    #[arg(long, env = "SHOP_LOKI_URL", global = true)]
    pub loki_url: Option<String>,

    /// SMTP server for the shop's emails: smtp://HOST:PORT (plain; add
    /// ?tls=required for STARTTLS) or smtps://USER:PASSWORD@HOST (TLS).
    /// Unset: each email is written as an .eml file under <data dir>/mail/.
    #[arg(long, env = "SHOP_SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,
    /// Seconds an SMTP connection, or one read or write on it, may take.
    #[arg(long, env = "SHOP_SMTP_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub smtp_timeout_secs: u64,
    /// The From of the shop's emails.
    #[arg(long, env = "SHOP_MAIL_FROM", default_value = "Shop <shop@localhost>", global = true)]
    pub mail_from: String,
    /// The shop's address as customers reach it; links in emails start with it.
    #[arg(long, env = "SHOP_PUBLIC_URL", default_value = "http://localhost:8080", global = true)]
    pub public_url: String,
    /// The notifications component's database (which events' emails went
    /// out). Unset: a database named `notifications` on --postgres-url, or
    /// <data dir>/notifications.db.
    #[arg(long, env = "SHOP_NOTIFICATIONS_DATABASE_URL", hide_env_values = true, global = true)]
    pub notifications_database_url: Option<String>,
}

fn parse_trusted_proxies(text: &str) -> Result<shop_web::client_address::TrustedProxies, String> {
    text.parse().map_err(|error: shop_web::client_address::NotAnAddress| error.to_string())
}

fn parse_forwarded_header(text: &str) -> Result<shop_web::client_address::ForwardedHeader, String> {
    text.parse()
}

/// A VAT percentage ("20", "5.5") in hundredths of a percent.
fn parse_vat_rate(text: &str) -> Result<u32, String> {
    shop_orders::domain::parse_vat_rate(text)
        .ok_or_else(|| "a percentage from 0 to 100 with at most two decimals, e.g. 20 or 5.5".to_owned())
}

impl Config {
    /// The order service's shop settings.
    pub fn order_settings(&self) -> shop_orders::domain::Settings {
        shop_orders::domain::Settings {
            vat_rate_bp: self.vat_rate,
            ship_unpaid_bank_transfer: self.ship_unpaid_bank_transfer,
        }
    }

    /// The database URL of one service: its PostgreSQL database when a
    /// server is configured, else a SQLite file under the data directory.
    pub fn database_url(&self, service: Service) -> String {
        match &self.postgres_url {
            Some(server) => {
                let database = match service {
                    Service::Users => &self.postgres_db_users,
                    Service::Inventory => &self.postgres_db_inventory,
                    Service::Orders => &self.postgres_db_orders,
                };
                with_database(server, database)
            }
            None => format!("sqlite://{}/{}.db", self.data_dir.display(), service.name()),
        }
    }

    pub fn service_url(&self, service: Service) -> String {
        let (url, addr) = match service {
            Service::Users => (&self.users_url, self.users_addr),
            Service::Inventory => (&self.inventory_url, self.inventory_addr),
            Service::Orders => (&self.orders_url, self.orders_addr),
        };
        url.clone().unwrap_or_else(|| format!("http://{addr}"))
    }

    /// The notifications component's database: the configured URL, else
    /// one beside the services' (PostgreSQL or a SQLite file).
    pub fn notifications_database_url(&self) -> String {
        match (&self.notifications_database_url, &self.postgres_url) {
            (Some(url), _) => url.clone(),
            (None, Some(server)) => with_database(server, "notifications"),
            (None, None) => format!("sqlite://{}/notifications.db", self.data_dir.display()),
        }
    }

    /// Where emails are written as .eml files when no SMTP server is set.
    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }
}

/// Replaces the database in a PostgreSQL URL, keeping credentials and query.
pub fn with_database(server: &str, database: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{}", &base[..authority_end], database);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The URL with its password replaced, for logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(with_database("postgres://u:p@h:5432", "users"), "postgres://u:p@h:5432/users");
        assert_eq!(with_database("postgres://u@h/postgres", "orders"), "postgres://u@h/orders");
        assert_eq!(
            with_database("postgres://h/x?sslmode=require", "inventory"),
            "postgres://h/inventory?sslmode=require"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://shop:s3cret@db:5432/users"), "postgres://shop:***@db:5432/users");
        assert_eq!(redact("postgres://shop@db/users"), "postgres://shop@db/users");
        assert_eq!(redact("sqlite://data/users.db"), "sqlite://data/users.db");
    }

    #[test]
    fn defaults_run_embedded() {
        let cli = Cli::parse_from(["shop"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.config.database_url(Service::Orders), "sqlite://data/orders.db");
        assert_eq!(cli.config.service_url(Service::Inventory), "http://127.0.0.1:50052");
        let cli = Cli::parse_from(["shop", "users", "--postgres-url", "postgres://p@h"]);
        assert_eq!(cli.config.database_url(Service::Users), "postgres://p@h/users");
        assert_eq!(cli.config.notifications_database_url(), "postgres://p@h/notifications");
        let cli = Cli::parse_from(["shop", "notifications"]);
        assert_eq!(cli.config.notifications_database_url(), "sqlite://data/notifications.db");
        assert_eq!(cli.config.mail_dir(), PathBuf::from("data/mail"));
        assert!(cli.config.smtp_url.is_none());
    }
}
