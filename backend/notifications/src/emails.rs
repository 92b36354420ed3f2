//! What each email says: the views its templates are given, its subject,
//! and its HTML and plain-text bodies rendered from `templates/` (HTML
//! auto-escaped: every template that makes HTML is named `*.html`).

use minijinja::value::Serde;
use minijinja::{Environment, context};
use serde::Serialize;

/// The emails the shop sends; also the `kind` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    OrderConfirmed,
    PaymentReceived,
    OrderShipped,
    OrderCancelled,
    PasswordReset,
}

impl Kind {
    pub const ALL: [Self; 5] =
        [Self::OrderConfirmed, Self::PaymentReceived, Self::OrderShipped, Self::OrderCancelled, Self::PasswordReset];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderConfirmed => "order_confirmed",
            Self::PaymentReceived => "payment_received",
            Self::OrderShipped => "order_shipped",
            Self::OrderCancelled => "order_cancelled",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// An order as its emails show it: amounts already formatted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderView {
    pub id: i64,
    /// Where the customer follows it: `{public url}/orders/{id}`.
    pub url: String,
    /// `confirmed`, `shipped`, ... as the order is now.
    pub status: String,
    pub lines: Vec<LineView>,
    pub subtotal: String,
    /// Absent: collected in store.
    pub delivery: Option<DeliveryView>,
    pub total: String,
    pub vat: Option<VatView>,
    /// The delivery address, one line each; absent: collected in store.
    pub address: Option<Vec<String>>,
    pub payment: PaymentView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineView {
    pub name: String,
    pub quantity: i64,
    pub unit_price: String,
    pub total: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    pub method: String,
    pub cost: String,
    pub free: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VatView {
    /// "20 %", "5.5 %".
    pub rate: String,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    /// `bank_transfer`, `cash_on_delivery`, or `none` (not said).
    pub method: &'static str,
    /// `unpaid`, `paid`, `refunded`, or empty when not known.
    pub state: &'static str,
    /// What to write on a bank transfer ("ORDER-000042").
    pub reference: String,
}

/// What one email says, before it is rendered.
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    OrderConfirmed {
        order: OrderView,
    },
    PaymentReceived {
        order: OrderView,
    },
    OrderShipped {
        order: OrderView,
        tracking_reference: Option<String>,
    },
    OrderCancelled {
        order: OrderView,
    },
    /// `link` holds the reset token: never logged (see the `Debug` below).
    PasswordReset {
        link: String,
        expires_at: String,
    },
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PasswordReset { expires_at, .. } => {
                f.debug_struct("PasswordReset").field("link", &"***").field("expires_at", expires_at).finish()
            }
            other => write!(f, "{:?}", other.kind()),
        }
    }
}

impl Content {
    pub fn kind(&self) -> Kind {
        match self {
            Self::OrderConfirmed { .. } => Kind::OrderConfirmed,
            Self::PaymentReceived { .. } => Kind::PaymentReceived,
            Self::OrderShipped { .. } => Kind::OrderShipped,
            Self::OrderCancelled { .. } => Kind::OrderCancelled,
            Self::PasswordReset { .. } => Kind::PasswordReset,
        }
    }

    /// The subject line, in the customer's words.
    pub fn subject(&self) -> String {
        match self {
            Self::OrderConfirmed { order } => format!("Your order #{} is confirmed", order.id),
            Self::PaymentReceived { order } => format!("Payment received for your order #{}", order.id),
            Self::OrderShipped { order, .. } => format!("Your order #{} has shipped", order.id),
            Self::OrderCancelled { order } => format!("Your order #{} has been cancelled", order.id),
            Self::PasswordReset { .. } => "Reset your password".to_owned(),
        }
    }
}

