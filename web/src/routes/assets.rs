//! htmx and the stylesheet, embedded in the binary. Pages link them with a
//! content hash in the URL (`/static/style.css?v=…`), so they can be cached
//! for a year; the ETag answers revalidation with 304.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::templates::StaticFiles;

/// Browsers that ask for `/favicon.ico` before reading the page's icon link
/// are sent to the icon itself.
/// Temporary, so a new icon (a new hash) reaches browsers that cached this.
pub async fn favicon() -> Response {
    static TO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let to = TO.get_or_init(|| {
        let version =
            crate::templates::asset_versions().get("favicon.svg").map_or(String::new(), |v| format!("?v={v}"));
        format!("/static/favicon.svg{version}")
    });
    axum::response::Redirect::temporary(to).into_response()
}

pub async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, AppError> {
    let file = StaticFiles::get(&path).ok_or_else(|| AppError::NotFound(format!("There is no file {path:?}.")))?;
    let etag: String =
        format!("\"{}\"", file.metadata.sha256_hash()[..12].iter().map(|b| format!("{b:02x}")).collect::<String>());
    let etag = HeaderValue::from_str(&etag).map_err(|e| AppError::Internal(e.to_string()))?;
    let cache = HeaderValue::from_static("public, max-age=31536000, immutable");
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response());
    }
    let mime = HeaderValue::from_str(file.metadata.mimetype()).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, mime), (header::ETAG, etag), (header::CACHE_CONTROL, cache)], file.data.into_owned())
        .into_response())
}
