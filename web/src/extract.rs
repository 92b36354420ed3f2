//! Request input: bodies as JSON or as forms, and page numbers, each
//! refused with a message a person can act on.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::AppError;

/// A body sent as `application/json` or `application/x-www-form-urlencoded`.
pub struct Input<T>(pub T);

impl<S, T> FromRequest<S> for Input<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            let axum::Json(value) = axum::Json::<T>::from_request(request, state)
                .await
                .map_err(|rejection| rejected(rejection.status(), "JSON", rejection.body_text()))?;
            Ok(Self(value))
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            // serde_html_form, not axum's Form: a field sent once per ticked
            // box (`category_ids=1&category_ids=3`) reads as a list.
            let body = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|rejection| rejected(rejection.status(), "form", rejection.body_text()))?;
            let value = serde_html_form::from_bytes(&body)
                .map_err(|error| rejected(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "form", error.to_string()))?;
            Ok(Self(value))
        } else {
            Err(AppError::UnsupportedMediaType)
        }
    }
}

fn rejected(status: axum::http::StatusCode, what: &str, text: String) -> AppError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge
    } else {
        AppError::BadRequest(format!("malformed {what}: {}", without_values(&text)))
    }
}

/// The parser's message without the values it quotes (`integer \`1234\``):
/// it goes back to the client and into the log, and the value may be a
/// password sent as a number.
fn without_values(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    for (n, part) in text.split('`').enumerate() {
        if n % 2 == 0 {
            kept.push_str(part);
        }
    }
    kept.replace(" ,", ",").replace("  ", " ")
}

/// The id in a path like `/products/{id}`: a positive whole number, or the
/// page is not there (404, naming the kind of thing). `K` names the kind.
pub struct Id<K>(pub i64, pub std::marker::PhantomData<K>);

/// What an [`Id`] names, for its 404.
pub trait Kind {
    const NAME: &'static str;
}

macro_rules! kinds {
    ($($kind:ident = $name:literal),*) => {$(
        pub struct $kind;
        impl Kind for $kind {
            const NAME: &'static str = $name;
        }
    )*};
}
kinds!(Product = "product", Order = "order", User = "user");

impl<S: Send + Sync, K: Kind> FromRequestParts<S> for Id<K> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => raw,
            Err(_) => String::new(),
        };
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Self(id, std::marker::PhantomData)),
            _ => Err(AppError::NotFound(format!("There is no {} {raw:?}.", K::NAME))),
        }
    }
}

/// The `Idempotency-Key` header, when sent.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

/// `?page=N&page_size=M`, both optional. The services bound them; here they
/// only have to be whole numbers.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1-based page number (default 1).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "number_or_blank")]
    pub page_size: Option<u32>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(paging) =
            axum::extract::Query::<Self>::from_request_parts(parts, state).await.map_err(|_| {
                AppError::BadRequest("page and page_size must be whole numbers, e.g. ?page=2&page_size=20".into())
            })?;
        if paging.page_size.is_some_and(|size| size == 0 || size > 100) {
            return Err(AppError::field("page_size", "must be between 1 and 100"));
        }
        if paging.page == Some(0) {
            return Err(AppError::field("page", "must be 1 or more"));
        }
        Ok(paging)
    }
}

impl Paging {
    pub fn page(self) -> u32 {
        self.page.unwrap_or(1)
    }

    pub fn page_size(self) -> u32 {
        self.page_size.unwrap_or(20)
    }
}

/// A whole number from JSON (a number or a string) or a form (a string);
/// a blank form field is `None`.
pub fn number_or_blank<'de, D, N>(deserializer: D) -> Result<Option<N>, D::Error>
where
    D: Deserializer<'de>,
    N: std::str::FromStr + TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    let invalid = || serde::de::Error::custom("must be a whole number");
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => N::try_from(n).map(Some).map_err(|_| invalid()),
        Some(Raw::Text(text)) if text.trim().is_empty() => Ok(None),
        Some(Raw::Text(text)) => text.trim().parse().map(Some).map_err(|_| invalid()),
    }
}

/// A price typed by a person ("19.99", "19,99", "20", "0.5") in minor units:
/// a euro shop takes either decimal mark, but not both in one amount.
pub fn parse_price(text: &str) -> Result<i64, AppError> {
    let invalid = || AppError::field("price", "must be an amount like 19.99 or 19,99");
    let text = text.trim();
    let mark = if text.contains(',') { ',' } else { '.' };
    let (whole, fraction) = text.split_once(mark).unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
    whole.checked_mul(100).and_then(|w| w.checked_add(cents)).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_the_values_they_quote() {
        let said = "Failed to deserialize the JSON body: password: invalid type: integer `12345678`, expected a string";
        let kept = without_values(said);
        assert!(!kept.contains("12345678") && kept.contains("expected a string"), "{kept}");
    }

    #[test]
    fn prices_typed_by_people() {
        assert_eq!(parse_price("19.99").ok(), Some(1999));
        assert_eq!(parse_price(" 20 ").ok(), Some(2000));
        assert_eq!(parse_price("0.5").ok(), Some(50));
        assert_eq!(parse_price("29,90").ok(), Some(2990));
        for bad in ["", "-1", "1.234", "abc", "1.000,50", "1,5,0", ".5", ",5", "99999999999999999999"] {
            assert!(parse_price(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_come_as_numbers_strings_or_blanks() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "number_or_blank")]
            n: Option<i64>,
        }
        let parse = |json: &str| serde_json::from_str::<T>(json).map(|t| t.n).ok();
        assert_eq!(parse(r#"{"n": 5}"#), Some(Some(5)));
        assert_eq!(parse(r#"{"n": "5"}"#), Some(Some(5)));
        assert_eq!(parse(r#"{"n": ""}"#), Some(None));
        assert_eq!(parse(r#"{}"#), Some(None));
        assert_eq!(parse(r#"{"n": "five"}"#), None);
        let form = |body: &str| serde_urlencoded::from_str::<T>(body).map(|t| t.n).ok();
        assert_eq!(form("n=7"), Some(Some(7)));
        assert_eq!(form("n="), Some(None));
        assert_eq!(form("n=x"), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Typed prices: refused, or exactly the amount written.
        #[test]
        fn prices_are_refused_or_exact(whole in 0_u64..100_000_000, cents in 0_u64..100, raw in "\\PC{0,30}") {
            let written = format!("{whole}.{cents:02}");
            prop_assert_eq!(parse_price(&written).ok(), Some(i64::try_from(whole * 100 + cents).unwrap_or(i64::MAX)));
            if let Ok(minor) = parse_price(&raw) {
                prop_assert!(minor >= 0);
            }
        }

        /// Any query string: a page request, or a 4xx, never a panic.
        #[test]
        fn query_strings_never_panic(query in "[a-z_=&%0-9-]{0,60}") {
            let _ = serde_urlencoded::from_str::<Paging>(&query);
        }
    }
}
