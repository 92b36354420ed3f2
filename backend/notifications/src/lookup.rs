//! What an email needs beyond its event, read from the services as the
//! service caller `notifications`: the customer's address and name (user
//! service), the order's lines, delivery, totals and payment (order service).

use std::future::Future;
use std::time::Duration;

use shop_grpc::identity::{Caller, Identity, SignAs, Signed};
use shop_proto::orders::v1 as orders;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;
use shop_proto::users::v1 as users;
use shop_proto::users::v1::user_service_client::UserServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::emails::{DeliveryView, LineView, OrderView, PaymentView, VatView, money, percent};

/// Who an email goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub email: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LookupError {
    /// Worth asking again later (the service is down or slow); otherwise the
    /// thing is gone (an account deleted since) and never will be.
    pub transient: bool,
    pub message: String,
}

impl LookupError {
    fn from_status(what: &str, status: &tonic::Status) -> Self {
        let permanent = matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument);
        Self { transient: !permanent, message: format!("reading {what}: {:?}: {}", status.code(), status.message()) }
    }
}

/// Reads customers and orders.
pub trait Lookup: Send + Sync {
    fn customer(&self, user_id: i64) -> impl Future<Output = Result<Customer, LookupError>> + Send;
    /// The order as its emails show it (its `url` left empty).
    fn order(&self, order_id: i64) -> impl Future<Output = Result<OrderView, LookupError>> + Send;
}

/// The services over gRPC, each call signed as `Caller::Service("notifications")`.
#[derive(Clone)]
pub struct Grpc {
    users: UserServiceClient<Signed>,
    orders: OrderServiceClient<Signed>,
}

/// A channel that connects on first use, so this component starts while a
/// service is down (its emails wait).
fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy())
}

impl Grpc {
    pub fn new(identity: &Identity, users_url: &str, orders_url: &str) -> Result<Self, tonic::transport::Error> {
        let sign = || SignAs::fixed(identity.clone(), Caller::Service("notifications".into()));
        Ok(Self {
            users: UserServiceClient::with_interceptor(shop_grpc::observe::client(channel(users_url)?), sign()),
            orders: OrderServiceClient::with_interceptor(shop_grpc::observe::client(channel(orders_url)?), sign()),
        })
    }
}

impl Lookup for Grpc {
    async fn customer(&self, user_id: i64) -> Result<Customer, LookupError> {
        let reply = self
            .users
            .clone()
            .get_user_profile(users::GetUserProfileRequest { id: user_id })
            .await
            .map_err(|status| LookupError::from_status("the customer", &status))?;
        let user = reply.into_inner().user.ok_or_else(|| LookupError {
            transient: true,
            message: "the user service answered without the account".into(),
        })?;
        Ok(Customer { email: user.email, name: user.name })
    }

    async fn order(&self, order_id: i64) -> Result<OrderView, LookupError> {
        let reply = self
            .orders
            .clone()
            .get_order(orders::GetOrderRequest { id: order_id })
            .await
            .map_err(|status| LookupError::from_status("the order", &status))?;
        let order = reply.into_inner().order.ok_or_else(|| LookupError {
            transient: true,
            message: "the order service answered without the order".into(),
        })?;
        Ok(view(&order))
    }
}

