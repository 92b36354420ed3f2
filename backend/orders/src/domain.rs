//! Orders, their lines and the status state machine.

use std::collections::BTreeMap;

use crate::OrderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Rejected,
}

impl Status {
    pub const ALL: [Self; 6] =
        [Self::Pending, Self::Confirmed, Self::Shipped, Self::Delivered, Self::Cancelled, Self::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The moves a person (an admin, or a customer cancelling) may ask for.
    /// `confirmed` and `rejected` are only reached by reserving stock.
    pub fn can_be_moved_to(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::Confirmed, Self::Shipped)
                | (Self::Shipped, Self::Delivered)
                | (Self::Pending | Self::Confirmed, Self::Cancelled)
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most distinct products in one order, and units of one product.
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 10_000;

/// What a customer orders: product id to quantity, one entry per product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines(BTreeMap<i64, i64>);

impl Lines {
    /// Lines naming the same product are added together.
    pub fn parse(lines: impl IntoIterator<Item = (i64, i64)>) -> Result<Self, OrderError> {
        let mut wanted = BTreeMap::new();
        for (product_id, quantity) in lines {
            parse_id("items.product_id", product_id)?;
            if !(1..=MAX_QUANTITY).contains(&quantity) {
                return Err(OrderError::invalid("items.quantity", "must be between 1 and 10000"));
            }
            let total: &mut i64 = wanted.entry(product_id).or_default();
            *total += quantity;
            if *total > MAX_QUANTITY {
                return Err(OrderError::invalid("items.quantity", "must be between 1 and 10000 per product"));
            }
        }
        if wanted.is_empty() {
            return Err(OrderError::invalid("items", "must name at least one product"));
        }
        if wanted.len() > MAX_LINES {
            return Err(OrderError::invalid("items", "must name at most 100 products"));
        }
        Ok(Self(wanted))
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.0.iter().map(|(id, quantity)| (*id, *quantity))
    }

    /// "product:quantity,..." in product order: equal for equal orders,
    /// however their lines were written.
    pub fn canonical(&self) -> String {
        self.iter().map(|(id, quantity)| format!("{id}:{quantity}")).collect::<Vec<_>>().join(",")
    }
}

/// An idempotency key: up to 200 printable ASCII characters; empty is none.
pub fn parse_idempotency_key(key: &str) -> Result<Option<&str>, OrderError> {
    let key = key.trim();
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OrderError::invalid("idempotency_key", "must be up to 200 printable ASCII characters"));
    }
    Ok(Some(key))
}

pub fn parse_id(field: &'static str, id: i64) -> Result<i64, OrderError> {
    if id > 0 { Ok(id) } else { Err(OrderError::invalid(field, "must be a positive integer")) }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub product_id: i64,
    pub quantity: i64,
    /// Known once inventory has reserved and priced the line.
    pub product_name: Option<String>,
    pub unit_price_minor: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub status: Status,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub status: Status,
    pub total_minor: i64,
    pub items: Vec<Item>,
    pub history: Vec<StatusChange>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A line as inventory reserved and priced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// The total of priced lines, or `None` if it does not fit in an `i64`.
pub fn total_of(lines: &[PricedLine]) -> Option<i64> {
    lines.iter().try_fold(0_i64, |sum, line| sum.checked_add(line.quantity.checked_mul(line.unit_price_minor)?))
}

/// Who changed an order: the system, or a user.
pub fn user_actor(user_id: i64) -> String {
    format!("user:{user_id}")
}
pub const SYSTEM: &str = "system";

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn the_state_machine_allows_only_forward_moves() {
        let allowed: Vec<_> = Status::ALL
            .into_iter()
            .flat_map(|from| Status::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| from.can_be_moved_to(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![(Pending, Cancelled), (Confirmed, Shipped), (Confirmed, Cancelled), (Shipped, Delivered)]
        );
    }

    #[test]
    fn statuses_round_trip_through_the_database_form() {
        for status in Status::ALL {
            assert_eq!(Status::from_db(status.as_str()), Some(status));
        }
        assert_eq!(Status::from_db("lost"), None);
    }

    #[test]
    fn lines_merge_and_are_bounded() -> Result<(), OrderError> {
        assert_eq!(Lines::parse([(3, 1), (3, 2)])?.iter().collect::<Vec<_>>(), vec![(3, 3)]);
        assert!(Lines::parse([]).is_err());
        assert!(Lines::parse([(1, 0)]).is_err());
        assert!(Lines::parse([(1, -1)]).is_err());
        assert!(Lines::parse([(-1, 1)]).is_err());
        assert!(Lines::parse([(1, 10_001)]).is_err());
        assert!(Lines::parse((1..=101).map(|id| (id, 1))).is_err());
        assert_eq!(Lines::parse([(9, 1), (2, 5), (9, 2)])?.canonical(), "2:5,9:3");
        Ok(())
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(matches!(parse_idempotency_key("  "), Ok(None)));
        assert!(matches!(parse_idempotency_key("a1-b2"), Ok(Some("a1-b2"))));
        assert!(parse_idempotency_key(&"k".repeat(201)).is_err());
        assert!(parse_idempotency_key("with space").is_err());
        assert!(parse_idempotency_key("é").is_err());
    }

    #[test]
    fn totals_refuse_overflow() {
        let line = |quantity, unit_price_minor| PricedLine {
            product_id: 1,
            product_name: String::new(),
            quantity,
            unit_price_minor,
        };
        assert_eq!(total_of(&[line(2, 150), line(1, 5)]), Some(305));
        assert_eq!(total_of(&[line(10_000, i64::MAX / 2)]), None);
    }
}
