//! The gateway's error type, mapped once from the services' refusals: each
//! carries a stable reason (gRPC's rich error model, `shop.errors.v1`), and
//! the reason alone decides the HTTP status, the message a person reads and
//! the problem type a JSON client matches on. No status message is read to
//! decide anything. A handler returns an [`AppError`]; `error_page` renders
//! it as the request wanted.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shop_grpc::rich_error::{self, ErrorReason};
use tonic::Code;

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

/// What a service refused, as the gateway tells it: each has its HTTP
/// status and its problem type (`/problems/<slug>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    EmailTaken,
    UserNotFound,
    ProductNotFound,
    StockShort,
    StockWouldGoNegative,
    ReservationReleased,
    OrderNotFound,
    OrderRejected,
    OrderPending,
    TransitionForbidden,
    ConcurrentChange,
    CategoryNotFound,
    CategoryNameTaken,
    AddressNotFound,
    ResetLinkInvalid,
    DeliveryMethodNotFound,
    PaymentRequired,
    PaymentTransitionForbidden,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Self::UserNotFound
            | Self::ProductNotFound
            | Self::OrderNotFound
            | Self::CategoryNotFound
            | Self::AddressNotFound
            | Self::DeliveryMethodNotFound => StatusCode::NOT_FOUND,
            Self::ResetLinkInvalid => StatusCode::BAD_REQUEST,
            Self::OrderPending => StatusCode::SERVICE_UNAVAILABLE,
            Self::EmailTaken
            | Self::StockShort
            | Self::StockWouldGoNegative
            | Self::ReservationReleased
            | Self::OrderRejected
            | Self::TransitionForbidden
            | Self::ConcurrentChange
            | Self::CategoryNameTaken
            | Self::PaymentRequired
            | Self::PaymentTransitionForbidden => StatusCode::CONFLICT,
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Self::EmailTaken => "email-taken",
            Self::UserNotFound => "user-not-found",
            Self::ProductNotFound => "product-not-found",
            Self::StockShort => "stock-short",
            Self::StockWouldGoNegative => "stock-would-go-negative",
            Self::ReservationReleased => "reservation-released",
            Self::OrderNotFound => "order-not-found",
            Self::OrderRejected => "order-rejected",
            Self::OrderPending => "order-pending",
            Self::TransitionForbidden => "transition-forbidden",
            Self::ConcurrentChange => "concurrent-change",
            Self::CategoryNotFound => "category-not-found",
            Self::CategoryNameTaken => "category-name-taken",
            Self::AddressNotFound => "address-not-found",
            Self::ResetLinkInvalid => "reset-link-invalid",
            Self::DeliveryMethodNotFound => "delivery-method-not-found",
            Self::PaymentRequired => "payment-required",
            Self::PaymentTransitionForbidden => "payment-transition-forbidden",
        }
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
    /// A sign-in with a wrong email or password (which one is not said).
    #[error("invalid email or password")]
    BadCredentials,
    #[error("you are not allowed to do that")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    /// A service's refusal, told in the gateway's words; `field` when it is
    /// about one field of a form (a taken email), shown beside it.
    #[error("{detail}")]
    Refused { refusal: Refusal, detail: String, field: Option<&'static str> },
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
    /// Something that is always there was not (a service's answer without
    /// its body, a layer not installed): a bug of ours, a 500.
    #[error("something went wrong on our side; please try again")]
    Missing(&'static str),
}

impl AppError {
    pub fn field(field: &str, message: &str) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    fn refused(refusal: Refusal, detail: String) -> Self {
        Self::Refused { refusal, detail, field: None }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated | Self::BadCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CrossSite => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Refused { refusal, .. } => refusal.status(),
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Missing(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's last segment: what a JSON client matches on.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Invalid(_) => "invalid-fields",
            Self::Unauthenticated => "sign-in-required",
            Self::BadCredentials => "invalid-credentials",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Refused { refusal, .. } => refusal.slug(),
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::TooLarge => "too-large",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::CrossSite => "cross-site-write",
            Self::Unavailable(_) => "service-unavailable",
            Self::Internal(_) | Self::Missing(_) => "internal",
        }
    }

    /// The errors shown beside form fields, when this is about fields.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::Refused { field: Some(field), detail, .. } => vec![FieldError::new(*field, detail.clone())],
            Self::BadCredentials => vec![FieldError::new("form", "Invalid email or password.")],
            _ => Vec::new(),
        }
    }
}

pub const SERVICE_UNAVAILABLE: &str =
    "The shop cannot reach one of its services just now; please try again in a moment.";

/// A service's refusal, by its reason and metadata. Field errors come from
/// the `BadRequest` details; what people read is written here.
impl From<crate::cache::Unencodable> for AppError {
    fn from(error: crate::cache::Unencodable) -> Self {
        Self::Internal(format!("a value could not be written as JSON: {}", error.0))
    }
}

