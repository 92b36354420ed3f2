//! The body of each event type. Adding a field is compatible; changing or
//! removing one is a new version (see `docs/events.md`).

use serde::{Deserialize, Serialize};

use crate::Payload;

/// `user.registered`: an account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: i64,
    pub email: String,
    pub name: String,
}

impl Payload for UserRegistered {
    const KIND: &'static str = "user.registered";
    const VERSION: u32 = 1;
}

/// `user.deleted`: an account is gone; its sessions must end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: i64,
}

impl Payload for UserDeleted {
    const KIND: &'static str = "user.deleted";
    const VERSION: u32 = 1;
}

/// `product.changed`: a product was created, edited, deleted, its stock
/// moved or its pictures changed; copies of it are stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub product_id: i64,
    /// `created`, `updated` (fields or categories), `deleted`, `stock` or
    /// `images`.
    pub change: String,
    /// The stock after the change; absent when deleted.
    pub stock: Option<i64>,
}

impl Payload for ProductChanged {
    const KIND: &'static str = "product.changed";
    const VERSION: u32 = 1;
}

/// `category.changed`: a category was created, renamed or deleted; copies
/// of the category list, and of products in it (which carry its name), are
/// stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryChanged {
    pub category_id: i64,
    /// `created`, `renamed` or `deleted`.
    pub change: String,
}

impl Payload for CategoryChanged {
    const KIND: &'static str = "category.changed";
    const VERSION: u32 = 1;
}

/// `stock.low`: a product's stock fell to or below the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLow {
    pub product_id: i64,
    pub stock: i64,
    pub threshold: i64,
}

impl Payload for StockLow {
    const KIND: &'static str = "stock.low";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub product_id: i64,
    pub quantity: i64,
}

/// `order.created`: an order was recorded (as pending; its confirmation or
/// rejection follows as `order.status_changed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: i64,
    pub user_id: i64,
    pub items: Vec<OrderLine>,
}

impl Payload for OrderCreated {
    const KIND: &'static str = "order.created";
    const VERSION: u32 = 1;
}

/// `order.status_changed`: an order moved from one status to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub order_id: i64,
    pub user_id: i64,
    pub from: String,
    pub to: String,
    /// `system` or `user:<id>`.
    pub actor: String,
    /// The order total in minor units after the change.
    pub total_minor: i64,
    /// The carrier's reference given when the order was shipped (absent
    /// otherwise, and in events written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_reference: Option<String>,
}

impl Payload for OrderStatusChanged {
    const KIND: &'static str = "order.status_changed";
    const VERSION: u32 = 1;
}

/// `order.payment_changed`: an order's payment state moved (unpaid → paid,
/// paid → refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentChanged {
    pub order_id: i64,
    pub user_id: i64,
    /// Payment states in lower case: `unpaid`, `paid`, `refunded`.
    pub from: String,
    pub to: String,
    /// `system` or `user:<id>`.
    pub actor: String,
}

impl Payload for OrderPaymentChanged {
    const KIND: &'static str = "order.payment_changed";
    const VERSION: u32 = 1;
}

/// `user.password_reset_requested`: someone asked for a password reset
/// link for this account. Carries the link's secret token, so only the
/// mailer acts on it; the users service keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    /// The single-use secret of the link (`/users/password-reset/<token>`).
    pub token: String,
    /// When the link stops working, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

impl Payload for PasswordResetRequested {
    const KIND: &'static str = "user.password_reset_requested";
    const VERSION: u32 = 1;
}

/// `user.password_reset`: an account's password was set through a reset
/// link; every session of the account that began before `at_ms` must end
/// (every gateway replica hears it, so a failure of the gateway that served
/// the reset cannot leave old sessions alive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordReset {
    pub user_id: i64,
    /// When the new password was set, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl Payload for PasswordReset {
    const KIND: &'static str = "user.password_reset";
    const VERSION: u32 = 1;
}
