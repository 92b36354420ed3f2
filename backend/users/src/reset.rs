//! Password reset tokens: 244 random bits (two v4 UUIDs from the operating
//! system's generator) as 64 hex digits, sent in the email's link and never
//! stored; the database keeps only their SHA-256, so a copy of it opens no
//! account.

use sha2::{Digest, Sha256};

/// A fresh token, and the hash to store.
pub fn new_token() -> (String, String) {
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let hash = hash(&token);
    (token, hash)
}

/// What is stored and looked up for a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a string could be a token at all (64 lower-case hex digits), so
/// anything else is refused without touching the database.
pub fn looks_like_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_stored_only_hashed() {
        let (first, first_hash) = new_token();
        let (second, _) = new_token();
        assert_ne!(first, second);
        assert!(looks_like_token(&first), "{first}");
        assert_eq!(first_hash, hash(&first));
        assert_ne!(first_hash, first);
        assert!(!looks_like_token(&first.to_uppercase()));
        assert!(!looks_like_token(&first[1..]));
    }
}
