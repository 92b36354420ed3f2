//! Checkout as steps, each a page with a plain form: where to deliver, how,
//! how to pay, then a review of exactly what will be charged (the order
//! service's quote) and the order placed. What was chosen waits in the
//! session; the order service checks all of it again when the order is
//! placed, and the review form's key makes a second submit (or Back and
//! submit) land on the first order.

use std::collections::BTreeMap;

use axum::response::Response;
use serde::{Deserialize, Serialize};
use shop_proto::orders::v1 as pb;
use shop_proto::users::v1 as users_pb;

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{IdempotencyKey, Input, number_or_blank};
use crate::routes::orders::{self, Delivery, parse_payment};
use crate::views::money;

const ADDRESS: Pages = Pages::new("checkout/address.html", "checkout/address.html");
const DELIVERY: Pages = Pages::new("checkout/delivery.html", "checkout/delivery.html");
const PAYMENT: Pages = Pages::new("checkout/payment.html", "checkout/payment.html");
const REVIEW: Pages = Pages::new("checkout/review.html", "checkout/review.html");

/// The session's key for what this checkout chose so far.
const CHOICES: &str = "checkout_choices";
/// The session's key for the review form's idempotency key. One key serves
/// every rendering of the review until its order is placed or refused, so a
/// reload or Back after an order left pending (inventory slow or away) sends
/// the same key, and the order service answers with that order rather than
/// making a second one from the cart it has not emptied yet.
const REVIEW_KEY: &str = "checkout_review_key";

/// What was chosen at each step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Choices {
    address_id: Option<i64>,
    delivery_method_id: Option<i64>,
    /// `bank_transfer` or `cash_on_delivery`.
    payment: Option<String>,
}

impl Choices {
    /// The first step still to do, if any.
    fn missing_step(&self) -> Option<&'static str> {
        if self.address_id.is_none() {
            Some("/checkout/address")
        } else if self.delivery_method_id.is_none() {
            Some("/checkout/delivery")
        } else if self.payment.is_none() {
            Some("/checkout/payment")
        } else {
            None
        }
    }
}

async fn choices(ctx: &Ctx) -> Result<Choices, AppError> {
    Ok(ctx.session.get::<Choices>(CHOICES).await?.unwrap_or_default())
}

async fn save(ctx: &Ctx, choices: &Choices) -> Result<(), AppError> {
    Ok(ctx.session.insert(CHOICES, choices).await?)
}

/// A customer with something to order: an empty cart goes back to the cart.
async fn ready(ctx: &Ctx) -> Result<Option<Response>, AppError> {
    ctx.user()?;
    let cart = ctx.services().orders().get_cart(pb::GetCartRequest {}).await?.into_inner();
    // What the order service orders: lines it has the whole quantity for.
    let orderable = cart
        .cart
        .unwrap_or_default()
        .lines
        .iter()
        .any(|line| line.availability() == pb::CartLineAvailability::Available);
    if orderable {
        return Ok(None);
    }
    Ok(Some(ctx.redirect("/cart", "Your cart has nothing that can be ordered now.".into()).await?))
}

fn step(name: &'static str) -> minijinja::Value {
    minijinja::Value::from(name)
}

/// `/checkout`: the first step not done yet.
pub async fn start(ctx: Ctx) -> Result<Response, AppError> {
    ctx.user()?;
    let next = choices(&ctx).await?.missing_step().unwrap_or("/checkout/review");
    Ok(crate::context::see_other(ctx.want, next))
}

async fn addresses(ctx: &Ctx) -> Result<Vec<users_pb::Address>, AppError> {
    let listed = ctx.services().users().list_addresses(users_pb::ListAddressesRequest { user_id: None }).await?;
    Ok(listed.into_inner().addresses)
}

fn address_page(
    ctx: &Ctx,
    saved: &[users_pb::Address],
    chosen: Option<i64>,
    values: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
) -> Response {
    let saved: Vec<_> = saved.iter().map(AddressChoice::from).collect();
    let chosen = chosen.or_else(|| saved.first().map(|a| a.id));
    let context = minijinja::context! {
        step => step("address"), addresses => minijinja::value::Serde(&saved), chosen, values, errors,
        countries => crate::routes::addresses::COUNTRIES.to_vec(),
    };
    ctx.render(ADDRESS, context)
}

