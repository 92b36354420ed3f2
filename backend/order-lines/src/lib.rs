//! What an order asks for, as the order service records it and inventory
//! reserves it: product id to quantity, parsed once, with one set of bounds.
//!
//! Both services parse the `items` of their requests with [`OrderLines::parse`]
//! and turn a [`LinesError`] into their own error type; the field names it
//! gives (`items`, `items.product_id`, `items.quantity`) are the request
//! fields of both contracts.

use std::collections::BTreeMap;

/// Most distinct products one order (and so one reservation) may hold.
pub const MAX_LINES: usize = 100;
/// Most units of one product one order may hold.
pub const MAX_QUANTITY: i64 = 10_000;

/// Product id to quantity, one entry per product, in id order: the order
/// inventory locks product rows in, so concurrent reservations cannot
/// deadlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(BTreeMap<i64, i64>);

/// Why lines were refused, and which request field was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinesError {
    #[error("items.product_id: must be a positive integer")]
    ProductId,
    #[error("items.quantity: must be between 1 and 10000")]
    Quantity,
    #[error("items.quantity: must be between 1 and 10000 per product")]
    QuantityPerProduct,
    #[error("items: must name at least one product")]
    Empty,
    #[error("items: must name at most 100 products")]
    TooMany,
}

impl LinesError {
    /// The request field that was wrong.
    pub fn field(self) -> &'static str {
        match self {
            Self::ProductId => "items.product_id",
            Self::Quantity | Self::QuantityPerProduct => "items.quantity",
            Self::Empty | Self::TooMany => "items",
        }
    }

    /// What is wrong with it, for people.
    pub fn message(self) -> &'static str {
        match self {
            Self::ProductId => "must be a positive integer",
            Self::Quantity => "must be between 1 and 10000",
            Self::QuantityPerProduct => "must be between 1 and 10000 per product",
            Self::Empty => "must name at least one product",
            Self::TooMany => "must name at most 100 products",
        }
    }
}

impl OrderLines {
    /// Lines naming the same product are added together.
    pub fn parse(lines: impl IntoIterator<Item = (i64, i64)>) -> Result<Self, LinesError> {
        let mut wanted = BTreeMap::new();
        for (product_id, quantity) in lines {
            if product_id <= 0 {
                return Err(LinesError::ProductId);
            }
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return Err(LinesError::Quantity);
            }
            let total: &mut i64 = wanted.entry(product_id).or_default();
            *total += quantity;
            if *total > MAX_QUANTITY {
                return Err(LinesError::QuantityPerProduct);
            }
        }
        if wanted.is_empty() {
            return Err(LinesError::Empty);
        }
        if wanted.len() > MAX_LINES {
            return Err(LinesError::TooMany);
        }
        Ok(Self(wanted))
    }

    /// (product id, quantity), in product id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.0.iter().map(|(id, quantity)| (*id, *quantity))
    }

    /// "product:quantity,..." in product order: equal for equal orders,
    /// however their lines were written.
    pub fn canonical(&self) -> String {
        self.iter().map(|(id, quantity)| format!("{id}:{quantity}")).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(lines: impl IntoIterator<Item = (i64, i64)>) -> Option<&'static str> {
        OrderLines::parse(lines).err().map(LinesError::field)
    }

    #[test]
    fn lines_merge_in_product_order() -> Result<(), LinesError> {
        let lines = OrderLines::parse([(2, 1), (1, 2), (2, 3)])?;
        assert_eq!(lines.iter().collect::<Vec<_>>(), vec![(1, 2), (2, 4)]);
        assert_eq!(OrderLines::parse([(9, 1), (2, 5), (9, 2)])?.canonical(), "2:5,9:3");
        Ok(())
    }

    #[test]
    fn out_of_bounds_lines_name_their_field() {
        assert_eq!(field_of([]), Some("items"));
        assert_eq!(field_of([(1, 0)]), Some("items.quantity"));
        assert_eq!(field_of([(1, -4)]), Some("items.quantity"));
        assert_eq!(field_of([(1, 10_001)]), Some("items.quantity"));
        assert_eq!(field_of([(0, 1)]), Some("items.product_id"));
        assert_eq!(field_of([(-1, 1)]), Some("items.product_id"));
        assert_eq!(OrderLines::parse([(1, 6000), (1, 6000)]), Err(LinesError::QuantityPerProduct));
        assert_eq!(OrderLines::parse((1..=101).map(|id| (id, 1))), Err(LinesError::TooMany));
        assert!(OrderLines::parse((1..=100).map(|id| (id, MAX_QUANTITY))).is_ok());
    }

    #[test]
    fn the_message_is_the_field_and_what_is_wrong() {
        for error in [
            LinesError::ProductId,
            LinesError::Quantity,
            LinesError::QuantityPerProduct,
            LinesError::Empty,
            LinesError::TooMany,
        ] {
            assert_eq!(error.to_string(), format!("{}: {}", error.field(), error.message()));
        }
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
        fn lines_are_refused_or_bounded(lines in proptest::collection::vec((any::<i64>(), any::<i64>()), 0..120)) {
            if let Ok(parsed) = OrderLines::parse(lines.iter().copied()) {
                let parsed: Vec<_> = parsed.iter().collect();
                prop_assert!(!parsed.is_empty() && parsed.len() <= MAX_LINES);
                for (product_id, quantity) in &parsed {
                    prop_assert!(*product_id > 0 && (1..=MAX_QUANTITY).contains(quantity));
                    let asked: i64 = lines.iter().filter(|(id, _)| id == product_id).map(|(_, q)| q).sum();
                    prop_assert_eq!(asked, *quantity);
                }
                prop_assert!(parsed.windows(2).all(|pair| pair[0].0 < pair[1].0), "in product order");
            }
        }

        /// Plausible lines (small ids and quantities, often repeated):
        /// accepted exactly when every merged total is within bounds.
        #[test]
        fn plausible_lines_are_accepted_exactly_within_bounds(
            lines in proptest::collection::vec((1_i64..20, 1_i64..4000), 1..30),
        ) {
            let mut totals = BTreeMap::<i64, i64>::new();
            for (id, quantity) in &lines {
                *totals.entry(*id).or_default() += quantity;
            }
            let fits = totals.values().all(|total| *total <= MAX_QUANTITY);
            prop_assert_eq!(OrderLines::parse(lines.iter().copied()).is_ok(), fits);
        }

        /// The canonical form is the same however the lines are ordered.
        #[test]
        fn canonical_forms_ignore_line_order(lines in proptest::collection::vec((1_i64..50, 1_i64..100), 1..20)) {
            let mut reversed = lines.clone();
            reversed.reverse();
            let forward = OrderLines::parse(lines).map(|l| l.canonical());
            let backward = OrderLines::parse(reversed).map(|l| l.canonical());
            prop_assert_eq!(forward, backward);
        }
    }
}
