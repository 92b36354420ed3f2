//! Accounts: registering, signing in and out, and the profile. The users
//! service decides who may see or change a profile (anyone else's is "not
//! found"); the gateway keeps the session in step.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shop_proto::users::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::events::FOREVER;
use crate::extract::{Id, Input, User, number_or_blank};
use crate::negotiate::Want;
use crate::return_to::safe_next;
use crate::security::ClientAddress;
use crate::viewer::{self, SessionUser};
use crate::views::UserView;

const REGISTER: Pages = Pages::new("users/register.html", "users/_register_form.html");
const LOGIN: Pages = Pages::new("users/login.html", "users/_login_form.html");
const CARD: Pages = Pages::new("users/show.html", "users/_card.html");
const EDIT: Pages = Pages::new("users/edit.html", "users/_edit_form.html");

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RegisterInput {
    pub email: Option<String>,
    pub name: Option<String>,
    pub password: Option<String>,
    /// Where a browser goes afterwards (a path on this site).
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LoginInput {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Where a browser goes afterwards (a path on this site).
    pub next: Option<String>,
}

/// Only what is sent changes; a blank password means "keep it".
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UserUpdateInput {
    pub email: Option<String>,
    pub name: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdQuery {
    #[serde(default, deserialize_with = "number_or_blank")]
    pub id: Option<i64>,
}

fn session_user(user: &UserView) -> SessionUser {
    SessionUser {
        id: user.id,
        name: user.name.clone(),
        email: user.email.clone(),
        admin: user.is_admin(),
        signed_in_at_ms: 0,
    }
}

fn user_of(user: Option<pb::User>) -> Result<UserView, AppError> {
    user.map(UserView::from).ok_or(AppError::Missing("users returned no user"))
}

/// What was typed into a form (never the password), to show it again.
fn typed<const N: usize>(fields: [(&str, Option<String>); N]) -> BTreeMap<String, String> {
    fields.into_iter().filter_map(|(name, value)| Some((name.to_owned(), value?))).collect()
}

/// A form with nothing typed yet, coming back to `next` afterwards.
fn blank(ctx: &Ctx, pages: Pages, next: Option<&str>) -> Response {
    let values = BTreeMap::from([("next", safe_next(next))]);
    ctx.render(pages, minijinja::context! { values => values, errors => BTreeMap::<String, String>::new() })
}

pub async fn register_form(ctx: Ctx, Query(query): Query<NextQuery>) -> Response {
    blank(&ctx, REGISTER, query.next.as_deref())
}

/// Creates a customer account and signs it in.
#[utoipa::path(post, path = "/users/register", tag = "users", request_body = RegisterInput,
    responses((status = 201, description = "Registered and signed in; `Location` names the profile", body = UserView),
              (status = 409, description = "The email is taken", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn register(
    mut ctx: Ctx,
    ClientAddress(address): ClientAddress,
    Input(input): Input<RegisterInput>,
) -> Result<Response, AppError> {
    ctx.state.limits.check("register", address, input.email.as_deref().unwrap_or_default()).await?;
    let (email, name, password) = (input.email.clone(), input.name.clone(), input.password.clone());
    let request = pb::RegisterUserRequest {
        email: email.unwrap_or_default(),
        name: name.unwrap_or_default(),
        password: password.unwrap_or_default(),
    };
    let user = match ctx.services().users().register_user(request).await {
        Ok(registered) => user_of(registered.into_inner().user)?,
        Err(status) => {
            let values =
                typed([("email", input.email), ("name", input.name), ("next", Some(safe_next(input.next.as_deref())))]);
            return ctx.form_again(REGISTER, status.into(), values, minijinja::context! {});
        }
    };
    let signed_in = session_user(&user);
    viewer::sign_in(&ctx.session, signed_in.clone()).await?;
    // The cart chosen before registering becomes the account's.
    let told = super::cart::merge_guest_cart(&mut ctx, &signed_in).await?;
    match ctx.want {
        Want::Json => ctx.created(&format!("/users/{}", user.id), &user, String::new()).await,
        _ => ctx.redirect(&safe_next(input.next.as_deref()), told).await,
    }
}

pub async fn login_form(ctx: Ctx, Query(query): Query<NextQuery>) -> Response {
    blank(&ctx, LOGIN, query.next.as_deref())
}

/// Signs in with an email and password. A wrong email and a wrong password
/// get the same answer.
#[utoipa::path(post, path = "/users/login", tag = "users", request_body = LoginInput,
    responses((status = 200, description = "Signed in; the session cookie is set", body = UserView),
              (status = 401, description = "Invalid email or password", body = crate::error_page::ProblemBody),
              (status = 429, description = "Too many attempts; see Retry-After", body = crate::error_page::ProblemBody)))]
pub async fn login(
    mut ctx: Ctx,
    ClientAddress(address): ClientAddress,
    Input(input): Input<LoginInput>,
) -> Result<Response, AppError> {
    ctx.state.limits.check("login", address, input.email.as_deref().unwrap_or_default()).await?;
    let request = pb::AuthenticateUserRequest {
        email: input.email.clone().unwrap_or_default(),
        password: input.password.clone().unwrap_or_default(),
    };
    let user = match ctx.services().users().authenticate_user(request).await {
        Ok(answer) => user_of(answer.into_inner().user)?,
        Err(status) => {
            let values = typed([("email", input.email), ("next", Some(safe_next(input.next.as_deref())))]);
            return ctx.form_again(LOGIN, status.into(), values, minijinja::context! {});
        }
    };
    let signed_in = session_user(&user);
    viewer::sign_in(&ctx.session, signed_in.clone()).await?;
    // The guest cart joins the one kept for the account; told once what was cut.
    let told = super::cart::merge_guest_cart(&mut ctx, &signed_in).await?;
    match ctx.want {
        Want::Json => Ok(axum::Json(&user).into_response()),
        _ => ctx.redirect(&safe_next(input.next.as_deref()), told).await,
    }
}

/// Signs out: the session is deleted from the store.
#[utoipa::path(post, path = "/users/logout", tag = "users", responses((status = 204, description = "Signed out")))]
pub async fn logout(ctx: Ctx) -> Result<Response, AppError> {
    viewer::sign_out(&ctx.session).await?;
    ctx.redirect("/", String::new()).await
}

/// `GET /users?id=N` goes to `/users/N`.
#[utoipa::path(get, path = "/users", tag = "users", params(IdQuery),
    responses((status = 303, description = "See /users/{id}"), (status = 400, body = crate::error_page::ProblemBody)))]
