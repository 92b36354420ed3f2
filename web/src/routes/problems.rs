//! `/problems/<slug>`: what each problem type of the JSON API means. Every
//! `application/problem+json` answer names one of these as its `type`, so
//! a client matches on it, and a person who meets it can read what it is.

use axum::extract::Path;
use axum::response::Response;

use crate::context::{Ctx, Pages};
use crate::error::AppError;

const PROBLEM: Pages = Pages::new("problem.html", "problem.html");

/// Every problem type, and what it means.
pub const PROBLEMS: &[(&str, &str)] = &[
    ("bad-request", "The request could not be read: a malformed body or query string."),
    ("invalid-fields", "Some fields are missing or wrong; `errors` names each with what is wrong."),
    ("sign-in-required", "Sign in first (POST /users/login); the session cookie carries it."),
    ("invalid-credentials", "The email or the password is wrong (which one is not said)."),
    ("forbidden", "You are signed in, but this is not yours to do (an admin's action, say)."),
    ("not-found", "There is nothing at this address."),
    ("user-not-found", "No such account, or not yours to see."),
    ("product-not-found", "No such product (it may have been deleted)."),
    ("order-not-found", "No such order, or not yours to see."),
    ("email-taken", "An account with this email already exists."),
    ("stock-short", "There is not enough stock of a product."),
    ("stock-would-go-negative", "The stock change would take the stock below zero; nothing changed."),
    ("reservation-released", "The order's stock was already given back (it was cancelled)."),
    (
        "order-rejected",
        "The order was not placed (not enough stock) and is kept as rejected; a retry with the same Idempotency-Key gets the same answer, a new key is a new order.",
    ),
    (
        "order-pending",
        "The order is recorded as pending and will be confirmed or rejected within a minute; look at it under /orders.",
    ),
    ("transition-forbidden", "The order cannot move to that status from the one it has."),
    ("concurrent-change", "The order changed meanwhile; read it again and decide anew."),
    ("category-not-found", "No such category (it may have been deleted)."),
    ("category-name-taken", "A category with this name already exists."),
    ("address-not-found", "No such address, or not yours to see."),
    ("reset-link-invalid", "The password reset link is unknown, used or expired; ask for a new one."),
    ("delivery-method-not-found", "No such delivery method, or not offered now."),
    ("payment-required", "The order is to be paid by bank transfer first; mark it paid before shipping."),
    ("payment-transition-forbidden", "The order's payment state cannot make that move."),
    ("unsupported-media-type", "Send the body as application/json or application/x-www-form-urlencoded."),
    ("too-large", "The request body is too large: 64 KiB for forms and JSON, 10 MiB for a picture."),
    ("too-many-requests", "Too many attempts; wait for the seconds `Retry-After` says."),
    ("cross-site-write", "A write sent by another site was refused."),
    ("service-unavailable", "A service of the shop is unreachable just now; try again shortly."),
    ("internal", "Something failed on the shop's side; `trace_id` names the request for the shop's operators."),
];

pub async fn show(ctx: Ctx, Path(slug): Path<String>) -> Result<Response, AppError> {
    let (slug, meaning) = PROBLEMS
        .iter()
        .find(|(known, _)| *known == slug)
        .ok_or_else(|| AppError::NotFound(format!("There is no problem type {slug:?}.")))?;
    let value = serde_json::json!({ "type": format!("/problems/{slug}"), "slug": slug, "meaning": meaning });
    Ok(ctx.show(PROBLEM, "problem", &value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AppError, Refusal};

    /// Every type the gateway can answer with has its page.
    #[test]
    fn every_problem_type_is_described() {
        let refusals = [
            Refusal::EmailTaken,
            Refusal::UserNotFound,
            Refusal::ProductNotFound,
            Refusal::StockShort,
            Refusal::StockWouldGoNegative,
            Refusal::ReservationReleased,
            Refusal::OrderNotFound,
            Refusal::OrderRejected,
            Refusal::OrderPending,
            Refusal::TransitionForbidden,
            Refusal::ConcurrentChange,
            Refusal::CategoryNotFound,
            Refusal::CategoryNameTaken,
            Refusal::AddressNotFound,
            Refusal::ResetLinkInvalid,
            Refusal::DeliveryMethodNotFound,
            Refusal::PaymentRequired,
            Refusal::PaymentTransitionForbidden,
        ];
        let errors = [
            AppError::BadRequest(String::new()),
            AppError::Invalid(Vec::new()),
            AppError::Unauthenticated,
            AppError::BadCredentials,
            AppError::Forbidden,
            AppError::NotFound(String::new()),
            AppError::UnsupportedMediaType,
            AppError::TooLarge,
            AppError::TooManyRequests { retry_after_secs: 1 },
            AppError::CrossSite,
            AppError::Unavailable(String::new()),
            AppError::Internal(String::new()),
            AppError::Missing(""),
        ];
        let slugs = refusals.iter().map(|r| r.slug()).chain(errors.iter().map(AppError::slug));
        for slug in slugs {
            assert!(PROBLEMS.iter().any(|(known, _)| *known == slug), "{slug} has no description");
        }
    }
}
