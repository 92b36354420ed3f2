//! Why a call was refused, in gRPC's standard rich error model: each
//! refusal is a `Status` carrying one `google.rpc.ErrorInfo` (a stable
//! [`ErrorReason`], the domain `"shop"`, metadata such as `product_id`) and,
//! for invalid input, a `google.rpc.BadRequest` of field violations.
//!
//! Services build refusals with [`refuse`], once, in their error mapping;
//! clients decide with [`reason`], [`metadata`] and [`field_violations`].
//! The status message is for people: nothing reads it to decide anything.
//!
//! ```
//! use shop_grpc::rich_error::{self, ErrorReason};
//! use tonic::Code;
//!
//! let status: tonic::Status = rich_error::refuse(Code::FailedPrecondition, ErrorReason::StockShort, "not enough stock")
//!     .metadata("product_id", 7)
//!     .into();
//! assert_eq!(rich_error::reason(&status), Some(ErrorReason::StockShort));
//! assert_eq!(rich_error::metadata(&status, "product_id").as_deref(), Some("7"));
//! ```

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use shop_proto::errors::v1::ErrorReason;

/// The `ErrorInfo.domain` of every refusal the shop's services make.
pub const DOMAIN: &str = "shop";

/// What prost names each value starts with; `ErrorInfo.reason` goes without.
const PREFIX: &str = "ERROR_REASON_";

/// The `ErrorInfo.reason` string of `reason`: its name without the prefix
/// (`STOCK_SHORT`).
pub fn reason_name(reason: ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix(PREFIX).unwrap_or(name)
}

/// A refusal being built; it becomes a [`Status`] with `.into()`.
#[derive(Debug, Clone)]
#[must_use = "a refusal does nothing until it becomes a Status"]
pub struct Refusal {
    code: Code,
    reason: ErrorReason,
    message: String,
    metadata: HashMap<String, String>,
    violations: Vec<(String, String)>,
}

/// Starts a refusal with its code, its one reason and a message for people.
pub fn refuse(code: Code, reason: ErrorReason, message: impl Into<String>) -> Refusal {
    Refusal { code, reason, message: message.into(), metadata: HashMap::new(), violations: Vec::new() }
}

impl Refusal {
    /// Adds an `ErrorInfo.metadata` entry (ids as decimal, names as text).
    pub fn metadata(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    /// Adds a `BadRequest` field violation: the request field (dotted path,
    /// e.g. `items.quantity`) and what is wrong with it.
    pub fn field_violation(mut self, field: &str, description: impl Into<String>) -> Self {
        self.violations.push((field.to_owned(), description.into()));
        self
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let mut details = ErrorDetails::with_error_info(reason_name(refusal.reason), DOMAIN, refusal.metadata);
        for (field, description) in refusal.violations {
            details.add_bad_request_violation(field, description);
        }
        Status::with_error_details(refusal.code, refusal.message, details)
    }
}

/// The shop's reason for refusing, if `status` carries one (from a service
/// of this shop: another domain's reasons are not ours to interpret).
pub fn reason(status: &Status) -> Option<ErrorReason> {
    let info = status.get_details_error_info()?;
    if info.domain != DOMAIN {
        return None;
    }
    ErrorReason::from_str_name(&format!("{PREFIX}{}", info.reason)).filter(|r| *r != ErrorReason::Unspecified)
}

/// One `ErrorInfo.metadata` value of a shop refusal.
pub fn metadata(status: &Status, key: &str) -> Option<String> {
    let mut info = status.get_details_error_info().filter(|info| info.domain == DOMAIN)?;
    info.metadata.remove(key)
}

/// The `BadRequest` field violations, as (field, description), in the order
/// the service listed them; empty when there are none.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_round_trips_through_the_wire_form() {
        let status: Status = refuse(Code::InvalidArgument, ErrorReason::FieldInvalid, "email: is required")
            .field_violation("email", "is required")
            .field_violation("name", "is required")
            .metadata("order_id", 12)
            .into();
        // What a client receives: the status rebuilt from its header bytes.
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).expect("headers");
        let received = Status::from_header_map(&headers).expect("a status");
        assert_eq!(received.code(), Code::InvalidArgument);
        assert_eq!(reason(&received), Some(ErrorReason::FieldInvalid));
        assert_eq!(metadata(&received, "order_id").as_deref(), Some("12"));
        assert_eq!(metadata(&received, "product_id"), None);
        assert_eq!(
            field_violations(&received),
            vec![("email".to_owned(), "is required".to_owned()), ("name".to_owned(), "is required".to_owned())]
        );
    }

    #[test]
    fn every_reason_has_a_name_that_reads_back() {
        for value in 1..100 {
            let Ok(reason) = ErrorReason::try_from(value) else { continue };
            let name = reason_name(reason);
            assert!(!name.starts_with(PREFIX) && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'), "{name}");
            let status: Status = refuse(Code::Unknown, reason, "").into();
            assert_eq!(super::reason(&status), Some(reason));
        }
        assert_eq!(reason_name(ErrorReason::StockShort), "STOCK_SHORT");
    }

    #[test]
    fn statuses_without_a_shop_reason_have_none() {
        let plain = Status::not_found("order 3 not found");
        assert_eq!((reason(&plain), metadata(&plain, "order_id")), (None, None));
        assert!(field_violations(&plain).is_empty());
        let foreign = Status::with_error_details(
            Code::NotFound,
            "elsewhere",
            ErrorDetails::with_error_info("STOCK_SHORT", "example.com", HashMap::new()),
        );
        assert_eq!(reason(&foreign), None);
        let unknown = Status::with_error_details(
            Code::NotFound,
            "from a newer service",
            ErrorDetails::with_error_info("SOMETHING_NEW", DOMAIN, HashMap::new()),
        );
        assert_eq!(reason(&unknown), None);
    }
}
