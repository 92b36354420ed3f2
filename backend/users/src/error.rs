//! The user service's errors, and their one mapping to gRPC statuses, each
//! with its stable reason (`shop.errors.v1.ErrorReason`).

use shop_grpc::rich_error::{ErrorReason, refuse};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// Several fields wrong at once (an address), each with its reason.
    #[error("{}", .0.iter().map(|(field, message)| format!("{field}: {message}")).collect::<Vec<_>>().join("; "))]
    InvalidFields(Vec<(&'static str, String)>),
    /// No such address, or not the caller's: one answer for both.
    #[error("address not found")]
    AddressNotFound(i64),
    /// A password reset token that is unknown, used, superseded or expired.
    #[error("this password reset link is invalid or has expired")]
    ResetLinkInvalid,
    #[error("an account with this email already exists")]
    EmailTaken,
    /// No such user, or one the caller may not see: one answer for both.
    #[error("user not found")]
    NotFound,
    #[error("invalid email or password")]
    BadCredentials,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl UserError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl From<UserError> for Status {
    fn from(error: UserError) -> Self {
        let message = error.to_string();
        // A database that cannot be reached is the transport's kind of
        // failure (no reason of ours): callers answer 503 and may retry.
        if let UserError::Storage(storage) = &error
            && shop_storage::is_unreachable(storage)
        {
            tracing::warn!(error = %message, "user service: the database is unreachable");
            return Status::unavailable("the database is unavailable");
        }
        match error {
            UserError::Invalid { field, message: description } => {
                refuse(Code::InvalidArgument, ErrorReason::FieldInvalid, message).field_violation(field, description)
            }
            UserError::InvalidFields(problems) => problems.into_iter().fold(
                refuse(Code::InvalidArgument, ErrorReason::FieldInvalid, message),
                |refusal, (field, description)| refusal.field_violation(field, description),
            ),
            UserError::AddressNotFound(id) => {
                refuse(Code::NotFound, ErrorReason::AddressNotFound, message).metadata("address_id", id)
            }
            UserError::ResetLinkInvalid => refuse(Code::InvalidArgument, ErrorReason::ResetLinkInvalid, message),
            UserError::EmailTaken => {
                refuse(Code::AlreadyExists, ErrorReason::EmailTaken, message).field_violation("email", "is taken")
            }
            UserError::NotFound => refuse(Code::NotFound, ErrorReason::UserNotFound, message),
            UserError::BadCredentials => refuse(Code::Unauthenticated, ErrorReason::InvalidCredentials, message),
            UserError::Hashing(_) | UserError::Storage(_) => {
                // The detail is for operators; clients learn only that it failed.
                tracing::error!(error = %message, "user service failure");
                refuse(Code::Internal, ErrorReason::Internal, "internal error")
            }
        }
        .into()
    }
}

impl shop_storage::StorageFailure for UserError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
