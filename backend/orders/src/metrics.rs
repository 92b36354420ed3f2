//! The shop's business in numbers: orders by outcome, revenue, and status
//! changes. Counted by the store after the change commits, so a rolled-back
//! transaction or a replayed request counts nothing.

use crate::domain::Status;

pub(crate) fn confirmed(total_minor: i64) {
    metrics::counter!("shop_orders_total", "outcome" => "confirmed").increment(1);
    metrics::counter!("shop_revenue_cents_total").increment(u64::try_from(total_minor).unwrap_or(0));
    status_changed(Status::Confirmed);
}

pub(crate) fn rejected() {
    metrics::counter!("shop_orders_total", "outcome" => "rejected").increment(1);
    status_changed(Status::Rejected);
}

pub(crate) fn status_changed(to: Status) {
    metrics::counter!("shop_order_status_changes_total", "status" => to.as_str()).increment(1);
}

/// HELP lines, and every series at zero so dashboards and `rate()` see
/// them before the first order.
pub fn describe() {
    metrics::describe_counter!("shop_orders_total", "Orders placed, by outcome (confirmed, rejected).");
    metrics::describe_counter!(
        "shop_revenue_cents_total",
        "Sum of confirmed orders' totals, in cents (minor units), at the time they were confirmed."
    );
    metrics::describe_counter!("shop_order_status_changes_total", "Orders moved to a status, by the status.");
    metrics::describe_counter!(
        "shop_orders_left_pending_total",
        "Orders recorded while inventory could not be asked: answered as pending, settled by the recovery pass."
    );
    metrics::counter!("shop_orders_left_pending_total").absolute(0);
    for outcome in ["confirmed", "rejected"] {
        metrics::counter!("shop_orders_total", "outcome" => outcome).absolute(0);
    }
    for status in Status::ALL.into_iter().filter(|status| *status != Status::Pending) {
        metrics::counter!("shop_order_status_changes_total", "status" => status.as_str()).absolute(0);
    }
    metrics::counter!("shop_revenue_cents_total").absolute(0);
}
