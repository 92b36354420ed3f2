//! Orders, their lines, the status state machine and, beside it, the
//! payment state machine; delivery addresses, costs and VAT.

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
    /// A service of the shop that reads orders and changes nothing (the
    /// notifications component).
    ReadOnly,
}

impl Access {
    /// Whether this kind of caller may ask for an order to move to `to` at
    /// all: admins for any status, owners only to cancel.
    pub fn may_ask_for(self, to: Status) -> bool {
        match self {
            Self::Admin => true,
            Self::Owner => to == Status::Cancelled,
            Self::ReadOnly => false,
        }
    }

    /// The statuses this caller may move an order in `from` to now.
    pub fn allowed_transitions(self, from: Status) -> Vec<Status> {
        Status::ALL.into_iter().filter(|to| from.can_be_moved_to(*to) && self.may_ask_for(*to)).collect()
    }

    /// The payment states this caller may move an order's payment to now:
    /// admins only.
    pub fn allowed_payment_transitions(self, from: PaymentState, status: Status) -> Vec<PaymentState> {
        if self != Self::Admin {
            return Vec::new();
        }
        PaymentState::ALL.into_iter().filter(|to| from.can_be_moved_to(*to, status)).collect()
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
    /// Items and delivery.
    pub total_minor: i64,
    pub subtotal_minor: i64,
    pub items: Vec<Item>,
    pub history: Vec<StatusChange>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// `None`: no delivery arranged (collected in store).
    pub address: Option<Address>,
    /// The method's id and name as they were when the order was placed.
    pub delivery_method: Option<(i64, String)>,
    pub delivery_minor: i64,
    /// `None` for orders placed before the rate was recorded.
    pub vat_rate_bp: Option<u32>,
    pub payment_method: Option<PaymentMethod>,
    pub payment_state: PaymentState,
    pub payment_history: Vec<PaymentChange>,
    pub tracking_reference: Option<String>,
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

/// How the customer pays; `None` on an order is "not said".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    BankTransfer,
    CashOnDelivery,
}

impl PaymentMethod {
    pub const ALL: [Self; 2] = [Self::BankTransfer, Self::CashOnDelivery];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BankTransfer => "bank_transfer",
            Self::CashOnDelivery => "cash_on_delivery",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

/// Payment, beside the status: unpaid → paid → refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    Unpaid,
    Paid,
    Refunded,
}

impl PaymentState {
    pub const ALL: [Self; 3] = [Self::Unpaid, Self::Paid, Self::Refunded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpaid => "unpaid",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// The payment moves an admin may make on an order in `status`: paid
    /// once the stock is reserved and until it is cancelled (never for a
    /// pending, cancelled or rejected order); refunded once cancelled.
    pub fn can_be_moved_to(self, to: Self, status: Status) -> bool {
        match (self, to) {
            (Self::Unpaid, Self::Paid) => {
                matches!(status, Status::Confirmed | Status::Shipped | Status::Delivered)
            }
            (Self::Paid, Self::Refunded) => status == Status::Cancelled,
            _ => false,
        }
    }
}

impl std::fmt::Display for PaymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an order may be shipped as far as its payment goes: an unpaid
/// bank transfer only when the shop says so; cash on delivery, and orders
/// without a payment method, always.
pub fn may_ship(method: Option<PaymentMethod>, state: PaymentState, ship_unpaid_bank_transfer: bool) -> bool {
    !(method == Some(PaymentMethod::BankTransfer) && state == PaymentState::Unpaid && !ship_unpaid_bank_transfer)
}

/// The order service's shop settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// VAT included in prices, in hundredths of a percent (2000 = 20 %).
    pub vat_rate_bp: u32,
    /// Whether an unpaid bank-transfer order may be shipped.
    pub ship_unpaid_bank_transfer: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { vat_rate_bp: 2000, ship_unpaid_bank_transfer: false }
    }
}

/// Reads a VAT rate given as a percentage ("20", "5.5", "7.25") into
/// hundredths of a percent; 0 to 100, at most two decimals.
pub fn parse_vat_rate(text: &str) -> Option<u32> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || whole.len() > 3 || fraction.len() > 2 {
        return None;
    }
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let fraction: u32 = if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse().ok()? };
    let bp = whole.checked_mul(100)?.checked_add(fraction)?;
    (bp <= 10_000).then_some(bp)
}

