//! Users and the values they are made of, parsed once at the boundary so the
//! rest of the service never sees an invalid one.

use crate::UserError;

/// An email address as stored: trimmed and lower-cased, so uniqueness is
/// case-insensitive with a plain UNIQUE constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let email = raw.trim().to_lowercase();
        let invalid = |message: &str| UserError::invalid("email", message);
        if email.is_empty() {
            return Err(invalid("is required"));
        }
        if email.chars().count() > Self::MAX_LEN {
            return Err(invalid("must be at most 254 characters"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';')) {
            return Err(invalid("must not contain spaces or any of < > \" , ;"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("must look like name@example.com"));
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err(invalid("must look like name@example.com"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(UserError::invalid("name", "is required"));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(UserError::invalid("name", "must be at most 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(UserError::invalid("name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password in clear, only on its way to the hasher. Its `Debug` never
/// prints it, so it cannot end up in a log by accident.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, UserError> {
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err(UserError::invalid("password", "must be at least 8 characters"));
        }
        if len > Self::MAX_LEN {
            return Err(UserError::invalid("password", "must be at most 128 characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Ids are positive; anything else is a client mistake, not a lookup.
pub fn parse_id(id: i64) -> Result<i64, UserError> {
    if id > 0 { Ok(id) } else { Err(UserError::invalid("id", "must be a positive integer")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<impl std::fmt::Debug, UserError>) -> &'static str {
        match result {
            Err(UserError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_normalised() -> Result<(), UserError> {
        assert_eq!(Email::parse("  Ada@Example.COM ")?.as_str(), "ada@example.com");
        Ok(())
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@example..com",
            "ada@.example.com",
            "<script>@x.com",
        ] {
            assert_eq!(field_of(Email::parse(bad)), "email", "{bad:?}");
        }
        assert_eq!(field_of(Email::parse(&format!("{}@example.com", "a".repeat(250)))), "email");
    }

    #[test]
    fn names_are_trimmed_and_bounded() -> Result<(), UserError> {
        assert_eq!(UserName::parse("  Ada Lovelace ")?.as_str(), "Ada Lovelace");
        assert_eq!(field_of(UserName::parse("   ")), "name");
        assert_eq!(field_of(UserName::parse(&"x".repeat(101))), "name");
        assert_eq!(field_of(UserName::parse("a\u{0}b")), "name");
        assert!(UserName::parse(&"é".repeat(100)).is_ok());
        Ok(())
    }

    #[test]
    fn passwords_are_bounded_and_never_printed() -> Result<(), UserError> {
        assert_eq!(field_of(Password::parse("short")), "password");
        assert_eq!(field_of(Password::parse(&"x".repeat(129))), "password");
        let password = Password::parse("correct horse")?;
        assert_eq!(format!("{password:?}"), "Password(***)");
        Ok(())
    }

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(field_of(parse_id(0)), "id");
        assert_eq!(field_of(parse_id(-5)), "id");
        assert!(parse_id(1).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever arrives, parsing answers (never panics), and what it
        /// accepts is normalised and within bounds.
        #[test]
        fn emails_parse_to_normal_bounded_addresses(raw in "\\PC{0,300}|[a-zA-Z0-9._%+-]{1,64}@[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
            if let Ok(email) = Email::parse(&raw) {
                let text = email.as_str();
                prop_assert_eq!(text, raw.trim().to_lowercase());
                prop_assert!(text.chars().count() <= Email::MAX_LEN);
                prop_assert_eq!(text.matches('@').count(), 1);
                prop_assert!(!text.chars().any(char::is_whitespace));
            }
        }

        #[test]
        fn names_are_trimmed_bounded_and_printable(raw in "\\PC{0,150}|[\\x00-\\x20]{0,5}") {
            if let Ok(name) = UserName::parse(&raw) {
                prop_assert_eq!(name.as_str(), raw.trim());
                prop_assert!((1..=UserName::MAX_LEN).contains(&name.as_str().chars().count()));
                prop_assert!(!name.as_str().chars().any(char::is_control));
            }
        }

        #[test]
        fn passwords_are_accepted_exactly_within_bounds(raw in "\\PC{0,200}") {
            let len = raw.chars().count();
            prop_assert_eq!(Password::parse(&raw).is_ok(), (Password::MIN_LEN..=Password::MAX_LEN).contains(&len));
        }
    }
}
