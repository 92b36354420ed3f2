//! Accounts: registering, signing in and out, and the profile. A customer
//! sees and changes only their own profile; admins, anyone's.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shop_proto::users::v1 as pb;
use tower_sessions::Session;
use utoipa::ToSchema;

use crate::AppState;
use crate::cache::Lookup;
use crate::error::{AppError, FieldError};
use crate::extract::{Input, number_or_blank};
use crate::negotiate::Want;
use crate::security::ClientAddress;
use crate::session::{self, CurrentUser, SessionUser, Viewer};
use crate::views::UserView;

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

/// A path on this site to go to after signing in; anything else (another
/// site, `//evil.example`) becomes `/`, so the parameter cannot be used to
/// send people elsewhere.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The sign-in page, coming back to `next` afterwards.
pub fn login_url(next: &str) -> String {
    let next = safe_next(Some(next));
    if next == "/" {
        return "/users/login".to_owned();
    }
    let encoded: String = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
    format!("/users/login?{encoded}")
}

fn user_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| AppError::NotFound(format!("There is no user {raw:?}.")))
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

fn field_map(errors: &[FieldError]) -> BTreeMap<String, String> {
    errors.iter().map(|e| (e.field.clone(), e.message.clone())).collect()
}

/// A form again, with what was typed (never the password) and what is wrong.
fn form_again(
    state: &AppState,
    viewer: &Viewer,
    want: Want,
    (page, partial): (&str, &str),
    values: BTreeMap<&str, String>,
    errors: BTreeMap<String, String>,
    status: StatusCode,
) -> Response {
    let mut response = state.templates.respond(
        viewer,
        want,
        page,
        partial,
        minijinja::context! { values => values, errors => errors },
    );
    *response.status_mut() = status;
    response
}

/// A form with nothing typed yet, coming back to `next` afterwards.
fn blank_form(
    State(state): State<AppState>,
    viewer: Viewer,
    want: Want,
    Query(query): Query<NextQuery>,
    templates: (&str, &str),
) -> Response {
    let values = BTreeMap::from([("next", safe_next(query.next.as_deref()))]);
    form_again(&state, &viewer, want, templates, values, BTreeMap::new(), StatusCode::OK)
}

pub async fn register_form(state: State<AppState>, viewer: Viewer, want: Want, query: Query<NextQuery>) -> Response {
    blank_form(state, viewer, want, query, ("users/register.html", "users/_register_form.html"))
}

/// Creates a customer account and signs it in.
#[utoipa::path(post, path = "/users/register", tag = "users", request_body = RegisterInput,
    responses((status = 201, description = "Registered and signed in; `Location` names the profile", body = UserView),
              (status = 409, description = "The email is taken", body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody)))]
pub async fn register(
    State(state): State<AppState>,
    session: Session,
    viewer: Viewer,
    want: Want,
    ClientAddress(address): ClientAddress,
    Input(input): Input<RegisterInput>,
) -> Result<Response, AppError> {
    state.limits.check("register", address, input.email.as_deref().unwrap_or_default())?;
    let request = pb::RegisterUserRequest {
        email: input.email.clone().unwrap_or_default(),
        name: input.name.clone().unwrap_or_default(),
        password: input.password.clone().unwrap_or_default(),
    };
    let registered = state.users.clone().register_user(request).await.map_err(AppError::from);
    let user = match registered.map(|r| r.into_inner().user.map(UserView::from)) {
        Ok(Some(user)) => user,
        Ok(None) => return Err(AppError::Internal("users returned no user".into())),
        Err(error) if want.is_html() => {
            let (errors, status) = match error {
                AppError::Invalid(errors) => (field_map(&errors), StatusCode::UNPROCESSABLE_ENTITY),
                AppError::Conflict(message) => (BTreeMap::from([("email".to_owned(), message)]), StatusCode::CONFLICT),
                other => return Err(other),
            };
            let values = BTreeMap::from([
                ("email", input.email.unwrap_or_default()),
                ("name", input.name.unwrap_or_default()),
                ("next", safe_next(input.next.as_deref())),
            ]);
            return Ok(form_again(
                &state,
                &viewer,
                want,
                ("users/register.html", "users/_register_form.html"),
                values,
                errors,
                status,
            ));
        }
        Err(error) => return Err(error),
    };
    session::sign_in(&session, session_user(&user)).await?;
    Ok(match want {
        Want::Json => super::created(want, &format!("/users/{}", user.id), &user),
        _ => super::see_other(want, &safe_next(input.next.as_deref())),
    })
}

