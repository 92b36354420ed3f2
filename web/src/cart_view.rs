//! The cart as the gateway shows it (page, htmx partial and JSON alike):
//! lines of products still sold, each marked by how it stands against the
//! stock on hand, and lines of products no longer sold, kept apart so every
//! line of `lines` still has its product.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::views::{ProductView, money};

/// How a line stands against the stock on hand now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// Checkout orders it.
    Available,
    /// Fewer in stock than the line holds: left out of checkout until lowered.
    Short,
    /// None in stock: left out of checkout.
    OutOfStock,
}

impl LineStatus {
    pub fn of(quantity: i64, stock: i64) -> Self {
        if stock <= 0 {
            Self::OutOfStock
        } else if stock < quantity {
            Self::Short
        } else {
            Self::Available
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CartLine {
    pub product: ProductView,
    pub quantity: i64,
    pub line_total: String,
    /// How the line stands against the stock now; checkout orders only
    /// `available` lines and leaves the others in the cart.
    pub status: LineStatus,
}

impl CartLine {
    pub fn new(quantity: i64, product: ProductView) -> Self {
        Self {
            line_total: money(product.price_minor.saturating_mul(quantity)),
            status: LineStatus::of(quantity, product.stock),
            product,
            quantity,
        }
    }
}

/// A line of a product that is no longer sold, named as it was when it was
/// put in the cart. It stays until taken out, and is never ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GoneLine {
    pub product_id: i64,
    pub name: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CartView {
    pub lines: Vec<CartLine>,
    /// Units in the cart (every line, `gone` too).
    pub count: i64,
    /// Of the lines checkout orders (`status` `available`), at today's
    /// prices; the order is priced again when placed.
    pub total_minor: i64,
    pub total: String,
    /// Products that were in a guest's cart but are no longer sold: taken
    /// out of it by this reading (0 almost always; a signed-in customer's
    /// are listed in `gone` instead).
    pub removed: usize,
    /// A signed-in customer's lines of products no longer sold.
    #[serde(default)]
    pub gone: Vec<GoneLine>,
    /// Whether some line is left out of checkout (marked, or in `gone`).
    #[serde(default)]
    pub has_unavailable: bool,
}

impl CartView {
    pub fn new(lines: Vec<CartLine>, gone: Vec<GoneLine>) -> Self {
        let total_minor = lines
            .iter()
            .filter(|l| l.status == LineStatus::Available)
            .map(|l| l.product.price_minor.saturating_mul(l.quantity))
            .fold(0_i64, i64::saturating_add);
        let count = lines.iter().map(|l| l.quantity).chain(gone.iter().map(|l| l.quantity)).sum();
        let has_unavailable = !gone.is_empty() || lines.iter().any(|l| l.status != LineStatus::Available);
        Self { lines, count, total_minor, total: money(total_minor), removed: 0, gone, has_unavailable }
    }
}

/// Why a line is left out of checkout, in a shopper's words, naming the
/// product: "Gyokuro is out of stock", "only 2 Teapot left".
pub fn unavailable_reason(name: &str, status: Option<LineStatus>, available: i64) -> String {
    match status {
        None => format!("{name} is no longer sold"),
        Some(LineStatus::OutOfStock) => format!("{name} is out of stock"),
        Some(LineStatus::Short) => format!("only {available} {name} left"),
        Some(LineStatus::Available) => format!("{name} is available"),
    }
}

/// "a", "a and b", "a, b and c".
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_marked_and_listed_in_words() {
        assert_eq!(LineStatus::of(2, 5), LineStatus::Available);
        assert_eq!(LineStatus::of(6, 5), LineStatus::Short);
        assert_eq!(LineStatus::of(1, 0), LineStatus::OutOfStock);
        assert_eq!(unavailable_reason("Gyokuro", Some(LineStatus::Short), 2), "only 2 Gyokuro left");
        assert_eq!(unavailable_reason("Kettle", None, 0), "Kettle is no longer sold");
        let list = |items: &[&str]| and_list(&items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(list(&["a"]), "a");
        assert_eq!(list(&["a", "b", "c"]), "a, b and c");
    }
}