/// A rendered email: subject and both bodies.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bodies may hold a reset link.
        f.debug_struct("Rendered").field("subject", &self.subject).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rendering the {kind} email: {source:#}")]
pub struct RenderError {
    kind: &'static str,
    source: minijinja::Error,
}

/// The email templates, compiled into the binary.
pub struct Templates {
    env: Environment<'static>,
    shop_name: String,
    shop_url: String,
}

const TEMPLATES: [(&str, &str); 15] = [
    ("_layout.html", include_str!("../templates/_layout.html")),
    ("_order.html", include_str!("../templates/_order.html")),
    ("_order.txt", include_str!("../templates/_order.txt")),
    ("_address.html", include_str!("../templates/_address.html")),
    ("_address.txt", include_str!("../templates/_address.txt")),
    ("order_confirmed.html", include_str!("../templates/order_confirmed.html")),
    ("order_confirmed.txt", include_str!("../templates/order_confirmed.txt")),
    ("payment_received.html", include_str!("../templates/payment_received.html")),
    ("payment_received.txt", include_str!("../templates/payment_received.txt")),
    ("order_shipped.html", include_str!("../templates/order_shipped.html")),
    ("order_shipped.txt", include_str!("../templates/order_shipped.txt")),
    ("order_cancelled.html", include_str!("../templates/order_cancelled.html")),
    ("order_cancelled.txt", include_str!("../templates/order_cancelled.txt")),
    ("password_reset.html", include_str!("../templates/password_reset.html")),
    ("password_reset.txt", include_str!("../templates/password_reset.txt")),
];

impl Templates {
    /// `shop_name` signs the emails; `shop_url` is the shop's public address.
    pub fn new(shop_name: &str, shop_url: &str) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env, shop_name: shop_name.to_owned(), shop_url: shop_url.to_owned() })
    }

    /// Renders `content` for a customer called `name`.
    pub fn render(&self, name: &str, content: &Content) -> Result<Rendered, RenderError> {
        let kind = content.kind().as_str();
        let subject = content.subject();
        let (shop_name, shop_url) = (&self.shop_name, &self.shop_url);
        let base = context! { name, subject => &subject, shop_name, shop_url };
        let specific = match content {
            Content::OrderConfirmed { order }
            | Content::PaymentReceived { order }
            | Content::OrderCancelled { order } => {
                context! { order => Serde(order), tracking_reference => None::<String> }
            }
            Content::OrderShipped { order, tracking_reference } => {
                context! { order => Serde(order), tracking_reference }
            }
            Content::PasswordReset { link, expires_at } => context! { link, expires_at },
        };
        let ctx = context! { ..base, ..specific };
        let render = |extension: &str| {
            self.env
                .get_template(&format!("{kind}.{extension}"))
                .and_then(|template| template.render(&ctx))
                .map_err(|source| RenderError { kind, source })
        };
        Ok(Rendered { html: render("html")?, text: render("txt")?, subject })
    }
}

/// Minor units as a decimal amount: 1999 → "19.99" (as the gateway shows it).
pub fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

