//! The services behind the gateway, reached only as someone: a handler gets
//! clients signed for its viewer (`Ctx::services`),
//! and there is no other way to make one. The channels are shared and
//! connect on first use; a client is made per call, which costs a channel
//! clone, and only when a call is made (a cached read makes none).
//!
//! A client is made for a caller, and that compiles:
//!
//! ```
//! # fn f(state: &shop_web::state::AppState) {
//! let clients = state.clients(shop_grpc::identity::Caller::User { id: 7, admin: false });
//! let _orders = clients.orders();
//! # }
//! ```
//!
//! A client without a caller cannot be written:
//!
//! ```compile_fail
//! # fn f(services: &shop_web::services::Services) {
//! // No method hands out a client, or a channel, without naming the caller.
//! let _ = services.orders();
//! # }
//! ```
//!
//! ```compile_fail
//! # fn f(identity: shop_grpc::identity::Identity) {
//! // Signing needs a caller; there is no "current" or anonymous default.
//! let _ = shop_grpc::identity::SignAs::fixed(identity);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use shop_grpc::breaker::Breaker;
use shop_grpc::identity::{Caller, Guarded, Identity, SignAs};
use shop_grpc::observe::Observed;
use shop_proto::inventory::v1::inventory_service_client::InventoryServiceClient;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::users::v1::user_service_client::UserServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::ServiceUrls;

/// The channels to the three services and the key that signs each call.
pub struct Services {
    users: Observed<Breaker<Channel>>,
    inventory: Observed<Breaker<Channel>>,
    orders: Observed<Breaker<Channel>>,
    identity: Identity,
}

/// Channels connect on first use, so the gateway starts even while a
/// service is still coming up; behind a breaker, so a service that does not
/// answer costs one call its time-out, not every call
/// (docs/resilience.md).
fn channel(url: &str, name: &'static str) -> Result<Observed<Breaker<Channel>>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    Ok(shop_grpc::observe::client(Breaker::new(channel, name)))
}

impl Services {
    pub fn connect(urls: &ServiceUrls, identity: Identity) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            users: channel(&urls.users, "users")?,
            inventory: channel(&urls.inventory, "inventory")?,
            orders: channel(&urls.orders, "orders")?,
            identity,
        })
    }
}

/// Clients of the services that call as one caller, who the services then
/// check and decide for. Owned, so a stream or a spawned task that outlives
/// its request still calls as the right person.
#[derive(Clone)]
pub struct Clients {
    services: Arc<Services>,
    sign: SignAs,
}

/// The largest answer read from inventory (a picture's bytes).
const MAX_IMAGE_MESSAGE: usize = 32 * 1024 * 1024;

impl Clients {
    pub fn new(services: Arc<Services>, caller: Caller) -> Self {
        let sign = SignAs::fixed(services.identity.clone(), caller);
        Self { services, sign }
    }

    pub fn users(&self) -> UserServiceClient<Guarded> {
        UserServiceClient::with_interceptor(self.services.users.clone(), self.sign.clone())
    }

    pub fn inventory(&self) -> InventoryServiceClient<Guarded> {
        // A large picture variant is bigger than tonic's default 4 MiB.
        InventoryServiceClient::with_interceptor(self.services.inventory.clone(), self.sign.clone())
            .max_decoding_message_size(MAX_IMAGE_MESSAGE)
    }

    pub fn orders(&self) -> OrderServiceClient<Guarded> {
        OrderServiceClient::with_interceptor(self.services.orders.clone(), self.sign.clone())
    }
}
