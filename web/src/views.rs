//! What the gateway shows: one struct per thing, serialised as JSON for API
//! clients and handed to templates for HTML, so both always agree. The
//! conversions from the services' protobuf types live here too.

use serde::{Deserialize, Serialize};
use shop_proto::inventory::v1 as inventory;
use shop_proto::orders::v1 as orders;
use shop_proto::users::v1 as users;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

fn rfc3339(timestamp: Option<prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Minor units as a decimal amount: 1999 → "19.99".
pub fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// Price in minor units (cents).
    pub price_minor: i64,
    /// The same price as a decimal string, for display.
    pub price: String,
    pub stock: i64,
    pub created_at: String,
    pub updated_at: String,
    /// By name.
    #[serde(default)]
    pub categories: Vec<CategoryView>,
    /// The first is the product's picture in lists.
    #[serde(default)]
    pub images: Vec<ImageView>,
}

impl From<inventory::Product> for ProductView {
    fn from(p: inventory::Product) -> Self {
        Self {
            id: p.id,
            price: money(p.price_minor),
            name: p.name,
            description: p.description,
            price_minor: p.price_minor,
            stock: p.stock,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            categories: p.categories.into_iter().map(CategoryView::from).collect(),
            images: p.images.into_iter().filter_map(ImageView::from_proto).collect(),
        }
    }
}

/// A category of products; `slug` names it in URLs (`/products?category=green-tea`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CategoryView {
    pub id: i64,
    pub name: String,
    pub slug: String,
    /// Products in it (in the category list; 0 on a product).
    pub product_count: i64,
}

impl From<inventory::Category> for CategoryView {
    fn from(c: inventory::Category) -> Self {
        Self { id: c.id, name: c.name, slug: c.slug, product_count: c.product_count }
    }
}

/// A product's picture, in two sizes, each at a URL named by its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    pub id: i64,
    /// What the picture shows.
    pub alt: String,
    /// At most 400 px on its longer side.
    pub thumbnail: ImageVariantView,
    /// At most 1200 px on its longer side.
    pub large: ImageVariantView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageVariantView {
    /// `/images/{sha-256 of the bytes}`: the same URL always has the same bytes.
    pub url: String,
    pub width: u32,
    pub height: u32,
}

