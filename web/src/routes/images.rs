//! Product pictures: served by content hash to anyone, added and removed by
//! admins. Inventory sniffs, bounds, resizes and stores them; the gateway
//! passes the upload on and shows the answer.

use std::collections::BTreeMap;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shop_proto::inventory::v1 as pb;
use shop_proto::inventory::v1::add_product_image_request::Part;

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{Id, Product};
use crate::state::AppState;
use crate::views::ProductView;

const PICTURES: Pages = Pages::new("products/edit.html", "products/_pictures.html");

/// The largest upload the gateway reads; inventory's own limit is 10 MiB
/// of file, and a multipart body carries a little more than the file.
pub const UPLOAD_LIMIT: usize = 10 * 1024 * 1024 + 64 * 1024;
/// Sent to inventory in pieces of this size (gRPC messages stay small).
const CHUNK: usize = 256 * 1024;

/// One stored picture variant. The URL names the bytes (their SHA-256), so
/// they never change: browsers keep them a year and revalidate with 304.
pub async fn serve(State(state): State<AppState>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    let not_found = || AppError::NotFound("There is no such picture.".into()).into_response();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return not_found();
    }
    let etag = format!("\"{hash}\"");
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)], [(header::CACHE_CONTROL, cache)]).into_response();
    }
    let clients = state.clients(shop_grpc::identity::Caller::Anonymous);
    match state.images.get(&clients, &hash).await {
        Ok(image) => {
            let content_type = HeaderValue::from_str(&image.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            (
                [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)],
                [(header::ETAG, etag)],
                image.data.clone(),
            )
                .into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The upload form's fields, as the OpenAPI document names them.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "read field by field from the multipart body")]
struct UploadForm {
    /// A PNG, JPEG, WebP or GIF file (at most 10 MiB and 8000 px a side).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// What the picture shows.
    alt: String,
}

/// What an upload form sent.
struct Upload {
    alt: String,
    file: Vec<u8>,
}

/// Reads the form: `alt` and the file field `image` (bounded by the route's
/// body limit, so a huge file ends the read with "too large").
async fn read_upload(multipart: Result<Multipart, MultipartRejection>) -> Result<Upload, AppError> {
    let too_large = || AppError::field("image", "The picture is larger than 10 MiB.");
    let mut multipart = multipart.map_err(|_| {
        AppError::BadRequest("send the picture as multipart/form-data with the fields image and alt".into())
    })?;
    let (mut alt, mut file) = (String::new(), None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(_) => return Err(AppError::BadRequest("the form could not be read".into())),
        };
        match field.name() {
            Some("alt") => alt = field.text().await.map_err(|_| AppError::field("alt", "could not be read"))?,
            Some("image") => {
                let bytes = field.bytes().await.map_err(|error| {
                    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large()
                    } else {
                        AppError::field("image", "The file could not be read; try again.")
                    }
                })?;
                file = Some(bytes.to_vec());
            }
            _ => {}
        }
    }
    let file = file.filter(|f| !f.is_empty()).ok_or_else(|| AppError::field("image", "Choose a picture to upload."))?;
    Ok(Upload { alt, file })
}

async fn upload(ctx: &Ctx, product_id: i64, upload: Upload) -> Result<ProductView, AppError> {
    let first =
        pb::AddProductImageRequest { part: Some(Part::Upload(pb::ImageUpload { product_id, alt: upload.alt })) };
    let chunks = upload
        .file
        .chunks(CHUNK)
        .map(|chunk| pb::AddProductImageRequest { part: Some(Part::Chunk(chunk.to_vec())) })
        .collect::<Vec<_>>();
    let stream = tokio_stream::iter(std::iter::once(first).chain(chunks));
    let added = ctx.services().inventory().add_product_image(stream).await?.into_inner();
    added.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))
}

/// Adds a picture to a product (admins): a `multipart/form-data` body with
/// the file as `image` and what it shows as `alt`.
#[utoipa::path(post, path = "/products/{id}/images", tag = "products",
    params(("id" = i64, Path, description = "Product id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Added; the product with its pictures", body = ProductView),
              (status = 401, body = crate::error_page::ProblemBody), (status = 403, body = crate::error_page::ProblemBody),
              (status = 404, body = crate::error_page::ProblemBody),
              (status = 422, description = "Not a picture the shop takes, or no alt text", body = crate::error_page::ProblemBody)))]