pub async fn login_form(state: State<AppState>, viewer: Viewer, want: Want, query: Query<NextQuery>) -> Response {
    blank_form(state, viewer, want, query, ("users/login.html", "users/_login_form.html"))
}

/// Signs in with an email and password. A wrong email and a wrong password
/// get the same answer.
#[utoipa::path(post, path = "/users/login", tag = "users", request_body = LoginInput,
    responses((status = 200, description = "Signed in; the session cookie is set", body = UserView),
              (status = 401, description = "Invalid email or password", body = crate::error::ProblemBody),
              (status = 429, description = "Too many attempts; see Retry-After", body = crate::error::ProblemBody)))]
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    viewer: Viewer,
    want: Want,
    ClientAddress(address): ClientAddress,
    Input(input): Input<LoginInput>,
) -> Result<Response, AppError> {
    state.limits.check("login", address, input.email.as_deref().unwrap_or_default())?;
    let request = pb::AuthenticateUserRequest {
        email: input.email.clone().unwrap_or_default(),
        password: input.password.clone().unwrap_or_default(),
    };
    let user = match state.users.clone().authenticate_user(request).await {
        Ok(answer) => answer
            .into_inner()
            .user
            .map(UserView::from)
            .ok_or_else(|| AppError::Internal("users returned no user".into()))?,
        Err(status) if status.code() == tonic::Code::Unauthenticated && want.is_html() => {
            let values = BTreeMap::from([
                ("email", input.email.unwrap_or_default()),
                ("next", safe_next(input.next.as_deref())),
            ]);
            let errors = BTreeMap::from([("form".to_owned(), "Invalid email or password.".to_owned())]);
            return Ok(form_again(
                &state,
                &viewer,
                want,
                ("users/login.html", "users/_login_form.html"),
                values,
                errors,
                StatusCode::UNAUTHORIZED,
            ));
        }
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            return Ok(unauthenticated_json());
        }
        Err(status) => return Err(status.into()),
    };
    session::sign_in(&session, session_user(&user)).await?;
    Ok(match want {
        Want::Json => axum::Json(&user).into_response(),
        _ => super::see_other(want, &safe_next(input.next.as_deref())),
    })
}

/// For JSON clients a failed sign-in is a 401 that says why, not the
/// generic "please sign in".
fn unauthenticated_json() -> Response {
    let body = crate::error::ProblemBody {
        kind: "about:blank",
        title: "Unauthorized".into(),
        status: 401,
        detail: "invalid email or password".into(),
        errors: Vec::new(),
        trace_id: None,
    };
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// Signs out: the session is deleted from the store.
#[utoipa::path(post, path = "/users/logout", tag = "users", responses((status = 204, description = "Signed out")))]
pub async fn logout(session: Session, want: Want) -> Result<Response, AppError> {
    session::sign_out(&session).await?;
    Ok(match want {
        Want::Json => StatusCode::NO_CONTENT.into_response(),
        _ => super::see_other(want, "/"),
    })
}

/// `GET /users?id=N` goes to `/users/N`.
#[utoipa::path(get, path = "/users", tag = "users", params(IdQuery),
    responses((status = 303, description = "See /users/{id}"), (status = 400, body = crate::error::ProblemBody)))]
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

async fn fetch(state: &AppState, id: i64) -> Result<(UserView, Lookup), AppError> {
    let mut users = state.users.clone();
    state
        .cache
        .get_or_fetch(&format!("user:{id}"), async move {
            let user = users.get_user_profile(pb::GetUserProfileRequest { id }).await?.into_inner().user;
            user.map(UserView::from).ok_or_else(|| AppError::Internal("users returned no user".into()))
        })
        .await
}

/// The user if the viewer may see them. Anyone else's profile is "not
/// found": whether an account exists is nobody else's business.
async fn fetch_visible(state: &AppState, viewer: &CurrentUser, id: i64) -> Result<(UserView, Lookup), AppError> {
    if !viewer.may_access(id) {
        return Err(AppError::NotFound(format!("user {id} not found")));
    }
    fetch(state, id).await
}

/// A profile (cached; `X-Cache` says whether this read was a hit).
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::ProblemBody),
              (status = 404, description = "No such user, or not yours", body = crate::error::ProblemBody)))]
pub async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (profile, lookup) = fetch_visible(&state, &user, user_id(&id)?).await?;
    let mut response =
        state.templates.represent(&viewer, want, ("users/show.html", "users/_card.html"), "user", &profile);
    response.headers_mut().insert("x-cache", HeaderValue::from_static(lookup.header()));
    Ok(response)
}

