//! The inventory service's errors, and their one mapping to gRPC statuses,
//! each with its stable reason (`shop.errors.v1.ErrorReason`).

use shop_grpc::rich_error::{ErrorReason, refuse};
use tonic::{Code, Status};

use crate::images::ImageProblem;

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
    #[error("category {0} not found")]
    CategoryNotFound(i64),
    #[error("a category named {0:?} (or with the same slug) exists already")]
    CategoryNameTaken(String),
    #[error("picture refused: {}", .0.sentence())]
    ImageRefused(ImageProblem),
    #[error("no stored picture has the hash {0}")]
    ImageNotFound(String),
    #[error("product {product_id} has no picture {image_id}")]
    ProductImageNotFound { product_id: i64, image_id: i64 },
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    /// A failure of ours that is not the database's (a picture that would
    /// not encode, a task that panicked): logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl InventoryError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<shop_order_lines::LinesError> for InventoryError {
    fn from(error: shop_order_lines::LinesError) -> Self {
        Self::invalid(error.field(), error.message())
    }
}

impl From<InventoryError> for Status {
    fn from(error: InventoryError) -> Self {
        let message = error.to_string();
        // A database that cannot be reached is the transport's kind of
        // failure (no reason of ours): callers answer 503 and may retry.
        if let InventoryError::Storage(storage) = &error
            && shop_storage::is_unreachable(storage)
        {
            tracing::warn!(error = %message, "inventory service: the database is unreachable");
            return Status::unavailable("the database is unavailable");
        }
        match error {
            InventoryError::Invalid { field, message: description } => {
                refuse(Code::InvalidArgument, ErrorReason::FieldInvalid, message).field_violation(field, description)
            }
            InventoryError::ProductNotFound(product_id) => {
                refuse(Code::NotFound, ErrorReason::ProductNotFound, message).metadata("product_id", product_id)
            }
            InventoryError::InsufficientStock { product_id, requested, available } => {
                refuse(Code::FailedPrecondition, ErrorReason::StockShort, message)
                    .metadata("product_id", product_id)
                    .metadata("requested", requested)
                    .metadata("available", available)
            }
            InventoryError::StockBelowZero(product_id) => {
                refuse(Code::FailedPrecondition, ErrorReason::StockWouldGoNegative, message)
                    .metadata("product_id", product_id)
            }
            InventoryError::Released(order_id) => {
                refuse(Code::FailedPrecondition, ErrorReason::ReservationReleased, message)
                    .metadata("order_id", order_id)
            }
            InventoryError::CategoryNotFound(category_id) => {
                refuse(Code::NotFound, ErrorReason::CategoryNotFound, message).metadata("category_id", category_id)
            }
            InventoryError::CategoryNameTaken(_) => {
                refuse(Code::AlreadyExists, ErrorReason::CategoryNameTaken, message)
                    .field_violation("name", "another category has this name")
            }
            InventoryError::ImageRefused(problem) => {
                refuse(Code::InvalidArgument, ErrorReason::ImageRefused, problem.sentence())
                    .metadata("problem", problem.code())
                    .field_violation("image", problem.sentence())
            }
            InventoryError::ImageNotFound(hash) => {
                refuse(Code::NotFound, ErrorReason::ImageNotFound, message).metadata("hash", hash)
            }
            InventoryError::ProductImageNotFound { product_id, image_id } => {
                refuse(Code::NotFound, ErrorReason::ImageNotFound, message)
                    .metadata("product_id", product_id)
                    .metadata("image_id", image_id)
            }
            InventoryError::Storage(_) | InventoryError::Internal(_) => {
                tracing::error!(error = %message, "inventory service failure");
                refuse(Code::Internal, ErrorReason::Internal, "internal error")
            }
        }
        .into()
    }
}

impl shop_storage::StorageFailure for InventoryError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
