//! Keyset paging as the gateway shows it: where in a list a page is, as its
//! URL says (`after=<cursor>`, `before=<cursor>`, `last=1`, or nothing for
//! the first page), and the First / Previous / Next / Last links around it,
//! built from the list's path, its canonical query string and the cursors
//! the service returned. Any list whose service answers with cursors
//! (`next_cursor` / `previous_cursor`) reuses both, with
//! `templates/_cursor_pager.html`.
//!
//! A cursor is the service's and opaque here: the gateway only checks that
//! it could be one (short, URL-safe), so a mangled link fails fast with the
//! field named, and the service decides whether it fits the list.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::AppError;

/// Longest cursor taken from a URL (`shop_storage::cursor::MAX_LEN`).
const MAX_CURSOR_LEN: usize = 1024;

/// Where a page is in its list, as its URL says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The first page (no parameter).
    #[default]
    First,
    /// The page right after the row with this cursor (`after=`).
    After(String),
    /// The page right before the row with this cursor (`before=`).
    Before(String),
    /// The last page (`last=1`).
    Last,
}

impl Position {
    /// Reads `after`, `before` and `last` as sent (blanks are absent, as a
    /// form sends them); at most one of them.
    pub fn parse(after: Option<String>, before: Option<String>, last: Option<String>) -> Result<Self, AppError> {
        let after = blank_to_none(after).map(|c| cursor("after", c)).transpose()?;
        let before = blank_to_none(before).map(|c| cursor("before", c)).transpose()?;
        let last = match blank_to_none(last).as_deref() {
            None | Some("0" | "false" | "off") => false,
            Some("1" | "true" | "on") => true,
            Some(_) => return Err(AppError::field("last", "must be 1 or 0")),
        };
        match (after, before, last) {
            (None, None, false) => Ok(Self::First),
            (Some(after), None, false) => Ok(Self::After(after)),
            (None, Some(before), false) => Ok(Self::Before(before)),
            (None, None, true) => Ok(Self::Last),
            (Some(_), Some(_), _) => Err(AppError::field("before", "must not be given with after")),
            (_, _, true) => Err(AppError::field("last", "must not be given with after or before")),
        }
    }

    /// The URL parameter that says this position; none for the first page.
    pub fn query_pair(&self) -> Option<(&'static str, &str)> {
        match self {
            Self::First => None,
            Self::After(cursor) => Some(("after", cursor)),
            Self::Before(cursor) => Some(("before", cursor)),
            Self::Last => Some(("last", "1")),
        }
    }

    /// The `after` / `before` / `last` fields of a list request.
    pub fn cursors(&self) -> (String, String, bool) {
        match self {
            Self::First => (String::new(), String::new(), false),
            Self::After(cursor) => (cursor.clone(), String::new(), false),
            Self::Before(cursor) => (String::new(), cursor.clone(), false),
            Self::Last => (String::new(), String::new(), true),
        }
    }
}

fn blank_to_none(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A cursor as a URL carries it: short, and only what the service writes.
fn cursor(field: &str, text: String) -> Result<String, AppError> {
    let fits =
        text.len() <= MAX_CURSOR_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if fits { Ok(text) } else { Err(AppError::field(field, "is not a position in this list")) }
}

/// The links around one page; each is absent where there is no such page
/// (no First or Previous on the first page, no Next or Last on the last).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pager {
    /// The first page.
    pub first: Option<String>,
    /// The page before this one (`rel=prev`).
    pub previous: Option<String>,
    /// The page after this one (`rel=next`).
    pub next: Option<String>,
    /// The last page.
    pub last: Option<String>,
}

impl Pager {
    /// The links of the page at `base` (a path, "/products") with the list's
    /// canonical query string `query` (without its position; "" for none),
    /// given the cursors the service returned (empty: no page that way).
    pub fn new(base: &str, query: &str, previous_cursor: &str, next_cursor: &str) -> Self {
        let at = |position: Position| Some(href(base, query, &position));
        let (first, previous) = if previous_cursor.is_empty() {
            (None, None)
        } else {
            (at(Position::First), at(Position::Before(previous_cursor.to_owned())))
        };
        let (next, last) = if next_cursor.is_empty() {
            (None, None)
        } else {
            (at(Position::After(next_cursor.to_owned())), at(Position::Last))
        };
        Self { first, previous, next, last }
    }

