//! Which representation a request wants: a full HTML page, the HTMX partial
//! alone, or JSON. One handler serves all three; this extractor decides.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// A whole page: a normal browser request, or HTMX restoring history.
    Page,
    /// The fragment an HTMX request swaps in.
    Partial,
    /// `Accept: application/json`.
    Json,
}

impl Want {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        if prefers_json(headers) {
            return Self::Json;
        }
        let is = |name: &str| headers.get(name).is_some_and(|value| value == "true");
        // A boosted link or a history restore needs the whole page.
        if is("hx-request") && !is("hx-history-restore-request") && !is("hx-boosted") {
            Self::Partial
        } else {
            Self::Page
        }
    }

    pub fn is_html(self) -> bool {
        self != Self::Json
    }
}

/// JSON when the client names it and does not name HTML first.
fn prefers_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // Whichever the list names first (one pass: this runs several times a
    // request).
    for media_type in accept.split(',').map(|item| item.split(';').next().unwrap_or_default().trim()) {
        if media_type.eq_ignore_ascii_case("text/html") {
            return false;
        }
        let suffix = media_type.len().checked_sub(5).and_then(|at| media_type.get(at..)).unwrap_or_default();
        if media_type.eq_ignore_ascii_case("application/json") || suffix.eq_ignore_ascii_case("+json") {
            return true;
        }
    }
    false
}

impl<S: Send + Sync> FromRequestParts<S> for Want {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// The id of the element an HTMX request will replace (`HX-Target`), so
/// one handler can answer a list's row or a page's panel.
#[derive(Debug, Clone, Default)]
pub struct HxTarget(pub Option<String>);

impl HxTarget {
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.as_deref().is_some_and(|target| target.starts_with(prefix))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for HxTarget {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get("hx-target").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn want(pairs: &[(&'static str, &'static str)]) -> Want {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        Want::from_headers(&headers)
    }

    #[test]
    fn chooses_the_representation() {
        assert_eq!(want(&[]), Want::Page);
        assert_eq!(want(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]), Want::Page);
        assert_eq!(want(&[("accept", "application/json")]), Want::Json);
        assert_eq!(want(&[("accept", "application/problem+json")]), Want::Json);
        assert_eq!(want(&[("accept", "application/json, text/html")]), Want::Json);
        assert_eq!(want(&[("accept", "text/html, application/json")]), Want::Page);
        assert_eq!(want(&[("accept", "Application/JSON; charset=utf-8;q=0.9, text/html")]), Want::Json);
        assert_eq!(want(&[("accept", "text/html;q=0.1, application/json")]), Want::Page, "the first named wins");
        assert_eq!(want(&[("accept", "*/*")]), Want::Page);
        assert_eq!(want(&[("accept", "application/problem+JSON")]), Want::Json);
        assert_eq!(want(&[("accept", "json")]), Want::Page);
        assert_eq!(want(&[("hx-request", "true")]), Want::Partial);
        assert_eq!(want(&[("hx-request", "true"), ("hx-history-restore-request", "true")]), Want::Page);
        assert_eq!(want(&[("hx-request", "true"), ("hx-boosted", "true")]), Want::Page);
        assert_eq!(want(&[("hx-request", "true"), ("accept", "application/json")]), Want::Json);
    }
}
