//! What the gateway is configured with: where the services are, where
//! sessions and the cache live, and how long a session lasts.

use std::time::Duration;

use shop_grpc::identity::Identity;

/// Where the gateway finds the services.
#[derive(Debug, Clone)]
pub struct ServiceUrls {
    pub users: String,
    pub inventory: String,
    pub orders: String,
}

/// Everything the gateway is configured with.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub services: ServiceUrls,
    /// Sessions and the cache live here when set; in memory otherwise.
    pub redis_url: Option<String>,
    /// The Redis logical database that holds only sessions (so they can be
    /// counted); the cache and revocations stay in the URL's own.
    pub session_db: u8,
    /// Put before every cache key, so several shops (or tests) can share a Redis.
    pub cache_prefix: String,
    pub cache_ttl: Duration,
    /// Mark the session cookie `Secure` (set it when served over HTTPS).
    pub cookie_secure: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after signing in, however busy.
    pub session_lifetime: Duration,
    /// Where the shop's events arrive; none, and caches only expire.
    pub bus: Option<shop_events::Bus>,
    /// Signs who each call to a service is for (`SHOP_INTERNAL_SECRET`).
    pub identity: Identity,
    /// What the shop tells its customers about itself.
    pub shop: ShopDetails,
    /// Sign-in and registration attempts let through.
    pub limits: crate::security::LimitSettings,
    /// The proxies whose forwarding header names the client
    /// (`SHOP_TRUSTED_PROXIES`, `SHOP_CLIENT_ADDRESS_HEADER`); none by default.
    pub trusted_proxies: crate::client_address::TrustedProxies,
}

/// The shop's own details, shown on confirmation pages and packing slips.
#[derive(Debug, Clone)]
pub struct ShopDetails {
    /// `SHOP_NAME`.
    pub name: String,
    /// Where a bank transfer goes (`SHOP_BANK_DETAILS`, e.g. "IBAN FR76 …,
    /// BIC …, Tea & Co"); without it, customers are told to ask the shop.
    pub bank_details: Option<String>,
}

impl Default for ShopDetails {
    fn default() -> Self {
        Self { name: "Shop".into(), bank_details: None }
    }
}

impl GatewayConfig {
    pub fn new(services: ServiceUrls) -> Self {
        Self {
            services,
            redis_url: None,
            session_db: 1,
            cache_prefix: "shop:cache:".into(),
            cache_ttl: Duration::from_secs(60),
            shop: ShopDetails::default(),
            limits: crate::security::LimitSettings::default(),
            trusted_proxies: crate::client_address::TrustedProxies::default(),
            cookie_secure: false,
            session_idle: Duration::from_secs(12 * 60 * 60),
            session_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            bus: None,
            identity: Identity::random(),
        }
    }
}
