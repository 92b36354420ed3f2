//! Delivery methods, kept by admins on one page: the list (inactive ones
//! too), a form to add one, each method's own form to edit it, and a button
//! to take it out of (or back into) the checkout. Methods are never deleted:
//! orders keep a snapshot of the one they were placed with.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shop_proto::orders::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::{AppError, FieldError};
use crate::extract::{Input, number_or_blank, parse_price};
use crate::negotiate::Want;
use crate::views::money;

const LIST: Pages = Pages::new("delivery_methods/index.html", "delivery_methods/_list.html");

/// A way of delivering orders, as the checkout offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryMethodView {
    pub id: i64,
    pub name: String,
    /// What delivery costs, VAT included, in minor units.
    pub price_minor: i64,
    /// Delivery is free from this items' subtotal on (absent: never).
    pub free_above_minor: Option<i64>,
    /// Offered at checkout.
    pub active: bool,
    /// `price_minor` as an amount ("4.90").
    pub price: String,
    /// `free_above_minor` as an amount, or absent.
    pub free_above: Option<String>,
}

impl From<pb::DeliveryMethod> for DeliveryMethodView {
    fn from(m: pb::DeliveryMethod) -> Self {
        Self {
            id: m.id,
            price: money(m.price_minor),
            free_above: m.free_above_minor.map(money),
            name: m.name,
            price_minor: m.price_minor,
            free_above_minor: m.free_above_minor,
            active: m.active,
        }
    }
}

/// A delivery method as sent by an admin. On create, `name` and a price
/// are required; on update, only what is sent changes.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeliveryMethodInput {
    pub name: Option<String>,
    /// Price in minor units.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub price_minor: Option<i64>,
    /// The price as typed in a form ("4.90"); used when `price_minor` is absent.
    pub price: Option<String>,
    /// Free from this subtotal on, in minor units.
    #[serde(default, deserialize_with = "number_or_blank")]
    pub free_above_minor: Option<i64>,
    /// The threshold as typed in a form; sent blank, it clears the threshold.
    pub free_above: Option<String>,
    /// Makes delivery never free (JSON; a form sends `free_above` blank).
    #[serde(default)]
    pub clear_free_above: bool,
    /// Offered at checkout (on create, absent means yes).
    pub active: Option<bool>,
}

impl DeliveryMethodInput {
    fn price_minor(&self) -> Result<Option<i64>, AppError> {
        match (self.price_minor, self.price.as_deref().map(str::trim)) {
            (Some(minor), _) => Ok(Some(minor)),
            (None, Some(text)) if !text.is_empty() => parse_price(text).map(Some),
            _ => Ok(None),
        }
    }

    /// The threshold to set: `Some(None)` clears it, `None` leaves it.
    fn free_above_minor(&self) -> Result<Option<Option<i64>>, AppError> {
        if self.clear_free_above {
            return Ok(Some(None));
        }
        match (self.free_above_minor, self.free_above.as_deref().map(str::trim)) {
            (Some(minor), _) => Ok(Some(Some(minor))),
            (None, Some("")) => Ok(Some(None)),
            (None, Some(text)) => parse_price(text)
                .map(|minor| Some(Some(minor)))
                .map_err(|_| AppError::field("free_above", "must be an amount like 50.00, or blank")),
            (None, None) => Ok(None),
        }
    }

    /// What was typed, to show the form again.
    fn values(&self) -> BTreeMap<String, String> {
        let price = self.price.clone().or_else(|| self.price_minor.map(money));
        let free_above = self.free_above.clone().or_else(|| self.free_above_minor.map(money));
        [("name", self.name.clone()), ("price", price), ("free_above", free_above)]
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect()
    }
}

/// The form names amounts as typed, whichever name the service used.
fn on_form(error: AppError) -> AppError {
    let rename = |field: &str| match field {
        "price_minor" => "price".to_owned(),
        "free_above_minor" => "free_above".to_owned(),
        other => other.to_owned(),
    };
    match error {
        AppError::Invalid(errors) => {
            AppError::Invalid(errors.into_iter().map(|e| FieldError::new(rename(&e.field), e.message)).collect())
        }
        other => other,
    }
}

async fn all(ctx: &Ctx) -> Result<Vec<DeliveryMethodView>, AppError> {
    let request = pb::ListDeliveryMethodsRequest { include_inactive: true };
    let methods = ctx.services().orders().list_delivery_methods(request).await?.into_inner().methods;
    Ok(methods.into_iter().map(DeliveryMethodView::from).collect())
}

