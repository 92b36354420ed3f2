//! Where a browser goes after a form or after signing in: only ever a path
//! on this site, so a `next=` parameter cannot send anyone elsewhere.

/// A path on this site to go to; anything else (another site,
/// `//evil.example`, or a path with a control character or a space, which
/// browsers strip and so could read `/\t/evil.example` as `//evil.example`)
/// becomes `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            path.to_owned()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/orders?page=2")), "/orders?page=2");
        for outside in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "orders",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/orders\r\nSet-Cookie: x=1",
        ] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(login_url("/orders/3"), "/users/login?next=%2Forders%2F3");
        assert_eq!(login_url("/"), "/users/login");
    }
}
