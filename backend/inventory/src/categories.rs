//! Categories: their names, and the slugs derived from them for URLs.

use crate::InventoryError;

/// Trimmed, 1 to 60 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryName(String);

impl CategoryName {
    pub fn parse(raw: &str) -> Result<Self, InventoryError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InventoryError::invalid("name", "is required"));
        }
        if name.chars().count() > 60 {
            return Err(InventoryError::invalid("name", "must be at most 60 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(InventoryError::invalid("name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's slug (see [`slug`]).
    pub fn slug(&self) -> String {
        slug(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub slug: String,
    /// Filled by the category list only.
    pub product_count: i64,
}

/// Lower-case ASCII letters, digits and single hyphens: "Thé vert" →
/// "the-vert". Accented Latin letters lose their accents; other letters
/// are dropped. A name with nothing left ("茶") gets "c-" and a short hash
/// of its lower-case form, so every name has a slug and names that differ
/// only in case share one (which is what makes names unique
/// case-insensitively).
pub fn slug(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_hyphen = false;
    for c in name.chars().flat_map(char::to_lowercase) {
        let folded = fold(c);
        if folded.is_empty() {
            // A separator, or a letter with no ASCII form.
            pending_hyphen = !c.is_alphanumeric() || pending_hyphen;
            continue;
        }
        if pending_hyphen && !slug.is_empty() {
            slug.push('-');
        }
        pending_hyphen = false;
        slug.push_str(folded);
    }
    if slug.is_empty() {
        let lower: String = name.chars().flat_map(char::to_lowercase).collect();
        let digest = crate::images::sha256_hex(lower.as_bytes());
        slug = format!("c-{}", &digest[..12]);
    }
    slug
}

/// The ASCII form of a lower-case character, empty when it has none.
fn fold(c: char) -> &'static str {
    const ASCII: [&str; 36] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    ];
    match c {
        'a'..='z' => ASCII[c as usize - 'a' as usize],
        '0'..='9' => ASCII[26 + c as usize - '0' as usize],
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ř' => "r",
        'ß' => "ss",
        'ś' | 'ş' | 'š' | 'ș' => "s",
        'ţ' | 'ť' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_ascii_words_joined_by_hyphens() {
        assert_eq!(slug("Green tea"), "green-tea");
        assert_eq!(slug("Thé vert"), "the-vert");
        assert_eq!(slug("  White & pu-erh!  "), "white-pu-erh");
        assert_eq!(slug("Oolong"), "oolong");
        assert_eq!(slug("Straße 42"), "strasse-42");
        assert_eq!(slug("GREEN TEA"), slug("green tea"));
        assert_eq!(slug("Matcha--Zubehör"), "matcha-zubehor");
    }

    #[test]
    fn a_name_without_latin_letters_still_gets_a_stable_slug() {
        let tea = slug("茶");
        assert!(tea.starts_with("c-") && tea.len() == 14, "{tea}");
        assert_eq!(tea, slug("茶"));
        assert_ne!(tea, slug("緑茶"));
        assert!(tea.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn names_are_bounded() {
        assert!(CategoryName::parse(" ").is_err());
        assert!(CategoryName::parse(&"n".repeat(61)).is_err());
        assert!(CategoryName::parse("tab\there").is_err());
        assert_eq!(CategoryName::parse("  Herbal ").map(|n| n.as_str().to_owned()).ok().as_deref(), Some("Herbal"));
    }
}
