//! Every route of the gateway, one module per resource. Routes registered
//! through `routes!` are also described in the OpenAPI document served at
//! `/openapi.json`, which is generated from these handlers and so cannot
//! drift from them.

pub mod assets;
pub mod cart;
pub mod home;
pub mod orders;
pub mod products;
pub mod users;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use tower_sessions::Session;

use crate::AppState;
use crate::error::AppError;
use crate::negotiate::Want;
use crate::session;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shop",
        description = "The shop's JSON API. Every URL also serves HTML; send `Accept: application/json` for JSON. \
                       Bodies may be JSON or form-encoded. Errors are `application/problem+json`. \
                       Sign in with POST /users/login; the session cookie `shop_session` carries it."
    ),
    components(schemas(crate::error::ProblemBody, crate::error::FieldError)),
    tags(
        (name = "products", description = "The catalogue"),
        (name = "orders", description = "Orders and their status"),
        (name = "users", description = "Accounts and sign-in"),
        (name = "cart", description = "The session's cart")
    )
)]
struct ApiDoc;

pub fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(products::list, products::create))
        .routes(routes!(products::show, products::update, products::delete))
        .routes(routes!(orders::list, orders::create))
        .routes(routes!(orders::show))
        .routes(routes!(orders::update_status))
        .routes(routes!(users::by_query))
        .routes(routes!(users::show, users::update, users::delete))
        .routes(routes!(users::register))
        .routes(routes!(users::login))
        .routes(routes!(users::logout))
        .routes(routes!(cart::show))
        .routes(routes!(cart::add))
        .routes(routes!(cart::remove))
        .split_for_parts();
    let router = api
        .route("/", get(home::home))
        .route("/products/new", get(products::new_form))
        .route("/products/{id}/edit", get(products::edit_form))
        .route("/users/register", get(users::register_form))
        .route("/users/login", get(users::login_form))
        .route("/users/{id}/edit", get(users::edit_form))
        .route("/orders/{id}/events", get(orders::events))
        // HTML forms can only GET and POST: each change or deletion the JSON
        // API makes with PUT, PATCH or DELETE is also a POST, served by the
        // same handler. A change posts to the thing's own URL (or its
        // `/status`), a deletion to the thing's URL + `/delete`.
        .route("/products/{id}", post(products::update))
        .route("/products/{id}/delete", post(products::delete))
        .route("/orders/{id}/status", post(orders::update_status))
        .route("/users/{id}", post(users::update))
        .route("/users/{id}/delete", post(users::delete))
        .route("/cart/items/{product_id}/delete", post(cart::remove))
        .route("/static/{*path}", get(assets::serve))
        .route("/openapi.json", get(openapi_json))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found);
    (router, openapi)
}

async fn openapi_json(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    axum::Json(state.openapi.as_ref().clone()).into_response()
}

async fn not_found() -> crate::error::AppError {
    crate::error::AppError::NotFound("There is no page at this address.".into())
}

/// The answer to a successful create: 201 with `Location` and the new
/// thing for JSON clients; a redirect to it for browsers (HTMX follows
/// `HX-Redirect`).
pub fn created<T: serde::Serialize>(want: Want, location: &str, body: &T) -> Response {
    match want {
        Want::Json => {
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Want::Partial | Want::Page => see_other(want, location),
    }
}

/// The answer to a form posted without scripts, once it has done its work:
/// a 303 to the page that shows the result, which tells `message` once
/// (the message an HTMX partial would have shown in place).
pub async fn done(session: &Session, location: &str, message: impl Into<String>) -> Result<Response, AppError> {
    session::flash(session, message).await?;
    Ok(Redirect::to(location).into_response())
}

/// Sends a browser elsewhere after a form: 303 for a plain form post,
/// `HX-Redirect` for HTMX (which would otherwise swap the redirect target
/// into the page).
pub fn see_other(want: Want, location: &str) -> Response {
    match want {
        Want::Partial => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(location) {
                response.headers_mut().insert("hx-redirect", value);
            }
            response
        }
        Want::Page | Want::Json => Redirect::to(location).into_response(),
    }
}