/// Every delivery method, active or not (admins).
#[utoipa::path(get, path = "/delivery-methods", tag = "orders",
    responses((status = 200, description = "Every delivery method, in id order", body = Vec<DeliveryMethodView>),
              (status = 401, body = crate::error_page::ProblemBody), (status = 403, body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx) -> Result<Response, AppError> {
    ctx.admin()?;
    let methods = all(&ctx).await?;
    if ctx.want == Want::Json {
        return Ok(axum::Json(methods).into_response());
    }
    let context = minijinja::context! {
        methods => minijinja::value::Serde(&methods), values => BTreeMap::<String, String>::new(),
        errors => BTreeMap::<String, String>::new(),
    };
    Ok(ctx.render(LIST, context))
}

/// The list again after a change: the fragment for htmx (with the message),
/// a 303 to the page for a plain form.
async fn changed(ctx: &Ctx, message: String) -> Result<Response, AppError> {
    let methods = all(ctx).await?;
    ctx.done((LIST, "methods", &methods), "/delivery-methods", message).await
}

async fn form_again(ctx: &Ctx, error: AppError, input: &DeliveryMethodInput) -> Result<Response, AppError> {
    let methods = all(ctx).await?;
    let context = minijinja::context! { methods => minijinja::value::Serde(&methods) };
    ctx.form_again(LIST, on_form(error), input.values(), context)
}

/// Adds a delivery method (admins).
#[utoipa::path(post, path = "/delivery-methods", tag = "orders", request_body = DeliveryMethodInput,
    responses((status = 201, body = DeliveryMethodView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn create(ctx: Ctx, Input(input): Input<DeliveryMethodInput>) -> Result<Response, AppError> {
    ctx.admin()?;
    let parsed = input.price_minor().and_then(|price| Ok((price, input.free_above_minor()?)));
    let (price, free_above) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return form_again(&ctx, error, &input).await,
    };
    let Some(price_minor) = price else {
        return form_again(&ctx, AppError::field("price", "is required"), &input).await;
    };
    let request = pb::CreateDeliveryMethodRequest {
        name: input.name.clone().unwrap_or_default(),
        price_minor,
        free_above_minor: free_above.flatten(),
        active: input.active,
    };
    let method = match ctx.services().orders().create_delivery_method(request).await {
        Ok(created) => created.into_inner().method.map(DeliveryMethodView::from),
        Err(status) => return form_again(&ctx, AppError::from(status), &input).await,
    };
    let method = method.ok_or(AppError::Missing("the order service returned no delivery method"))?;
    if ctx.want == Want::Json {
        return ctx.created("/delivery-methods", &method, String::new()).await;
    }
    changed(&ctx, format!("Added the delivery method {}.", method.name)).await
}

/// Changes a delivery method (admins; a form posts to the same URL): what
/// is sent changes, the rest stays. `active: false` takes it out of the
/// checkout; orders placed with it keep it.
#[utoipa::path(put, path = "/delivery-methods/{id}", tag = "orders", request_body = DeliveryMethodInput,
    params(("id" = i64, Path, description = "Delivery method id")),
    responses((status = 200, body = DeliveryMethodView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update(
    ctx: Ctx,
    axum::extract::Path(id): axum::extract::Path<String>,
    Input(input): Input<DeliveryMethodInput>,
) -> Result<Response, AppError> {
    ctx.admin()?;
    let id = method_id(&id)?;
    let parsed = input.price_minor().and_then(|price| Ok((price, input.free_above_minor()?)));
    let (price_minor, free_above) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return form_again(&ctx, error, &input).await,
    };
    let request = pb::UpdateDeliveryMethodRequest {
        id,
        name: input.name.clone(),
        price_minor,
        free_above_minor: free_above.flatten(),
        clear_free_above: free_above == Some(None),
        active: input.active,
    };
    let method = match ctx.services().orders().update_delivery_method(request).await {
        Ok(updated) => updated.into_inner().method.map(DeliveryMethodView::from),
        Err(status) => return form_again(&ctx, AppError::from(status), &input).await,
    };
    let method = method.ok_or(AppError::Missing("the order service returned no delivery method"))?;
    if ctx.want == Want::Json {
        return Ok(axum::Json(method).into_response());
    }
    let message = match input.active {
        Some(true) => format!("{} is offered at checkout again.", method.name),
        Some(false) => format!("{} is no longer offered at checkout; orders placed with it keep it.", method.name),
        None => format!("Saved the delivery method {}.", method.name),
    };
    changed(&ctx, message).await
}

fn method_id(raw: &str) -> Result<i64, AppError> {
    raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| AppError::NotFound("There is no such delivery method.".into()))
}