/// The VAT contained in a price that includes it, at `rate_bp`, rounded
/// half up to the minor unit.
pub fn vat_included(total_minor: i64, rate_bp: u32) -> i64 {
    let total = i128::from(total_minor.max(0));
    let rate = i128::from(rate_bp);
    let denominator = 10_000 + rate;
    let vat = (total * rate * 2 + denominator) / (denominator * 2);
    i64::try_from(vat).unwrap_or(i64::MAX)
}

/// What the customer writes on a bank transfer for order `id`.
pub fn payment_reference(id: i64) -> String {
    format!("ORDER-{id:06}")
}

/// A delivery method as an order keeps it: what delivery cost when placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMethod {
    pub id: i64,
    pub name: String,
    pub price_minor: i64,
    pub free_above_minor: Option<i64>,
    pub active: bool,
}

impl DeliveryMethod {
    /// What delivery costs for items worth `subtotal_minor`: free once the
    /// subtotal reaches the threshold.
    pub fn cost(&self, subtotal_minor: i64) -> i64 {
        delivery_cost(self.price_minor, self.free_above_minor, subtotal_minor)
    }
}

pub fn delivery_cost(price_minor: i64, free_above_minor: Option<i64>, subtotal_minor: i64) -> i64 {
    match free_above_minor {
        Some(threshold) if subtotal_minor >= threshold => 0,
        _ => price_minor,
    }
}

pub const MAX_DELIVERY_PRICE: i64 = 100_000_000;
pub const MAX_FREE_ABOVE: i64 = 100_000_000_000;

/// A delivery method's name: 1 to 100 characters, trimmed, no control characters.
pub fn parse_method_name(name: &str) -> Result<String, OrderError> {
    text("name", name, 1, 100)
}

pub fn parse_method_price(price_minor: i64) -> Result<i64, OrderError> {
    if (0..=MAX_DELIVERY_PRICE).contains(&price_minor) {
        Ok(price_minor)
    } else {
        Err(OrderError::invalid("price_minor", "must be between 0 and 100,000,000 minor units"))
    }
}

pub fn parse_free_above(free_above_minor: i64) -> Result<i64, OrderError> {
    if (0..=MAX_FREE_ABOVE).contains(&free_above_minor) {
        Ok(free_above_minor)
    } else {
        Err(OrderError::invalid("free_above_minor", "must be between 0 and 100,000,000,000 minor units"))
    }
}

/// A tracking reference: up to 100 characters, no control characters;
/// empty is none.
pub fn parse_tracking_reference(reference: &str) -> Result<Option<String>, OrderError> {
    let reference = text("tracking_reference", reference, 0, 100)?;
    Ok((!reference.is_empty()).then_some(reference))
}

/// Trimmed text of `min..=max` characters with no control characters.
fn text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String, OrderError> {
    let value = value.trim();
    if value.chars().any(char::is_control) {
        return Err(OrderError::invalid(field, "must not contain control characters"));
    }
    let length = value.chars().count();
    if length < min {
        return Err(OrderError::invalid(field, "is required"));
    }
    if length > max {
        return Err(OrderError::invalid(field, format!("must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// The countries the shop delivers to (ISO 3166-1 alpha-2): the European
/// Economic Area, its neighbours, and a few more.
pub const COUNTRIES: &[&str] = &[
    "AD", "AT", "AU", "BE", "BG", "CA", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU",
    "IE", "IS", "IT", "JP", "LI", "LT", "LU", "LV", "MC", "MT", "NL", "NO", "NZ", "PL", "PT", "RO", "SE", "SI", "SK",
    "SM", "US", "VA",
];

/// A delivery address, checked: every field trimmed, none with control
/// characters, the country upper-cased and one the shop delivers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
    pub phone: String,
}

/// The raw fields of an address, as a request carries them.
#[derive(Debug, Clone, Copy)]
pub struct AddressInput<'a> {
    pub name: &'a str,
    pub line1: &'a str,
    pub line2: &'a str,
    pub postcode: &'a str,
    pub city: &'a str,
    pub country: &'a str,
    pub phone: &'a str,
}

impl Address {
    /// Checks each field in the form's order; the first wrong one is named
    /// as `delivery_address.<field>`.
    pub fn parse(input: AddressInput<'_>) -> Result<Self, OrderError> {
        let name = text("delivery_address.name", input.name, 1, 100)?;
        let line1 = text("delivery_address.line1", input.line1, 1, 200)?;
        let line2 = text("delivery_address.line2", input.line2, 0, 200)?;
        let postcode = text("delivery_address.postcode", input.postcode, 1, 20)?;
        if !postcode.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-') {
            return Err(OrderError::invalid(
                "delivery_address.postcode",
                "may hold only letters, digits, spaces and hyphens",
            ));
        }
        let city = text("delivery_address.city", input.city, 1, 100)?;
        let country = text("delivery_address.country", input.country, 1, 2)?.to_ascii_uppercase();
        if !COUNTRIES.contains(&country.as_str()) {
            return Err(OrderError::invalid(
                "delivery_address.country",
                "must be the two-letter code of a country the shop delivers to (e.g. FR)",
            ));
        }
        let phone = text("delivery_address.phone", input.phone, 0, 30)?;
        // The same characters as the users service's address book takes, so
        // an address from the book is never refused here.
        if !phone.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')')) {
            return Err(OrderError::invalid(
                "delivery_address.phone",
                "may hold only digits, spaces, +, - and parentheses",
            ));
        }
        Ok(Self { name, line1, line2, postcode, city, country, phone })
    }
}

