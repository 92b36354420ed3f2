//! The admins' customers screen: find a customer by name or email, see how
//! much they ordered, and open one to see their details, addresses and
//! orders. The users service lists and searches the accounts (admins only);
//! the order service sums up a whole page of customers in one call.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shop_proto::orders::v1 as orders;
use shop_proto::users::v1 as pb;
use utoipa::ToSchema;

use super::addresses::AddressView;
use crate::context::{Ctx, Pages};
use crate::error::AppError;
use crate::extract::{Id, Paging, User};
use crate::negotiate::Want;
use crate::pager;
use crate::views::{OrderList, OrderView, PageInfo, UserView, money};

const LIST: Pages = Pages::new("customers/index.html", "customers/_list.html");
const DETAIL: Pages = Pages::new("customers/show.html", "customers/show.html");

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Part of a name or an email, any case.
    pub q: Option<String>,
}

/// A customer in the admins' list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerView {
    #[serde(flatten)]
    pub user: UserView,
    /// Orders placed (rejected ones not counted); null when the order
    /// service could not be asked.
    pub orders_count: Option<i64>,
    /// The totals of their confirmed, shipped and delivered orders (paid or
    /// not yet), less refunded ones, in minor units; null as above.
    pub spent_minor: Option<i64>,
    /// The same as a decimal string.
    pub spent: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerView>,
    /// The search, as understood (trimmed).
    pub query: String,
    #[serde(flatten)]
    pub page: PageInfo,
}

/// One customer, for an admin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerDetail {
    pub customer: UserView,
    pub addresses: Vec<AddressView>,
    /// Their latest orders (the first page; `/orders?user_id=` has them all).
    pub orders: OrderList,
    /// They have more orders than `orders.total`: the order service stops
    /// counting at 1,000.
    pub orders_total_is_lower_bound: bool,
}

/// Customers whose name or email contains `q`, newest first, with their
/// orders count and total spent. Admins only.
#[utoipa::path(get, path = "/customers", tag = "customers", params(CustomerQuery, Paging),
    responses((status = 200, body = CustomerList), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 422, body = crate::error_page::ProblemBody)))]
pub async fn list(ctx: Ctx, paging: Paging, Query(query): Query<CustomerQuery>) -> Result<Response, AppError> {
    ctx.admin()?;
    let query = query.q.unwrap_or_default().trim().to_owned();
    let request = pb::ListUsersRequest { query: query.clone(), page: paging.page(), page_size: paging.page_size() };
    let listed = ctx.services().users().list_users(request).await?.into_inner();
    let ids: Vec<i64> = listed.users.iter().map(|user| user.id).collect();
    // One call for the whole page. Without the order service the list still
    // shows who the customers are.
    let summaries: HashMap<i64, orders::CustomerSummary> = if ids.is_empty() {
        HashMap::new()
    } else {
        match ctx.services().orders().summarize_customers(orders::SummarizeCustomersRequest { user_ids: ids }).await {
            Ok(answer) => answer.into_inner().customers.into_iter().map(|s| (s.user_id, s)).collect(),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "customer summaries unavailable");
                HashMap::new()
            }
        }
    };
    let customers = listed
        .users
        .into_iter()
        .map(|user| {
            let summary = summaries.get(&user.id);
            CustomerView {
                orders_count: summary.map(|s| s.orders_count),
                spent_minor: summary.map(|s| s.spent_minor),
                spent: summary.map(|s| money(s.spent_minor)),
                user: UserView::from(user),
            }
        })
        .collect();
    let total = i64::try_from(listed.total).unwrap_or(i64::MAX);
    let list = CustomerList { customers, query, page: PageInfo::new(listed.page, listed.page_size, total) };
    Ok(match ctx.want {
        Want::Json => axum::Json(&list).into_response(),
        _ => {
            let encoded: String = url_query(&list.query);
            ctx.render(LIST, minijinja::context! { list => minijinja::value::Serde(&list), query_string => encoded })
        }
    })
}

/// `q=...` for the pager's links, or nothing without a search.
fn url_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("q={encoded}")
}

/// The link to all of a customer's orders: "All 1,234 orders", or "All
/// orders (more than 1,000)" when the order service stopped counting.
fn all_orders_text(total: i64, lower_bound: bool) -> String {
    if lower_bound {
        format!("All orders ({})", pager::number_text(total, lower_bound))
    } else {
        format!("All {}", pager::count_text(total, false, "order", "orders"))
    }
}

/// A customer's details, addresses and latest orders. Admins only.
#[utoipa::path(get, path = "/customers/{id}", tag = "customers", params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = CustomerDetail), (status = 401, body = crate::error_page::ProblemBody),
              (status = 403, body = crate::error_page::ProblemBody), (status = 404, body = crate::error_page::ProblemBody)))]
pub async fn show(ctx: Ctx, Id(id, _): Id<User>) -> Result<Response, AppError> {
    ctx.admin()?;
    let clients = ctx.services();
    let mut users = clients.users();
    let mut users_again = clients.users();
    let mut order_client = clients.orders();
    let (profile, addresses, listed) = tokio::try_join!(
        users.get_user_profile(pb::GetUserProfileRequest { id }),
        users_again.list_addresses(pb::ListAddressesRequest { user_id: Some(id) }),
        order_client.list_orders(orders::ListOrdersRequest {
            user_id: Some(id),
            page: 1,
            page_size: 20,
            ..Default::default()
        }),
    )?;
    let customer = profile.into_inner().user.map(UserView::from).ok_or(AppError::Missing("users returned no user"))?;
    let listed = listed.into_inner();
    let detail = CustomerDetail {
        customer,
        addresses: addresses.into_inner().addresses.into_iter().map(AddressView::from).collect(),
        orders: OrderList {
            page: PageInfo::new(listed.page, listed.page_size, listed.total),
            orders: listed.orders.into_iter().map(OrderView::from).collect(),
        },
        orders_total_is_lower_bound: listed.total_is_lower_bound,
    };
    if ctx.want == Want::Json {
        return Ok(ctx.show(DETAIL, "detail", &detail));
    }
    Ok(ctx.render(
        DETAIL,
        minijinja::context! {
            all_orders => all_orders_text(detail.orders.page.total, detail.orders_total_is_lower_bound),
            detail => minijinja::value::Serde(&detail),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::all_orders_text;

    #[test]
    fn the_link_to_all_orders_says_when_the_count_stopped() {
        assert_eq!(all_orders_text(42, false), "All 42 orders");
        assert_eq!(all_orders_text(1234, false), "All 1,234 orders");
        assert_eq!(all_orders_text(1000, true), "All orders (more than 1,000)");
    }
}
