//! Products and reservations, and the values they are made of, parsed at the
//! boundary.

use std::collections::BTreeMap;

use crate::InventoryError;

fn invalid(field: &'static str, message: &str) -> InventoryError {
    InventoryError::invalid(field, message)
}

/// Trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, InventoryError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(invalid("name", "is required"));
        }
        if name.chars().count() > 200 {
            return Err(invalid("name", "must be at most 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("name", "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Up to 5000 characters; may be empty. Line breaks are allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, InventoryError> {
        let text = raw.trim();
        if text.chars().count() > 5000 {
            return Err(invalid("description", "must be at most 5000 characters"));
        }
        if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(invalid("description", "must not contain control characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price in minor units: 0 up to 100 million in major units.
pub fn parse_price(minor: i64) -> Result<i64, InventoryError> {
    if (0..=10_000_000_000).contains(&minor) {
        Ok(minor)
    } else {
        Err(invalid("price_minor", "must be between 0 and 10000000000 (minor units)"))
    }
}

pub const MAX_STOCK: i64 = 1_000_000_000;

/// Stock on hand when a product is created.
pub fn parse_stock(stock: i64) -> Result<i64, InventoryError> {
    if (0..=MAX_STOCK).contains(&stock) { Ok(stock) } else { Err(invalid("stock", "must be between 0 and 1000000000")) }
}

/// A restock (positive) or write-off (negative).
pub fn parse_stock_delta(delta: i64) -> Result<i64, InventoryError> {
    if delta != 0 && (-MAX_STOCK..=MAX_STOCK).contains(&delta) {
        Ok(delta)
    } else {
        Err(invalid("stock_delta", "must be non-zero and between -1000000000 and 1000000000"))
    }
}

pub fn parse_id(field: &'static str, id: i64) -> Result<i64, InventoryError> {
    if id > 0 { Ok(id) } else { Err(invalid(field, "must be a positive integer")) }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub stock: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub price_minor: i64,
    pub stock: i64,
}

#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price_minor: Option<i64>,
    pub stock_delta: Option<i64>,
}

/// Most distinct products one reservation may hold.
pub const MAX_LINES: usize = 100;
/// Most units of one product one reservation may hold.
pub const MAX_QUANTITY: i64 = 10_000;

/// What an order asks for: product id to quantity, one entry per product,
/// in id order (the order rows are locked in, so concurrent reservations
/// cannot deadlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request(BTreeMap<i64, i64>);

impl Request {
    /// Lines naming the same product are added together.
    pub fn parse(lines: impl IntoIterator<Item = (i64, i64)>) -> Result<Self, InventoryError> {
        let mut wanted = BTreeMap::new();
        for (product_id, quantity) in lines {
            parse_id("items.product_id", product_id)?;
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return Err(invalid("items.quantity", "must be between 1 and 10000"));
            }
            let total: &mut i64 = wanted.entry(product_id).or_default();
            *total += quantity;
            if *total > MAX_QUANTITY {
                return Err(invalid("items.quantity", "must be between 1 and 10000 per product"));
            }
        }
        if wanted.is_empty() {
            return Err(invalid("items", "must name at least one product"));
        }
        if wanted.len() > MAX_LINES {
            return Err(invalid("items", "must name at most 100 products"));
        }
        Ok(Self(wanted))
    }

    pub fn lines(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.0.iter().map(|(id, quantity)| (*id, *quantity))
    }
}

/// One reserved line, priced at the time of reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedItem {
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(result: Result<T, InventoryError>) -> &'static str {
        match result {
            Err(InventoryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn names_and_descriptions_are_bounded() {
        assert_eq!(field_of(ProductName::parse(" ")), "name");
        assert_eq!(field_of(ProductName::parse(&"n".repeat(201))), "name");
        assert!(ProductName::parse(&"n".repeat(200)).is_ok());
        assert!(Description::parse("two\nlines").is_ok());
        assert_eq!(field_of(Description::parse(&"d".repeat(5001))), "description");
        assert_eq!(field_of(Description::parse("bell\u{7}")), "description");
    }

    #[test]
    fn money_and_stock_are_bounded() {
        assert_eq!(field_of(parse_price(-1)), "price_minor");
        assert_eq!(field_of(parse_price(10_000_000_001)), "price_minor");
        assert_eq!(parse_price(0).ok(), Some(0));
        assert_eq!(field_of(parse_stock(-1)), "stock");
        assert_eq!(field_of(parse_stock_delta(0)), "stock_delta");
        assert_eq!(field_of(parse_stock_delta(i64::MIN)), "stock_delta");
        assert_eq!(parse_stock_delta(-3).ok(), Some(-3));
    }

    #[test]
    fn requests_merge_lines_and_are_bounded() -> Result<(), InventoryError> {
        let request = Request::parse([(2, 1), (1, 2), (2, 3)])?;
        assert_eq!(request.lines().collect::<Vec<_>>(), vec![(1, 2), (2, 4)]);
        assert_eq!(field_of(Request::parse([])), "items");
        assert_eq!(field_of(Request::parse([(1, 0)])), "items.quantity");
        assert_eq!(field_of(Request::parse([(1, -4)])), "items.quantity");
        assert_eq!(field_of(Request::parse([(0, 1)])), "items.product_id");
        assert_eq!(field_of(Request::parse([(1, 6000), (1, 6000)])), "items.quantity");
        assert_eq!(field_of(Request::parse((1..=101).map(|id| (id, 1)))), "items");
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any lines at all: refused with a field, or merged into at most
        /// 100 products of 1 to 10,000 units each, totals kept.
        #[test]
        fn requests_are_refused_or_bounded(lines in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..120)) {
            if let Ok(request) = Request::parse(lines.iter().copied()) {
                let parsed: Vec<_> = request.lines().collect();
                prop_assert!(!parsed.is_empty() && parsed.len() <= MAX_LINES);
                for (product_id, quantity) in &parsed {
                    prop_assert!(*product_id > 0 && (1..=MAX_QUANTITY).contains(quantity));
                    let asked: i64 = lines.iter().filter(|(id, _)| id == product_id).map(|(_, q)| q).sum();
                    prop_assert_eq!(asked, *quantity);
                }
            }
        }

        #[test]
        fn money_and_stock_bounds_hold(price in any::<i64>(), stock in any::<i64>(), delta in any::<i64>()) {
            prop_assert_eq!(parse_price(price).is_ok(), (0..=10_000_000_000).contains(&price));
            prop_assert_eq!(parse_stock(stock).is_ok(), (0..=MAX_STOCK).contains(&stock));
            prop_assert_eq!(parse_stock_delta(delta).is_ok(), delta != 0 && delta.abs() <= MAX_STOCK);
        }

        #[test]
        fn product_names_never_panic(raw in "\\PC{0,250}") {
            if let Ok(name) = ProductName::parse(&raw) {
                prop_assert_eq!(name.as_str(), raw.trim());
            }
        }
    }
}
