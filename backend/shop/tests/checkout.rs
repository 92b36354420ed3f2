//! Checkout as a customer's browser does it without scripts: address,
//! delivery, payment, review, the order placed once however often the last
//! form is sent, the confirmation saying how to pay; then the admin's side:
//! shipping refused until paid, marked paid, shipped with a tracking
//! reference, the packing slip.

mod in_process;

use in_process::Shop;
use in_process::browser::{Browser, location, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON")
}

/// The value of the hidden `name` input in `html`.
fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle).map(|at| at + needle.len()).expect("the hidden field");
    html[start..].split('"').next().unwrap_or_default().to_owned()
}

async fn step(customer: &Browser, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    customer.form(Method::POST, path, fields).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_checks_out_in_steps_and_the_admin_fulfils_the_order() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    let casey = customer.customer("Casey").await;
    let teapot = admin.product("Teapot", 1000, 5).await;
    let method = admin
        .json(
            Method::POST,
            "/delivery-methods",
            json!({ "name": "Standard", "price_minor": 490, "free_above_minor": 5000 }),
        )
        .await;
    assert_eq!(method.status(), StatusCode::CREATED);
    let method = json_of(method).await;
    let added = customer.json(Method::POST, "/cart/items", json!({ "product_id": teapot, "quantity": 2 })).await;
    assert_eq!(added.status(), StatusCode::OK);

    // The steps, in order: /checkout sends to the first one not done.
    let start = customer.page("/checkout").await;
    assert_eq!((start.status(), location(&start).as_str()), (StatusCode::SEE_OTHER, "/checkout/address"));
    let bad = step(
        &customer,
        "/checkout/address",
        &[
            ("address_id", "new"),
            ("name", "Casey"),
            ("line1", "1 rue de la Paix"),
            ("postcode", ""),
            ("city", "Paris"),
            ("country", "FR"),
        ],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = text(bad).await;
    assert!(
        bad.contains("address-postcode-error") && bad.contains("1 rue de la Paix"),
        "the form again, with what was typed"
    );
    let good = step(
        &customer,
        "/checkout/address",
        &[
            ("address_id", "new"),
            ("name", "Casey"),
            ("line1", "1 rue de la Paix"),
            ("postcode", "75002"),
            ("city", "Paris"),
            ("country", "FR"),
        ],
    )
    .await;
    assert_eq!(location(&good), "/checkout/delivery");
    let page = text(customer.page("/checkout/delivery").await).await;
    assert!(page.contains("Standard") && page.contains("€4.90") && page.contains("free from €50.00"), "{page}");
    let chosen = step(&customer, "/checkout/delivery", &[("delivery_method_id", &method["id"].to_string())]).await;
    assert_eq!(location(&chosen), "/checkout/payment");
    let refused = step(&customer, "/checkout/payment", &[("payment_method", "card")]).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let paid_by = step(&customer, "/checkout/payment", &[("payment_method", "bank_transfer")]).await;
    assert_eq!(location(&paid_by), "/checkout/review");

    // The review says exactly what will be charged: 2 × €10 + €4.90.
    let review = text(customer.page("/checkout/review").await).await;
    assert!(review.contains("€24.90") && review.contains("VAT") && review.contains("75002 Paris"), "{review}");
    let key = hidden(&review, "idempotency_key");
    let no_terms = step(&customer, "/checkout", &[("idempotency_key", &key)]).await;
    assert_eq!(no_terms.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(no_terms).await.contains("terms-error"));
    let placed = step(&customer, "/checkout", &[("idempotency_key", &key), ("terms", "on")]).await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let confirmation = location(&placed);
    assert!(confirmation.starts_with("/orders/") && confirmation.ends_with("/confirmation"), "{confirmation}");
    // Back and the same form again: the same order, not a second one.
    let again = step(&customer, "/checkout", &[("idempotency_key", &key), ("terms", "on")]).await;
    assert_eq!(location(&again), confirmation);
    let mine = json_of(customer.get_json("/orders").await).await;
    assert_eq!(mine["total"], 1, "one order: {mine}");
    let order = &mine["orders"][0];
    let id = order["id"].as_i64().expect("an id");
    let page = text(customer.page(&confirmation).await).await;
    assert!(page.contains(&format!("ORDER-{id:06}")) && page.contains("€24.90"), "how to pay: {page}");
    let order = json_of(customer.get_json(&format!("/orders/{id}")).await).await;
    assert_eq!(
        (order["total_minor"].as_i64(), order["delivery_minor"].as_i64(), order["payment_state"].as_str()),
        (Some(2490), Some(490), Some("unpaid"))
    );
    assert_eq!(order["delivery_address"]["city"], "Paris");
    let cart = json_of(customer.get_json("/cart").await).await;
    assert_eq!(cart["count"], 0, "the ordered lines left the cart: {cart}");

    // The order keeps the address as it was: editing the book changes no order.
    let book = json_of(customer.get_json(&format!("/users/{}/addresses", casey["id"])).await).await;
    let address_id = book["addresses"][0]["id"].as_i64().expect("the address checkout kept");
    let moved = customer
        .json(
            Method::PUT,
            &format!("/users/{}/addresses/{address_id}", casey["id"]),
            json!({ "name": "Casey", "line1": "9 quai Voltaire", "postcode": "75007", "city": "Paris", "country": "FR" }),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::OK);
    let kept = json_of(customer.get_json(&format!("/orders/{id}")).await).await;
    assert_eq!(kept["delivery_address"]["line1"], "1 rue de la Paix", "the snapshot: {kept}");

    // The admin: shipping waits for the money; then paid, shipped, tracked.
    let early = admin.json(Method::PATCH, &format!("/orders/{id}/status"), json!({ "status": "shipped" })).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert_eq!(json_of(early).await["type"], "/problems/payment-required");
    let admin_page = text(admin.page(&format!("/orders/{id}")).await).await;
    assert!(admin_page.contains("Casey") && admin_page.contains("Mark paid") && admin_page.contains("75002 Paris"));
    let paid = admin.form(Method::POST, &format!("/orders/{id}/payment"), &[("state", "paid")]).await;
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let twice = admin.json(Method::POST, &format!("/orders/{id}/payment"), json!({ "state": "paid" })).await;
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    let by_customer = customer.json(Method::POST, &format!("/orders/{id}/payment"), json!({ "state": "paid" })).await;
    assert_eq!(by_customer.status(), StatusCode::FORBIDDEN);
    let shipped = admin
        .form(
            Method::POST,
            &format!("/orders/{id}/status"),
            &[("status", "shipped"), ("tracking_reference", "TRACK-1")],
        )
        .await;
    assert_eq!(shipped.status(), StatusCode::SEE_OTHER);
    let order = json_of(customer.get_json(&format!("/orders/{id}")).await).await;
    assert_eq!((order["status"].as_str(), order["payment_state"].as_str()), (Some("shipped"), Some("paid")));
    assert_eq!(order["tracking_reference"], "TRACK-1");
    let slip = admin.page(&format!("/orders/{id}/packing-slip")).await;
    assert_eq!(slip.status(), StatusCode::OK);
    let slip = text(slip).await;
    assert!(slip.contains("Packing slip") && slip.contains("1 rue de la Paix") && slip.contains("TRACK-1"));
    assert_eq!(customer.page(&format!("/orders/{id}/packing-slip")).await.status(), StatusCode::FORBIDDEN);

    // A guest is asked to sign in, and comes back to checkout.
    let guest = gateway.browser();
    let asked = guest.page("/checkout/address").await;
    assert_eq!(asked.status(), StatusCode::SEE_OTHER);
    assert!(location(&asked).starts_with("/users/login?next=%2Fcheckout"), "{}", location(&asked));
}
