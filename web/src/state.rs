//! What every request of the gateway shares, behind one `Arc`: cloning the
//! state for a request is one reference count, so extractors and
//! middleware take the whole `AppState` and read the parts they need
//! (no per-part `FromRef` copies are needed).

use std::sync::Arc;

use crate::cache::Cache;
use crate::catalog::Catalog;
use crate::client_address::TrustedProxies;
use crate::events::Live;
use crate::image_cache::ImageCache;
use crate::profiles::Profiles;
use crate::security::Limits;
use crate::services::{Clients, Services};
use crate::templates::Templates;
use crate::viewer::SessionRules;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub services: Arc<Services>,
    pub templates: Templates,
    /// The data cache the catalogue and profiles read through (its lists'
    /// version also names kept page fragments).
    pub cache: Cache,
    pub catalog: Catalog,
    pub images: ImageCache,
    pub profiles: Profiles,
    pub sessions: SessionRules,
    pub live: Live,
    pub limits: Limits,
    /// What `/readyz` answers.
    pub readiness: crate::readiness::Readiness,
    /// Who the client is behind a proxy (`security::ClientAddress`).
    pub trusted_proxies: TrustedProxies,
    /// `/openapi.json`'s answer.
    pub openapi: axum::body::Bytes,
    pub shop: crate::config::ShopDetails,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// Clients of the services that call as `caller`.
    pub fn clients(&self, caller: shop_grpc::identity::Caller) -> Clients {
        Clients::new(self.0.services.clone(), caller)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