/// Basis points as a percentage: 2000 → "20 %", 550 → "5.5 %".
pub fn percent(basis_points: u32) -> String {
    let whole = basis_points / 100;
    let fraction = basis_points % 100;
    if fraction == 0 {
        format!("{whole} %")
    } else {
        format!("{whole}.{} %", format!("{fraction:02}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderView {
        OrderView {
            id: 42,
            url: "http://localhost:8080/orders/42".into(),
            status: "confirmed".into(),
            lines: vec![
                LineView {
                    name: "Sencha <script>alert(1)</script>".into(),
                    quantity: 2,
                    unit_price: money(450),
                    total: money(900),
                },
                LineView { name: "Teapot & cups".into(), quantity: 1, unit_price: money(3999), total: money(3999) },
            ],
            subtotal: money(4899),
            delivery: Some(DeliveryView { method: "Post".into(), cost: money(495), free: false }),
            total: money(5394),
            vat: Some(VatView { rate: percent(2000), amount: money(899) }),
            address: Some(vec![
                "Ada Lovelace".into(),
                "1 Rue <b>de</b> Rivoli".into(),
                "75001 Paris".into(),
                "FR".into(),
            ]),
            payment: PaymentView { method: "bank_transfer", state: "unpaid", reference: "ORDER-000042".into() },
        }
    }

    fn templates() -> Templates {
        Templates::new("Shop", "http://localhost:8080").expect("the templates compile")
    }

    #[test]
    fn subjects_say_what_happened_to_which_order() {
        let order = order();
        let subjects: Vec<String> = [
            Content::OrderConfirmed { order: order.clone() },
            Content::PaymentReceived { order: order.clone() },
            Content::OrderShipped { order: order.clone(), tracking_reference: None },
            Content::OrderCancelled { order },
            Content::PasswordReset { link: "x".into(), expires_at: "y".into() },
        ]
        .iter()
        .map(Content::subject)
        .collect();
        assert_eq!(
            subjects,
            [
                "Your order #42 is confirmed",
                "Payment received for your order #42",
                "Your order #42 has shipped",
                "Your order #42 has been cancelled",
                "Reset your password",
            ]
        );
    }

    #[test]
    fn the_confirmation_shows_lines_delivery_total_and_how_to_pay() {
        let rendered = templates().render("Ada", &Content::OrderConfirmed { order: order() }).expect("renders");
        for body in [&rendered.html, &rendered.text] {
            for needle in
                ["Ada", "#42", "48.99", "Post", "4.95", "53.94", "ORDER-000042", "75001 Paris", "20 %", "8.99"]
            {
                assert!(body.contains(needle), "{needle:?} missing from {body}");
            }
        }
        // minijinja escapes "/" in HTML too; a browser reads the same link.
        assert!(rendered.text.contains("http://localhost:8080/orders/42"), "{}", rendered.text);
        assert!(rendered.html.contains(r#"href="http:&#x2f;&#x2f;localhost:8080&#x2f;orders&#x2f;42""#));
        assert!(rendered.html.contains("bank transfer") && rendered.text.contains("BANK TRANSFER"));
        let cash = OrderView {
            payment: PaymentView { method: "cash_on_delivery", state: "unpaid", reference: "ORDER-000042".into() },
            ..order()
        };
        let rendered = templates().render("Ada", &Content::OrderConfirmed { order: cash }).expect("renders");
        assert!(rendered.text.contains("CASH ON DELIVERY") && !rendered.text.contains("BANK TRANSFER"));
        let in_store = OrderView { address: None, delivery: None, ..order() };
        let rendered = templates().render("Ada", &Content::OrderConfirmed { order: in_store }).expect("renders");
        assert!(rendered.text.contains("Collected in store") && rendered.html.contains("Collected in store"));
    }

    #[test]
    fn html_escapes_what_customers_typed_and_text_keeps_it_as_typed() {
        let rendered = templates().render("<i>Ada</i>", &Content::OrderConfirmed { order: order() }).expect("renders");
        assert!(!rendered.html.contains("<script>") && rendered.html.contains("&lt;script&gt;"), "{}", rendered.html);
        assert!(!rendered.html.contains("<i>Ada") && rendered.html.contains("&lt;i&gt;Ada"));
        assert!(!rendered.html.contains("<b>de</b>") && rendered.html.contains("Teapot &amp; cups"));
        assert!(rendered.text.contains("Sencha <script>alert(1)</script>") && rendered.text.contains("Teapot & cups"));
    }

    #[test]
    fn shipped_names_the_tracking_reference_when_there_is_one() {
        let with = Content::OrderShipped { order: order(), tracking_reference: Some("1Z999AA1".into()) };
        let rendered = templates().render("Ada", &with).expect("renders");
        assert!(rendered.html.contains("1Z999AA1") && rendered.text.contains("1Z999AA1"));
        let without = Content::OrderShipped { order: order(), tracking_reference: None };
        let rendered = templates().render("Ada", &without).expect("renders");
        assert!(!rendered.text.contains("tracking reference"), "{}", rendered.text);
    }

    #[test]
    fn the_reset_email_carries_its_link_and_hides_it_from_debug_output() {
        let content = Content::PasswordReset {
            link: "http://localhost:8080/users/password-reset/s3cr3t-t0ken".into(),
            expires_at: "2026-11-30 18:00 UTC".into(),
        };
        let rendered = templates().render("Ada", &content).expect("renders");
        assert!(rendered.html.contains("&#x2f;users&#x2f;password-reset&#x2f;s3cr3t-t0ken"));
        assert!(rendered.text.contains("/users/password-reset/s3cr3t-t0ken\n"));
        assert!(rendered.text.contains("2026-11-30 18:00 UTC"));
        assert!(!format!("{content:?} {rendered:?}").contains("s3cr3t"));
    }

    #[test]
    fn every_kind_renders_paid_and_cancelled_variants() {
        let paid = OrderView {
            payment: PaymentView { method: "bank_transfer", state: "paid", reference: "ORDER-000042".into() },
            ..order()
        };
        let t = templates();
        let received = t.render("Ada", &Content::PaymentReceived { order: paid.clone() }).expect("renders");
        assert!(received.text.contains("received your payment of EUR 53.94"), "{}", received.text);
        let cancelled = t.render("Ada", &Content::OrderCancelled { order: paid }).expect("renders");
        assert!(cancelled.text.contains("refunded"), "{}", cancelled.text);
    }

    #[test]
    fn amounts_and_rates_read_as_people_write_them() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(1999), "19.99");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(percent(2000), "20 %");
        assert_eq!(percent(550), "5.5 %");
        assert_eq!(percent(705), "7.05 %");
    }
}
