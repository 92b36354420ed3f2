//! Delivery addresses, parsed once at the boundary: every field trimmed,
//! bounded and free of control characters, the country one the shop ships to.

use crate::UserError;

/// At most this many addresses per account.
pub const MAX_PER_ACCOUNT: i64 = 20;

/// ISO 3166-1 alpha-2 codes the shop delivers to, with their English names
/// (the gateway's country list is this one): the EU, the rest of the EEA,
/// the United Kingdom, Switzerland, the United States and Canada.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AT", "Austria"),
    ("BE", "Belgium"),
    ("BG", "Bulgaria"),
    ("CA", "Canada"),
    ("CH", "Switzerland"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DK", "Denmark"),
    ("EE", "Estonia"),
    ("ES", "Spain"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("GB", "United Kingdom"),
    ("GR", "Greece"),
    ("HR", "Croatia"),
    ("HU", "Hungary"),
    ("IE", "Ireland"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("LI", "Liechtenstein"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("MT", "Malta"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("RO", "Romania"),
    ("SE", "Sweden"),
    ("SI", "Slovenia"),
    ("SK", "Slovakia"),
    ("US", "United States"),
];

/// The English name of a country code the shop delivers to.
pub fn country_name(code: &str) -> Option<&'static str> {
    COUNTRIES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

/// An address as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub id: i64,
    pub user_id: i64,
    pub fields: AddressFields,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An address's fields, valid: only [`AddressFields::parse`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFields {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
    pub phone: String,
}

/// What a client sent, before parsing.
#[derive(Debug, Clone, Default)]
pub struct RawAddress<'a> {
    pub name: &'a str,
    pub line1: &'a str,
    pub line2: &'a str,
    pub postcode: &'a str,
    pub city: &'a str,
    pub country: &'a str,
    pub phone: &'a str,
}

impl AddressFields {
    /// Checks every field and names each one that is wrong, so a form can
    /// mark them all at once.
    pub fn parse(raw: &RawAddress<'_>) -> Result<Self, UserError> {
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        let mut text = |field: &'static str, value: &str, min: usize, max: usize| -> String {
            let value = value.trim();
            let len = value.chars().count();
            if value.chars().any(char::is_control) {
                problems.push((field, "must not contain control characters".into()));
            } else if len < min {
                problems.push((field, "is required".into()));
            } else if len > max {
                problems.push((field, format!("must be at most {max} characters")));
            }
            value.to_owned()
        };
        let name = text("name", raw.name, 1, 100);
        let line1 = text("line1", raw.line1, 1, 200);
        let line2 = text("line2", raw.line2, 0, 200);
        let postcode = text("postcode", raw.postcode, 1, 20);
        let city = text("city", raw.city, 1, 100);
        let country = text("country", raw.country, 1, 2).to_ascii_uppercase();
        let phone = text("phone", raw.phone, 0, 30);
        let known = |field: &str, problems: &[(&'static str, String)]| problems.iter().any(|(f, _)| *f == field);
        if !known("postcode", &problems) && !postcode.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-') {
            problems.push(("postcode", "may hold only letters, digits, spaces and hyphens".into()));
        }
        if !known("country", &problems) && country_name(&country).is_none() {
            problems
                .push(("country", "must be a country the shop delivers to, as a two-letter code such as FR".into()));
        }
        if !known("phone", &problems)
            && !phone.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'))
        {
            problems.push(("phone", "may hold only digits, spaces, +, - and parentheses".into()));
        }
        if problems.is_empty() {
            Ok(Self { name, line1, line2, postcode, city, country, phone })
        } else {
            Err(UserError::InvalidFields(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> RawAddress<'static> {
        RawAddress {
            name: " Ada Lovelace ",
            line1: "12 St James's Square",
            line2: "",
            postcode: "SW1Y 4JH",
            city: "London",
            country: "gb",
            phone: "+44 (0)20 7946-0000",
        }
    }

    fn fields_of(raw: &RawAddress<'_>) -> Vec<&'static str> {
        match AddressFields::parse(raw) {
            Err(UserError::InvalidFields(problems)) => problems.into_iter().map(|(f, _)| f).collect(),
            other => panic!("expected invalid fields, got {other:?}"),
        }
    }

    #[test]
    fn a_good_address_is_trimmed_and_its_country_upper_cased() -> Result<(), UserError> {
        let address = AddressFields::parse(&good())?;
        assert_eq!(address.name, "Ada Lovelace");
        assert_eq!(address.country, "GB");
        Ok(())
    }

    #[test]
    fn every_wrong_field_is_named() {
        let long = "x".repeat(201);
        let raw = RawAddress {
            name: "",
            line1: &long,
            line2: "a\u{0}b",
            postcode: "75<01>",
            city: " ",
            country: "ZZ",
            phone: "call me",
        };
        assert_eq!(fields_of(&raw), ["name", "line1", "line2", "city", "postcode", "country", "phone"]);
    }

    #[test]
    fn countries_are_known_codes_only() {
        for bad in ["", "F", "FRA", "XX", "\u{7f}R"] {
            assert_eq!(fields_of(&RawAddress { country: bad, ..good() }), ["country"], "{bad:?}");
        }
        for ok in ["fr", "DE", "no", "ch", "us", "CA", "GB"] {
            assert!(AddressFields::parse(&RawAddress { country: ok, ..good() }).is_ok(), "{ok}");
        }
    }
}
