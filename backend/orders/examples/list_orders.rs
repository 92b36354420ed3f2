//! One timed ListOrders call, for bench/scale_orders.sh (no grpcurl here).
//!
//! ```text
//! list_orders URL CALLER USER_ID POSITION PAGE_SIZE     (SHOP_INTERNAL_SECRET in the environment)
//!   CALLER    admin | user:N          who signs the call
//!   USER_ID   - | N                   the list: everyone's, or one user's
//!   POSITION  first | last | after:CURSOR | before:CURSOR | page:N
//! ```
//!
//! Connects first, then times the call alone, and prints one line:
//! `<ms> <orders on the page> <total>[+] <next_cursor or -> <previous_cursor or ->`
//! (`+`: the total is a lower bound).

use std::process::ExitCode;
use std::time::Instant;

use shop_grpc::identity::{Caller, Identity, SignAs};
use shop_proto::orders::v1::ListOrdersRequest;
use shop_proto::orders::v1::order_service_client::OrderServiceClient;

fn usage(why: &str) -> ExitCode {
    eprintln!(
        "list_orders: {why}\nusage: list_orders URL admin|user:N -|USER_ID first|last|after:C|before:C|page:N PAGE_SIZE"
    );
    ExitCode::from(2)
}

fn caller(text: &str) -> Option<Caller> {
    match text {
        "admin" => Some(Caller::User { id: 1, admin: true }),
        _ => Some(Caller::User { id: text.strip_prefix("user:")?.parse().ok()?, admin: false }),
    }
}

fn request(user_id: &str, position: &str, page_size: &str) -> Option<ListOrdersRequest> {
    let user_id = if user_id == "-" { None } else { Some(user_id.parse().ok()?) };
    let mut request = ListOrdersRequest { user_id, page_size: page_size.parse().ok()?, ..Default::default() };
    match position.split_once(':') {
        None if position == "first" => {}
        None if position == "last" => request.last = true,
        Some(("after", cursor)) => request.after = cursor.to_owned(),
        Some(("before", cursor)) => request.before = cursor.to_owned(),
        Some(("page", number)) => request.page = number.parse().ok()?,
        _ => return None,
    }
    Some(request)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, who, user_id, position, page_size] = args.as_slice() else {
        return usage("five arguments");
    };
    let Some(caller) = caller(who) else { return usage("CALLER is admin or user:N") };
    let Some(request) = request(user_id, position, page_size) else {
        return usage("bad USER_ID, POSITION or PAGE_SIZE");
    };
    let Ok(secret) = std::env::var("SHOP_INTERNAL_SECRET") else { return usage("SHOP_INTERNAL_SECRET is not set") };
    let channel = match tonic::transport::Endpoint::from_shared(url.clone()) {
        Ok(endpoint) => match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => return usage(&format!("cannot connect to {url}: {error}")),
        },
        Err(error) => return usage(&format!("bad URL {url}: {error}")),
    };
    let mut client =
        OrderServiceClient::with_interceptor(channel, SignAs::fixed(Identity::new(secret.as_bytes()), caller));
    let started = Instant::now();
    let answer = client.list_orders(request).await;
    let elapsed = started.elapsed();
    match answer {
        Ok(page) => {
            let page = page.into_inner();
            let or_dash = |cursor: &str| if cursor.is_empty() { "-".to_owned() } else { cursor.to_owned() };
            println!(
                "{:.3} {} {}{} {} {}",
                elapsed.as_secs_f64() * 1000.0,
                page.orders.len(),
                page.total,
                if page.total_is_lower_bound { "+" } else { "" },
                or_dash(&page.next_cursor),
                or_dash(&page.previous_cursor),
            );
            ExitCode::SUCCESS
        }
        Err(status) => {
            eprintln!("list_orders: {:?}: {}", status.code(), status.message());
            ExitCode::FAILURE
        }
    }
}
