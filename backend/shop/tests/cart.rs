//! The cart kept by the shop for signed-in customers, through the gateway
//! (the whole shop in this process): a guest's cart merged at sign-in
//! within the stock, the kept cart surviving sign-out and seen from another
//! device, and lines of products no longer sold marked and left out of
//! checkout.

mod in_process;

use in_process::Shop;
use in_process::browser::{Browser, PASSWORD, location, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn cart(who: &Browser) -> Value {
    who.get_json("/cart").await.json().await.expect("a cart")
}

/// (product name, quantity, status) of each line still sold.
fn lines(cart: &Value) -> Vec<(String, i64, String)> {
    let lines = cart["lines"].as_array().cloned().unwrap_or_default();
    lines
        .iter()
        .map(|line| {
            (
                line["product"]["name"].as_str().unwrap_or_default().to_owned(),
                line["quantity"].as_i64().unwrap_or_default(),
                line["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn line(name: &str, quantity: i64, status: &str) -> (String, i64, String) {
    (name.to_owned(), quantity, status.to_owned())
}

/// Signs in with a form posted without scripts and returns the page it
/// lands on (with its one-time message).
async fn sign_in_with_form(who: &Browser, email: &str) -> String {
    let signed_in = who.form(Method::POST, "/users/login", &[("email", email), ("password", PASSWORD)]).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    text(who.page(&location(&signed_in)).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_is_kept_across_sign_out_and_devices_and_merged_at_sign_in() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let gyokuro = admin.product("Gyokuro", 1_200, 3).await;
    let pot = admin.product("Teapot", 3_200, 5).await;
    let carol = gateway.browser();
    let email = carol.customer("Carol").await["email"].as_str().expect("an email").to_owned();

    // Signed in, the cart is the shop's: bounded by stock by the order service.
    let added = carol.json(Method::POST, "/cart/items", json!({ "product_id": gyokuro, "quantity": 2 })).await;
    assert_eq!(added.status(), StatusCode::OK);
    let beyond = carol.json(Method::POST, "/cart/items", json!({ "product_id": gyokuro, "quantity": 2 })).await;
    assert_eq!(beyond.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let told = text(beyond).await;
    assert!(told.contains("Only 3 Gyokuro left: your cart has 2."), "{told}");
    let refused = carol.json(Method::PUT, &format!("/cart/items/{gyokuro}"), json!({ "quantity": 4 })).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(refused).await.contains("Gyokuro: only 3 left"));
    assert_eq!(lines(&cart(&carol).await), vec![line("Gyokuro", 2, "available")]);

    // Signed out, the kept cart stays with the shop; this session is a guest's.
    assert_eq!(carol.form(Method::POST, "/users/logout", &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(cart(&carol).await["count"], 0);
    carol.json(Method::POST, "/cart/items", json!({ "product_id": gyokuro, "quantity": 2 })).await;
    carol.json(Method::POST, "/cart/items", json!({ "product_id": pot, "quantity": 1 })).await;
    assert_eq!(cart(&carol).await["count"], 3);

    // Signing in merges the guest's cart, cut to the stock, and says so once.
    let page = sign_in_with_form(&carol, &email).await;
    assert!(page.contains("Only 3 Gyokuro left: your cart has 3."), "{page}");
    assert!(page.contains(r#"aria-label="items in cart">4</span>"#), "the badge counts the merged cart: {page}");
    assert!(!text(carol.page("/").await).await.contains("Only 3 Gyokuro left"), "told once");
    let merged = cart(&carol).await;
    assert_eq!(lines(&merged), vec![line("Gyokuro", 3, "available"), line("Teapot", 1, "available")]);
    assert_eq!(merged["count"], 4);

    // Another device (another cookie jar) signed in as Carol sees the same cart.
    let phone = carol.stranger();
    let signed_in = phone.json(Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    assert_eq!(lines(&cart(&phone).await), lines(&merged));
    phone.json(Method::PUT, &format!("/cart/items/{pot}"), json!({ "quantity": 2 })).await;
    assert_eq!(cart(&carol).await["count"], 5, "the next cart read sees the other device's change");

    // Signed out and in again: the cart is still there.
    carol.form(Method::POST, "/users/logout", &[]).await;
    let page = sign_in_with_form(&carol, &email).await;
    assert!(page.contains(r#"aria-label="items in cart">5</span>"#), "{page}");
    assert_eq!(cart(&carol).await["count"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_no_longer_sold_or_short_are_marked_and_stay_out_of_the_order() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let gyokuro = admin.product("Gyokuro", 1_200, 5).await;
    let pot = admin.product("Teapot", 3_200, 5).await;
    let cup = admin.product("Cup", 500, 4).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;
    for (id, quantity) in [(gyokuro, 2), (pot, 1), (cup, 4)] {
        let added = carol.json(Method::POST, "/cart/items", json!({ "product_id": id, "quantity": quantity })).await;
        assert_eq!(added.status(), StatusCode::OK);
    }
    assert_eq!(
        admin.json(Method::DELETE, &format!("/products/{pot}"), Value::Null).await.status(),
        StatusCode::NO_CONTENT
    );
    admin.json(Method::PUT, &format!("/products/{cup}"), json!({ "stock_delta": -2 })).await;

    let marked = cart(&carol).await;
    assert_eq!(lines(&marked), vec![line("Gyokuro", 2, "available"), line("Cup", 4, "short")]);
    assert_eq!(marked["gone"], json!([{ "product_id": pot, "name": "Teapot", "quantity": 1 }]));
    assert_eq!((marked["count"].as_i64(), marked["total_minor"].as_i64()), (Some(7), Some(2 * 1_200)));
    assert_eq!(marked["has_unavailable"], true);
    let page = text(carol.page("/cart").await).await;
    for mark in ["No longer sold", "Only 2 left", "Teapot", "left out of the order"] {
        assert!(page.contains(mark), "{mark:?} on the cart page: {page}");
    }

    // Checkout orders what can be ordered and says what stayed, by name.
    let method = admin.delivery_method().await;
    carol.choose_delivery(method).await;
    let placed = carol.place_order("carts-1").await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let confirmation = location(&placed);
    let order_url = confirmation.strip_suffix("/confirmation").expect("the order's confirmation page").to_owned();
    let confirmation_page = text(carol.page(&confirmation).await).await;
    assert!(
        confirmation_page
            .contains("(2 items). Teapot is no longer sold and only 2 Cup left: they stayed in your cart."),
        "{confirmation_page}"
    );
    let order: Value = carol.get_json(&order_url).await.json().await.expect("an order");
    let ordered: Vec<_> = order["items"].as_array().expect("items").iter().map(|i| i["product_id"].clone()).collect();
    assert_eq!(ordered, vec![json!(gyokuro)]);
    assert_eq!(order["total_minor"], 2 * 1_200 + 490, "what was ordered, and the delivery");
    let left = cart(&carol).await;
    assert_eq!(lines(&left), vec![line("Cup", 4, "short")]);
    assert_eq!(left["gone"][0]["name"], "Teapot");
    assert_eq!(left["count"], 5);

    // The same form again is the same order, not a second one; so is the
    // same checkout sent by a JSON client with the form's key.
    let again = carol.place_order("carts-1").await;
    assert_eq!((again.status(), location(&again)), (StatusCode::SEE_OTHER, confirmation.clone()));
    let mut body = Browser::cart_order(method);
    body["idempotency_key"] = json!("carts-1");
    let again = carol.json(Method::POST, "/orders", body).await;
    let again: Value = again.json().await.expect("the order");
    assert_eq!(again["id"], order["id"], "{again}");

    // Nothing that can be ordered: refused, every line named.
    let mut body = Browser::cart_order(method);
    body["idempotency_key"] = json!("carts-2");
    let refused = carol.json(Method::POST, "/orders", body).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let told = text(refused).await;
    assert!(
        told.contains("Nothing in your cart can be ordered now: Teapot is no longer sold and only 2 Cup left."),
        "{told}"
    );

    // Lines are taken out, the one no longer sold too, by name.
    let removed = carol.form(Method::POST, &format!("/cart/items/{pot}/delete"), &[]).await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert!(text(carol.page("/cart").await).await.contains("Removed Teapot from your cart."));
    assert_eq!(cart(&carol).await["count"], 4);
}
