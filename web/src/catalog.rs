//! The catalogue as the gateway reads it: products and pages of products
//! through the cache, the cache's keys for them, and forgetting them.
//!
//! Two invalidations keep the cache fresh, and each has its job (see
//! docs/ARCHITECTURE.md): the gateway that made a change forgets the
//! product at once, so the writer reads its own write on the next request;
//! `product.changed` reaches every replica (this one too, harmlessly), so
//! the others stop serving the old copy. The TTL is only the backstop.

use axum::body::Bytes;
use shop_proto::inventory::v1 as pb;

use crate::cache::{Cache, Lookup};
use crate::error::AppError;
use crate::pager::Pager;
use crate::product_query::ProductQuery;
use crate::services::Clients;
use crate::views::{CategoryView, ProductList, ProductView};

#[derive(Clone)]
pub struct Catalog {
    cache: Cache,
}

async fn fetch_product(clients: &Clients, id: i64) -> Result<ProductView, AppError> {
    let product = clients.inventory().get_product(pb::GetProductRequest { id }).await?.into_inner();
    product.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))
}

fn product_key(id: i64) -> String {
    format!("product:{id}")
}

impl Catalog {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }

    /// One product, from the cache or from inventory.
    pub async fn product(&self, clients: &Clients, id: i64) -> Result<(ProductView, Lookup), AppError> {
        self.cache.get_or_fetch("product", &product_key(id), || fetch_product(clients, id)).await
    }

    /// One product as its JSON, from the cache as it is kept (not decoded
    /// and encoded again) or from inventory: what a JSON client is sent.
    pub async fn product_json(&self, clients: &Clients, id: i64) -> Result<(Bytes, Lookup), AppError> {
        self.cache.get_or_fetch_json("product", &product_key(id), || fetch_product(clients, id)).await
    }

    /// Several products in one call to inventory, today's prices; ids that
    /// name no product (deleted since) are left out.
    pub async fn products(&self, clients: &Clients, ids: Vec<i64>) -> Result<Vec<ProductView>, AppError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = clients.inventory().get_products(pb::GetProductsRequest { ids }).await?.into_inner();
        Ok(found.products.into_iter().map(ProductView::from).collect())
    }

    /// A page of the catalogue as `query` asks (search words, category,
    /// filters, order). An unknown category slug is a 404: a stale link
    /// should say so rather than show everything.
    pub async fn search(&self, clients: &Clients, query: &ProductQuery) -> Result<(ProductList, Lookup), AppError> {
        let category = match query.category.as_str() {
            "" => None,
            slug => Some(
                self.categories(clients)
                    .await?
                    .into_iter()
                    .find(|category| category.slug == slug)
                    .ok_or_else(|| AppError::NotFound("There is no such category.".into()))?,
            ),
        };
        let key = self.list_key(query).await;
        self.cache
            .get_or_fetch("products", &key, || async {
                let request = query.to_request(category.as_ref().map_or(0, |c| c.id));
                let listed = clients.inventory().list_products(request).await?.into_inner();
                let pager =
                    Pager::new("/products", &query.without_page(), &listed.previous_cursor, &listed.next_cursor);
                Ok::<_, AppError>(ProductList {
                    total: listed.total,
                    total_is_lower_bound: listed.total_is_lower_bound,
                    page_size: listed.page_size,
                    next_cursor: listed.next_cursor,
                    previous_cursor: listed.previous_cursor,
                    pager,
                    products: listed.products.into_iter().map(ProductView::from).collect(),
                    searched_for: listed.searched_for,
                    query: query.clone(),
                    category: category.clone(),
                })
            })
            .await
    }

    /// The key `query`'s page is cached under; also names its rendered
    /// fragment (`routes::products::list`). Lists are retired all at once
    /// by moving to a new version; the page's canonical URL names it
    /// (position and size included).
    pub async fn list_key(&self, query: &ProductQuery) -> String {
        let version = self.cache.list_version().await;
        format!("products:v{version}:{}", query.url())
    }

    /// Up to `count` other products of the product's first category.
    pub async fn related(
        &self,
        clients: &Clients,
        product: &ProductView,
        count: u32,
    ) -> Result<Vec<ProductView>, AppError> {
        let Some(category) = product.categories.first() else {
            return Ok(Vec::new());
        };
        let version = self.cache.list_version().await;
        let key = format!("related:v{version}:{}:{}:{count}", product.id, category.id);
        let (related, _) = self
            .cache
            .get_or_fetch("products", &key, || async {
                let request = pb::ListProductsRequest {
                    page_size: count,
                    category_id: category.id,
                    exclude_product_id: product.id,
                    ..Default::default()
                };
                let listed = clients.inventory().list_products(request).await?.into_inner();
                Ok::<_, AppError>(listed.products.into_iter().map(ProductView::from).collect::<Vec<_>>())
            })
            .await?;
        Ok(related)
    }

    /// Every category, by name, with product counts (retired with the lists).
    pub async fn categories(&self, clients: &Clients) -> Result<Vec<CategoryView>, AppError> {
        let version = self.cache.list_version().await;
        let (categories, _) = self
            .cache
            .get_or_fetch("categories", &format!("categories:v{version}"), || async {
                let listed = clients.inventory().list_categories(pb::ListCategoriesRequest {}).await?.into_inner();
                Ok::<_, AppError>(listed.categories.into_iter().map(CategoryView::from).collect::<Vec<_>>())
            })
            .await?;
        Ok(categories)
    }

    /// Forgets a product and every page of products (it changed or went).
    pub async fn forget(&self, id: i64) {
        self.cache.invalidate(&product_key(id)).await;
        self.cache.retire_lists().await;
    }

    /// Forgets products whose stock an order moved, and the pages once.
    pub async fn forget_all(&self, ids: &[i64]) {
        for id in ids {
            self.cache.invalidate(&product_key(*id)).await;
        }
        self.cache.retire_lists().await;
    }

    /// Forgets every page of products (one was added).
    pub async fn forget_lists(&self) {
        self.cache.retire_lists().await;
    }
}
