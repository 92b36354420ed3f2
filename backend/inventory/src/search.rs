//! What `ListProducts` searches for: the query's words, the filters and the
//! order, parsed at the boundary; and the spelling distance that picks a
//! catalogue word for a query word that matches nothing as typed. The SQL
//! that runs a search is in `store::search`.

use shop_storage::cursor::{Key, KeyKind};

use crate::InventoryError;

/// Most characters a query may have.
pub const MAX_QUERY_CHARS: usize = 200;
/// Words beyond this many are ignored (a query of 200 one-letter words
/// would otherwise be 100 prefix searches).
pub const MAX_WORDS: usize = 12;

/// A query's words: lower-case runs of letters and digits, in order,
/// without repeats. Everything else (punctuation, hyphens, apostrophes)
/// separates words, so a word never carries a character that means
/// something to a full-text query language.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryWords(Vec<String>);

impl QueryWords {
    pub fn parse(raw: &str) -> Result<Self, InventoryError> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(InventoryError::invalid("query", "must be at most 200 characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err(InventoryError::invalid("query", "must not contain control characters"));
        }
        let mut words: Vec<String> = Vec::new();
        for word in raw.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let word = word.to_lowercase();
            if !words.contains(&word) && words.len() < MAX_WORDS {
                words.push(word);
            }
        }
        Ok(Self(words))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn words(&self) -> &[String] {
        &self.0
    }
}

/// One query word as searched: itself, or the catalogue words closest to
/// it when it matched nothing as typed (the first is the best guess).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm {
    pub typed: String,
    pub alternatives: Vec<String>,
}

impl SearchTerm {
    pub fn as_typed(word: &str) -> Self {
        Self { typed: word.to_owned(), alternatives: vec![word.to_owned()] }
    }

    pub fn corrected(&self) -> bool {
        self.alternatives.first() != Some(&self.typed)
    }
}

/// The words searched, when any was corrected ("earl grey" for "earl
/// gery"); empty otherwise.
pub fn searched_for(terms: &[SearchTerm]) -> String {
    if !terms.iter().any(SearchTerm::corrected) {
        return String::new();
    }
    let words: Vec<&str> = terms.iter().map(|t| t.alternatives.first().unwrap_or(&t.typed).as_str()).collect();
    words.join(" ")
}

/// How far a catalogue word may be from a query word to replace it:
/// one edit for words of up to 4 letters, two for longer ones.
pub fn max_distance(word: &str) -> usize {
    if word.chars().count() <= 4 { 1 } else { 2 }
}

/// Most alternatives a misspelt word is searched as.
const MAX_ALTERNATIVES: usize = 3;

/// The candidates within [`max_distance`] of `word`, closest first (then
/// those in more products), at most three. `candidates` are (word, how many
/// products have it).
pub fn closest_words(word: &str, candidates: impl IntoIterator<Item = (String, i64)>) -> Vec<String> {
    let limit = max_distance(word);
    let mut near: Vec<(usize, i64, String)> = candidates
        .into_iter()
        .filter(|(candidate, _)| candidate != word)
        .filter_map(|(candidate, products)| {
            let distance = edit_distance(word, &candidate, limit)?;
            Some((distance, products, candidate))
        })
        .collect();
    near.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let best = near.first().map(|n| n.0);
    near.into_iter().filter(|n| Some(n.0) == best).take(MAX_ALTERNATIVES).map(|n| n.2).collect()
}

/// The Damerau–Levenshtein distance between `a` and `b` (insertions,
/// deletions, substitutions and swaps of neighbours, in the restricted
/// "optimal string alignment" form), or `None` when it is above `limit`.
pub fn edit_distance(a: &str, b: &str, limit: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > limit {
        return None;
    }
    // Three rows of the table: two back (for swaps), one back, this one.
    let width = b.len() + 1;
    let mut two_back = vec![0; width];
    let mut one_back: Vec<usize> = (0..width).collect();
    let mut row = vec![0; width];
    for i in 1..=a.len() {
        row[0] = i;
        let mut row_min = row[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (one_back[j] + 1).min(row[j - 1] + 1).min(one_back[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(two_back[j - 2] + 1);
            }
            row[j] = best;
            row_min = row_min.min(best);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut two_back, &mut one_back);
        std::mem::swap(&mut one_back, &mut row);
    }
    let distance = one_back[b.len()];
    (distance <= limit).then_some(distance)
}

/// The order of a page. Every order ends on the id, so no two products
/// tie and a page's boundary is one exact place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Id, highest first.
    Newest,
    /// Price, then the newest first among equal prices.
    PriceLowFirst,
    PriceHighFirst,
    /// `lower(name)`, then the id.
    Name,
    /// Rank, best first, then the newest; only with query words.
    Relevance,
}

impl Sort {
    /// The kinds of the sort key a cursor of this order holds.
    pub fn shape(self) -> &'static [KeyKind] {
        match self {
            Sort::Newest => &[KeyKind::Int],
            Sort::PriceLowFirst | Sort::PriceHighFirst => &[KeyKind::Int, KeyKind::Int],
            Sort::Name => &[KeyKind::Text, KeyKind::Int],
            Sort::Relevance => &[KeyKind::Float, KeyKind::Int],
        }
    }
}

