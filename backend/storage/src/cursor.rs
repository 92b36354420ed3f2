//! Keyset page cursors: where a page ends, as the sort key of its last (or
//! first) row, so the next page is one index range read whatever its depth
//! (`WHERE (price, id) > ($1, $2) ORDER BY price, id LIMIT n`), never an
//! `OFFSET` that reads and throws away every row before it.
//!
//! A cursor is text safe in a URL without escaping (`i1500.i42`): each key
//! is a kind letter and its value, `i` a decimal integer, `f` an `f64`'s
//! bits in hex (a search rank, compared exactly), `t` text as hex of its
//! UTF-8. It is not secret and not signed: a decoded cursor is only ever a
//! bound value, checked against the shape the sort expects, so an edited
//! one moves the page, never the query.

use std::fmt::Write as _;

/// One value of a sort key.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Int(i64),
    Float(f64),
    Text(String),
}

/// The kind of a key, for checking a cursor against a sort's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Int,
    Float,
    Text,
}

/// Longest cursor accepted (a sort key of a few values and a name).
pub const MAX_LEN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a position in this list")]
pub struct CursorError;

/// The cursor of a row whose sort key is `keys`.
pub fn encode(keys: &[Key]) -> String {
    let mut out = String::new();
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match key {
            Key::Int(value) => {
                let _ = write!(out, "i{value}");
            }
            Key::Float(value) => {
                let _ = write!(out, "f{:016x}", value.to_bits());
            }
            Key::Text(value) => {
                out.push('t');
                for byte in value.as_bytes() {
                    let _ = write!(out, "{byte:02x}");
                }
            }
        }
    }
    out
}

/// The sort key in `cursor`, which must have exactly the kinds of `shape`.
pub fn decode(cursor: &str, shape: &[KeyKind]) -> Result<Vec<Key>, CursorError> {
    if cursor.len() > MAX_LEN {
        return Err(CursorError);
    }
    let parts: Vec<&str> = cursor.split('.').collect();
    if parts.len() != shape.len() {
        return Err(CursorError);
    }
    parts.iter().zip(shape).map(|(part, kind)| decode_key(part, *kind)).collect()
}

fn decode_key(part: &str, kind: KeyKind) -> Result<Key, CursorError> {
    let (letter, value) = part.split_at_checked(1).ok_or(CursorError)?;
    match (letter, kind) {
        ("i", KeyKind::Int) => value.parse().map(Key::Int).map_err(|_| CursorError),
        ("f", KeyKind::Float) if value.len() == 16 => {
            let bits = u64::from_str_radix(value, 16).map_err(|_| CursorError)?;
            let float = f64::from_bits(bits);
            if float.is_finite() { Ok(Key::Float(float)) } else { Err(CursorError) }
        }
        ("t", KeyKind::Text) if value.len() % 2 == 0 => {
            let bytes = (0..value.len())
                .step_by(2)
                .map(|i| value.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or(CursorError)?;
            String::from_utf8(bytes).map(Key::Text).map_err(|_| CursorError)
        }
        _ => Err(CursorError),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let keys = vec![Key::Text("Thé vert. 1".into()), Key::Float(-0.125), Key::Int(-42), Key::Int(i64::MAX)];
        let cursor = encode(&keys);
        assert!(cursor.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'), "{cursor}");
        let shape = [KeyKind::Text, KeyKind::Float, KeyKind::Int, KeyKind::Int];
        assert_eq!(decode(&cursor, &shape), Ok(keys));
    }

    #[test]
    fn refuses_what_does_not_fit_the_shape() {
        let shape = [KeyKind::Int, KeyKind::Int];
        for bad in ["", "i1", "i1.i2.i3", "i1.t41", "x1.i2", "i1.i", "i1.i2x", "f7ff0000000000000", "t4", "tzz"] {
            assert_eq!(decode(bad, &shape), Err(CursorError), "{bad}");
        }
        assert_eq!(decode("f7ff0000000000000", &[KeyKind::Float]), Err(CursorError), "infinity");
        assert_eq!(decode("tff", &[KeyKind::Text]), Err(CursorError), "not UTF-8");
        assert_eq!(decode(&"i1".repeat(600), &[KeyKind::Int]), Err(CursorError), "too long");
    }
}
