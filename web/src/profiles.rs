//! User profiles as the gateway reads them, through the cache.
//!
//! The cache only ever answers someone about their own profile: anyone
//! else's (an admin's look, or a customer trying an id) goes to the users
//! service, which decides who may see it.

use shop_proto::users::v1 as pb;

use crate::cache::{Cache, Lookup};
use crate::error::AppError;
use crate::services::Clients;
use crate::views::UserView;

#[derive(Clone)]
pub struct Profiles {
    cache: Cache,
}

fn key(id: i64) -> String {
    format!("user:{id}")
}

impl Profiles {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }

    /// The profile `id`, as `viewer_id` may see it.
    pub async fn get(&self, clients: &Clients, viewer_id: i64, id: i64) -> Result<(UserView, Lookup), AppError> {
        let fetch = || async {
            let user = clients.users().get_user_profile(pb::GetUserProfileRequest { id }).await?.into_inner();
            user.user.map(UserView::from).ok_or(AppError::Missing("users returned no user"))
        };
        if id == viewer_id {
            self.cache.get_or_fetch("user", &key(id), fetch).await
        } else {
            Ok((fetch().await?, Lookup::Miss))
        }
    }

    pub async fn forget(&self, id: i64) {
        self.cache.invalidate(&key(id)).await;
    }
}