/// An order of the order service as the emails show it.
pub fn view(order: &orders::Order) -> OrderView {
    let lines = order
        .items
        .iter()
        .map(|item| LineView {
            name: if item.product_name.is_empty() {
                format!("Product {}", item.product_id)
            } else {
                item.product_name.clone()
            },
            quantity: item.quantity,
            unit_price: money(item.unit_price_minor),
            total: money(item.unit_price_minor.saturating_mul(item.quantity)),
        })
        .collect();
    // Orders from before subtotals were recorded: the lines' sum.
    let subtotal = if order.subtotal_minor > 0 {
        order.subtotal_minor
    } else {
        order.items.iter().map(|item| item.unit_price_minor.saturating_mul(item.quantity)).sum()
    };
    let delivery = (!order.delivery_method_name.is_empty()).then(|| DeliveryView {
        method: order.delivery_method_name.clone(),
        cost: money(order.delivery_minor),
        free: order.delivery_minor == 0,
    });
    let vat = (order.vat_rate_basis_points > 0)
        .then(|| VatView { rate: percent(order.vat_rate_basis_points), amount: money(order.vat_included_minor) });
    let address = order.delivery_address.as_ref().map(|address| {
        let mut lines = vec![address.name.clone(), address.line1.clone()];
        if !address.line2.is_empty() {
            lines.push(address.line2.clone());
        }
        lines.push(format!("{} {}", address.postcode, address.city));
        lines.push(address.country.clone());
        if !address.phone.is_empty() {
            lines.push(address.phone.clone());
        }
        lines
    });
    let method = match orders::PaymentMethod::try_from(order.payment_method) {
        Ok(orders::PaymentMethod::BankTransfer) => "bank_transfer",
        Ok(orders::PaymentMethod::CashOnDelivery) => "cash_on_delivery",
        _ => "none",
    };
    let state = match orders::PaymentState::try_from(order.payment_state) {
        Ok(orders::PaymentState::Unpaid) => "unpaid",
        Ok(orders::PaymentState::Paid) => "paid",
        Ok(orders::PaymentState::Refunded) => "refunded",
        _ => "",
    };
    let status = orders::OrderStatus::try_from(order.status)
        .map(|status| status.as_str_name().trim_start_matches("ORDER_STATUS_").to_ascii_lowercase())
        .unwrap_or_default();
    OrderView {
        id: order.id,
        url: String::new(),
        status,
        lines,
        subtotal: money(subtotal),
        delivery,
        total: money(order.total_minor),
        vat,
        address,
        payment: PaymentView { method, state, reference: order.payment_reference.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_without_delivery_or_payment_read_as_collected_in_store() {
        let order = orders::Order {
            id: 7,
            status: orders::OrderStatus::Confirmed as i32,
            items: vec![orders::OrderItem {
                product_id: 3,
                product_name: String::new(),
                quantity: 2,
                unit_price_minor: 250,
            }],
            total_minor: 500,
            ..Default::default()
        };
        let view = view(&order);
        assert_eq!(view.status, "confirmed");
        assert_eq!(view.lines[0].name, "Product 3");
        assert_eq!((view.subtotal.as_str(), view.total.as_str()), ("5.00", "5.00"));
        assert_eq!((view.address, view.delivery, view.vat), (None, None, None));
        assert_eq!(view.payment.method, "none");
    }

    #[test]
    fn an_order_with_everything_shows_everything() {
        let order = orders::Order {
            id: 42,
            status: orders::OrderStatus::Shipped as i32,
            items: vec![orders::OrderItem {
                product_id: 3,
                product_name: "Sencha".into(),
                quantity: 2,
                unit_price_minor: 450,
            }],
            subtotal_minor: 900,
            delivery_minor: 0,
            delivery_method_name: "Post".into(),
            total_minor: 900,
            vat_rate_basis_points: 2000,
            vat_included_minor: 150,
            delivery_address: Some(orders::DeliveryAddress {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                line2: String::new(),
                postcode: "75001".into(),
                city: "Paris".into(),
                country: "FR".into(),
                phone: String::new(),
            }),
            payment_method: orders::PaymentMethod::BankTransfer as i32,
            payment_state: orders::PaymentState::Paid as i32,
            payment_reference: "ORDER-000042".into(),
            ..Default::default()
        };
        let view = view(&order);
        assert_eq!(view.status, "shipped");
        assert_eq!(view.delivery, Some(DeliveryView { method: "Post".into(), cost: "0.00".into(), free: true }));
        assert_eq!(view.address, Some(vec!["Ada".into(), "1 Main St".into(), "75001 Paris".into(), "FR".into()]));
        assert_eq!((view.payment.method, view.payment.state), ("bank_transfer", "paid"));
        assert_eq!(view.vat, Some(VatView { rate: "20 %".into(), amount: "1.50".into() }));
    }
}
