//! The inventory service's errors, and their one mapping to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("product {0} not found")]
    ProductNotFound(i64),
    #[error("not enough stock for product {product_id}: {requested} wanted, {available} available")]
    InsufficientStock { product_id: i64, requested: i64, available: i64 },
    #[error("stock of product {0} cannot go below zero")]
    StockBelowZero(i64),
    #[error("order {0} has been released and cannot reserve stock again")]
    Released(i64),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl InventoryError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<InventoryError> for Status {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Invalid { .. } => Status::invalid_argument(error.to_string()),
            InventoryError::ProductNotFound(_) => Status::not_found(error.to_string()),
            InventoryError::InsufficientStock { .. }
            | InventoryError::StockBelowZero(_)
            | InventoryError::Released(_) => Status::failed_precondition(error.to_string()),
            InventoryError::Storage(_) => {
                tracing::error!(error = %error, "inventory service failure");
                Status::internal("internal error")
            }
        }
    }
}

impl shop_storage::StorageFailure for InventoryError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
