//! Forgotten passwords: a request form that answers the same whether or not
//! the email has an account, and the link from the email, which sets a new
//! password once and ends every session of the account.
//!
//! The link carries its token in the URL (`/users/password-reset/{token}`):
//! the one secret the shop ever puts in a URL, because an email can only
//! carry a link. That is acceptable here because the token works once, for
//! 30 minutes, and the users service keeps only its SHA-256 (a copy of the
//! database opens nothing). The page sends `Referrer-Policy: no-referrer`
//! so the URL does not leak to any site the page links to, the gateway
//! logs the route's template (`/users/password-reset/{token}`), never the
//! path itself, and the form posts the new password in the body.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shop_proto::users::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::{AppError, Refusal};
use crate::extract::Input;
use crate::negotiate::Want;
use crate::security::ClientAddress;
use crate::viewer;

const REQUEST: Pages = Pages::new("password_reset/request.html", "password_reset/_request_form.html");
const SENT: Pages = Pages::new("password_reset/sent.html", "password_reset/_sent.html");
const CHOOSE: Pages = Pages::new("password_reset/choose.html", "password_reset/_choose_form.html");

/// What every reset request is told, whoever's email it was.
pub const SENT_MESSAGE: &str = "If an account has this email, we sent a link to it; it works for 30 minutes.";

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResetRequestInput {
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetRequested {
    /// Always the same sentence: the answer never says whether the email
    /// has an account.
    pub message: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct NewPasswordInput {
    /// 8 to 128 characters.
    pub new_password: Option<String>,
}

pub async fn request_form(ctx: Ctx) -> Response {
    let context = minijinja::context! { values => BTreeMap::<String, String>::new(), errors => BTreeMap::<String, String>::new() };
    ctx.render(REQUEST, context)
}

/// Asks for a reset link. The answer is the same whether or not an account
/// has the email; limited per client address and per email like sign-in.
#[utoipa::path(post, path = "/users/password-reset", tag = "users", request_body = ResetRequestInput,
    responses((status = 202, description = "Accepted; the same answer for every email", body = ResetRequested),
              (status = 429, description = "Too many requests; see Retry-After", body = crate::error_page::ProblemBody)))]
pub async fn request(
    ctx: Ctx,
    ClientAddress(address): ClientAddress,
    Input(input): Input<ResetRequestInput>,
) -> Result<Response, AppError> {
    let email = input.email.unwrap_or_default();
    ctx.state.limits.check("password-reset", address, &email).await?;
    ctx.services().users().request_password_reset(pb::RequestPasswordResetRequest { email }).await?;
    let answer = ResetRequested { message: SENT_MESSAGE.to_owned() };
    let mut response = match ctx.want {
        Want::Json => axum::Json(&answer).into_response(),
        _ => ctx.render(SENT, minijinja::context! { message => SENT_MESSAGE }),
    };
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// The reset link's page is never named to another site (see the module's
/// comment).
fn no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn choose_context(token: &str, errors: BTreeMap<String, String>) -> minijinja::Value {
    minijinja::context! { token => token, values => BTreeMap::<String, String>::new(), errors => errors }
}

/// A token is 64 lower-case hex digits; anything else is shown as an
/// invalid link rather than echoed into the form's action.
fn token_of(raw: &str) -> &str {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) { raw } else { "" }
}

pub async fn choose_form(ctx: Ctx, Path(token): Path<String>) -> Response {
    no_referrer(ctx.render(CHOOSE, choose_context(token_of(&token), BTreeMap::new())))
}

/// Sets a new password with a reset link's token: once, within 30 minutes.
/// Every session of the account ends (on every replica); the person then
/// signs in with the new password.
#[utoipa::path(post, path = "/users/password-reset/{token}", tag = "users", request_body = NewPasswordInput,
    params(("token" = String, Path, description = "The token from the emailed link")),
    responses((status = 204, description = "The password is set; every session of the account has ended"),
              (status = 400, description = "The link is used, expired or wrong", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody),
              (status = 429, description = "Too many attempts; see Retry-After", body = crate::error_page::ProblemBody)))]
pub async fn reset(
    ctx: Ctx,
    ClientAddress(address): ClientAddress,
    Path(token): Path<String>,
    Input(input): Input<NewPasswordInput>,
) -> Result<Response, AppError> {
    let token = token_of(&token).to_owned();
    // Guessing tokens is hopeless (244 bits), and limited besides.
    ctx.state.limits.check_address("password-reset-link", address).await?;
    let request =
        pb::ResetPasswordRequest { token: token.clone(), new_password: input.new_password.unwrap_or_default() };
    let user_id = match ctx.services().users().reset_password(request).await {
        Ok(answer) => answer.into_inner().user_id,
        Err(status) => {
            let error = AppError::from(status);
            if !ctx.is_html() {
                return Err(error);
            }
            let mut errors: BTreeMap<String, String> =
                error.field_errors().into_iter().map(|error| (error.field, error.message)).collect();
            if let AppError::Refused { refusal: Refusal::ResetLinkInvalid, detail, .. } = &error {
                errors.insert("form".into(), detail.clone());
            }
            if errors.is_empty() {
                return Err(error);
            }
            let mut response = ctx.render(CHOOSE, choose_context(&token, errors));
            *response.status_mut() = error.status();
            return Ok(no_referrer(response));
        }
    };
    // Every session of the account signed in until now ends, on every
    // replica (each checks before trusting a session), this one too.
    ctx.state.sessions.revoked.end_sessions(user_id, viewer::now_ms()).await.map_err(AppError::Internal)?;
    if ctx.user().is_ok() {
        viewer::sign_out(&ctx.session).await?;
    }
    tracing::info!(user_id, "password reset; sessions ended");
    ctx.redirect(
        "/users/login",
        "Your password was changed, and every session of your account has been signed out. Sign in with your new password."
            .into(),
    )
    .await
}
