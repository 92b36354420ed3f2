//! The order service's errors, and their one mapping to gRPC statuses, each
//! with its stable reason (`shop.errors.v1.ErrorReason`).

use shop_grpc::rich_error::{self, ErrorReason, refuse};
use tonic::{Code, Status};

use crate::domain::{PaymentState, Rejection, Status as OrderStatus};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// No such order, or one the caller may not see: one answer for both.
    #[error("order {0} not found")]
    NotFound(i64),
    /// Inventory refused the reservation; the order is kept as rejected.
    #[error("order {order_id} rejected: {}", rejection_text(*.rejection, *.product_id))]
    Rejected { order_id: i64, rejection: Rejection, product_id: Option<i64> },
    #[error("an order cannot go from {from} to {to}")]
    Transition { order_id: i64, from: OrderStatus, to: OrderStatus },
    #[error("order {0} was changed by someone else meanwhile; read it again")]
    Conflict(i64),
    #[error("idempotency_key: was already used for a different order; use a new key for a new order")]
    IdempotencyKeyReused,
    #[error(
        "inventory is unavailable; order {0} is recorded as pending and will be confirmed or rejected automatically"
    )]
    InventoryUnavailable(i64),
    #[error("order total does not fit in 64 bits")]
    TotalOverflow,
    /// A cart change beyond the stock on hand; nothing changed.
    #[error("not enough stock for product {product_id}: {requested} wanted, {available} available")]
    StockShort { product_id: i64, requested: i64, available: i64 },
    /// A cart change for a product inventory does not sell.
    #[error("product {0} not found")]
    ProductNotFound(i64),
    /// No such delivery method, or (at checkout) one not offered now.
    #[error("delivery method {0} not found")]
    DeliveryMethodNotFound(i64),
    /// Shipping an unpaid bank-transfer order the shop ships only paid.
    #[error("order {0} is paid by bank transfer and is not paid yet; mark it paid before shipping it")]
    PaymentRequired(i64),
    #[error("an order's payment cannot go from {from} to {to} now")]
    PaymentTransition { order_id: i64, from: PaymentState, to: PaymentState },
    #[error("inventory answered unexpectedly: {0}")]
    Inventory(String),
    /// Inventory could not be reached (or its database could not): the
    /// caller may try again in a moment.
    #[error("inventory cannot be reached now: {0}")]
    InventoryAway(String),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Why an order was rejected, for people.
fn rejection_text(rejection: Rejection, product_id: Option<i64>) -> String {
    match (rejection, product_id) {
        (Rejection::StockShort, Some(id)) => format!("not enough stock for product {id}"),
        (Rejection::StockShort, None) => "not enough stock".to_owned(),
        (Rejection::ProductNotFound, Some(id)) => format!("product {id} not found"),
        (Rejection::ProductNotFound, None) => "a product was not found".to_owned(),
    }
}

impl OrderError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<shop_order_lines::LinesError> for OrderError {
    fn from(error: shop_order_lines::LinesError) -> Self {
        Self::invalid(error.field(), error.message())
    }
}

impl From<OrderError> for Status {
    fn from(error: OrderError) -> Self {
        let message = error.to_string();
        // A database that cannot be reached is the transport's kind of
        // failure (no reason of ours): callers answer 503 and may retry.
        if let OrderError::Storage(storage) = &error
            && shop_storage::is_unreachable(storage)
        {
            tracing::warn!(error = %message, "order service: the database is unreachable");
            return Status::unavailable("the database is unavailable");
        }
        match error {
            OrderError::Invalid { field, message: description } => {
                refuse(Code::InvalidArgument, ErrorReason::FieldInvalid, message).field_violation(field, description)
            }
            OrderError::NotFound(order_id) => {
                refuse(Code::NotFound, ErrorReason::OrderNotFound, message).metadata("order_id", order_id)
            }
            OrderError::Rejected { order_id, rejection, product_id } => {
                // The code says what kind of refusal it was, as inventory's did.
                let code = match rejection {
                    Rejection::StockShort => Code::FailedPrecondition,
                    Rejection::ProductNotFound => Code::NotFound,
                };
                let refusal = refuse(code, ErrorReason::OrderRejected, message)
                    .metadata("order_id", order_id)
                    .metadata("rejection", rejection.as_str());
                match product_id {
                    Some(product_id) => refusal.metadata("product_id", product_id),
                    None => refusal,
                }
            }
            OrderError::Transition { order_id, from, to } => {
                refuse(Code::FailedPrecondition, ErrorReason::TransitionForbidden, message)
                    .metadata("order_id", order_id)
                    .metadata("from", from)
                    .metadata("to", to)
            }
            OrderError::Conflict(order_id) => {
                refuse(Code::Aborted, ErrorReason::ConcurrentChange, message).metadata("order_id", order_id)
            }
            OrderError::IdempotencyKeyReused => {
                refuse(Code::InvalidArgument, ErrorReason::IdempotencyKeyReused, message)
                    .field_violation("idempotency_key", "was already used for a different order")
            }
            // Only the recovery pass sees it: requests answer the pending
            // order instead (ORDER_PENDING is no longer sent).
            OrderError::InventoryUnavailable(order_id) => {
                refuse(Code::Unavailable, ErrorReason::Internal, message).metadata("order_id", order_id)
            }
            OrderError::InventoryAway(_) => {
                tracing::warn!(error = %message, "inventory away");
                refuse(Code::Unavailable, ErrorReason::Internal, "inventory cannot be reached now")
            }
            OrderError::StockShort { product_id, requested, available } => {
                refuse(Code::FailedPrecondition, ErrorReason::StockShort, message)
                    .metadata("product_id", product_id)
                    .metadata("requested", requested)
                    .metadata("available", available)
            }
            OrderError::ProductNotFound(product_id) => {
                refuse(Code::NotFound, ErrorReason::ProductNotFound, message).metadata("product_id", product_id)
            }
            OrderError::DeliveryMethodNotFound(id) => {
                refuse(Code::NotFound, ErrorReason::DeliveryMethodNotFound, message).metadata("delivery_method_id", id)
            }
            OrderError::PaymentRequired(order_id) => {
                refuse(Code::FailedPrecondition, ErrorReason::PaymentRequired, message).metadata("order_id", order_id)
            }
            OrderError::PaymentTransition { order_id, from, to } => {
                refuse(Code::FailedPrecondition, ErrorReason::PaymentTransitionForbidden, message)
                    .metadata("order_id", order_id)
                    .metadata("from", from)
                    .metadata("to", to)
            }
            OrderError::TotalOverflow | OrderError::Inventory(_) | OrderError::Storage(_) => {
                tracing::error!(error = %message, "order service failure");
                refuse(Code::Internal, ErrorReason::Internal, "internal error")
            }
        }
        .into()
    }
}

impl OrderError {
    /// What a failed call to inventory means: away for now (it, or its
    /// database, cannot be reached; decided by the status code, never its
    /// text), or an answer that was not expected.
    pub(crate) fn from_inventory(status: &Status) -> Self {
        // Unknown is the transport's (a connection reset before the
        // answer): inventory gives every refusal of its own a reason.
        let transport = rich_error::reason(status).is_none()
            && matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled | Code::Unknown);
        let away = transport || status.code() == Code::Unavailable;
        if away { Self::InventoryAway(status.to_string()) } else { Self::Inventory(status.to_string()) }
    }
}

impl shop_storage::StorageFailure for OrderError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