pub async fn by_query(
    query: Result<Query<IdQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let id = query
        .ok()
        .and_then(|Query(q)| q.id)
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::BadRequest("name a user with ?id=N, N a positive whole number".into()))?;
    Ok(Redirect::to(&format!("/users/{id}")).into_response())
}

/// A profile (your own is cached; `X-Cache` says whether this read was a hit).
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such user, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<User>) -> Result<Response, AppError> {
    let me = ctx.user()?.id;
    let (profile, lookup) = ctx.state.profiles.get(&ctx.services(), me, id).await?;
    Ok(ctx.show_cached(CARD, "user", &profile, lookup))
}

pub async fn edit_form(ctx: Ctx, Id(id, _): Id<User>) -> Result<Response, AppError> {
    let me = ctx.user()?.id;
    let (profile, _) = ctx.state.profiles.get(&ctx.services(), me, id).await?;
    let values = BTreeMap::from([("email", profile.email.clone()), ("name", profile.name.clone())]);
    let context = minijinja::context! { user => minijinja::value::Serde(&profile), values => values, errors => BTreeMap::<String, String>::new() };
    Ok(ctx.render(EDIT, context))
}

/// Changes a profile: name, email, password. The profile form posts to the
/// same URL. A new password ends every other session of the account.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserUpdateInput,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, body = crate::error_page::ProblemBody), (status = 409, description = "The email is taken", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update(ctx: Ctx, Id(id, _): Id<User>, Input(input): Input<UserUpdateInput>) -> Result<Response, AppError> {
    let me = ctx.user()?.id;
    let password = input.password.filter(|p| !p.is_empty());
    let request =
        pb::UpdateUserRequest { id, email: input.email.clone(), name: input.name.clone(), password: password.clone() };
    let updated = ctx.services().users().update_user(request).await;
    ctx.state.profiles.forget(id).await;
    let profile = match updated {
        Ok(updated) => user_of(updated.into_inner().user)?,
        Err(status) => {
            let values = typed([("email", input.email), ("name", input.name)]);
            return ctx.form_again(
                EDIT,
                status.into(),
                values,
                minijinja::context! { user => minijinja::context! { id } },
            );
        }
    };
    if password.is_some() {
        // On every replica: each checks the revocation before trusting a session.
        ctx.state.sessions.revoked.end_sessions(id, viewer::now_ms()).await.map_err(AppError::Internal)?;
    }
    if id == me {
        viewer::refresh_user(&ctx.session, session_user(&profile), password.is_some()).await?;
    }
    ctx.done((CARD, "user", &profile), &format!("/users/{id}"), "The profile was saved.".into()).await
}

/// Deletes an account; deleting your own also signs you out. A form posts
/// to `/users/{id}/delete`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn delete(ctx: Ctx, Id(id, _): Id<User>) -> Result<Response, AppError> {
    let me = ctx.user()?.id;
    ctx.services().users().delete_user(pb::DeleteUserRequest { id }).await?;
    ctx.state.profiles.forget(id).await;
    // At once here; other replicas hear `user.deleted`.
    ctx.state.sessions.revoked.end_sessions(id, FOREVER).await.map_err(AppError::Internal)?;
    if id == me {
        viewer::sign_out(&ctx.session).await?;
    }
    ctx.redirect(if id == me { "/" } else { "/orders" }, "The account was deleted.".into()).await
}
