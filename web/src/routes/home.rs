//! The home page: the newest products (the first page of the catalogue,
//! through its cache).

use axum::response::{IntoResponse, Response};

use crate::context::{Ctx, Fill, Pages};
use crate::error::AppError;
use crate::negotiate::Want;
use crate::product_query::ProductQuery;

const HOME: Pages = Pages::new("home.html", "home.html");

pub async fn home(ctx: Ctx) -> Result<Response, AppError> {
    let first_page = ProductQuery { page_size: 8, ..ProductQuery::default() };
    if ctx.want == Want::Json {
        let (newest, _) = ctx.state.catalog.search(&ctx.services(), &first_page).await?;
        let categories = ctx.state.catalog.categories(&ctx.services()).await?;
        return Ok(axum::Json(serde_json::json!({
            "products": newest.products,
            "total": newest.total,
            "categories": categories,
            "links": { "products": "/products", "orders": "/orders", "cart": "/cart", "openapi": "/openapi.json" },
        }))
        .into_response());
    }
    // Everything it shows is retired with the product lists.
    let key = format!("home:v{}", ctx.state.cache.list_version().await);
    ctx.render_kept(HOME, &key, || async {
        let (newest, lookup) = ctx.state.catalog.search(&ctx.services(), &first_page).await?;
        let categories = ctx.state.catalog.categories(&ctx.services()).await?;
        let context = minijinja::context! {
            products => minijinja::value::Serde(&newest.products),
            total => newest.total,
            categories => minijinja::value::Serde(&categories),
        };
        Ok(Fill::new(context, lookup))
    })
    .await
}

const TERMS: Pages = Pages::new("terms.html", "terms.html");

/// The shop's terms of sale, linked from checkout's review.
pub async fn terms(ctx: Ctx) -> Result<Response, AppError> {
    Ok(ctx.render(TERMS, minijinja::context! {}))
}