impl ImageView {
    fn from_proto(image: inventory::ProductImage) -> Option<Self> {
        let variant = |v: inventory::ImageVariant| ImageVariantView {
            url: format!("/images/{}", v.hash),
            width: v.width,
            height: v.height,
        };
        Some(Self { id: image.id, alt: image.alt, thumbnail: variant(image.thumbnail?), large: variant(image.large?) })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// `customer` or `admin`.
    pub role: String,
    pub created_at: String,
}

impl UserView {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

impl From<users::User> for UserView {
    fn from(u: users::User) -> Self {
        let role = match u.role() {
            users::Role::Admin => "admin",
            _ => "customer",
        };
        Self { id: u.id, role: role.to_owned(), email: u.email, name: u.name, created_at: rfc3339(u.created_at) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderItemView {
    pub product_id: i64,
    pub product_name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub unit_price: String,
    pub line_total: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChangeView {
    pub status: String,
    /// `system`, or `user:<id>`.
    pub actor: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub user_id: i64,
    /// pending, confirmed, shipped, delivered, cancelled or rejected.
    pub status: String,
    pub items: Vec<OrderItemView>,
    pub total_minor: i64,
    pub total: String,
    pub created_at: String,
    pub updated_at: String,
    /// Oldest first; empty in lists.
    pub history: Vec<StatusChangeView>,
    /// The statuses the viewer may move this order to now, as the order
    /// service decides (an admin along the state machine, the customer only
    /// to cancel their own); empty when there is nothing they may do.
    pub next_statuses: Vec<String>,
    /// Where it is delivered, as given when placed; absent for an order
    /// without delivery (collected in store).
    #[serde(default)]
    pub delivery_address: Option<AddressView>,
    /// The delivery method's name when the order was placed ("" without delivery).
    #[serde(default)]
    pub delivery_method: String,
    #[serde(default)]
    pub delivery_minor: i64,
    #[serde(default)]
    pub delivery: String,
    /// The items' sum, before delivery.
    #[serde(default)]
    pub subtotal_minor: i64,
    #[serde(default)]
    pub subtotal: String,
    /// The VAT the total includes, and its rate in percent ("20", "5.5").
    #[serde(default)]
    pub vat_included_minor: i64,
    #[serde(default)]
    pub vat_included: String,
    #[serde(default)]
    pub vat_rate: String,
    /// `bank_transfer`, `cash_on_delivery`, or `unspecified` (paid outside the shop).
    #[serde(default)]
    pub payment_method: String,
    /// `unpaid`, `paid` or `refunded`.
    #[serde(default)]
    pub payment_state: String,
    /// What the customer writes on a bank transfer ("ORDER-000042").
    #[serde(default)]
    pub payment_reference: String,
    /// The carrier's reference, once shipped.
    #[serde(default)]
    pub tracking_reference: String,
    /// The payment states the viewer may move this order to now (admins).
    #[serde(default)]
    pub next_payment_states: Vec<String>,
    /// Oldest first; empty in lists.
    #[serde(default)]
    pub payment_history: Vec<StatusChangeView>,
}

/// An address as an order keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressView {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub postcode: String,
    pub city: String,
    /// ISO 3166-1 alpha-2, e.g. "FR".
    pub country: String,
    pub phone: String,
}

impl From<orders::DeliveryAddress> for AddressView {
    fn from(a: orders::DeliveryAddress) -> Self {
        Self {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            postcode: a.postcode,
            city: a.city,
            country: a.country,
            phone: a.phone,
        }
    }
}

pub fn payment_state_name(state: orders::PaymentState) -> &'static str {
    match state {
        orders::PaymentState::Unspecified => "unknown",
        orders::PaymentState::Unpaid => "unpaid",
        orders::PaymentState::Paid => "paid",
        orders::PaymentState::Refunded => "refunded",
    }
}

pub fn payment_method_name(method: orders::PaymentMethod) -> &'static str {
    match method {
        orders::PaymentMethod::Unspecified => "unspecified",
        orders::PaymentMethod::BankTransfer => "bank_transfer",
        orders::PaymentMethod::CashOnDelivery => "cash_on_delivery",
    }
}

/// A rate in hundredths of a percent as people write it: 2000 → "20", 550 → "5.5".
pub fn percent(basis_points: u32) -> String {
    let whole = basis_points / 100;
    match basis_points % 100 {
        0 => whole.to_string(),
        cents if cents % 10 == 0 => format!("{whole}.{}", cents / 10),
        cents => format!("{whole}.{cents:02}"),
    }
}

pub fn status_name(status: orders::OrderStatus) -> &'static str {
    match status {
        orders::OrderStatus::Unspecified => "unknown",
        orders::OrderStatus::Pending => "pending",
        orders::OrderStatus::Confirmed => "confirmed",
        orders::OrderStatus::Shipped => "shipped",
        orders::OrderStatus::Delivered => "delivered",
        orders::OrderStatus::Cancelled => "cancelled",
        orders::OrderStatus::Rejected => "rejected",
    }
}

/// A status by its name; whether an order may move to it is the order
/// service's to say.
pub fn parse_status(name: &str) -> Option<orders::OrderStatus> {
    let name = name.trim();
    [
        orders::OrderStatus::Pending,
        orders::OrderStatus::Confirmed,
        orders::OrderStatus::Shipped,
        orders::OrderStatus::Delivered,
        orders::OrderStatus::Cancelled,
        orders::OrderStatus::Rejected,
    ]
    .into_iter()
    .find(|status| status_name(*status) == name)
}

impl From<orders::Order> for OrderView {
    fn from(o: orders::Order) -> Self {
        let status = o.status();
        let next_statuses = o.allowed_transitions().map(|next| status_name(next).to_owned()).collect();
        let next_payment_states =
            o.allowed_payment_transitions().map(|next| payment_state_name(next).to_owned()).collect();
        let (payment_method, payment_state) = (o.payment_method(), o.payment_state());
        Self {
            id: o.id,
            user_id: o.user_id,
            status: status_name(status).to_owned(),
            items: o
                .items
                .into_iter()
                .map(|item| OrderItemView {
                    line_total: money(item.unit_price_minor.saturating_mul(item.quantity)),
                    unit_price: money(item.unit_price_minor),
                    product_id: item.product_id,
                    product_name: item.product_name,
                    quantity: item.quantity,
                    unit_price_minor: item.unit_price_minor,
                })
                .collect(),
            total_minor: o.total_minor,
            total: money(o.total_minor),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            history: o
                .history
                .into_iter()
                .map(|change| StatusChangeView {
                    status: status_name(change.status()).to_owned(),
                    actor: change.actor,
                    at: rfc3339(change.at),
                })
                .collect(),
            next_statuses,
            delivery_address: o.delivery_address.map(AddressView::from),
            delivery_method: o.delivery_method_name,
            delivery_minor: o.delivery_minor,
            delivery: money(o.delivery_minor),
            subtotal_minor: o.subtotal_minor,
            subtotal: money(o.subtotal_minor),
            vat_included_minor: o.vat_included_minor,
            vat_included: money(o.vat_included_minor),
            vat_rate: percent(o.vat_rate_basis_points),
            payment_method: payment_method_name(payment_method).to_owned(),
            payment_state: payment_state_name(payment_state).to_owned(),
            payment_reference: o.payment_reference,
            tracking_reference: o.tracking_reference,
            next_payment_states,
            payment_history: o
                .payment_history
                .into_iter()
                .map(|change| StatusChangeView {
                    status: payment_state_name(change.state()).to_owned(),
                    actor: change.actor,
                    at: rfc3339(change.at),
                })
                .collect(),
        }
    }
}

/// Where a list page is, and the links around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PageInfo {
    pub page: u32,
    pub page_size: u32,
    /// Items in the whole list.
    pub total: i64,
    pub pages: u32,
    pub has_previous: bool,
    pub has_next: bool,
}

impl PageInfo {
    pub fn new(page: u32, page_size: u32, total: i64) -> Self {
        let size = i64::from(page_size.max(1));
        let pages = u32::try_from((total + size - 1) / size).unwrap_or(u32::MAX).max(1);
        Self { page, page_size, total, pages, has_previous: page > 1, has_next: page < pages }
    }
}

/// A page of products, paged by cursor: the links around it are in `first`,
/// `previous`, `next` and `last` (absent where there is no such page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<ProductView>,
    /// Products that match, counted up to 1,000.
    pub total: i64,
    /// More than `total` match: counting stopped there.
    pub total_is_lower_bound: bool,
    pub page_size: u32,
    /// The service's cursors of the next and previous pages (empty: none);
    /// `after=` / `before=` take them.
    pub next_cursor: String,
    pub previous_cursor: String,
    #[serde(flatten)]
    pub pager: crate::pager::Pager,
    /// When words of `q` matched nothing as typed: what was searched instead
    /// ("earl grey" for "earl gery"); empty otherwise.
    #[serde(default)]
    pub searched_for: String,
    /// What was asked for, checked (the URL's parameters).
    pub query: crate::product_query::ProductQuery,
    /// The category asked for, if any.
    #[serde(default)]
    pub category: Option<CategoryView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
    #[serde(flatten)]
    pub page: PageInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_pages() {
        assert_eq!(money(1999), "19.99");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-120), "-1.20");
        assert_eq!(PageInfo::new(1, 20, 0).pages, 1);
        let info = PageInfo::new(2, 10, 25);
        assert_eq!((info.pages, info.has_previous, info.has_next), (3, true, true));
        assert!(!PageInfo::new(3, 10, 25).has_next);
    }
}
