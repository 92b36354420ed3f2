//! Products and reservations, and the values they are made of, parsed at the
//! boundary.

use crate::InventoryError;
pub use crate::categories::Category;
use crate::images::Variants;

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

/// Most products one `GetProducts` call may ask for (a cart's bound).
pub const MAX_IDS: usize = 100;

/// The ids of a batch read: each positive, at most [`MAX_IDS`], repeats dropped.
pub fn parse_ids(ids: &[i64]) -> Result<Vec<i64>, InventoryError> {
    // Bounded before anything else: de-duplicating is quadratic.
    if ids.len() > MAX_IDS {
        return Err(invalid("ids", "may name at most 100 products"));
    }
    let mut unique = Vec::with_capacity(ids.len());
    for id in ids {
        let id = parse_id("ids", *id)?;
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
}

/// Most categories one product may be in.
pub const MAX_CATEGORIES: usize = 20;

/// A product's categories: each positive, at most [`MAX_CATEGORIES`],
/// repeats dropped. (Whether they exist is the store's question.)
pub fn parse_category_ids(field: &'static str, ids: &[i64]) -> Result<Vec<i64>, InventoryError> {
    if ids.len() > MAX_CATEGORIES {
        return Err(invalid(field, "may name at most 20 categories"));
    }
    let mut unique = Vec::with_capacity(ids.len());
    for id in ids {
        let id = parse_id(field, *id)?;
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
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
    /// By name.
    pub categories: Vec<Category>,
    /// In the order they were added.
    pub images: Vec<ProductImage>,
}

/// A stored picture of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductImage {
    pub id: i64,
    pub alt: String,
    /// Of both variants.
    pub content_type: String,
    pub thumbnail: StoredVariant,
    pub large: StoredVariant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVariant {
    pub hash: String,
    pub width: u32,
    pub height: u32,
}

pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub price_minor: i64,
    pub stock: i64,
    /// Existing categories, checked by the store.
    pub category_ids: Vec<i64>,
}

/// A picture to add: its alt text and its variants, made already.
pub struct NewImage {
    pub alt: String,
    pub variants: Variants,
}

#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price_minor: Option<i64>,
    pub stock_delta: Option<i64>,
    /// When set, the categories become exactly these.
    pub category_ids: Option<Vec<i64>>,
}

/// What an order asks for, parsed by the one parser the order service uses
/// too.
pub use shop_order_lines::OrderLines;

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
    fn order_lines_are_refused_with_their_field() {
        assert_eq!(field_of(OrderLines::parse([]).map_err(InventoryError::from)), "items");
        assert_eq!(field_of(OrderLines::parse([(1, 0)]).map_err(InventoryError::from)), "items.quantity");
        assert_eq!(field_of(OrderLines::parse([(0, 1)]).map_err(InventoryError::from)), "items.product_id");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
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
