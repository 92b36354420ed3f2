//! Orders, their lines and the status state machine.

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

/// What a customer orders: product id to quantity, one entry per product,
/// parsed by the one parser inventory uses too.
pub use shop_order_lines::OrderLines;

/// Why inventory refused an order's stock, as the order keeps it (the
/// `rejection` column), to answer its retries the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A product had fewer units on hand than the order asked for.
    StockShort,
    /// A product of the order does not exist.
    ProductNotFound,
}

impl Rejection {
    pub const ALL: [Self; 2] = [Self::StockShort, Self::ProductNotFound];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StockShort => "stock_short",
            Self::ProductNotFound => "product_not_found",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

/// Who is looking at an order, as far as changing it goes. Anyone else does
/// not get to see it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Admin,
    /// The customer whose order it is.
    Owner,
}

impl Access {
    /// Whether this kind of caller may ask for an order to move to `to` at
    /// all: admins for any status, owners only to cancel.
    pub fn may_ask_for(self, to: Status) -> bool {
        match self {
            Self::Admin => true,
            Self::Owner => to == Status::Cancelled,
        }
    }

    /// The statuses this caller may move an order in `from` to now.
    pub fn allowed_transitions(self, from: Status) -> Vec<Status> {
        Status::ALL.into_iter().filter(|to| from.can_be_moved_to(*to) && self.may_ask_for(*to)).collect()
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
    fn admins_may_make_every_move_owners_only_cancel() {
        let moves = |access: Access| {
            Status::ALL.into_iter().map(|from| (from, access.allowed_transitions(from))).collect::<Vec<_>>()
        };
        assert_eq!(
            moves(Access::Admin),
            vec![
                (Pending, vec![Cancelled]),
                (Confirmed, vec![Shipped, Cancelled]),
                (Shipped, vec![Delivered]),
                (Delivered, vec![]),
                (Cancelled, vec![]),
                (Rejected, vec![]),
            ]
        );
        assert_eq!(
            moves(Access::Owner),
            vec![
                (Pending, vec![Cancelled]),
                (Confirmed, vec![Cancelled]),
                (Shipped, vec![]),
                (Delivered, vec![]),
                (Cancelled, vec![]),
                (Rejected, vec![]),
            ]
        );
    }

    #[test]
    fn rejections_round_trip_through_the_database_form() {
        for rejection in Rejection::ALL {
            assert_eq!(Rejection::from_db(rejection.as_str()), Some(rejection));
        }
        assert_eq!(Rejection::from_db("tuesday"), None);
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