impl From<tonic::Status> for AppError {
    fn from(status: tonic::Status) -> Self {
        Self::from_refusal(&status, None)
    }
}

impl AppError {
    /// A refused checkout's product, when the refusal names one.
    pub fn product_of(status: &tonic::Status) -> Option<i64> {
        rich_error::metadata(status, "product_id").and_then(|id| id.parse().ok())
    }

    /// Like `From<Status>`, telling the product the refusal is about by
    /// `product_name` (which the caller looked up) rather than by its id.
    pub fn from_refusal(status: &tonic::Status, product_name: Option<&str>) -> Self {
        let meta = |key: &str| rich_error::metadata(status, key).unwrap_or_default();
        let Some(reason) = rich_error::reason(status) else {
            return without_reason(status);
        };
        // A service that says it cannot do it *now* (its database away) is
        // unavailable, whatever reason it gives: try again, not a bug.
        if matches!(reason, ErrorReason::Internal | ErrorReason::Unspecified)
            && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        {
            return without_reason(status);
        }
        match reason {
            ErrorReason::FieldInvalid | ErrorReason::IdempotencyKeyReused | ErrorReason::ImageRefused => {
                let errors: Vec<FieldError> = rich_error::field_violations(status)
                    .into_iter()
                    .map(|(field, description)| FieldError::new(field, description))
                    .collect();
                if errors.is_empty() {
                    Self::BadRequest("The request was not valid.".to_owned())
                } else {
                    Self::Invalid(errors)
                }
            }
            ErrorReason::SignInRequired => Self::Unauthenticated,
            ErrorReason::InvalidCredentials => Self::BadCredentials,
            ErrorReason::PermissionDenied => Self::Forbidden,
            ErrorReason::CallerUnverified | ErrorReason::Internal | ErrorReason::Unspecified => {
                Self::Internal(format!("{reason:?}: {status}"))
            }
            ErrorReason::EmailTaken => Self::Refused {
                refusal: Refusal::EmailTaken,
                detail: "An account with this email already exists.".into(),
                field: Some("email"),
            },
            ErrorReason::StockWouldGoNegative => Self::Refused {
                refusal: Refusal::StockWouldGoNegative,
                detail: "That would take the stock below zero.".into(),
                field: Some("stock_delta"),
            },
            ErrorReason::UserNotFound => Self::refused(Refusal::UserNotFound, "That user was not found.".into()),
            ErrorReason::ProductNotFound => Self::refused(
                Refusal::ProductNotFound,
                match product_name {
                    Some(name) => format!("{name} is no longer sold."),
                    None => "That product was not found (it may no longer be sold).".to_owned(),
                },
            ),
            ErrorReason::CategoryNotFound => {
                Self::refused(Refusal::CategoryNotFound, "That category was not found.".into())
            }
            ErrorReason::CategoryNameTaken => Self::Refused {
                refusal: Refusal::CategoryNameTaken,
                detail: "A category with this name already exists.".into(),
                field: Some("name"),
            },
            ErrorReason::ImageNotFound => Self::NotFound("There is no such picture.".into()),
            ErrorReason::AddressNotFound => {
                Self::refused(Refusal::AddressNotFound, "That address was not found.".into())
            }
            ErrorReason::ResetLinkInvalid => Self::refused(
                Refusal::ResetLinkInvalid,
                "This password reset link is no longer valid (used, expired or mistyped); ask for a new one.".into(),
            ),
            ErrorReason::DeliveryMethodNotFound => Self::refused(
                Refusal::DeliveryMethodNotFound,
                "That delivery method is not offered; choose another.".into(),
            ),
            ErrorReason::PaymentRequired => Self::refused(
                Refusal::PaymentRequired,
                format!(
                    "Order #{} is paid by bank transfer and not paid yet: mark it paid before shipping it.",
                    meta("order_id")
                ),
            ),
            ErrorReason::PaymentTransitionForbidden => Self::refused(
                Refusal::PaymentTransitionForbidden,
                format!("The payment cannot go from {} to {}.", meta("from"), meta("to")),
            ),
            ErrorReason::OrderNotFound => Self::refused(Refusal::OrderNotFound, "That order was not found.".into()),
            ErrorReason::StockShort => Self::refused(Refusal::StockShort, "There is not enough stock.".into()),
            ErrorReason::ReservationReleased => {
                Self::refused(Refusal::ReservationReleased, "This order's stock was already given back.".into())
            }
            ErrorReason::OrderRejected => rejected(&meta("rejection"), &meta("product_id"), product_name),
            ErrorReason::OrderPending => Self::refused(
                Refusal::OrderPending,
                format!(
                    "We could not confirm your order just now. It is saved as pending (order #{}) and will be \
                     confirmed or rejected within a minute; see it under Orders.",
                    meta("order_id")
                ),
            ),
            ErrorReason::TransitionForbidden => Self::refused(
                Refusal::TransitionForbidden,
                format!("An order cannot go from {} to {}.", meta("from"), meta("to")),
            ),
            ErrorReason::ConcurrentChange => Self::refused(
                Refusal::ConcurrentChange,
                "The order was changed meanwhile; look at it again and try once more.".into(),
            ),
        }
    }
}

