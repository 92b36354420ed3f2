//! `shop.inventory.v1.InventoryService` over the store. Conversions to
//! protobuf live at the bottom.

use shop_events::Wake;
use shop_grpc::identity::{Caller, Identity};
use shop_proto::inventory::v1 as pb;
use shop_proto::inventory::v1::inventory_service_server::{self, InventoryServiceServer};
use shop_proto::time::from_unix_ms;
use shop_storage::{Db, Page};
use tonic::{Request, Response, Status};

use crate::domain::{
    Description, NewProduct, Product, ProductChanges, ProductName, ReservedItem, parse_id, parse_ids, parse_price,
    parse_stock, parse_stock_delta,
};
use crate::{InventoryError, domain, store};

#[derive(Clone)]
pub struct InventoryService {
    db: Db,
    outbox: Wake,
    low_stock: i64,
    identity: Identity,
}

/// Stock at or below this raises `stock.low`, unless configured otherwise.
pub const DEFAULT_LOW_STOCK: i64 = 5;

impl InventoryService {
    pub fn new(db: Db) -> Self {
        Self { db, outbox: Wake::default(), low_stock: DEFAULT_LOW_STOCK, identity: Identity::random() }
    }

    /// Checks callers' signed identities with the shop's shared secret.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Stock moves only for the order service (and admins).
    fn require_stock_keeper<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = self.identity.caller(request)?;
        caller.require(caller.is_admin() || caller == Caller::Service("orders".into()))
    }

    /// Wakes this relay when an event is written.
    pub fn with_outbox(mut self, wake: Wake) -> Self {
        self.outbox = wake;
        self
    }

    /// Stock at or below `threshold` raises `stock.low`.
    pub fn with_low_stock_threshold(mut self, threshold: i64) -> Self {
        self.low_stock = threshold;
        self
    }

    pub fn into_server(self) -> InventoryServiceServer<Self> {
        InventoryServiceServer::new(self)
    }
}

fn parse_new_product(request: pb::CreateProductRequest) -> Result<NewProduct, InventoryError> {
    Ok(NewProduct {
        name: ProductName::parse(&request.name)?,
        description: Description::parse(&request.description)?,
        price_minor: parse_price(request.price_minor)?,
        stock: parse_stock(request.stock)?,
    })
}

fn parse_changes(request: &pb::UpdateProductRequest) -> Result<ProductChanges, InventoryError> {
    Ok(ProductChanges {
        name: request.name.as_deref().map(ProductName::parse).transpose()?,
        description: request.description.as_deref().map(Description::parse).transpose()?,
        price_minor: request.price_minor.map(parse_price).transpose()?,
        stock_delta: request.stock_delta.map(parse_stock_delta).transpose()?,
    })
}

fn parse_page(page: u32, size: u32) -> Result<Page, InventoryError> {
    Page::new(page, size).map_err(|e| {
        let field = match e {
            shop_storage::PageError::Size => "page_size",
            shop_storage::PageError::Number => "page",
        };
        InventoryError::invalid(field, e.to_string())
    })
}

fn parse_stock_request(items: &[pb::StockItem]) -> Result<domain::OrderLines, InventoryError> {
    Ok(domain::OrderLines::parse(items.iter().map(|item| (item.product_id, item.quantity)))?)
}

#[tonic::async_trait]
impl inventory_service_server::InventoryService for InventoryService {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let product = parse_new_product(request.into_inner())?;
        let product = store::insert(&self.db, &product).await?;
        self.outbox.wake();
        tracing::info!(product_id = product.id, "product created");
        Ok(Response::new(pb::CreateProductResponse { product: Some(product.into()) }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let id = parse_id("id", request.into_inner().id)?;
        let product = store::get(&self.db, id).await?;
        Ok(Response::new(pb::GetProductResponse { product: Some(product.into()) }))
    }

    async fn get_products(
        &self,
        request: Request<pb::GetProductsRequest>,
    ) -> Result<Response<pb::GetProductsResponse>, Status> {
        let ids = parse_ids(&request.into_inner().ids)?;
        let products = store::get_many(&self.db, &ids).await?;
        Ok(Response::new(pb::GetProductsResponse { products: products.into_iter().map(Into::into).collect() }))
    }

    async fn load_demo_catalogue(
        &self,
        request: Request<pb::LoadDemoCatalogueRequest>,
    ) -> Result<Response<pb::LoadDemoCatalogueResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let added = crate::demo::load(&self.db).await?;
        if added > 0 {
            self.outbox.wake();
        }
        Ok(Response::new(pb::LoadDemoCatalogueResponse { added }))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let request = request.into_inner();
        let id = parse_id("id", request.id)?;
        let changes = parse_changes(&request)?;
        let product = store::update(&self.db, id, &changes, self.low_stock).await?;
        self.outbox.wake();
        Ok(Response::new(pb::UpdateProductResponse { product: Some(product.into()) }))
    }

    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductRequest>,
    ) -> Result<Response<pb::DeleteProductResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let id = parse_id("id", request.into_inner().id)?;
        store::delete(&self.db, id).await?;
        self.outbox.wake();
        tracing::info!(product_id = id, "product deleted");
        Ok(Response::new(pb::DeleteProductResponse {}))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let request = request.into_inner();
        let page = parse_page(request.page, request.page_size)?;
        let (products, total) = store::list(&self.db, page).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: products.into_iter().map(Into::into).collect(),
            total,
            page: page.number,
            page_size: page.size,
        }))
    }

    async fn reserve_stock(
        &self,
        request: Request<pb::ReserveStockRequest>,
    ) -> Result<Response<pb::ReserveStockResponse>, Status> {
        self.require_stock_keeper(&request)?;
        let request = request.into_inner();
        let order_id = parse_id("order_id", request.order_id)?;
        let wanted = parse_stock_request(&request.items)?;
        let items = store::reserve(&self.db, order_id, &wanted, self.low_stock).await?;
        self.outbox.wake();
        Ok(Response::new(pb::ReserveStockResponse { order_id, items: items.into_iter().map(Into::into).collect() }))
    }

    async fn release_stock(
        &self,
        request: Request<pb::ReleaseStockRequest>,
    ) -> Result<Response<pb::ReleaseStockResponse>, Status> {
        self.require_stock_keeper(&request)?;
        let order_id = parse_id("order_id", request.into_inner().order_id)?;
        let released = store::release(&self.db, order_id).await?;
        self.outbox.wake();
        Ok(Response::new(pb::ReleaseStockResponse { released }))
    }
}

impl From<Product> for pb::Product {
    fn from(product: Product) -> Self {
        Self {
            id: product.id,
            name: product.name,
            description: product.description,
            price_minor: product.price_minor,
            stock: product.stock,
            created_at: Some(from_unix_ms(product.created_at_ms)),
            updated_at: Some(from_unix_ms(product.updated_at_ms)),
        }
    }
}

impl From<ReservedItem> for pb::ReservedItem {
    fn from(item: ReservedItem) -> Self {
        Self {
            product_id: item.product_id,
            product_name: item.product_name,
            quantity: item.quantity,
            unit_price_minor: item.unit_price_minor,
        }
    }
}
