//! The gateway's errors, mapped once: from gRPC status codes on the way in,
//! and to `application/problem+json`, an HTML error page or an HTMX error
//! partial on the way out (by [`render_errors`], which knows what the
//! request wanted).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use tonic::Code;

use crate::AppState;
use crate::negotiate::Want;
use crate::session::Viewer;

/// A problem with one field of the input, shown beside that field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("some fields need attention")]
    Invalid(Vec<FieldError>),
    #[error("please sign in to continue")]
    Unauthenticated,
    #[error("you are not allowed to do that")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("send the body as application/json or application/x-www-form-urlencoded")]
    UnsupportedMediaType,
    #[error("the request body is larger than 64 KiB")]
    TooLarge,
    #[error("too many attempts; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("a write from another site was refused")]
    CrossSite,
    #[error("{0}")]
    Unavailable(String),
    /// The detail is for the log; clients see a generic message.
    #[error("something went wrong on our side; please try again")]
    Internal(String),
}

impl AppError {
    pub fn field(field: &str, message: &str) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub const SERVICE_UNAVAILABLE: &str =
    "The shop cannot reach one of its services just now; please try again in a moment.";

/// The services' messages are written for clients (internal failures are
/// already opaque), so they pass through; `INVALID_ARGUMENT` messages have
/// the form `field: message` and become field errors.
impl From<tonic::Status> for AppError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument => match message.split_once(": ") {
                Some((field, text)) if !field.contains(' ') => Self::field(field, text),
                _ => Self::BadRequest(message),
            },
            Code::NotFound => Self::NotFound(message),
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => Self::Conflict(message),
            Code::Unauthenticated => Self::Unauthenticated,
            Code::PermissionDenied => Self::Forbidden,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(error = %status, "a service is unavailable");
                Self::Unavailable(SERVICE_UNAVAILABLE.to_owned())
            }
            _ => Self::Internal(status.to_string()),
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(error: tower_sessions::session::Error) -> Self {
        Self::Internal(format!("session store: {error}"))
    }
}

/// HTML a handler adds to its error answer for an HTMX request, swapped in
/// out of band (`hx-swap-oob`) beside the message, e.g. a fresh form key.
#[derive(Debug, Clone)]
pub struct OutOfBand(pub String);

/// What the response carries until [`render_errors`] renders it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub log: Option<String>,
}

/// The body of an `application/problem+json` answer (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    /// What went wrong, in words a person can act on.
    pub detail: String,
    /// Per-field problems, for input that failed validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For a failure of the shop's own (5xx): the request's trace id, to
    /// quote to the shop, which finds the trace and its log lines by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let log = match &self {
            Self::Internal(detail) => Some(detail.clone()),
            _ => None,
        };
        let errors = match &self {
            Self::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let detail = match &self {
            Self::Invalid(errors) if errors.len() == 1 => {
                format!("{}: {}", errors[0].field, errors[0].message)
            }
            _ => self.to_string(),
        };
        let mut response = (status, detail.clone()).into_response();
        if let Self::TooManyRequests { retry_after_secs } = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response.extensions_mut().insert(Problem { status, detail, errors, log });
        response
    }
}

/// Renders every [`Problem`] in the representation the request wanted, and
/// logs it with the request's method and path.
pub async fn render_errors(
    State(state): State<AppState>,
    viewer: Viewer,
    want: Want,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let path_and_query = request.uri().path_and_query().map_or_else(|| path.clone(), ToString::to_string);
    let current_url = request.headers().get("hx-current-url").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let trace_id = request.extensions().get::<crate::observe::TraceId>().map(|id| id.0.clone());
    let response = next.run(request).await;
    let Some(problem) = response.extensions().get::<Problem>().cloned() else {
        return response;
    };

    if problem.status.is_server_error() {
        tracing::error!(%method, %path, status = problem.status.as_u16(), detail = problem.log.as_deref().unwrap_or(&problem.detail), "request failed");
    } else {
        tracing::info!(%method, %path, status = problem.status.as_u16(), detail = %problem.detail, "request refused");
    }

    let trace_id = trace_id.filter(|_| problem.status.is_server_error());
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let out_of_band = response.extensions().get::<OutOfBand>().cloned();
    let mut rendered = match want {
        Want::Json => {
            let body = ProblemBody {
                kind: "about:blank",
                title: problem.status.canonical_reason().unwrap_or("Error").to_owned(),
                status: problem.status.as_u16(),
                detail: problem.detail,
                errors: problem.errors,
                trace_id,
            };
            let mut response = (problem.status, axum::Json(body)).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            response
        }
        Want::Page if problem.status == StatusCode::UNAUTHORIZED => {
            Redirect::to(&crate::routes::users::login_url(&path_and_query)).into_response()
        }
        Want::Partial if problem.status == StatusCode::UNAUTHORIZED => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            // Back to the page the person was on, once signed in.
            let here = current_url
                .as_deref()
                .and_then(|url| url.split_once("://"))
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
            if let Ok(target) = HeaderValue::from_str(&crate::routes::users::login_url(here.unwrap_or("/"))) {
                response.headers_mut().insert("hx-redirect", target);
            }
            response
        }
        Want::Page | Want::Partial => {
            let context = minijinja::context! { status => problem.status.as_u16(), title => problem.status.canonical_reason().unwrap_or("Error"), detail => problem.detail, errors => minijinja::value::Serde(&problem.errors), trace_id, out_of_band => out_of_band.map(|html| minijinja::Value::from_safe_string(html.0)) };
            let mut response = state.templates.respond(&viewer, want, "error.html", "_error.html", context);
            *response.status_mut() = problem.status;
            if want == Want::Partial {
                // Errors of an HTMX request show in the page's message area,
                // whatever element the request meant to update.
                response.headers_mut().insert("hx-retarget", HeaderValue::from_static("#flash"));
                response.headers_mut().insert("hx-reswap", HeaderValue::from_static("innerHTML"));
            }
            response
        }
    };
    if let Some(retry_after) = retry_after {
        rendered.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_map_to_http_problems() {
        let invalid = AppError::from(tonic::Status::invalid_argument("email: must look like name@example.com"));
        assert!(
            matches!(&invalid, AppError::Invalid(errors) if errors[0] == FieldError::new("email", "must look like name@example.com"))
        );
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let cases = [
            (tonic::Status::not_found("product 4 not found"), StatusCode::NOT_FOUND),
            (tonic::Status::already_exists("taken"), StatusCode::CONFLICT),
            (tonic::Status::failed_precondition("not enough stock"), StatusCode::CONFLICT),
            (tonic::Status::unauthenticated("no"), StatusCode::UNAUTHORIZED),
            (tonic::Status::unavailable("tcp connect error"), StatusCode::SERVICE_UNAVAILABLE),
            (tonic::Status::internal("internal error"), StatusCode::INTERNAL_SERVER_ERROR),
            (tonic::Status::invalid_argument("something odd happened"), StatusCode::BAD_REQUEST),
        ];
        for (status, http) in cases {
            assert_eq!(AppError::from(status).status(), http);
        }
        assert!(
            !AppError::from(tonic::Status::unavailable("tcp connect error 10.0.0.3")).to_string().contains("10.0.0.3")
        );
    }
}