/// An address of the book as a choice on the page.
#[derive(Debug, Serialize)]
struct AddressChoice {
    id: i64,
    name: String,
    lines: String,
}

impl From<&users_pb::Address> for AddressChoice {
    fn from(a: &users_pb::Address) -> Self {
        let parts = [&a.line1, &a.line2, &format!("{} {}", a.postcode, a.city), &a.country];
        let lines = parts.iter().filter(|p| !p.trim().is_empty()).map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
        Self { id: a.id, name: a.name.clone(), lines }
    }
}

/// Step 1: one of the customer's addresses, or a new one (kept in their
/// address book for next time).
pub async fn address_form(ctx: Ctx) -> Result<Response, AppError> {
    if let Some(back) = ready(&ctx).await? {
        return Ok(back);
    }
    let saved = addresses(&ctx).await?;
    let chosen = choices(&ctx).await?.address_id;
    Ok(address_page(&ctx, &saved, chosen, BTreeMap::new(), BTreeMap::new()))
}

#[derive(Debug, Default, Deserialize)]
pub struct AddressInput {
    /// A saved address's id, or `new`.
    #[serde(default)]
    address_id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    line1: String,
    #[serde(default)]
    line2: String,
    #[serde(default)]
    postcode: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    phone: String,
}

impl AddressInput {
    fn values(&self) -> BTreeMap<String, String> {
        [
            ("name", &self.name),
            ("line1", &self.line1),
            ("line2", &self.line2),
            ("postcode", &self.postcode),
            ("city", &self.city),
            ("country", &self.country),
            ("phone", &self.phone),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

pub async fn address(ctx: Ctx, Input(input): Input<AddressInput>) -> Result<Response, AppError> {
    ctx.user()?;
    let chosen = match input.address_id.as_deref().map(str::trim) {
        Some(id) if id != "new" && !id.is_empty() => {
            let id: i64 = id.parse().map_err(|_| AppError::field("address_id", "choose an address"))?;
            // The users service answers only for the customer's own.
            ctx.services().users().get_address(users_pb::GetAddressRequest { id }).await?;
            id
        }
        _ => {
            let fields = users_pb::AddressFields {
                name: input.name.clone(),
                line1: input.line1.clone(),
                line2: input.line2.clone(),
                postcode: input.postcode.clone(),
                city: input.city.clone(),
                country: input.country.clone(),
                phone: input.phone.clone(),
            };
            match ctx.services().users().create_address(users_pb::CreateAddressRequest { address: Some(fields) }).await
            {
                Ok(created) => {
                    created.into_inner().address.map(|a| a.id).ok_or(AppError::Missing("users returned no address"))?
                }
                Err(status) => {
                    let error = AppError::from(status);
                    let errors: BTreeMap<String, String> = error
                        .field_errors()
                        .into_iter()
                        .map(|e| (e.field.trim_start_matches("address.").to_owned(), e.message))
                        .collect();
                    if errors.is_empty() || !ctx.is_html() {
                        return Err(error);
                    }
                    let saved = addresses(&ctx).await?;
                    let mut response = address_page(&ctx, &saved, None, input.values(), errors);
                    *response.status_mut() = error.status();
                    return Ok(response);
                }
            }
        }
    };
    let mut choices = choices(&ctx).await?;
    choices.address_id = Some(chosen);
    save(&ctx, &choices).await?;
    ctx.redirect("/checkout/delivery", String::new()).await
}

/// A delivery method as the page offers it, with what it costs this order.
#[derive(Debug, Serialize)]
struct MethodChoice {
    id: i64,
    name: String,
    price: String,
    free_now: bool,
    free_above: Option<String>,
}

async fn methods(ctx: &Ctx) -> Result<(Vec<MethodChoice>, i64), AppError> {
    let listed = ctx.services().orders().list_delivery_methods(pb::ListDeliveryMethodsRequest::default()).await?;
    let quote = ctx.services().orders().quote_checkout(pb::QuoteCheckoutRequest::default()).await?.into_inner();
    let subtotal = quote.subtotal_minor;
    let methods = listed
        .into_inner()
        .methods
        .into_iter()
        .map(|m| MethodChoice {
            free_now: m.free_above_minor.is_some_and(|above| subtotal >= above),
            free_above: m.free_above_minor.map(money),
            price: money(m.price_minor),
            id: m.id,
            name: m.name,
        })
        .collect();
    Ok((methods, subtotal))
}

/// Step 2: how it is delivered, each method with its cost for this order.
pub async fn delivery_form(ctx: Ctx) -> Result<Response, AppError> {
    if let Some(back) = ready(&ctx).await? {
        return Ok(back);
    }
    let choices = choices(&ctx).await?;
    if choices.address_id.is_none() {
        return Ok(crate::context::see_other(ctx.want, "/checkout/address"));
    }
    let (methods, subtotal) = methods(&ctx).await?;
    let chosen = choices.delivery_method_id.or_else(|| methods.first().map(|m| m.id));
    let context = minijinja::context! {
        step => step("delivery"), methods => minijinja::value::Serde(&methods), chosen,
        subtotal => money(subtotal), errors => BTreeMap::<String, String>::new(),
    };
    Ok(ctx.render(DELIVERY, context))
}

#[derive(Debug, Default, Deserialize)]
pub struct DeliveryInput {
    #[serde(default, deserialize_with = "number_or_blank")]
    delivery_method_id: Option<i64>,
}

pub async fn delivery(ctx: Ctx, Input(input): Input<DeliveryInput>) -> Result<Response, AppError> {
    ctx.user()?;
    let (methods, _) = methods(&ctx).await?;
    let Some(id) = input.delivery_method_id.filter(|id| methods.iter().any(|m| m.id == *id)) else {
        return Err(AppError::field("delivery_method_id", "choose one of the delivery methods"));
    };
    let mut choices = choices(&ctx).await?;
    choices.delivery_method_id = Some(id);
    save(&ctx, &choices).await?;
    ctx.redirect("/checkout/payment", String::new()).await
}

/// Step 3: how to pay (no card processor: a bank transfer or cash to the carrier).
pub async fn payment_form(ctx: Ctx) -> Result<Response, AppError> {
    if let Some(back) = ready(&ctx).await? {
        return Ok(back);
    }
    let choices = choices(&ctx).await?;
    if let Some(step) = choices.missing_step().filter(|s| *s != "/checkout/payment") {
        return Ok(crate::context::see_other(ctx.want, step));
    }
    let chosen = choices.payment.unwrap_or_else(|| "bank_transfer".into());
    let context = minijinja::context! { step => step("payment"), chosen, errors => BTreeMap::<String, String>::new() };
    Ok(ctx.render(PAYMENT, context))
}

#[derive(Debug, Default, Deserialize)]
pub struct PaymentInput {
    #[serde(default)]
    payment_method: Option<String>,
}

pub async fn payment(ctx: Ctx, Input(input): Input<PaymentInput>) -> Result<Response, AppError> {
    ctx.user()?;
    if parse_payment(input.payment_method.as_deref())? == pb::PaymentMethod::Unspecified {
        return Err(AppError::field("payment_method", "choose how to pay"));
    }
    let mut choices = choices(&ctx).await?;
    choices.payment = input.payment_method.map(|p| p.trim().to_owned());
    save(&ctx, &choices).await?;
    ctx.redirect("/checkout/review", String::new()).await
}

/// The chosen address as the order will keep it.
async fn chosen_address(ctx: &Ctx, id: i64) -> Result<pb::DeliveryAddress, AppError> {
    let found = ctx.services().users().get_address(users_pb::GetAddressRequest { id }).await?.into_inner();
    let a = found.address.ok_or(AppError::Missing("users returned no address"))?;
    Ok(pb::DeliveryAddress {
        name: a.name,
        line1: a.line1,
        line2: a.line2,
        postcode: a.postcode,
        city: a.city,
        country: a.country,
        phone: a.phone,
    })
}

/// Step 4: everything, and exactly what will be charged, then the order.
pub async fn review_form(ctx: Ctx) -> Result<Response, AppError> {
    review_page(&ctx, BTreeMap::new()).await
}

async fn review_page(ctx: &Ctx, errors: BTreeMap<String, String>) -> Result<Response, AppError> {
    if let Some(back) = ready(ctx).await? {
        return Ok(back);
    }
    let choices = choices(ctx).await?;
    let (Some(address_id), Some(method_id), Some(payment)) =
        (choices.address_id, choices.delivery_method_id, choices.payment.clone())
    else {
        let step = choices.missing_step().unwrap_or("/checkout/address");
        return Ok(crate::context::see_other(ctx.want, step));
    };
    let address = crate::views::AddressView::from(chosen_address(ctx, address_id).await?);
    let request = pb::QuoteCheckoutRequest { items: Vec::new(), delivery_method_id: method_id };
    let quote = ctx.services().orders().quote_checkout(request).await?.into_inner();
    let lines: Vec<_> = quote
        .items
        .iter()
        .map(|item| {
            minijinja::context! {
                name => item.product_name.clone(), quantity => item.quantity,
                price => money(item.unit_price_minor), total => money(item.unit_price_minor.saturating_mul(item.quantity)),
            }
        })
        .collect();
    let left: Vec<String> = quote.left_in_cart.iter().map(|line| line.product_name.clone()).collect();
    let context = minijinja::context! {
        step => step("review"),
        address => minijinja::value::Serde(&address),
        method => quote.delivery_method.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        payment,
        lines,
        left,
        subtotal => money(quote.subtotal_minor),
        delivery => money(quote.delivery_minor),
        delivery_free => quote.delivery_minor == 0,
        total => money(quote.total_minor),
        vat_included => money(quote.vat_included_minor),
        vat_rate => crate::views::percent(quote.vat_rate_basis_points),
        checkout_key => review_key(ctx).await?,
        errors,
    };
    Ok(ctx.render(REVIEW, context))
}

#[derive(Debug, Default, Deserialize)]
pub struct PlaceInput {
    #[serde(default)]
    idempotency_key: Option<String>,
    /// The terms box: a form sends `on` (or `1`) when it is ticked.
    #[serde(default)]
    terms: Option<String>,
}

async fn review_key(ctx: &Ctx) -> Result<String, AppError> {
    if let Some(key) = ctx.session.get::<String>(REVIEW_KEY).await? {
        return Ok(key);
    }
    let key = uuid::Uuid::new_v4().to_string();
    ctx.session.insert(REVIEW_KEY, &key).await?;
    Ok(key)
}

/// Places the order: the cart's orderable lines, to the chosen address, by
/// the chosen method, paid as chosen; the order service prices it again.
pub async fn place(
    ctx: Ctx,
    IdempotencyKey(key): IdempotencyKey,
    Input(input): Input<PlaceInput>,
) -> Result<Response, AppError> {
    ctx.user()?;
    let key = key.or(input.idempotency_key).unwrap_or_default();
    if let Some(order_id) = crate::viewer::placed_with(&ctx.session, &key).await? {
        // The review form again (Back, a second click): the order it placed.
        return ctx.redirect(&format!("/orders/{order_id}/confirmation"), String::new()).await;
    }
    let terms_accepted = matches!(input.terms.as_deref(), Some("on" | "1" | "true" | "yes"));
    if !terms_accepted && ctx.is_html() {
        let errors = BTreeMap::from([("terms".to_owned(), "Please accept the terms to place the order.".to_owned())]);
        let mut response = review_page(&ctx, errors).await?;
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(response);
    }
    let choices = choices(&ctx).await?;
    let (Some(address_id), Some(method_id)) = (choices.address_id, choices.delivery_method_id) else {
        let step = choices.missing_step().unwrap_or("/checkout/address");
        return Ok(crate::context::see_other(ctx.want, step));
    };
    let delivery = Delivery {
        address: Some(chosen_address(&ctx, address_id).await?),
        method_id,
        payment: parse_payment(choices.payment.as_deref())?,
        terms_accepted,
    };
    // The choices stay for the next order (the same address and method are
    // likely); the key makes this form place one order whatever happens.
    let session = ctx.session.clone();
    let placed = orders::checkout(ctx, key, delivery).await;
    // Placed (pending orders too), or refused for good: the next review is
    // a new order. A service away (503) keeps the key, so trying again
    // finishes whatever this one recorded.
    if placed.as_ref().is_ok_and(|response| response.status() != axum::http::StatusCode::SERVICE_UNAVAILABLE) {
        session.remove_value(REVIEW_KEY).await?;
    }
    placed
}
