//! `shop.inventory.v1.InventoryService` over the store. Conversions to
//! protobuf live at the bottom.

use shop_events::Wake;
use shop_grpc::identity::{Caller, Identity};
use shop_proto::inventory::v1 as pb;
use shop_proto::inventory::v1::inventory_service_server::{self, InventoryServiceServer};
use shop_proto::time::from_unix_ms;
use shop_storage::{Db, Page, cursor};
use tonic::{Request, Response, Status, Streaming};

use crate::categories::{Category, CategoryName};
use crate::domain::{
    Description, NewImage, NewProduct, Product, ProductChanges, ProductImage, ProductName, ReservedItem, StoredVariant,
    parse_category_ids, parse_id, parse_ids, parse_price, parse_stock, parse_stock_delta,
};
use crate::images::{self, ImageProblem};
use crate::search::{MAX_OFFSET, Position, ProductFilter, QueryWords, Sort, parse_price_bounds, searched_for};
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
        category_ids: parse_category_ids("category_ids", &request.category_ids)?,
    })
}

fn parse_changes(request: &pb::UpdateProductRequest) -> Result<ProductChanges, InventoryError> {
    Ok(ProductChanges {
        name: request.name.as_deref().map(ProductName::parse).transpose()?,
        description: request.description.as_deref().map(Description::parse).transpose()?,
        price_minor: request.price_minor.map(parse_price).transpose()?,
        stock_delta: request.stock_delta.map(parse_stock_delta).transpose()?,
        category_ids: request.categories.as_ref().map(|c| parse_category_ids("categories.ids", &c.ids)).transpose()?,
    })
}

/// The search, filters and order of a `ListProducts` request. Without
/// words, relevance is newest first.
fn parse_filter(request: &pb::ListProductsRequest) -> Result<(ProductFilter, Sort), InventoryError> {
    let words = QueryWords::parse(&request.query)?;
    let (min_price_minor, max_price_minor) = parse_price_bounds(request.min_price_minor, request.max_price_minor)?;
    let optional_id = |field, id: i64| if id == 0 { Ok(None) } else { parse_id(field, id).map(Some) };
    let sort = match pb::ProductSort::try_from(request.sort) {
        // Relevance needs words to rank by.
        Ok(pb::ProductSort::Unspecified | pb::ProductSort::Relevance) if words.is_empty() => Sort::Newest,
        Ok(pb::ProductSort::Unspecified | pb::ProductSort::Relevance) => Sort::Relevance,
        Ok(pb::ProductSort::Newest) => Sort::Newest,
        Ok(pb::ProductSort::PriceLowFirst) => Sort::PriceLowFirst,
        Ok(pb::ProductSort::PriceHighFirst) => Sort::PriceHighFirst,
        Ok(pb::ProductSort::Name) => Sort::Name,
        Err(_) => return Err(InventoryError::invalid("sort", "is not a known order")),
    };
    let filter = ProductFilter {
        words,
        category_id: optional_id("category_id", request.category_id)?,
        in_stock_only: request.in_stock_only,
        min_price_minor,
        max_price_minor,
        exclude_product_id: optional_id("exclude_product_id", request.exclude_product_id)?,
    };
    Ok((filter, sort))
}

/// Where the page is: a cursor (which must fit the sort), the last page,
/// or a page number (old clients), bounded because an offset reads every
/// row before it.
fn parse_position(request: &pb::ListProductsRequest, sort: Sort, page: Page) -> Result<Position, InventoryError> {
    let key = |field, text: &str| {
        cursor::decode(text, sort.shape()).map_err(|_| InventoryError::invalid(field, "is not a position in this list"))
    };
    match (request.after.as_str(), request.before.as_str(), request.last) {
        ("", "", false) if page.number <= 1 => Ok(Position::First),
        ("", "", false) if page.offset() > MAX_OFFSET => {
            Err(InventoryError::invalid("page", "is too deep for a page number: page by cursor (after, before)"))
        }
        ("", "", false) => Ok(Position::Number(page.number)),
        (after, "", false) => key("after", after).map(Position::After),
        ("", before, false) => key("before", before).map(Position::Before),
        ("", "", true) => Ok(Position::Last),
        (_, before, _) if !before.is_empty() && !request.after.is_empty() => {
            Err(InventoryError::invalid("before", "must not be given with after"))
        }
        _ => Err(InventoryError::invalid("last", "must not be given with after or before")),
    }
}

