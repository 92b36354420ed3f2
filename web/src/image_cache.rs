//! Picture bytes kept in the gateway's memory: a variant's hash names its
//! bytes for ever, so a copy never goes stale and needs no invalidation,
//! only a bound on the memory it takes.

use std::sync::Arc;

use axum::body::Bytes;
use shop_proto::inventory::v1 as pb;

use crate::error::AppError;
use crate::services::Clients;

/// At most this many bytes of pictures are kept.
const CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Image {
    pub content_type: String,
    pub data: Bytes,
}

#[derive(Clone)]
pub struct ImageCache {
    images: moka::future::Cache<String, Arc<Image>>,
}

impl Default for ImageCache {
    fn default() -> Self {
        let images = moka::future::Cache::builder()
            .weigher(|_, image: &Arc<Image>| u32::try_from(image.data.len()).unwrap_or(u32::MAX))
            .max_capacity(CAPACITY_BYTES)
            .build();
        Self { images }
    }
}

impl ImageCache {
    /// The variant named `hash`, from memory or from inventory; concurrent
    /// requests for one picture make one call.
    pub async fn get(&self, clients: &Clients, hash: &str) -> Result<Arc<Image>, AppError> {
        self.images
            .try_get_with(hash.to_owned(), async {
                let found = clients.inventory().get_image(pb::GetImageRequest { hash: hash.to_owned() }).await?;
                let found = found.into_inner();
                Ok::<_, AppError>(Arc::new(Image { content_type: found.content_type, data: Bytes::from(found.data) }))
            })
            .await
            .map_err(|error| match Arc::try_unwrap(error) {
                Ok(error) => error,
                // Another request waiting on the same call: the same answer.
                Err(shared) => match &*shared {
                    AppError::NotFound(message) => AppError::NotFound(message.clone()),
                    AppError::Unavailable(message) => AppError::Unavailable(message.clone()),
                    other => AppError::Internal(other.to_string()),
                },
            })
    }
}
