//! The order service's errors, and their one mapping to gRPC status codes.

use tonic::{Code, Status};

use crate::domain::Status as OrderStatus;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("order {0} not found")]
    NotFound(i64),
    /// Inventory refused the reservation; the order is kept as rejected.
    #[error("order {order_id} rejected: {reason}")]
    Rejected { order_id: i64, reason: String, code: Code },
    #[error("an order cannot go from {from} to {to}")]
    Transition { from: OrderStatus, to: OrderStatus },
    #[error("order {0} was changed by someone else meanwhile; read it again")]
    Conflict(i64),
    #[error(
        "inventory is unavailable; order {0} is recorded as pending and will be confirmed or rejected automatically"
    )]
    InventoryUnavailable(i64),
    #[error("order total does not fit in 64 bits")]
    TotalOverflow,
    #[error("inventory answered unexpectedly: {0}")]
    Inventory(String),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl OrderError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<OrderError> for Status {
    fn from(error: OrderError) -> Self {
        match &error {
            OrderError::Invalid { .. } => Status::invalid_argument(error.to_string()),
            OrderError::NotFound(_) => Status::not_found(error.to_string()),
            OrderError::Rejected { code, .. } => Status::new(*code, error.to_string()),
            OrderError::Transition { .. } | OrderError::TotalOverflow => Status::failed_precondition(error.to_string()),
            OrderError::Conflict(_) => Status::aborted(error.to_string()),
            OrderError::InventoryUnavailable(_) => Status::unavailable(error.to_string()),
            OrderError::Inventory(_) | OrderError::Storage(_) => {
                tracing::error!(error = %error, "order service failure");
                Status::internal("internal error")
            }
        }
    }
}

impl shop_storage::StorageFailure for OrderError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