/// What an order records of its delivery: where, by which method, at what
/// price (its cost is decided once the items are priced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub address: Address,
    pub method: DeliveryMethod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentChange {
    pub state: PaymentState,
    pub actor: String,
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn an_address_book_phone_number_is_a_delivery_phone_number() {
        let input = |phone| AddressInput {
            name: "Casey",
            line1: "1 Main Street",
            line2: "",
            postcode: "10001",
            city: "New York",
            country: "us",
            phone,
        };
        for phone in ["(212) 555-0100", "+1 212-555-0100", ""] {
            assert!(Address::parse(input(phone)).is_ok(), "{phone}");
        }
        assert!(Address::parse(input("call me")).is_err());
    }

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
    fn payment_moves_follow_the_order_status() {
        use PaymentState::*;
        let moves: Vec<_> = Status::ALL
            .into_iter()
            .flat_map(|status| {
                PaymentState::ALL
                    .into_iter()
                    .flat_map(move |from| PaymentState::ALL.into_iter().map(move |to| (status, from, to)))
            })
            .filter(|(status, from, to)| from.can_be_moved_to(*to, *status))
            .collect();
        assert_eq!(
            moves,
            vec![
                (Confirmed, Unpaid, Paid),
                (Shipped, Unpaid, Paid),
                (Delivered, Unpaid, Paid),
                (Cancelled, Paid, Refunded)
            ]
        );
    }

    #[test]
    fn only_unpaid_bank_transfers_wait_for_payment_to_ship() {
        use PaymentMethod::*;
        assert!(!may_ship(Some(BankTransfer), PaymentState::Unpaid, false));
        assert!(may_ship(Some(BankTransfer), PaymentState::Unpaid, true));
        assert!(may_ship(Some(BankTransfer), PaymentState::Paid, false));
        assert!(may_ship(Some(CashOnDelivery), PaymentState::Unpaid, false));
        assert!(may_ship(None, PaymentState::Unpaid, false));
    }

    #[test]
    fn delivery_is_free_from_the_threshold_on() {
        assert_eq!(delivery_cost(490, Some(5000), 4999), 490);
        assert_eq!(delivery_cost(490, Some(5000), 5000), 0);
        assert_eq!(delivery_cost(490, Some(5000), 5001), 0);
        assert_eq!(delivery_cost(490, None, 1_000_000), 490);
    }

    #[test]
    fn vat_rates_and_amounts() {
        assert_eq!(parse_vat_rate("20"), Some(2000));
        assert_eq!(parse_vat_rate("5.5"), Some(550));
        assert_eq!(parse_vat_rate(" 7.25 "), Some(725));
        assert_eq!(parse_vat_rate("0"), Some(0));
        for bad in ["", "-1", "101", "20%", "1.234", ".5", "abc"] {
            assert_eq!(parse_vat_rate(bad), None, "{bad:?}");
        }
        // 120.00 at 20 % includes 20.00; 10.00 includes 1.666... -> 1.67.
        assert_eq!(vat_included(12_000, 2000), 2000);
        assert_eq!(vat_included(1000, 2000), 167);
        assert_eq!(vat_included(1000, 0), 0);
        assert_eq!(vat_included(i64::MAX, 10_000), i64::MAX / 2 + 1);
    }

    #[test]
    fn payment_references_come_from_the_id() {
        assert_eq!(payment_reference(42), "ORDER-000042");
        assert_eq!(payment_reference(1_234_567), "ORDER-1234567");
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
