//! Every route of the gateway, one module per resource. Routes registered
//! through `routes!` are also described in the OpenAPI document served at
//! `/openapi.json`, which is generated from these handlers and so cannot
//! drift from them.

pub mod addresses;
pub mod assets;
pub mod cart;
pub mod categories;
pub mod checkout;
pub mod customers;
pub mod delivery_methods;
pub mod home;
pub mod images;
pub mod orders;
pub mod password_reset;
pub mod problems;
pub mod products;
pub mod users;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::AppError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shop",
        description = "The shop's JSON API. Every URL also serves HTML; send `Accept: application/json` for JSON. \
                       Bodies may be JSON or form-encoded. Errors are `application/problem+json`. \
                       Sign in with POST /users/login; the session cookie `shop_session` carries it."
    ),
    components(schemas(crate::error_page::ProblemBody, crate::error::FieldError)),
    tags(
        (name = "products", description = "The catalogue"),
        (name = "orders", description = "Orders and their status"),
        (name = "users", description = "Accounts and sign-in"),
        (name = "addresses", description = "Customers' address books"),
        (name = "customers", description = "Customers, for admins"),
        (name = "cart", description = "The cart: a guest's in the session, a customer's kept by the shop")
    )
)]
struct ApiDoc;

/// Every route that answers as someone (pages, forms, the JSON API), and
/// the OpenAPI document of the JSON ones, as the JSON `/openapi.json`
/// answers: kept as text, since the document itself is over a megabyte of
/// small allocations (a fifth of the idle gateway's heap).
pub fn router() -> Result<(Router<AppState>, axum::body::Bytes), serde_json::Error> {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(products::list, products::create))
        .routes(routes!(products::show, products::update, products::delete))
        .routes(routes!(orders::list, orders::create))
        .routes(routes!(orders::show))
        .routes(routes!(orders::update_status))
        .routes(routes!(orders::update_payment))
        .routes(routes!(users::by_query))
        .routes(routes!(users::show, users::update, users::delete))
        .routes(routes!(users::register))
        .routes(routes!(users::login))
        .routes(routes!(users::logout))
        .routes(routes!(cart::show))
        .routes(routes!(cart::add))
        .routes(routes!(cart::set, cart::remove))
        .routes(routes!(categories::list, categories::create))
        .routes(routes!(categories::rename, categories::delete))
        .routes({
            // A picture may be far larger than the 64 KiB every other body gets.
            let (schemas, paths, method) = routes!(images::add);
            (schemas, paths, method.layer(axum::extract::DefaultBodyLimit::max(images::UPLOAD_LIMIT)))
        })
        .routes(routes!(images::delete))
        .routes(routes!(addresses::list, addresses::create))
        .routes(routes!(addresses::show, addresses::update, addresses::delete))
        .routes(routes!(password_reset::request))
        .routes(routes!(password_reset::reset))
        .routes(routes!(customers::list))
        .routes(routes!(delivery_methods::list, delivery_methods::create))
        .routes(routes!(delivery_methods::update))
        .routes(routes!(customers::show))
        .split_for_parts();
    let router = api
        .route("/", get(home::home))
        .route("/terms", get(home::terms))
        .route("/products/new", get(products::new_form))
        .route("/products/{id}/edit", get(products::edit_form))
        .route("/users/register", get(users::register_form))
        .route("/users/login", get(users::login_form))
        .route("/users/{id}/edit", get(users::edit_form))
        .route("/orders/{id}/events", get(orders::events))
        .route("/orders/{id}/confirmation", get(orders::confirmation))
        .route("/orders/{id}/packing-slip", get(orders::packing_slip))
        // Checkout, a page per step; each posts to its own URL.
        .route("/checkout", get(checkout::start).post(checkout::place))
        .route("/checkout/address", get(checkout::address_form).post(checkout::address))
        .route("/checkout/delivery", get(checkout::delivery_form).post(checkout::delivery))
        .route("/checkout/payment", get(checkout::payment_form).post(checkout::payment))
        .route("/checkout/review", get(checkout::review_form))
        // HTML forms can only GET and POST: each change or deletion the JSON
        // API makes with PUT, PATCH or DELETE is also a POST, served by the
        // same handler. A change posts to the thing's own URL (or its
        // `/status`), a deletion to the thing's URL + `/delete`.
        .route("/products/demo", post(products::load_demo))
        .route("/products/{id}", post(products::update))
        .route("/products/{id}/delete", post(products::delete))
        .route("/orders/{id}/status", post(orders::update_status))
        .route("/users/{id}", post(users::update))
        .route("/users/{id}/delete", post(users::delete))
        .route("/cart/items/{product_id}", post(cart::set))
        .route("/cart/items/{product_id}/delete", post(cart::remove))
        .route("/categories/{id}", post(categories::rename))
        .route("/delivery-methods/{id}", post(delivery_methods::update))
        .route("/categories/{id}/delete", post(categories::delete))
        .route("/products/{id}/images/{image_id}/delete", post(images::delete))
        .route("/users/{id}/addresses/{address_id}/edit", get(addresses::edit_form))
        .route("/users/{id}/addresses/{address_id}", post(addresses::update))
        .route("/users/{id}/addresses/{address_id}/delete", post(addresses::delete))
        .route("/users/password-reset", get(password_reset::request_form))
        .route("/users/password-reset/{token}", get(password_reset::choose_form))
        .route("/openapi.json", get(openapi_json))
        .route("/problems/{slug}", get(problems::show))
        .fallback(not_found);
    let openapi = serde_json::to_vec(&openapi)?.into();
    Ok((router, openapi))
}

/// What answers nobody in particular: assets and the health check, which
/// never touch a session.
pub fn sessionless() -> Router<AppState> {
    Router::new()
        .route("/static/{*path}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .route("/images/{hash}", get(images::serve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

/// Whether this gateway can serve (see `readiness`); `/healthz` is only
/// whether it is alive, and never looks further.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    state.readiness.answer().await.into_response()
}

async fn openapi_json(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], state.openapi.clone()).into_response()
}

async fn not_found() -> AppError {
    AppError::NotFound("There is no page at this address.".into())
}