    /// Whether the list fits on this one page (nothing to link to).
    pub fn is_single(&self) -> bool {
        self.previous.is_none() && self.next.is_none()
    }
}

/// The URL of the list at `base` with canonical query `query` at `position`:
/// the position's parameter comes last, so one page has one URL.
pub fn href(base: &str, query: &str, position: &Position) -> String {
    let mut url = base.to_owned();
    let mut separator = '?';
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
        separator = '&';
    }
    if let Some(pair) = position.query_pair() {
        url.push(separator);
        url.push_str(&serde_urlencoded::to_string([pair]).unwrap_or_default());
    }
    url
}

/// A list's size as a page says it: "1 order", "1,234 products", or "more
/// than 1,000 orders" when the service stopped counting (`lower_bound`:
/// `total_is_lower_bound` of its answer). `one` and `many` name the items.
pub fn count_text(total: i64, lower_bound: bool, one: &str, many: &str) -> String {
    match (lower_bound, total) {
        (false, 1) => format!("1 {one}"),
        _ => format!("{} {many}", number_text(total, lower_bound)),
    }
}

/// "1,234", or "more than 1,000" when the count stopped there.
pub fn number_text(total: i64, lower_bound: bool) -> String {
    let digits = total.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if total < 0 {
        grouped.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if lower_bound { format!("more than {grouped}") } else { grouped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_numbers_or_a_bound() {
        assert_eq!(count_text(0, false, "order", "orders"), "0 orders");
        assert_eq!(count_text(1, false, "order", "orders"), "1 order");
        assert_eq!(count_text(1000, false, "order", "orders"), "1,000 orders");
        assert_eq!(count_text(1000, true, "order", "orders"), "more than 1,000 orders");
        assert_eq!(count_text(1234, false, "product", "products"), "1,234 products");
        assert_eq!(count_text(1_234_567, false, "product", "products"), "1,234,567 products");
        assert_eq!(number_text(999, false), "999");
        assert_eq!(number_text(1000, true), "more than 1,000");
        assert_eq!(number_text(-1234, false), "-1,234");
    }

    fn field_of(result: Result<Position, AppError>) -> Option<String> {
        match result {
            Err(AppError::Invalid(errors)) => errors.first().map(|e| e.field.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_position_is_one_parameter_at_most() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(Position::parse(None, some(" "), some("0")).ok(), Some(Position::First));
        assert_eq!(Position::parse(some("i5.i9"), None, None).ok(), Some(Position::After("i5.i9".into())));
        assert_eq!(Position::parse(None, some("i-5"), None).ok(), Some(Position::Before("i-5".into())));
        assert_eq!(Position::parse(None, None, some("1")).ok(), Some(Position::Last));
        assert_eq!(field_of(Position::parse(some("i1"), some("i2"), None)).as_deref(), Some("before"));
        assert_eq!(field_of(Position::parse(some("i1"), None, some("1"))).as_deref(), Some("last"));
        assert_eq!(field_of(Position::parse(None, None, some("yes"))).as_deref(), Some("last"));
        assert_eq!(field_of(Position::parse(some("i1&x=<"), None, None)).as_deref(), Some("after"));
        assert_eq!(field_of(Position::parse(None, Some("i".repeat(1025)), None)).as_deref(), Some("before"));
    }

    #[test]
    fn links_lead_where_there_are_pages() {
        let middle = Pager::new("/products", "sort=name", "t61.i3", "t62.i4");
        assert_eq!(middle.first.as_deref(), Some("/products?sort=name"));
        assert_eq!(middle.previous.as_deref(), Some("/products?sort=name&before=t61.i3"));
        assert_eq!(middle.next.as_deref(), Some("/products?sort=name&after=t62.i4"));
        assert_eq!(middle.last.as_deref(), Some("/products?sort=name&last=1"));

        let first = Pager::new("/orders", "", "", "i40");
        assert_eq!((first.first, first.previous), (None, None));
        assert_eq!(first.next.as_deref(), Some("/orders?after=i40"));
        assert_eq!(first.last.as_deref(), Some("/orders?last=1"));

        assert!(Pager::new("/orders", "", "", "").is_single());
    }
}
