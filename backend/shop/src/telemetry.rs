//! Logging, set up once by `main`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Logs to stdout at `RUST_LOG` (default: info for the shop, warn for
/// libraries), as text or one JSON object per line.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,shop=info,shop_users=info,shop_inventory=info,shop_orders=info,shop_web=info,shop_storage=info,tower_http=info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}