pub async fn add(
    ctx: Ctx,
    Id(id, _): Id<Product>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, AppError> {
    ctx.admin()?;
    let sent = read_upload(multipart).await;
    let alt = sent.as_ref().map(|upload| upload.alt.clone()).unwrap_or_default();
    let added = match sent {
        Ok(sent) => upload(&ctx, id, sent).await,
        Err(error) => Err(error),
    };
    match added {
        Ok(product) => {
            ctx.state.catalog.forget(id).await;
            if ctx.want == crate::negotiate::Want::Json {
                return Ok((StatusCode::CREATED, axum::Json(product)).into_response());
            }
            let message = format!("Added a picture of {}.", product.name);
            answer(&ctx, &product, message, BTreeMap::new(), BTreeMap::new()).await
        }
        Err(error) if ctx.is_html() && !error.field_errors().is_empty() => {
            let status = error.status();
            let (product, _) = ctx.state.catalog.product(&ctx.services(), id).await?;
            let errors = error.field_errors().into_iter().map(|e| (e.field, e.message)).collect();
            let values = BTreeMap::from([("alt".to_owned(), alt)]);
            let mut response = answer(&ctx, &product, String::new(), values, errors).await?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(error) => Err(error),
    }
}

/// Takes a picture off a product (admins; a form posts to `…/delete`).
#[utoipa::path(delete, path = "/products/{id}/images/{image_id}", tag = "products",
    params(("id" = i64, Path, description = "Product id"), ("image_id" = i64, Path, description = "Picture id")),
    responses((status = 200, description = "The product with its remaining pictures", body = ProductView),
              (status = 401, body = crate::error_page::ProblemBody), (status = 403, body = crate::error_page::ProblemBody),
              (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn delete(ctx: Ctx, Path((id, image_id)): Path<(String, String)>) -> Result<Response, AppError> {
    ctx.admin()?;
    let (Some(product_id), Some(image_id)) = (positive(&id), positive(&image_id)) else {
        return Err(AppError::NotFound("There is no such picture.".into()));
    };
    let request = pb::DeleteProductImageRequest { product_id, image_id };
    let changed = ctx.services().inventory().delete_product_image(request).await?.into_inner();
    let product = changed.product.map(ProductView::from).ok_or(AppError::Missing("inventory returned no product"))?;
    ctx.state.catalog.forget(product_id).await;
    if ctx.want == crate::negotiate::Want::Json {
        return Ok(axum::Json(product).into_response());
    }
    let message = format!("Removed a picture of {}.", product.name);
    answer(&ctx, &product, message, BTreeMap::new(), BTreeMap::new()).await
}

fn positive(raw: &str) -> Option<i64> {
    raw.parse().ok().filter(|id| *id > 0)
}

/// The pictures section again (htmx), or the edit page (a plain form post:
/// a 303 there on success, the page with the error otherwise).
async fn answer(
    ctx: &Ctx,
    product: &ProductView,
    message: String,
    image_values: BTreeMap<String, String>,
    image_errors: BTreeMap<String, String>,
) -> Result<Response, AppError> {
    let location = format!("/products/{}/edit#pictures", product.id);
    if ctx.want == crate::negotiate::Want::Page && image_errors.is_empty() {
        return ctx.redirect(&location, message).await;
    }
    let categories = ctx.state.catalog.categories(&ctx.services()).await.unwrap_or_default();
    let values = BTreeMap::from([
        ("name", product.name.clone()),
        ("description", product.description.clone()),
        ("price", product.price.clone()),
    ]);
    let context = minijinja::context! {
        product => minijinja::value::Serde(product),
        categories => minijinja::value::Serde(&categories),
        selected => product.categories.iter().map(|c| c.id).collect::<Vec<_>>(),
        values => values,
        errors => BTreeMap::<String, String>::new(),
        image_values => image_values,
        image_errors => image_errors,
    };
    let viewer = crate::viewer::Viewer { flash: (!message.is_empty()).then_some(message), ..ctx.viewer.clone() };
    Ok(ctx.state.templates.respond(&viewer, ctx.want, PICTURES.page, PICTURES.partial, context))
}