/// An order kept as rejected: why, in words, naming the product when it can.
fn rejected(rejection: &str, product_id: &str, product_name: Option<&str>) -> AppError {
    let product = match (product_name, product_id) {
        (Some(name), _) => name.to_owned(),
        (None, "") => "a product in it".to_owned(),
        (None, id) => format!("product {id}"),
    };
    match rejection {
        "product_not_found" => AppError::refused(
            Refusal::ProductNotFound,
            format!("Your order could not be placed: {product} was not found (it is no longer sold)."),
        ),
        _ => AppError::refused(
            Refusal::OrderRejected,
            format!("Your order could not be placed: not enough stock of {product}."),
        ),
    }
}

/// A status with no reason of ours: the transport's own (a service down or
/// slow), or something unexpected.
fn without_reason(status: &tonic::Status) -> AppError {
    match status.code() {
        // Unknown without a reason is the transport's (a connection reset
        // before the answer): our services give every refusal a reason.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            tracing::warn!(error = %status, "a service is unavailable");
            AppError::Unavailable(SERVICE_UNAVAILABLE.to_owned())
        }
        _ => AppError::Internal(status.to_string()),
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(error: tower_sessions::session::Error) -> Self {
        Self::Internal(format!("session store: {error}"))
    }
}

/// A template a handler adds to its error answer for an HTMX request,
/// swapped in out of band (`hx-swap-oob`) beside the message, e.g. a fresh
/// form key: the template's name and its context.
#[derive(Debug, Clone)]
pub struct OutOfBand(pub &'static str, pub minijinja::Value);

/// What the response carries until `error_page` renders it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub log: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let log = match &self {
            Self::Internal(detail) => Some(detail.clone()),
            Self::Missing(what) => Some(format!("missing: {what}")),
            _ => None,
        };
        let errors = self.field_errors();
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
        response.extensions_mut().insert(Problem { status, slug: self.slug(), detail, errors, log });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: Code, reason: ErrorReason, message: &str) -> rich_error::Refusal {
        rich_error::refuse(code, reason, message)
    }

    /// Every reason a service sends, and what the gateway makes of it.
    fn cases() -> Vec<(tonic::Status, StatusCode, &'static str, &'static str)> {
        vec![
            (
                refusal(Code::InvalidArgument, ErrorReason::FieldInvalid, "x")
                    .field_violation("email", "must look like name@example.com")
                    .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-fields",
                "email: must look like name@example.com",
            ),
            (
                refusal(Code::InvalidArgument, ErrorReason::IdempotencyKeyReused, "x")
                    .field_violation("idempotency_key", "was used for another order")
                    .into(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-fields",
                "idempotency_key",
            ),
            (
                refusal(Code::Unauthenticated, ErrorReason::SignInRequired, "x").into(),
                StatusCode::UNAUTHORIZED,
                "sign-in-required",
                "sign in",
            ),
            (
                refusal(Code::Unauthenticated, ErrorReason::InvalidCredentials, "x").into(),
                StatusCode::UNAUTHORIZED,
                "invalid-credentials",
                "invalid email or password",
            ),
            (
                refusal(Code::PermissionDenied, ErrorReason::PermissionDenied, "x").into(),
                StatusCode::FORBIDDEN,
                "forbidden",
                "not allowed",
            ),
            (
                refusal(Code::Unauthenticated, ErrorReason::CallerUnverified, "x").into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "on our side",
            ),
            (
                refusal(Code::Internal, ErrorReason::Internal, "x").into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "on our side",
            ),
            (
                refusal(Code::AlreadyExists, ErrorReason::EmailTaken, "x").field_violation("email", "x").into(),
                StatusCode::CONFLICT,
                "email-taken",
                "already exists",
            ),
            (
                refusal(Code::NotFound, ErrorReason::UserNotFound, "x").into(),
                StatusCode::NOT_FOUND,
                "user-not-found",
                "not found",
            ),
            (
                refusal(Code::NotFound, ErrorReason::ProductNotFound, "x").metadata("product_id", 4).into(),
                StatusCode::NOT_FOUND,
                "product-not-found",
                "was not found",
            ),
            (
                refusal(Code::FailedPrecondition, ErrorReason::StockShort, "x").into(),
                StatusCode::CONFLICT,
                "stock-short",
                "not enough stock",
            ),
            (
                refusal(Code::FailedPrecondition, ErrorReason::StockWouldGoNegative, "x").into(),
                StatusCode::CONFLICT,
                "stock-would-go-negative",
                "below zero",
            ),
            (
                refusal(Code::FailedPrecondition, ErrorReason::ReservationReleased, "x").into(),
                StatusCode::CONFLICT,
                "reservation-released",
                "given back",
            ),
            (
                refusal(Code::NotFound, ErrorReason::OrderNotFound, "x").into(),
                StatusCode::NOT_FOUND,
                "order-not-found",
                "not found",
            ),
            (
                refusal(Code::FailedPrecondition, ErrorReason::OrderRejected, "x")
                    .metadata("rejection", "stock_short")
                    .metadata("product_id", 3)
                    .into(),
                StatusCode::CONFLICT,
                "order-rejected",
                "Your order could not be placed: not enough stock of product 3.",
            ),
            (
                refusal(Code::NotFound, ErrorReason::OrderRejected, "x")
                    .metadata("rejection", "product_not_found")
                    .into(),
                StatusCode::NOT_FOUND,
                "product-not-found",
                "could not be placed: a product in it was not found",
            ),
            (
                refusal(Code::Unavailable, ErrorReason::OrderPending, "x").metadata("order_id", 12).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "order-pending",
                "saved as pending (order #12)",
            ),
            (
                refusal(Code::FailedPrecondition, ErrorReason::TransitionForbidden, "x")
                    .metadata("from", "shipped")
                    .metadata("to", "cancelled")
                    .into(),
                StatusCode::CONFLICT,
                "transition-forbidden",
                "cannot go from shipped to cancelled",
            ),
            (
                refusal(Code::Aborted, ErrorReason::ConcurrentChange, "x").into(),
                StatusCode::CONFLICT,
                "concurrent-change",
                "changed meanwhile",
            ),
            (
                tonic::Status::unavailable("tcp connect error 10.0.0.3"),
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "cannot reach",
            ),
            (
                // A service whose database is away.
                refusal(Code::Unavailable, ErrorReason::Internal, "the database is unavailable").into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "cannot reach",
            ),
            (
                // A connection reset before the answer (tonic: Unknown, no reason).
                tonic::Status::unknown("transport error"),
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "cannot reach",
            ),
            (tonic::Status::internal("boom"), StatusCode::INTERNAL_SERVER_ERROR, "internal", "on our side"),
        ]
    }

    fn detail(error: &AppError) -> String {
        match error {
            AppError::Invalid(errors) if errors.len() == 1 => format!("{}: {}", errors[0].field, errors[0].message),
            other => other.to_string(),
        }
    }

    #[test]
    fn every_reason_maps_to_a_status_a_problem_type_and_words() {
        for (status, http, slug, words) in cases() {
            let error = AppError::from(status);
            assert_eq!((error.status(), error.slug()), (http, slug), "{error:?}");
            assert!(detail(&error).to_lowercase().contains(&words.to_lowercase()), "{slug}: {error}");
        }
        let taken = AppError::from(tonic::Status::from(refusal(Code::AlreadyExists, ErrorReason::EmailTaken, "x")));
        assert_eq!(taken.field_errors()[0].field, "email", "shown beside the email field");
    }

    #[test]
    fn a_refused_checkout_names_its_product_when_it_can() {
        let status: tonic::Status = refusal(Code::FailedPrecondition, ErrorReason::OrderRejected, "x")
            .metadata("rejection", "stock_short")
            .metadata("product_id", 31)
            .into();
        assert_eq!(AppError::product_of(&status), Some(31));
        let named = AppError::from_refusal(&status, Some("Teapot"));
        assert_eq!(named.to_string(), "Your order could not be placed: not enough stock of Teapot.");
        assert_eq!(
            AppError::from(status).to_string(),
            "Your order could not be placed: not enough stock of product 31."
        );
    }

    /// A service may reword its messages at will: only the reason and its
    /// details decide, so another message changes nothing here.
    #[test]
    fn rewording_a_message_changes_nothing() {
        for (status, ..) in cases() {
            let reworded = tonic::Status::with_details(
                status.code(),
                "completely different words, and a colon: here",
                status.details().to_vec().into(),
            );
            let (before, after) = (AppError::from(status), AppError::from(reworded));
            assert_eq!(
                (before.status(), before.slug(), detail(&before)),
                (after.status(), after.slug(), detail(&after))
            );
        }
        // And a bare code without a reason is never read for its words.
        let bare = AppError::from(tonic::Status::failed_precondition("order 1 rejected: not enough stock"));
        assert_eq!(bare.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
