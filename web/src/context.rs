//! What a handler is given about its request: who is asking, what they want
//! back (a page, an HTMX partial, JSON), their session, and clients of the
//! services signed for them; and the one way to answer each of those.
//!
//! Handlers then read like the feature: ask a service, answer with
//! [`Ctx::show`], [`Ctx::done`] or [`Ctx::created`], or show a form again
//! with [`Ctx::form_again`].

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::Value;
use serde::Serialize;
use tower_sessions::Session;

use crate::cache::Lookup;
use crate::error::AppError;
use crate::negotiate::Want;
use crate::services::Clients;
use crate::state::AppState;
use crate::templates::{Audience, Fragments};
use crate::viewer::{self, SessionUser, Viewer};

/// A page and the fragment of it an HTMX request gets.
#[derive(Debug, Clone, Copy)]
pub struct Pages {
    pub page: &'static str,
    pub partial: &'static str,
}

impl Pages {
    pub const fn new(page: &'static str, partial: &'static str) -> Self {
        Self { page, partial }
    }
}

pub struct Ctx {
    pub state: AppState,
    pub viewer: Viewer,
    pub want: Want,
    pub session: Session,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let want = Want::from_headers(&parts.headers);
        let session = viewer::session_of(parts)?;
        // Only a whole page a browser shows takes the one-time message, so a
        // partial, a JSON call or an event stream's reconnect does not use it up.
        let accepts_html = parts
            .headers
            .get(axum::http::header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        let shows_page = parts.method == axum::http::Method::GET && want == Want::Page && accepts_html;
        let viewer = Viewer::load(&session, &state.sessions, shows_page).await?;
        Ok(Self { state: state.clone(), viewer, want, session })
    }
}

impl Ctx {
    /// Clients of the services that call as this request's viewer.
    pub fn services(&self) -> Clients {
        self.state.clients(self.viewer.caller())
    }

    /// The signed-in user (401 otherwise).
    pub fn user(&self) -> Result<&SessionUser, AppError> {
        self.viewer.user()
    }

    /// The signed-in admin (403 for a customer, 401 for a stranger).
    pub fn admin(&self) -> Result<&SessionUser, AppError> {
        self.viewer.admin()
    }

    pub fn is_html(&self) -> bool {
        self.want.is_html()
    }

    /// `value` as JSON, or shown as `name` on the page or in its fragment.
    pub fn show<T: Serialize>(&self, pages: Pages, name: &str, value: &T) -> Response {
        match self.want {
            Want::Json => axum::Json(value).into_response(),
            Want::Page | Want::Partial => {
                let value = Value::from(minijinja::value::Serde(value));
                self.render(pages, Value::from(BTreeMap::from([(name.to_owned(), value)])))
            }
        }
    }

    /// Like [`Ctx::show`], saying in `X-Cache` whether the read was a hit.
    pub fn show_cached<T: Serialize>(&self, pages: Pages, name: &str, value: &T, lookup: Lookup) -> Response {
        let mut response = self.show(pages, name, value);
        response.headers_mut().insert("x-cache", HeaderValue::from_static(lookup.header()));
        response
    }