/// Reads an upload: its first message (product and alt text, checked before
/// any byte is read), then its chunks, refusing as soon as it passes
/// [`images::MAX_BYTES`] without reading the rest.
async fn read_upload(
    db: &Db,
    mut stream: Streaming<pb::AddProductImageRequest>,
) -> Result<(i64, String, Vec<u8>), Status> {
    use pb::add_product_image_request::Part;
    let first = stream.message().await?.and_then(|message| message.part);
    let Some(Part::Upload(upload)) = first else {
        return Err(InventoryError::invalid("upload", "the first message must carry the upload").into());
    };
    let product_id = parse_id("product_id", upload.product_id)?;
    let alt = images::parse_alt(&upload.alt)?;
    store::images::check_room(db, product_id).await?;
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Chunk(chunk)) => {
                if bytes.len() + chunk.len() > images::MAX_BYTES {
                    // Dropping the stream tells the client to stop sending.
                    return Err(InventoryError::ImageRefused(ImageProblem::TooLarge).into());
                }
                bytes.extend_from_slice(&chunk);
            }
            Some(Part::Upload(_)) => {
                return Err(InventoryError::invalid("upload", "only the first message may carry the upload").into());
            }
            None => {}
        }
    }
    Ok((product_id, alt, bytes))
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
        let product = store::insert(&self.db, &product, None).await?;
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
        let (filter, sort) = parse_filter(&request)?;
        let position = parse_position(&request, sort, page)?;
        let found = store::search::list(&self.db, &filter, sort, &position, page.size).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: found.products.into_iter().map(Into::into).collect(),
            total: found.total,
            // A page reached by cursor has no number.
            page: match position {
                Position::First => 1,
                Position::Number(number) => number,
                _ => 0,
            },
            page_size: page.size,
            searched_for: searched_for(&found.terms),
            next_cursor: found.next.as_deref().map(cursor::encode).unwrap_or_default(),
            previous_cursor: found.previous.as_deref().map(cursor::encode).unwrap_or_default(),
            total_is_lower_bound: found.total_is_lower_bound,
        }))
    }

    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Result<Response<pb::ListCategoriesResponse>, Status> {
        let categories = store::categories::list(&self.db).await?;
        Ok(Response::new(pb::ListCategoriesResponse { categories: categories.into_iter().map(Into::into).collect() }))
    }

    async fn create_category(
        &self,
        request: Request<pb::CreateCategoryRequest>,
    ) -> Result<Response<pb::CreateCategoryResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let name = CategoryName::parse(&request.into_inner().name)?;
        let category = store::categories::create(&self.db, &name).await?;
        self.outbox.wake();
        tracing::info!(category_id = category.id, "category created");
        Ok(Response::new(pb::CreateCategoryResponse { category: Some(category.into()) }))
    }

    async fn update_category(
        &self,
        request: Request<pb::UpdateCategoryRequest>,
    ) -> Result<Response<pb::UpdateCategoryResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let request = request.into_inner();
        let id = parse_id("id", request.id)?;
        let name = CategoryName::parse(&request.name)?;
        let category = store::categories::rename(&self.db, id, &name).await?;
        self.outbox.wake();
        Ok(Response::new(pb::UpdateCategoryResponse { category: Some(category.into()) }))
    }

    async fn delete_category(
        &self,
        request: Request<pb::DeleteCategoryRequest>,
    ) -> Result<Response<pb::DeleteCategoryResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let id = parse_id("id", request.into_inner().id)?;
        store::categories::delete(&self.db, id).await?;
        self.outbox.wake();
        tracing::info!(category_id = id, "category deleted");
        Ok(Response::new(pb::DeleteCategoryResponse {}))
    }

    async fn add_product_image(
        &self,
        request: Request<Streaming<pb::AddProductImageRequest>>,
    ) -> Result<Response<pb::AddProductImageResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let (product_id, alt, bytes) = read_upload(&self.db, request.into_inner()).await?;
        let variants = tokio::task::spawn_blocking(move || images::variants_of_upload(&bytes))
            .await
            .map_err(|error| InventoryError::Internal(format!("the picture task failed: {error}")))??;
        let product = store::images::add(&self.db, product_id, &NewImage { alt, variants }).await?;
        self.outbox.wake();
        tracing::info!(product_id, "picture added");
        Ok(Response::new(pb::AddProductImageResponse { product: Some(product.into()) }))
    }

    async fn delete_product_image(
        &self,
        request: Request<pb::DeleteProductImageRequest>,
    ) -> Result<Response<pb::DeleteProductImageResponse>, Status> {
        self.identity.caller(&request)?.require_admin()?;
        let request = request.into_inner();
        let product_id = parse_id("product_id", request.product_id)?;
        let image_id = parse_id("image_id", request.image_id)?;
        let product = store::images::delete(&self.db, product_id, image_id).await?;
        self.outbox.wake();
        Ok(Response::new(pb::DeleteProductImageResponse { product: Some(product.into()) }))
    }

    async fn get_image(&self, request: Request<pb::GetImageRequest>) -> Result<Response<pb::GetImageResponse>, Status> {
        let hash = images::parse_hash(&request.into_inner().hash)?;
        let (content_type, data) = store::images::blob(&self.db, &hash).await?;
        Ok(Response::new(pb::GetImageResponse { content_type, data }))
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
            categories: product.categories.into_iter().map(Into::into).collect(),
            images: product.images.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Category> for pb::Category {
    fn from(category: Category) -> Self {
        Self { id: category.id, name: category.name, slug: category.slug, product_count: category.product_count }
    }
}

impl From<ProductImage> for pb::ProductImage {
    fn from(image: ProductImage) -> Self {
        let variant = |v: StoredVariant| pb::ImageVariant {
            hash: v.hash,
            content_type: image.content_type.clone(),
            width: v.width,
            height: v.height,
        };
        Self {
            id: image.id,
            alt: image.alt.clone(),
            thumbnail: Some(variant(image.thumbnail)),
            large: Some(variant(image.large)),
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
