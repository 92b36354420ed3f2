//! Address books: each customer keeps theirs (`/users/{id}/addresses`);
//! admins may read a customer's. The users service decides whose book and
//! which address the caller may reach: another customer's address is "not
//! found", exactly like one that does not exist.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shop_proto::users::v1 as pb;
use utoipa::ToSchema;

use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{Id, Input, User};
use crate::negotiate::Want;
use crate::viewer::Viewer;

const BOOK: Pages = Pages::new("addresses/index.html", "addresses/_book.html");
const EDIT: Pages = Pages::new("addresses/edit.html", "addresses/_edit_form.html");

/// The countries the shop delivers to, as the users service lists them
/// (`backend/users/src/address.rs`), by name for the form's list.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AT", "Austria"),
    ("BE", "Belgium"),
    ("BG", "Bulgaria"),
    ("CA", "Canada"),
    ("HR", "Croatia"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DK", "Denmark"),
    ("EE", "Estonia"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("DE", "Germany"),
    ("GR", "Greece"),
    ("HU", "Hungary"),
    ("IS", "Iceland"),
    ("IE", "Ireland"),
    ("IT", "Italy"),
    ("LV", "Latvia"),
    ("LI", "Liechtenstein"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("MT", "Malta"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("RO", "Romania"),
    ("SK", "Slovakia"),
    ("SI", "Slovenia"),
    ("ES", "Spain"),
    ("SE", "Sweden"),
    ("CH", "Switzerland"),
    ("GB", "United Kingdom"),
    ("US", "United States"),
];

/// A time as RFC 3339, as every other view shows them.
pub fn rfc3339(timestamp: Option<prost_types::Timestamp>) -> String {
    use time::format_description::well_known::Rfc3339;
    timestamp
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn country_name(code: &str) -> &str {
    COUNTRIES.iter().find(|(c, _)| *c == code).map_or(code, |(_, name)| name)
}

/// One address of a customer's book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AddressView {
    pub id: i64,
    pub user_id: i64,
    /// Who receives the parcel.
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub postcode: String,
    pub city: String,
    /// ISO 3166-1 alpha-2 ("FR").
    pub country: String,
    /// The country's name ("France").
    pub country_name: String,
    pub phone: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<pb::Address> for AddressView {
    fn from(a: pb::Address) -> Self {
        Self {
            id: a.id,
            user_id: a.user_id,
            country_name: country_name(&a.country).to_owned(),
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            postcode: a.postcode,
            city: a.city,
            country: a.country,
            phone: a.phone,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// A customer's addresses, most recently changed first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AddressBook {
    pub user_id: i64,
    pub addresses: Vec<AddressView>,
}

/// An address as typed. Every field is checked by the users service, which
/// names each one that is wrong.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
pub struct AddressInput {
    pub name: Option<String>,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 ("FR").
    pub country: Option<String>,
    pub phone: Option<String>,
}

impl AddressInput {
    fn fields(&self) -> pb::AddressFields {
        let take = |value: &Option<String>| value.clone().unwrap_or_default();
        pb::AddressFields {
            name: take(&self.name),
            line1: take(&self.line1),
            line2: take(&self.line2),
            postcode: take(&self.postcode),
            city: take(&self.city),
            country: take(&self.country),
            phone: take(&self.phone),
        }
    }

    fn values(&self) -> BTreeMap<String, String> {
        let fields = self.fields();
        BTreeMap::from([
            ("name".to_owned(), fields.name),
            ("line1".to_owned(), fields.line1),
            ("line2".to_owned(), fields.line2),
            ("postcode".to_owned(), fields.postcode),
            ("city".to_owned(), fields.city),
            ("country".to_owned(), fields.country),
            ("phone".to_owned(), fields.phone),
        ])
    }
}

fn values_of(address: &AddressView) -> BTreeMap<String, String> {
    AddressInput {
        name: Some(address.name.clone()),
        line1: Some(address.line1.clone()),
        line2: Some(address.line2.clone()),
        postcode: Some(address.postcode.clone()),
        city: Some(address.city.clone()),
        country: Some(address.country.clone()),
        phone: Some(address.phone.clone()),
    }
    .values()
}

/// `/users/{id}/addresses/{address_id}`: both ids, or 404 for anything
/// that is not a positive whole number.
fn ids(Path((user, address)): Path<(String, String)>) -> Result<(i64, i64), AppError> {
    let parse = |raw: &str| raw.parse::<i64>().ok().filter(|id| *id > 0);
    match (parse(&user), parse(&address)) {
        (Some(user), Some(address)) => Ok((user, address)),
        _ => Err(AppError::NotFound("That address was not found.".into())),
    }
}

fn not_found() -> AppError {
    AppError::NotFound("That address was not found.".into())
}

/// Only the book's owner changes it (an admin reads, never writes, a
/// customer's): anyone else is told there is no such address, as the
/// service would.
fn own_book(ctx: &Ctx, user_id: i64) -> Result<(), AppError> {
    if ctx.user()?.id == user_id { Ok(()) } else { Err(not_found()) }
}

async fn book(ctx: &Ctx, user_id: i64) -> Result<AddressBook, AppError> {
    let request = pb::ListAddressesRequest { user_id: Some(user_id) };
    let listed = ctx.services().users().list_addresses(request).await?.into_inner();
    Ok(AddressBook { user_id, addresses: listed.addresses.into_iter().map(AddressView::from).collect() })
}

fn countries() -> Vec<(&'static str, &'static str)> {
    COUNTRIES.to_vec()
}

fn book_context(book: &AddressBook, values: BTreeMap<String, String>) -> minijinja::Value {
    minijinja::context! {
        book => minijinja::value::Serde(book),
        countries => countries(),
        values => values,
        errors => BTreeMap::<String, String>::new(),
    }
}

/// A blank form's country: France, the shop's home.
fn blank() -> BTreeMap<String, String> {
    BTreeMap::from([("country".to_owned(), "FR".to_owned())])
}

/// A customer's address book, with the form that adds one.
#[utoipa::path(get, path = "/users/{id}/addresses", tag = "addresses",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = AddressBook), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such user, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, Id(user_id, _): Id<User>) -> Result<Response, AppError> {
    ctx.user()?;
    let book = book(&ctx, user_id).await?;
    Ok(match ctx.want {
        Want::Json => axum::Json(&book).into_response(),
        _ => ctx.render(BOOK, book_context(&book, blank())),
    })
}

/// Adds an address to your own book (at most 20).
#[utoipa::path(post, path = "/users/{id}/addresses", tag = "addresses", request_body = AddressInput,
    params(("id" = i64, Path, description = "User id: your own")),
    responses((status = 201, description = "Added; `Location` names it", body = AddressView),
              (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "Not your book", body = crate::error_page::ProblemBody),
              (status = 422, description = "A field is wrong, or the book is full", body = crate::error_page::ProblemBody)))]
pub async fn create(
    ctx: Ctx,
    Id(user_id, _): Id<User>,
    Input(input): Input<AddressInput>,
) -> Result<Response, AppError> {
    own_book(&ctx, user_id)?;
    let request = pb::CreateAddressRequest { address: Some(input.fields()) };
    let created = match ctx.services().users().create_address(request).await {
        Ok(created) => created.into_inner().address.map(AddressView::from).ok_or(AppError::Missing("no address"))?,
        Err(status) => {
            let book = book(&ctx, user_id).await?;
            return ctx.form_again(BOOK, status.into(), input.values(), book_context(&book, BTreeMap::new()));
        }
    };
    let location = format!("/users/{user_id}/addresses");
    let message = format!("The address for {} was added.", created.name);
    match ctx.want {
        Want::Json => ctx.created(&format!("{location}/{}", created.id), &created, String::new()).await,
        Want::Page => ctx.redirect(&location, message).await,
        // The book again, with the new address and a blank form.
        Want::Partial => {
            let book = book(&ctx, user_id).await?;
            let viewer = Viewer { flash: Some(message), ..ctx.viewer.clone() };
            Ok(ctx.state.templates.respond(&viewer, ctx.want, BOOK.page, BOOK.partial, book_context(&book, blank())))
        }
    }
}

async fn fetch(ctx: &Ctx, user_id: i64, address_id: i64) -> Result<AddressView, AppError> {
    let found = ctx.services().users().get_address(pb::GetAddressRequest { id: address_id }).await?.into_inner();
    let address = found.address.map(AddressView::from).ok_or(AppError::Missing("no address"))?;
    // An admin reaches any address, but only under its owner's URL.
    if address.user_id == user_id { Ok(address) } else { Err(not_found()) }
}

fn edit_context(address: &AddressView) -> minijinja::Value {
    minijinja::context! { address => minijinja::value::Serde(address), countries => countries() }
}

/// One address (a browser gets its edit form).
#[utoipa::path(get, path = "/users/{id}/addresses/{address_id}", tag = "addresses",
    params(("id" = i64, Path, description = "User id"), ("address_id" = i64, Path, description = "Address id")),
    responses((status = 200, body = AddressView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such address, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, path: Path<(String, String)>) -> Result<Response, AppError> {
    ctx.user()?;
    let (user_id, address_id) = ids(path)?;
    let address = fetch(&ctx, user_id, address_id).await?;
    if ctx.want == Want::Json {
        return Ok(axum::Json(&address).into_response());
    }
    let context = minijinja::context! { values => values_of(&address), errors => BTreeMap::<String, String>::new(), ..edit_context(&address) };
    Ok(ctx.render(EDIT, context))
}

/// The edit form (JSON clients get the address, as from its own URL).
pub async fn edit_form(ctx: Ctx, path: Path<(String, String)>) -> Result<Response, AppError> {
    show(ctx, path).await
}

/// Changes one of your addresses: every field is replaced. The form posts
/// to the same URL.
#[utoipa::path(put, path = "/users/{id}/addresses/{address_id}", tag = "addresses", request_body = AddressInput,
    params(("id" = i64, Path, description = "User id: your own"), ("address_id" = i64, Path, description = "Address id")),
    responses((status = 200, body = AddressView), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such address, or not yours", body = crate::error_page::ProblemBody),
              (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn update(
    ctx: Ctx,
    path: Path<(String, String)>,
    Input(input): Input<AddressInput>,
) -> Result<Response, AppError> {
    let (user_id, address_id) = ids(path)?;
    own_book(&ctx, user_id)?;
    let request = pb::UpdateAddressRequest { id: address_id, address: Some(input.fields()) };
    let updated = match ctx.services().users().update_address(request).await {
        Ok(updated) => updated.into_inner().address.map(AddressView::from).ok_or(AppError::Missing("no address"))?,
        Err(status) => {
            let context = minijinja::context! { address => minijinja::context! { id => address_id, user_id }, countries => countries() };
            return ctx.form_again(EDIT, status.into(), input.values(), context);
        }
    };
    match ctx.want {
        Want::Json => Ok(axum::Json(&updated).into_response()),
        _ => {
            ctx.redirect(&format!("/users/{user_id}/addresses"), format!("The address for {} was saved.", updated.name))
                .await
        }
    }
}

/// Deletes one of your addresses; orders sent to it keep their copy. A
/// form posts to `/users/{id}/addresses/{address_id}/delete`.
#[utoipa::path(delete, path = "/users/{id}/addresses/{address_id}", tag = "addresses",
    params(("id" = i64, Path, description = "User id: your own"), ("address_id" = i64, Path, description = "Address id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error_page::ProblemBody),
              (status = 404, description = "No such address, or not yours", body = crate::error_page::ProblemBody)))]
pub async fn delete(ctx: Ctx, path: Path<(String, String)>) -> Result<Response, AppError> {
    let (user_id, address_id) = ids(path)?;
    own_book(&ctx, user_id)?;
    ctx.services().users().delete_address(pb::DeleteAddressRequest { id: address_id }).await?;
    match ctx.want {
        Want::Json => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => ctx.redirect(&format!("/users/{user_id}/addresses"), "The address was deleted.".into()).await,
    }
}
