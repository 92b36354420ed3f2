//! Renders every error once, as the request wanted: `application/problem+json`
//! for JSON clients, an error page for a browser, a message partial in
//! `#flash` for HTMX; and logs it with the request's method and path.
//!
//! The viewer (for the page's navigation bar) is read from the session only
//! when an HTML error is rendered: a JSON error, or a request that never
//! touches its session, costs no session work.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use tower::{Layer, Service};
use tower_sessions::Session;

use crate::error::{FieldError, OutOfBand, Problem};
use crate::negotiate::Want;
use crate::state::AppState;
use crate::viewer::Viewer;

/// The body of an `application/problem+json` answer (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemBody {
    /// What kind of problem this is, stable for clients to match on:
    /// `/problems/<slug>`, a page of this site that explains it (e.g.
    /// `/problems/stock-short`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in words a person can act on.
    pub detail: String,
    /// Per-field problems, for input that failed validation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For a failure of the shop's own (5xx): the request's trace id, to
    /// quote to the shop, which finds the trace and its log lines by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Renders every [`Problem`] in the representation the request wanted, and
/// logs it with the request's method and path.
///
/// A tower layer rather than a `from_fn` middleware, which clones and boxes
/// the routes inside it for every request; and its future is a plain state
/// machine, so a request that succeeds allocates nothing here.
#[derive(Clone)]
pub struct RenderErrorsLayer {
    state: AppState,
}

impl RenderErrorsLayer {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for RenderErrorsLayer {
    type Service = RenderErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RenderErrors { inner, state: self.state.clone() }
    }
}

/// See [`RenderErrorsLayer`].
#[derive(Clone)]
pub struct RenderErrors<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for RenderErrors<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Rendered<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let asked = (self.state.clone(), Want::from_headers(request.headers()), Asked::of(&request));
        Rendered::Answering { answer: self.inner.call(request), asked: Some(asked) }
    }
}

pin_project_lite::pin_project! {
    /// The answer, then, if it is a [`Problem`], its rendering.
    #[project = RenderedNow]
    pub enum Rendered<F> {
        Answering { #[pin] answer: F, asked: Option<(AppState, Want, Asked)> },
        // Boxed, so that what rendering an error holds across its awaits (the
        // viewer's session read, the template) is not part of every request's
        // future: inline, it made each request move 4 KiB (docs/performance.md).
        Rendering { page: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl<F> Future for Rendered<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                RenderedNow::Answering { answer, asked } => {
                    let Ok(response) = std::task::ready!(answer.poll(cx));
                    let Some((state, want, asked)) =
                        asked.take().filter(|_| response.extensions().get::<Problem>().is_some())
                    else {
                        return Poll::Ready(Ok(response));
                    };
                    self.set(Self::Rendering { page: Box::pin(render(state, want, asked, response)) });
                }
                RenderedNow::Rendering { page } => return page.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

/// What rendering an error needs of the request, taken before the request
/// is passed on: cheap clones (the URI and header values share the
/// request's bytes), no strings made for requests that succeed.
struct Asked {
    method: axum::http::Method,
    uri: axum::http::Uri,
    current_url: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    trace_id: Option<crate::observe::TraceId>,
    session: Option<Session>,
}

impl Asked {
    fn of(request: &Request) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            current_url: request.headers().get("hx-current-url").cloned(),
            referer: request.headers().get(header::REFERER).cloned(),
            trace_id: request.extensions().get::<crate::observe::TraceId>().cloned(),
            session: request.extensions().get::<Session>().cloned(),
        }
    }
}

async fn render(state: AppState, want: Want, asked: Asked, response: Response) -> Response {
    let Some(problem) = response.extensions().get::<Problem>().cloned() else {
        return response;
    };
    let Asked { method, uri, current_url, referer, trace_id, session } = asked;
    let path = uri.path().to_owned();
    let path_and_query = uri.path_and_query().map_or_else(|| path.clone(), ToString::to_string);
    let current_url = current_url.as_ref().and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The page a form was posted from (this site's only: the policy is same-origin).
    let referer_path = referer
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|url| url.split_once("://"))
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()));

    let path = crate::observe::loggable_path(&path);
    if problem.status.is_server_error() {
        tracing::error!(%method, %path, status = problem.status.as_u16(), detail = problem.log.as_deref().unwrap_or(&problem.detail), "request failed");
    } else {
        tracing::info!(%method, %path, status = problem.status.as_u16(), detail = %problem.detail, "request refused");
    }

    let trace_id = trace_id.filter(|_| problem.status.is_server_error()).and_then(|id| id.get());
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let out_of_band = response.extensions().get::<OutOfBand>().cloned();
    let mut rendered = match want {
        Want::Json => {
            let body = ProblemBody {
                kind: format!("/problems/{}", problem.slug),
                title: problem.status.canonical_reason().unwrap_or("Error").to_owned(),
                status: problem.status.as_u16(),
                detail: problem.detail,
                errors: problem.errors,
                trace_id,
            };
            let mut response = (problem.status, axum::Json(body)).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            response
        }
        Want::Page if problem.status == StatusCode::UNAUTHORIZED => {
            // After signing in, a GET comes back to where it was going; a form
            // post (whose URL may take only POST) to the page the form was on.
            let back = match (&method, referer_path) {
                (&axum::http::Method::GET, _) | (_, None) => path_and_query.clone(),
                (_, Some(page)) => page,
            };
            Redirect::to(&crate::return_to::login_url(&back)).into_response()
        }
        Want::Partial if problem.status == StatusCode::UNAUTHORIZED => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            // Back to the page the person was on, once signed in.
            let here = current_url
                .as_deref()
                .and_then(|url| url.split_once("://"))
                .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
            if let Ok(target) = HeaderValue::from_str(&crate::return_to::login_url(here.unwrap_or("/"))) {
                response.headers_mut().insert("hx-redirect", target);
            }
            response
        }
        Want::Page | Want::Partial => {
            let viewer = match &session {
                Some(session) => Viewer::load(session, &state.sessions, false).await.unwrap_or_default(),
                None => Viewer::default(),
            };
            let out_of_band = out_of_band.and_then(|OutOfBand(template, context)| {
                state.templates.render(template, context).ok().map(minijinja::Value::from_safe_string)
            });
            let context = minijinja::context! { status => problem.status.as_u16(), title => heading(problem.status), detail => problem.detail, errors => minijinja::value::Serde(&problem.errors), trace_id, out_of_band };
            let mut response = state.templates.respond(&viewer, want, "error.html", "_error.html", context);
            *response.status_mut() = problem.status;
            if want == Want::Partial {
                // Errors of an HTMX request show in the page's message area,
                // whatever element the request meant to update.
                response.headers_mut().insert("hx-retarget", HeaderValue::from_static("#flash"));
                response.headers_mut().insert("hx-reswap", HeaderValue::from_static("innerHTML"));
            }
            response
        }
    };
    if let Some(retry_after) = retry_after {
        rendered.headers_mut().insert(header::RETRY_AFTER, retry_after);
    }
    rendered
}

/// What a page says an error is, in words for people rather than HTTP's
/// class names (the JSON `title` keeps HTTP's).
fn heading(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "We could not read that",
        401 => "Please sign in",
        403 => "That is not allowed",
        404 => "We could not find that",
        409 => "That could not be done",
        413 => "That is too large",
        415 => "We could not read that",
        422 => "Please check what you entered",
        429 => "Too many attempts",
        503 => "Please try again in a moment",
        _ => "Something went wrong",
    }
}