    /// JSON as the cache keeps it, sent as it is, saying whether the cache
    /// answered (`x-cache`): the same bytes `axum::Json` would write.
    pub fn json_cached(json: axum::body::Bytes, lookup: Lookup) -> Response {
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::HeaderName::from_static("x-cache"), HeaderValue::from_static(lookup.header())),
        ];
        (headers, json).into_response()
    }

    /// [`Ctx::render`], saying whether the cache answered (`x-cache`).
    pub fn render_cached(&self, pages: Pages, context: Value, lookup: Lookup) -> Response {
        let mut response = self.render(pages, context);
        response.headers_mut().insert("x-cache", HeaderValue::from_static(lookup.header()));
        response
    }

    /// The page, or its HTMX fragment, whose content is the same for
    /// everyone of the viewer's audience and is named by `key` (the cache
    /// keys of what it shows; see [`Fragments`]): rendered once and kept,
    /// then only the navigation is rendered around it. `fill` reads what
    /// the content shows when it is not kept (HTML only).
    pub async fn render_kept<F, Fut>(&self, pages: Pages, key: &str, fill: F) -> Result<Response, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fill, AppError>>,
    {
        let templates = &self.state.templates;
        let audience = Audience::of(&self.viewer);
        // A page that is its own fragment (the home page) is a page for HTMX too.
        let whole = self.want != Want::Partial || pages.partial == pages.page;
        let template = if whole { pages.page } else { pages.partial };
        let key = Fragments::key(audience, template, &format!("{}:{key}", self.want == Want::Partial));
        if let Some(fragment) = templates.fragments().get(&key).await {
            return Ok(templates.respond_with(&self.viewer, self.want, &fragment, Lookup::Hit));
        }
        let fill = fill().await?;
        match templates.render_fragment(audience, self.want, (template, whole), fill.context) {
            Ok(mut fragment) => {
                fragment.headers = fill.headers;
                let response = templates.respond_with(&self.viewer, self.want, &fragment, fill.lookup);
                if fill.keep {
                    templates.fragments().keep(key, std::sync::Arc::new(fragment)).await;
                }
                Ok(response)
            }
            Err(error) => Ok(crate::templates::failed(template, &error)),
        }
    }

    /// The page, or its fragment, with `context` (HTML only).
    pub fn render(&self, pages: Pages, context: Value) -> Response {
        self.state.templates.respond(&self.viewer, self.want, pages.page, pages.partial, context)
    }

    /// The answer to a change that leaves the person where they are: JSON
    /// gets `value`; HTMX the fragment showing it, with `message` in the
    /// page's message area; a form posted without scripts a 303 to
    /// `location`, whose page then says `message`.
    pub async fn done<T: Serialize>(
        &self,
        (pages, name, value): (Pages, &str, &T),
        location: &str,
        message: String,
    ) -> Result<Response, AppError> {
        match self.want {
            Want::Page => self.redirect(location, message).await,
            Want::Json => Ok(self.show(pages, name, value)),
            // The fragment, and the message beside it in the message area.
            Want::Partial => {
                let viewer = Viewer { flash: Some(message), ..self.viewer.clone() };
                let value = Value::from(minijinja::value::Serde(value));
                let context = Value::from(BTreeMap::from([(name.to_owned(), value)]));
                Ok(self.state.templates.respond(&viewer, self.want, pages.page, pages.partial, context))
            }
        }
    }

    /// The answer to a create: 201 with `Location` and the new thing for
    /// JSON; a browser goes to it (303, or `HX-Redirect` for HTMX) and is
    /// told `message` there.
    pub async fn created<T: Serialize>(
        &self,
        location: &str,
        value: &T,
        message: String,
    ) -> Result<Response, AppError> {
        if self.want != Want::Json {
            return self.redirect(location, message).await;
        }
        let mut response = (StatusCode::CREATED, axum::Json(value)).into_response();
        if let Ok(value) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    }

    /// Sends a browser to `location`, whose page then says `message` once:
    /// a 303 for a plain form post, `HX-Redirect` for HTMX (which would
    /// otherwise swap the redirect's target into the page); JSON gets 204.
    pub async fn redirect(&self, location: &str, message: String) -> Result<Response, AppError> {
        if self.want == Want::Json {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if !message.is_empty() {
            viewer::flash(&self.session, message).await?;
        }
        Ok(see_other(self.want, location))
    }

    /// A form shown again after `error`, with what was typed (`values`,
    /// never a password) and each field's problem beside it, for a browser;
    /// any other error, or a JSON client, gets the error itself.
    pub fn form_again(
        &self,
        pages: Pages,
        error: AppError,
        values: BTreeMap<String, String>,
        context: Value,
    ) -> Result<Response, AppError> {
        let status = error.status();
        let errors: BTreeMap<String, String> =
            error.field_errors().into_iter().map(|error| (error.field, error.message)).collect();
        if errors.is_empty() || !self.is_html() {
            return Err(error);
        }
        let context = minijinja::context! { values => values, errors => errors, ..context };
        let mut response = self.render(pages, context);
        *response.status_mut() = status;
        Ok(response)
    }
}

/// What a kept page shows, read when it is not kept: the template's
/// context, whether the data came from the cache (`x-cache`), headers the
/// answer carries (kept with it), and whether to keep it (not when it was
/// rendered without a part that failed to load).
pub struct Fill {
    pub context: Value,
    pub lookup: Lookup,
    pub headers: Vec<(axum::http::HeaderName, HeaderValue)>,
    pub keep: bool,
}

impl Fill {
    pub fn new(context: Value, lookup: Lookup) -> Self {
        Self { context, lookup, headers: Vec::new(), keep: true }
    }
}

/// A redirect for a browser: 303 for a plain request, `HX-Redirect` for HTMX.
pub fn see_other(want: Want, location: &str) -> Response {
    match want {
        Want::Partial => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(location) {
                response.headers_mut().insert("hx-redirect", value);
            }
            response
        }
        Want::Page | Want::Json => Redirect::to(location).into_response(),
    }
}
