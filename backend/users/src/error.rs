//! The user service's errors, and their one mapping to gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("an account with this email already exists")]
    EmailTaken,
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
        match error {
            UserError::Invalid { .. } => Status::invalid_argument(error.to_string()),
            UserError::EmailTaken => Status::already_exists(error.to_string()),
            UserError::NotFound => Status::not_found(error.to_string()),
            UserError::BadCredentials => Status::unauthenticated(error.to_string()),
            UserError::Hashing(_) | UserError::Storage(_) => {
                // The detail is for operators; clients learn only that it failed.
                tracing::error!(error = %error, "user service failure");
                Status::internal("internal error")
            }
        }
    }
}

impl shop_storage::StorageFailure for UserError {
    fn is_storage_failure(&self) -> bool {
        matches!(self, Self::Storage(error) if error.is_storage_failure())
    }
}