pub async fn edit_form(
    State(state): State<AppState>,
    user: CurrentUser,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let (profile, _) = fetch_visible(&state, &user, user_id(&id)?).await?;
    let values = BTreeMap::from([("email", profile.email.clone()), ("name", profile.name.clone())]);
    let context = minijinja::context! { user => minijinja::value::Serde(&profile), values => values, errors => BTreeMap::<String, String>::new() };
    Ok(state.templates.respond(&viewer, want, "users/edit.html", "users/_edit_form.html", context))
}

/// Changes a profile: name, email, password. The profile form posts to the
/// same URL.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserUpdateInput,
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::ProblemBody),
              (status = 404, body = crate::error::ProblemBody), (status = 409, description = "The email is taken", body = crate::error::ProblemBody),
              (status = 422, body = crate::error::ProblemBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    viewer: Viewer,
    want: Want,
    Path(id): Path<String>,
    Input(input): Input<UserUpdateInput>,
) -> Result<Response, AppError> {
    let id = user_id(&id)?;
    let (current, _) = fetch_visible(&state, &user, id).await?;
    let request = pb::UpdateUserRequest {
        id,
        email: input.email.clone(),
        name: input.name.clone(),
        password: input.password.clone().filter(|p| !p.is_empty()),
    };
    let updated = state.users.clone().update_user(request).await.map_err(AppError::from);
    state.cache.invalidate(&format!("user:{id}")).await;
    let profile = match updated.map(|r| r.into_inner().user.map(UserView::from)) {
        Ok(Some(profile)) => profile,
        Ok(None) => return Err(AppError::Internal("users returned no user".into())),
        Err(error) if want.is_html() => {
            let (errors, status) = match error {
                AppError::Invalid(errors) => (field_map(&errors), StatusCode::UNPROCESSABLE_ENTITY),
                AppError::Conflict(message) => (BTreeMap::from([("email".to_owned(), message)]), StatusCode::CONFLICT),
                other => return Err(other),
            };
            let values = BTreeMap::from([
                ("email", input.email.unwrap_or(current.email.clone())),
                ("name", input.name.unwrap_or(current.name.clone())),
            ]);
            let context =
                minijinja::context! { user => minijinja::value::Serde(&current), values => values, errors => errors };
            let mut response =
                state.templates.respond(&viewer, want, "users/edit.html", "users/_edit_form.html", context);
            *response.status_mut() = status;
            return Ok(response);
        }
        Err(error) => return Err(error),
    };
    // A new password ends every other session of the account, on every replica.
    let password_changed = input.password.as_deref().is_some_and(|p| !p.is_empty());
    if password_changed {
        state.revoked.end_sessions(id, session::now_ms()).await.map_err(AppError::Internal)?;
    }
    if profile.id == user.0.id {
        session::refresh_user(&session, session_user(&profile), password_changed).await?;
    }
    if want == Want::Page {
        return super::done(&session, &format!("/users/{id}"), "The profile was saved.").await;
    }
    Ok(state.templates.represent(&viewer, want, ("users/show.html", "users/_card.html"), "user", &profile))
}

/// Deletes an account; deleting your own also signs you out. A form posts
/// to `/users/{id}/delete`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error::ProblemBody),
              (status = 404, body = crate::error::ProblemBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    want: Want,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = user_id(&id)?;
    if !user.may_access(id) {
        return Err(AppError::NotFound(format!("user {id} not found")));
    }
    state.users.clone().delete_user(pb::DeleteUserRequest { id }).await?;
    state.cache.invalidate(&format!("user:{id}")).await;
    // At once here; other replicas hear `user.deleted`.
    state.revoked.end_sessions(id, crate::events::FOREVER).await.map_err(AppError::Internal)?;
    if id == user.0.id {
        session::sign_out(&session).await?;
    }
    if want.is_html() {
        session::flash(&session, "The account was deleted.").await?;
    }
    Ok(match want {
        Want::Json => StatusCode::NO_CONTENT.into_response(),
        _ => super::see_other(want, if id == user.0.id { "/" } else { "/orders" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/orders?page=2")), "/orders?page=2");
        for outside in ["https://evil.example", "//evil.example", "/\\evil.example", "orders"] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(login_url("/orders/3"), "/users/login?next=%2Forders%2F3");
        assert_eq!(login_url("/"), "/users/login");
    }
}