/// Most matches a search ranks by relevance: the newest this many (all of
/// them when there are fewer). Ranking every match of a word most products
/// have would read them all; see docs/search.md.
pub const RANKED_MATCHES: i64 = 1_000;

/// Counting stops past this many matches (`total_is_lower_bound`).
pub const COUNT_BOUND: i64 = 1_000;

/// Deepest row a page number (`page`, kept for old clients) may start at:
/// an offset reads every row before it, so deeper pages are reached by
/// cursor.
pub const MAX_OFFSET: i64 = 10_000;

/// Where the page is in its list.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    First,
    /// A page number past the first (old clients), by offset.
    Number(u32),
    /// Right after the row whose sort key this is.
    After(Vec<Key>),
    /// Right before the row whose sort key this is.
    Before(Vec<Key>),
    Last,
}

/// Everything `ListProducts` narrows and orders by.
#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub words: QueryWords,
    pub category_id: Option<i64>,
    pub in_stock_only: bool,
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    pub exclude_product_id: Option<i64>,
}

/// Bounds are inclusive, at least 0, and the lower at most the upper.
pub fn parse_price_bounds(min: Option<i64>, max: Option<i64>) -> Result<(Option<i64>, Option<i64>), InventoryError> {
    if min.is_some_and(|m| m < 0) {
        return Err(InventoryError::invalid("min_price_minor", "must be at least 0"));
    }
    if max.is_some_and(|m| m < 0) {
        return Err(InventoryError::invalid("max_price_minor", "must be at least 0"));
    }
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(InventoryError::invalid("min_price_minor", "must not be above max_price_minor"));
    }
    Ok((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_are_lower_case_letters_and_digits() {
        let words = QueryWords::parse("  Earl GREY, pu-erh \"357\" tea* (o'clock) Earl").expect("a query");
        assert_eq!(words.words(), ["earl", "grey", "pu", "erh", "357", "tea", "o", "clock"]);
        assert_eq!(QueryWords::parse("Thé").expect("a query").words(), ["thé"]);
        assert!(QueryWords::parse(" ,;- ").expect("a query").is_empty());
        assert!(QueryWords::parse(&"a ".repeat(60)).expect("a query").words().len() == 1);
        let many: String = (0..30).map(|n| format!("w{n} ")).collect();
        assert_eq!(QueryWords::parse(&many).expect("a query").words().len(), MAX_WORDS);
    }

    #[test]
    fn queries_are_bounded_and_printable() {
        assert!(QueryWords::parse(&"a".repeat(200)).is_ok());
        assert!(QueryWords::parse(&"a".repeat(201)).is_err());
        assert!(QueryWords::parse("tea\u{0}").is_err());
        assert!(QueryWords::parse("tea\npot").is_err());
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions_and_swaps() {
        assert_eq!(edit_distance("grey", "grey", 2), Some(0));
        assert_eq!(edit_distance("gery", "grey", 2), Some(1), "a swap is one edit");
        assert_eq!(edit_distance("tepot", "teapot", 2), Some(1));
        assert_eq!(edit_distance("teapot", "tepot", 2), Some(1));
        assert_eq!(edit_distance("sencah", "sencha", 2), Some(1));
        assert_eq!(edit_distance("kitten", "sitting", 3), Some(3));
        assert_eq!(edit_distance("kitten", "sitting", 2), None);
        assert_eq!(edit_distance("tea", "teapots", 2), None, "too far apart in length");
        assert_eq!(edit_distance("thé", "the", 1), Some(1));
        assert_eq!(edit_distance("", "ab", 2), Some(2));
    }

    #[test]
    fn short_words_allow_one_edit_and_longer_ones_two() {
        assert_eq!(max_distance("gery"), 1);
        assert_eq!(max_distance("tepot"), 2);
        let vocabulary = || {
            [("grey", 3), ("grew", 1), ("green", 9), ("gray", 2), ("teapot", 4), ("teapots", 1)]
                .map(|(w, n)| (w.to_owned(), n))
        };
        assert_eq!(closest_words("gery", vocabulary()), ["grey"]);
        assert_eq!(closest_words("tepot", vocabulary()), ["teapot"]);
        assert_eq!(closest_words("gren", vocabulary()), ["green", "grey", "grew"], "ties: more products first");
        assert!(closest_words("xyzzy", vocabulary()).is_empty());
    }

    #[test]
    fn searched_for_names_the_corrected_query_only() {
        let earl = SearchTerm::as_typed("earl");
        let grey = SearchTerm { typed: "gery".into(), alternatives: vec!["grey".into(), "gray".into()] };
        assert_eq!(searched_for(&[earl.clone(), grey]), "earl grey");
        assert_eq!(searched_for(&[earl]), "");
    }

    #[test]
    fn price_bounds_are_checked() {
        assert!(parse_price_bounds(Some(0), Some(0)).is_ok());
        assert!(parse_price_bounds(None, Some(5)).is_ok());
        assert!(parse_price_bounds(Some(-1), None).is_err());
        assert!(parse_price_bounds(None, Some(-1)).is_err());
        assert!(parse_price_bounds(Some(6), Some(5)).is_err());
    }
}
