//! Every endpoint of the gateway, in HTML and in JSON, with its errors,
//! against the real services on random ports: the whole shop in this
//! process, as `shop all` runs it.

mod in_process;

use in_process::Shop;
use in_process::browser::{Browser, PASSWORD, assert_problem, location, text};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_are_browsed_by_all_and_managed_by_admins() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    customer.customer("Carol").await;
    let stranger = gateway.browser();

    // Create: JSON gets 201 + Location + the product; a form gets a 303.
    let created = admin
        .json(
            Method::POST,
            "/products",
            json!({ "name": "Teapot", "description": "Cast iron", "price_minor": 3450, "stock": 5 }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let teapot_url = location(&created);
    let teapot: Value = created.json().await.expect("a product");
    assert_eq!(teapot_url, format!("/products/{}", teapot["id"]));
    assert_eq!((teapot["price"].as_str(), teapot["stock"].as_i64()), (Some("34.50"), Some(5)));
    let by_form = admin.form(Method::POST, "/products", &[("name", "Cups"), ("price", "4.5"), ("stock", "10")]).await;
    assert_eq!(by_form.status(), StatusCode::SEE_OTHER);
    assert!(location(&by_form).starts_with("/products/"));

    // Only admins write.
    let attempt = json!({ "name": "Nope", "price_minor": 1, "stock": 1 });
    assert_problem(
        customer.json(Method::POST, "/products", attempt.clone()).await,
        StatusCode::FORBIDDEN,
        "not allowed",
    )
    .await;
    assert_problem(stranger.json(Method::POST, "/products", attempt).await, StatusCode::UNAUTHORIZED, "sign in").await;
    let to_login = stranger.form(Method::POST, "/products", &[("name", "Nope"), ("price", "1")]).await;
    assert_eq!(
        (to_login.status(), location(&to_login).as_str()),
        (StatusCode::SEE_OTHER, "/users/login?next=%2Fproducts")
    );

    // List and read, in all three representations.
    let list: Value = customer.get_json("/products?page_size=1").await.json().await.expect("a list");
    assert_eq!((list["total"].as_i64(), list["products"].as_array().map(Vec::len)), (Some(2), Some(1)));
    assert_eq!(list["products"][0]["name"], "Cups", "newest first");
    let next = list["next"].as_str().expect("a next page");
    let page = text(customer.page(next).await).await;
    assert!(page.starts_with("<!doctype html>") && page.contains("Teapot") && page.contains("rel=\"prev\""));
    let partial =
        text(customer.htmx(Method::GET, "/products?page=1&page_size=1").send().await.expect("an answer")).await;
    assert!(
        !partial.contains("<!doctype") && partial.contains("id=\"product-list\"") && partial.contains("hx-push-url")
    );
    let one: Value = customer.get_json(&teapot_url).await.json().await.expect("a product");
    assert_eq!(one, teapot);
    assert!(text(customer.page(&teapot_url).await).await.contains("Cast iron"));

    // Reading errors.
    assert_problem(customer.get_json("/products/999999").await, StatusCode::NOT_FOUND, "not found").await;
    assert_problem(customer.get_json("/products/abc").await, StatusCode::NOT_FOUND, "no product").await;
    let missing = customer.page("/products/999999").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(text(missing).await.contains("We could not find that"), "in people's words, not HTTP's");
    assert_problem(customer.get_json("/products?page=x").await, StatusCode::BAD_REQUEST, "whole numbers").await;
    assert_problem(customer.get_json("/products?page_size=1000").await, StatusCode::UNPROCESSABLE_ENTITY, "page_size")
        .await;

    // Update: only what is sent changes; stock moves by a delta, never below zero.
    let changed = admin.json(Method::PUT, &teapot_url, json!({ "price_minor": 3000, "stock_delta": 2 })).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let changed: Value = changed.json().await.expect("a product");
    assert_eq!(
        (changed["name"].as_str(), changed["price_minor"].as_i64(), changed["stock"].as_i64()),
        (Some("Teapot"), Some(3000), Some(7))
    );
    assert_problem(
        admin.json(Method::PUT, &teapot_url, json!({ "stock_delta": -8 })).await,
        StatusCode::CONFLICT,
        "below zero",
    )
    .await;
    assert_problem(
        admin.json(Method::PUT, &teapot_url, json!({ "name": "" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "name",
    )
    .await;
    // A bad form comes back with the error beside the field and what was typed.
    let bad_form = admin
        .htmx(Method::PUT, &teapot_url)
        .form(&[("name", "Better teapot"), ("price", "12.345")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(bad_form.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_form = text(bad_form).await;
    assert!(
        bad_form.contains("must be an amount like 19.99") && bad_form.contains("value=\"Better teapot\""),
        "{bad_form}"
    );
    assert_eq!(
        customer.json(Method::PUT, &teapot_url, json!({ "name": "Mine" })).await.status(),
        StatusCode::FORBIDDEN
    );
    let edit_card = admin
        .htmx(Method::PUT, &teapot_url)
        .form(&[("name", "Teapot"), ("price", "30.00"), ("stock_delta", "")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(edit_card.status(), StatusCode::OK);
    assert!(text(edit_card).await.contains("id=\"product\""));

    // Delete.
    assert_eq!(customer.json(Method::DELETE, &teapot_url, Value::Null).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(admin.json(Method::DELETE, &teapot_url, Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_problem(admin.json(Method::DELETE, &teapot_url, Value::Null).await, StatusCode::NOT_FOUND, "not found")
        .await;
    assert_eq!(customer.get_json(&teapot_url).await.status(), StatusCode::NOT_FOUND, "the cache forgot it too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_register_sign_in_and_keep_to_themselves() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let ada = gateway.browser();

    let registered = ada
        .json(
            Method::POST,
            "/users/register",
            json!({ "name": "Ada", "email": "Ada@Example.com", "password": PASSWORD }),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let ada_url = location(&registered);
    let ada_user: Value = registered.json().await.expect("a user");
    assert_eq!((ada_user["email"].as_str(), ada_user["role"].as_str()), (Some("ada@example.com"), Some("customer")));
    assert!(ada_user.get("password").is_none() && !ada_user.to_string().contains(PASSWORD));

    // Refusals, as problems for JSON and inline for forms.
    let other = gateway.browser();
    assert_problem(
        other
            .json(
                Method::POST,
                "/users/register",
                json!({ "name": "Eve", "email": "ADA@example.com", "password": PASSWORD }),
            )
            .await,
        StatusCode::CONFLICT,
        "already exists",
    )
    .await;
    let invalid = assert_problem(
        other
            .json(Method::POST, "/users/register", json!({ "name": "Eve", "email": "eve", "password": PASSWORD }))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "email",
    )
    .await;
    assert_eq!(invalid["errors"][0]["field"], "email");
    let form = other
        .form(
            Method::POST,
            "/users/register",
            &[("name", "Eve <b>"), ("email", "ada@example.com"), ("password", "a secret password")],
        )
        .await;
    assert_eq!(form.status(), StatusCode::CONFLICT);
    let form = text(form).await;
    assert!(
        form.contains("already exists")
            && form.contains("value=\"Eve &lt;b&gt;\"")
            && !form.contains("a secret password"),
        "{form}"
    );
    let short = other
        .htmx(Method::POST, "/users/register")
        .form(&[("name", "Eve"), ("email", "eve@example.com"), ("password", "short")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let short = text(short).await;
    assert!(short.starts_with("<form") && short.contains("at least 8 characters"), "{short}");

    // Signing in: a wrong password says nothing about which part was wrong.
    let wrong = other
        .json(Method::POST, "/users/login", json!({ "email": "ada@example.com", "password": "not it at all" }))
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid email or password").await;
    let unknown =
        other.json(Method::POST, "/users/login", json!({ "email": "nobody@example.com", "password": PASSWORD })).await;
    assert_problem(unknown, StatusCode::UNAUTHORIZED, "invalid email or password").await;
    let wrong_form =
        other.form(Method::POST, "/users/login", &[("email", "ada@example.com"), ("password", "nope nope")]).await;
    assert_eq!(wrong_form.status(), StatusCode::UNAUTHORIZED);
    assert!(text(wrong_form).await.contains("Invalid email or password."));
    let signed_in = other
        .form(
            Method::POST,
            "/users/login",
            &[("email", "ada@example.com"), ("password", PASSWORD), ("next", "/orders")],
        )
        .await;
    assert_eq!((signed_in.status(), location(&signed_in).as_str()), (StatusCode::SEE_OTHER, "/orders"));
    let elsewhere = ada
        .stranger()
        .form(
            Method::POST,
            "/users/login",
            &[("email", "ada@example.com"), ("password", PASSWORD), ("next", "//evil.example")],
        )
        .await;
    assert_eq!(location(&elsewhere), "/", "no open redirect");

    // The profile: cached, refreshed on change, private.
    assert_eq!(location(&ada.page(&format!("/users?id={}", ada_user["id"])).await), ada_url);
    assert_problem(ada.get_json("/users").await, StatusCode::BAD_REQUEST, "?id=N").await;
    let first = ada.get_json(&ada_url).await;
    assert_eq!(first.headers()["x-cache"], "miss");
    let second = ada.get_json(&ada_url).await;
    assert_eq!(second.headers()["x-cache"], "hit");
    assert_eq!(second.json::<Value>().await.expect("a user"), ada_user);
    let renamed = ada.json(Method::PATCH, &ada_url, json!({ "name": "Ada Lovelace" })).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let fresh = ada.get_json(&ada_url).await;
    assert_eq!(fresh.headers()["x-cache"], "miss");
    assert_eq!(fresh.json::<Value>().await.expect("a user")["name"], "Ada Lovelace");
    assert!(text(ada.page("/").await).await.contains("Ada Lovelace"), "the navigation bar follows the change");
    assert_problem(
        ada.json(Method::PATCH, &ada_url, json!({ "email": "not-an-email" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "email",
    )
    .await;
    let html_profile = text(ada.page(&ada_url).await).await;
    assert!(html_profile.contains("Ada Lovelace") && html_profile.contains("Edit profile"));
    assert!(
        text(ada.htmx(Method::GET, &format!("{ada_url}/edit")).send().await.expect("a form"))
            .await
            .starts_with("<form")
    );

    let eve = gateway.browser();
    let eve_user = eve.customer("Eve").await;
    let eve_url = format!("/users/{}", eve_user["id"]);
    assert_problem(ada.get_json(&eve_url).await, StatusCode::NOT_FOUND, "not found").await;
    assert_problem(
        ada.json(Method::PATCH, &eve_url, json!({ "name": "Pwned" })).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    assert_problem(ada.json(Method::DELETE, &eve_url, Value::Null).await, StatusCode::NOT_FOUND, "not found").await;
    assert_eq!(eve.get_json(&eve_url).await.json::<Value>().await.expect("a user")["name"], "Eve");
    assert_problem(gateway.browser().get_json(&eve_url).await, StatusCode::UNAUTHORIZED, "sign in").await;

    // Signing out, and leaving.
    assert_eq!(eve.json(Method::POST, "/users/logout", Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(eve.get_json(&eve_url).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(ada.json(Method::DELETE, &ada_url, Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(ada.get_json(&ada_url).await.status(), StatusCode::UNAUTHORIZED, "deleting yourself signs you out");
    let gone = gateway
        .browser()
        .json(Method::POST, "/users/login", json!({ "email": "ada@example.com", "password": PASSWORD }))
        .await;
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_become_orders_that_admins_move_along() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Green tea", 450, 10).await;
    let pot = admin.product("Teapot", 3_200, 1).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;

    // The cart, as JSON and as a page; anyone may fill one.
    let added = carol.json(Method::POST, "/cart/items", json!({ "product_id": tea, "quantity": 2 })).await;
    assert_eq!(added.status(), StatusCode::OK);
    assert_eq!(
        carol.form(Method::POST, "/cart/items", &[("product_id", &pot.to_string())]).await.status(),
        StatusCode::SEE_OTHER
    );
    let tea_id = tea.to_string();
    let badge = carol
        .htmx(Method::POST, "/cart/items")
        .form(&[("product_id", tea_id.as_str()), ("quantity", "1")])
        .send()
        .await
        .expect("an answer");
    let badge = text(badge).await;
    assert!(badge.contains("hx-swap-oob=\"true\">4</span>"), "{badge}");
    let cart: Value = carol.get_json("/cart").await.json().await.expect("a cart");
    assert_eq!((cart["count"].as_i64(), cart["total_minor"].as_i64()), (Some(4), Some(3 * 450 + 3_200)));
    assert!(text(carol.page("/cart").await).await.contains(r#"href="/checkout""#), "the cart leads to checkout");
    assert_problem(
        carol.json(Method::POST, "/cart/items", json!({ "product_id": 999_999 })).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    assert_problem(
        carol.json(Method::POST, "/cart/items", json!({ "product_id": tea, "quantity": 0 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "quantity",
    )
    .await;
    assert_problem(
        carol.json(Method::POST, "/cart/items", json!({ "quantity": 1 })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "product_id",
    )
    .await;
    let anonymous_cart = gateway.browser();
    assert_eq!(
        anonymous_cart.json(Method::POST, "/cart/items", json!({ "product_id": tea })).await.status(),
        StatusCode::OK
    );
    assert_eq!(anonymous_cart.json(Method::POST, "/orders", json!({})).await.status(), StatusCode::UNAUTHORIZED);

    // Checkout from the cart, in steps: the order is inventory's prices plus
    // the delivery (€4.90), the cart empties.
    let method = admin.delivery_method().await;
    carol.choose_delivery(method).await;
    let placed = carol.place_order("cart-checkout-1").await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let confirmation = location(&placed);
    let order_url = confirmation.strip_suffix("/confirmation").expect("the order's confirmation page").to_owned();
    assert!(order_url.starts_with("/orders/"), "{confirmation}");
    let order: Value = carol.get_json(&order_url).await.json().await.expect("an order");
    assert_eq!(
        (order["status"].as_str(), order["delivery_minor"].as_i64(), order["total_minor"].as_i64()),
        (Some("confirmed"), Some(490), Some(3 * 450 + 3_200 + 490))
    );
    assert_eq!(order["history"].as_array().map(Vec::len), Some(2));
    assert_eq!(carol.get_json("/cart").await.json::<Value>().await.expect("a cart")["count"], 0);
    assert_problem(carol.form_json_empty_checkout().await, StatusCode::UNPROCESSABLE_ENTITY, "cart is empty").await;
    assert_problem(
        carol.json(Method::POST, "/orders", Browser::cart_order(method)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "cart is empty",
    )
    .await;

    // Ordering with JSON: prices sent by the client are ignored.
    let by_json = carol
        .json(
            Method::POST,
            "/orders",
            json!({ "items": [{ "product_id": tea, "quantity": 1, "unit_price_minor": 1 }] }),
        )
        .await;
    assert_eq!(by_json.status(), StatusCode::CREATED);
    assert!(location(&by_json).starts_with("/orders/"));
    assert_eq!(by_json.json::<Value>().await.expect("an order")["total_minor"], 450);
    // A retried POST with the same Idempotency-Key is the same order.
    let keyed = |quantity: i64| {
        carol
            .request(Method::POST, "/orders")
            .header(ACCEPT, "application/json")
            .header("Idempotency-Key", "retry-me")
            .json(&json!({ "items": [{ "product_id": tea, "quantity": quantity }] }))
    };
    let first = keyed(1).send().await.expect("an answer");
    let second = keyed(1).send().await.expect("an answer");
    assert_eq!((first.status(), second.status()), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(location(&first), location(&second));
    let reused = keyed(2).send().await.expect("an answer");
    assert_problem(reused, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key").await;
    let cancel =
        carol.json(Method::PATCH, &format!("{}/status", location(&first)), json!({ "status": "cancelled" })).await;
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_problem(
        carol.json(Method::POST, "/orders", json!({ "items": [{ "product_id": pot, "quantity": 1 }] })).await,
        StatusCode::CONFLICT,
        "not enough stock",
    )
    .await;
    assert_problem(
        carol.json(Method::POST, "/orders", json!({ "items": [{ "product_id": 999_999, "quantity": 1 }] })).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    assert_problem(
        carol.json(Method::POST, "/orders", json!({ "items": [{ "product_id": tea, "quantity": -1 }] })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "quantity",
    )
    .await;
    assert_problem(
        carol.json(Method::POST, "/orders", json!({ "items": [] })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "items",
    )
    .await;
    assert_eq!(
        admin.get_json(&format!("/products/{tea}")).await.json::<Value>().await.expect("a product")["stock"],
        10 - 3 - 1,
        "stock read fresh after orders"
    );

    // Lists: a customer's own orders (two placed, one cancelled; the two
    // refused checkouts are not orders of hers); an admin's everyone's,
    // refusals included (issue 12).
    let mine: Value = carol.get_json("/orders").await.json().await.expect("a list");
    assert_eq!(mine["total"], 3, "two placed, one cancelled");
    let dave = gateway.browser();
    dave.customer("Dave").await;
    assert_eq!(dave.get_json("/orders").await.json::<Value>().await.expect("a list")["total"], 0);
    assert_problem(dave.get_json(&order_url).await, StatusCode::NOT_FOUND, "not found").await;
    assert_eq!(admin.get_json("/orders?page_size=100").await.json::<Value>().await.expect("a list")["total"], 5);
    let admin_page = text(admin.page("/orders").await).await;
    assert!(admin_page.contains("All orders") && admin_page.contains("status-form"));
    assert!(text(carol.page(&order_url).await).await.contains("Cancel order"));

    // Status: admins move orders along; customers may only cancel their own.
    let ship = json!({ "status": "shipped" });
    assert_problem(
        carol.json(Method::PATCH, &format!("{order_url}/status"), ship.clone()).await,
        StatusCode::FORBIDDEN,
        "not allowed",
    )
    .await;
    assert_problem(
        dave.json(Method::PATCH, &format!("{order_url}/status"), json!({ "status": "cancelled" })).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;
    let order_id = order["id"].as_i64().expect("an id");
    // An unpaid bank transfer waits for the money; marked paid, it ships.
    let unpaid = admin.json(Method::PATCH, &format!("{order_url}/status"), ship.clone()).await;
    assert_eq!(assert_problem(unpaid, StatusCode::CONFLICT, "").await["type"], "/problems/payment-required");
    let paid = admin.json(Method::POST, &format!("{order_url}/payment"), json!({ "state": "paid" })).await;
    assert_eq!(paid.json::<Value>().await.expect("an order")["payment_state"], "paid");
    let row = admin
        .htmx(Method::PATCH, &format!("{order_url}/status"))
        .header("HX-Target", format!("order-row-{order_id}"))
        .form(&[("status", "shipped")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(row.status(), StatusCode::OK);
    let row = text(row).await;
    assert!(row.starts_with(&format!("<tr id=\"order-row-{order_id}\"")) && row.contains(">shipped<"), "{row}");
    assert_problem(
        admin.json(Method::PATCH, &format!("{order_url}/status"), json!({ "status": "cancelled" })).await,
        StatusCode::CONFLICT,
        "cannot go from shipped",
    )
    .await;
    assert_problem(
        admin.json(Method::PATCH, &format!("{order_url}/status"), json!({ "status": "lost" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "status",
    )
    .await;
    let delivered = admin.json(Method::PATCH, &format!("{order_url}/status"), json!({ "status": "delivered" })).await;
    let delivered: Value = delivered.json().await.expect("an order");
    assert_eq!(delivered["history"].as_array().map(|h| h.len()), Some(4));
    assert!(delivered["history"][2]["actor"].as_str().is_some_and(|actor| actor.starts_with("user:")));

    // A customer cancels their own confirmed order; the stock comes back.
    let second = mine["orders"]
        .as_array()
        .and_then(|orders| orders.iter().find(|o| o["status"] == "confirmed" && o["id"] != order["id"]))
        .expect("the JSON order")
        .clone();
    let cancelled =
        carol.json(Method::PATCH, &format!("/orders/{}/status", second["id"]), json!({ "status": "cancelled" })).await;
    assert_eq!(cancelled.json::<Value>().await.expect("an order")["status"], "cancelled");
    assert_eq!(
        carol.get_json(&format!("/products/{tea}")).await.json::<Value>().await.expect("a product")["stock"],
        10 - 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers_and_pages_are_safe() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let browser = gateway.browser();

    let malformed = browser
        .request(Method::POST, "/users/register")
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("an answer");
    assert_problem(malformed, StatusCode::BAD_REQUEST, "malformed JSON").await;
    let wrong_type = browser
        .request(Method::POST, "/users/register")
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .body("{\"email\": 5}")
        .send()
        .await
        .expect("an answer");
    assert_problem(wrong_type, StatusCode::BAD_REQUEST, "malformed JSON").await;
    let xml = browser
        .request(Method::POST, "/users/login")
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/xml")
        .body("<a/>")
        .send()
        .await
        .expect("an answer");
    assert_problem(xml, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json").await;
    let huge = browser
        .request(Method::POST, "/users/register")
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(100_000)))
        .send()
        .await
        .expect("an answer");
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_problem(browser.get_json("/no/such/page").await, StatusCode::NOT_FOUND, "no page").await;
    let html_404 = browser.page("/no/such/page").await;
    assert_eq!(html_404.status(), StatusCode::NOT_FOUND);
    assert!(text(html_404).await.starts_with("<!doctype html>"));
    let htmx_error = browser.htmx(Method::GET, "/products/424242").send().await.expect("an answer");
    assert_eq!(htmx_error.status(), StatusCode::NOT_FOUND);
    assert_eq!(htmx_error.headers()["hx-retarget"], "#flash");
    assert!(text(htmx_error).await.starts_with("<div class=\"alert alert-error\""));

    // Script payloads are shown as text, everywhere they appear.
    let payload = "<script>alert('x')</script>";
    let id = admin.product(payload, 100, 1).await;
    for path in ["/", "/products", &format!("/products/{id}")] {
        let html = text(browser.page(path).await).await;
        assert!(!html.contains(payload) && html.contains("&lt;script&gt;"), "{path} shows the payload raw");
    }
    browser.register(payload, "script@example.com").await;
    let home = text(browser.page("/").await).await;
    assert!(!home.contains(payload), "the navigation bar shows the name raw");

    // Assets are embedded, cacheable for a year, and revalidate by ETag.
    let css = browser.page("/static/style.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()[CONTENT_TYPE], "text/css");
    assert!(css.headers()["cache-control"].to_str().is_ok_and(|v| v.contains("immutable")));
    let etag = css.headers()["etag"].clone();
    let again = browser.request(Method::GET, "/static/htmx.min.js").send().await.expect("htmx");
    assert!(again.headers()[CONTENT_TYPE].to_str().is_ok_and(|v| v.contains("javascript")));
    let revalidated = browser
        .request(Method::GET, "/static/style.css")
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("an answer");
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert!(home.contains("/static/style.css?v="), "pages link assets by content hash");
    assert_eq!(browser.page("/static/nothing.js").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_json_endpoint_of_the_seed() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let doc: Value = gateway.browser().get_json("/openapi.json").await.json().await.expect("a document");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let seed = [
        ("/products", "get"),
        ("/products", "post"),
        ("/products/{id}", "get"),
        ("/products/{id}", "put"),
        ("/products/{id}", "delete"),
        ("/orders", "get"),
        ("/orders", "post"),
        ("/orders/{id}", "get"),
        ("/orders/{id}/status", "patch"),
        ("/users", "get"),
        ("/users/{id}", "get"),
        ("/users/{id}", "patch"),
        ("/users/{id}", "delete"),
        ("/users/register", "post"),
        ("/users/login", "post"),
        ("/users/logout", "post"),
    ];
    for (path, method) in seed {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    assert!(doc["components"]["schemas"]["ProblemBody"].is_object());
}

trait EmptyCheckout {
    async fn form_json_empty_checkout(&self) -> reqwest::Response;
}

impl EmptyCheckout for Browser {
    /// A JSON client posting the review step's form (the terms ticked) with
    /// an empty cart.
    async fn form_json_empty_checkout(&self) -> reqwest::Response {
        self.request(Method::POST, "/checkout")
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("idempotency_key=empty-cart-1&terms=on")
            .send()
            .await
            .expect("an answer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_other_sites_and_guessing_runs_are_refused() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;

    // Every response carries the security headers, errors included.
    for path in ["/", "/no/such/page"] {
        let page = admin.page(path).await;
        let csp = page.headers()["content-security-policy"].to_str().expect("a header").to_owned();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.headers()["x-content-type-options"], "nosniff");
        assert_eq!(page.headers()["referrer-policy"], "same-origin");
    }

    // A forged cross-site post, as a form, as HTMX and as JSON: refused,
    // nothing made, the victim still signed in.
    let forged = admin
        .request(Method::POST, "/products")
        .header("Origin", "https://evil.example")
        .form(&[("name", "Forged"), ("price", "1.00")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged_json = admin
        .request(Method::POST, "/products")
        .header(ACCEPT, "application/json")
        .header("Sec-Fetch-Site", "cross-site")
        .json(&json!({ "name": "Forged", "price_minor": 100, "stock": 1 }))
        .send()
        .await
        .expect("an answer");
    assert_problem(forged_json, StatusCode::FORBIDDEN, "another site").await;
    let forged_logout =
        admin.request(Method::POST, "/users/logout").header("Origin", "null").header("HX-Request", "true").send().await;
    assert_eq!(forged_logout.expect("an answer").status(), StatusCode::FORBIDDEN);
    let list: Value = admin.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 0, "nothing was made");
    assert_eq!(admin.get_json("/orders").await.status(), StatusCode::OK, "still signed in");
    let same_site = admin
        .request(Method::POST, "/products")
        .header("Origin", gateway.url.clone())
        .header(ACCEPT, "application/json")
        .json(&json!({ "name": "Real", "price_minor": 100, "stock": 1 }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(same_site.status(), StatusCode::CREATED, "our own pages may write");

    // A guessing run against one account is cut off, with Retry-After;
    // the right password does not get through meanwhile either.
    let victim = gateway.browser();
    victim.register("Victim", "victim@example.com").await;
    let attacker = gateway.browser();
    let mut statuses = Vec::new();
    for attempt in 0..12 {
        let guess = json!({ "email": "victim@example.com", "password": format!("guess number {attempt}") });
        statuses.push(attacker.json(Method::POST, "/users/login", guess).await.status());
    }
    assert!(statuses[..10].iter().all(|s| *s == StatusCode::UNAUTHORIZED), "{statuses:?}");
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    let right = attacker
        .json(Method::POST, "/users/login", json!({ "email": "victim@example.com", "password": PASSWORD }))
        .await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = right.headers()["retry-after"].to_str().expect("a header").parse().expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_problem(right, StatusCode::TOO_MANY_REQUESTS, "too many attempts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_with_a_new_password_a_deleted_account_or_old_age() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;

    // Ada signs in on two devices, then changes her password on one.
    let laptop = gateway.browser();
    let ada = laptop.register("Ada", "ada@example.com").await;
    let phone = gateway.browser();
    let login = json!({ "email": "ada@example.com", "password": PASSWORD });
    assert_eq!(phone.json(Method::POST, "/users/login", login).await.status(), StatusCode::OK);
    let profile = format!("/users/{}", ada["id"]);
    let changed = laptop.json(Method::PATCH, &profile, json!({ "password": "a brand new password" })).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(laptop.get_json("/orders").await.status(), StatusCode::OK, "the device that changed it stays in");
    assert_eq!(phone.get_json("/orders").await.status(), StatusCode::UNAUTHORIZED, "the other device is out");

    // An admin deletes Eve's account: her session ends at once.
    let eve = gateway.browser();
    let eve_user = eve.register("Eve", "eve@example.com").await;
    assert_eq!(eve.get_json("/orders").await.status(), StatusCode::OK);
    let deleted = admin.json(Method::DELETE, &format!("/users/{}", eve_user["id"]), Value::Null).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(eve.get_json("/orders").await.status(), StatusCode::UNAUTHORIZED);

    // However busy, a session ends at its absolute lifetime.
    let short = in_process::Gateway::start_adjusted(&shop, &[], |gateway| {
        // Long enough for the first request after signing up to find the
        // session alive on a busy machine; short enough to wait out.
        gateway.session_lifetime = std::time::Duration::from_millis(1500);
    })
    .await;
    let brief = short.browser();
    brief.register("Brief", "brief@example.com").await;
    assert_eq!(brief.get_json("/orders").await.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    while brief.get_json("/orders").await.status() == StatusCode::OK {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the session outlived its lifetime");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checkout_says_why_and_the_next_try_is_a_new_order() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let pot = admin.product("Teapot", 3_200, 1).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;
    carol.json(Method::POST, "/cart/items", json!({ "product_id": pot, "quantity": 1 })).await;
    carol.choose_delivery(admin.delivery_method().await).await;
    let review = text(carol.page("/checkout/review").await).await;
    assert!(review.contains(r#"id="checkout-key""#), "the review's key can be replaced: {review}");
    // Sold out after it went into the cart: nothing in it can be ordered.
    admin.json(Method::PUT, &format!("/products/{pot}"), json!({ "stock_delta": -1 })).await;

    let refused = carol
        .htmx(Method::POST, "/checkout")
        .form(&[("idempotency_key", "cart-render-1"), ("terms", "on")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(refused.headers()["hx-retarget"], "#flash");
    let body = text(refused).await;
    assert!(body.contains("Nothing in your cart can be ordered now"), "{body}");
    assert!(body.contains("Teapot is out of stock"), "the product by its name, not its id: {body}");
    assert!(body.contains(r#"id="checkout-key""#) && body.contains(r#"hx-swap-oob="true""#), "{body}");
    assert!(!body.contains("Conflict."), "no HTTP wording in a message: {body}");
    let fresh_key = body.split(r#"value=""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a new key");
    assert_ne!(fresh_key, "cart-render-1");

    // Restocked, the form's new key places a new order.
    admin.json(Method::PUT, &format!("/products/{pot}"), json!({ "stock_delta": 5 })).await;
    let placed = carol
        .htmx(Method::POST, "/checkout")
        .form(&[("idempotency_key", fresh_key), ("terms", "on")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(placed.status(), StatusCode::NO_CONTENT);
    let to = placed.headers()["hx-redirect"].to_str().expect("a redirect").to_owned();
    assert!(to.starts_with("/orders/") && to.ends_with("/confirmation"), "{to}");
    let order: Value = carol.get_json(to.trim_end_matches("/confirmation")).await.json().await.expect("an order");
    assert_eq!((order["status"].as_str(), order["total_minor"].as_i64()), (Some("confirmed"), Some(3_200 + 490)));

    // Pages are never served from a cache, and say they vary by representation.
    let cart = carol.page("/cart").await;
    assert_eq!(cart.headers()["cache-control"], "no-store");
    assert_eq!(cart.headers()["vary"], "HX-Request, Accept");
    let css = carol.page("/static/style.css").await;
    assert!(css.headers()["cache-control"].to_str().is_ok_and(|v| v.contains("immutable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_shaped_and_malformed_input_is_refused_or_kept_as_data() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;

    // SQL-shaped text is stored and shown as the text it is; nothing else moves.
    let bobby = gateway.browser();
    let name = "Robert'); DROP TABLE users;--";
    let user = bobby.register(name, "bobby@example.com").await;
    assert_eq!(user["name"], name);
    let id = admin.product("x' OR '1'='1", 100, 1).await;
    let product: Value = bobby.get_json(&format!("/products/{id}")).await.json().await.expect("a product");
    assert_eq!(product["name"], "x' OR '1'='1");
    let list: Value = bobby.get_json("/products?page=1&page_size=20").await.json().await.expect("a list");
    assert_eq!(list["total"], 1, "the quote did not widen any query");
    let again = gateway.browser();
    let login = json!({ "email": "bobby@example.com", "password": PASSWORD });
    assert_eq!(
        again.json(Method::POST, "/users/login", login).await.status(),
        StatusCode::OK,
        "the users table is intact"
    );
    let page = text(bobby.page("/").await).await;
    assert!(
        page.contains("Robert&#x27;); DROP TABLE users;--") || page.contains("Robert&#39;); DROP TABLE users;--"),
        "{page}"
    );

    // Malformed forms and wrong types: a 400 that says so, nothing written.
    let bad_form = admin
        .request(Method::POST, "/products")
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("name=Lamp&price_minor=cheap&stock=%ZZ")
        .send()
        .await
        .expect("an answer");
    assert_problem(bad_form, StatusCode::BAD_REQUEST, "malformed form").await;
    let nested = admin.json(Method::POST, "/orders", json!({ "items": "all of them" })).await;
    assert_problem(nested, StatusCode::BAD_REQUEST, "malformed JSON").await;
    let huge_number = admin.json(Method::POST, "/cart/items", json!({ "product_id": id, "quantity": 1e30 })).await;
    assert_eq!(huge_number.status(), StatusCode::BAD_REQUEST);
    let list: Value = admin.get_json("/products").await.json().await.expect("a list");
    assert_eq!(list["total"], 1);
    assert_eq!(admin.get_json("/orders").await.json::<Value>().await.expect("a list")["total"], 0);
}

/// Posts `fields` as a form without scripts: the answer is a 303 to `to`,
/// whose page says `message`, once.
async fn posts(who: &Browser, path: &str, fields: &[(&str, &str)], to: &str, message: &str) {
    let answer = who.form(Method::POST, path, fields).await;
    assert_eq!((answer.status(), location(&answer).as_str()), (StatusCode::SEE_OTHER, to), "POST {path}");
    let page = text(who.page(to).await).await;
    assert!(page.contains(message), "{to} does not say {message:?}:\n{page}");
    assert!(!text(who.page(to).await).await.contains(message), "{to} says {message:?} twice");
}

/// Every change the JSON API makes with PUT, PATCH or DELETE is also a plain
/// form POST (for browsers without scripts), served by the same handler: a
/// 303 to the page that shows the result, which tells what happened once;
/// with htmx the same POST answers with the partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_also_a_plain_form_post() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Green tea", 450, 10).await;
    let pot = admin.product("Teapot", 3_200, 3).await;
    let carol = gateway.browser();
    let me = carol.customer("Carol").await["id"].as_i64().expect("an id");

    // The cart: add, then remove a line.
    let (tea_id, pot_id) = (tea.to_string(), pot.to_string());
    posts(&carol, "/cart/items", &[("product_id", &tea_id)], "/cart", "Added 1 × Green tea").await;
    posts(&carol, "/cart/items", &[("product_id", &pot_id)], "/cart", "Added 1 × Teapot").await;
    posts(&carol, &format!("/cart/items/{pot}/delete"), &[], "/cart", "Removed Teapot from your cart.").await;
    let cart: Value = carol.get_json("/cart").await.json().await.expect("a cart");
    assert_eq!(cart["count"], 1);

    // An order (each checkout step a plain form, see `choose_delivery`), and
    // the customer cancels it.
    carol.choose_delivery(admin.delivery_method().await).await;
    let placed = carol.place_order("form-post-1").await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    let confirmation = location(&placed);
    assert!(text(carol.page(&confirmation).await).await.contains("is confirmed"));
    let order = confirmation.strip_suffix("/confirmation").expect("the order's confirmation page").to_owned();
    let status = format!("{order}/status");
    posts(&carol, &status, &[("status", "cancelled")], &order, "is now cancelled").await;

    // The profile: a change, a bad change shown again with its error.
    let profile = format!("/users/{me}");
    let fields = [("name", "Carol Renamed"), ("email", "carol@example.com"), ("password", "")];
    posts(&carol, &profile, &fields, &profile, "The profile was saved.").await;
    let renamed: Value = carol.get_json(&profile).await.json().await.expect("a profile");
    assert_eq!(renamed["name"], "Carol Renamed");
    let bad = carol.form(Method::POST, &profile, &[("name", ""), ("email", "carol@example.com")]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(bad).await.contains("profile-name-error"));
    let partial = carol.htmx(Method::POST, &profile).form(&[("name", "Carol Again")]).send().await.expect("an answer");
    assert_eq!(partial.status(), StatusCode::OK);
    let partial = text(partial).await;
    assert!(partial.starts_with("<section id=\"profile\"") && partial.contains("Carol Again"), "{partial}");
    assert!(
        partial.contains(r#"id="flash""#) && partial.contains("The profile was saved."),
        "the message comes along: {partial}"
    );

    // The admin: a product changed and deleted; an order moved on from the list.
    let tea_url = format!("/products/{tea}");
    let fields = [("name", "Green tea"), ("price", "5.00"), ("stock_delta", "2")];
    posts(&admin, &tea_url, &fields, &tea_url, "Saved Green tea.").await;
    let changed: Value = admin.get_json(&tea_url).await.json().await.expect("a product");
    assert_eq!((changed["price_minor"].as_i64(), changed["stock"].as_i64()), (Some(500), Some(12)));
    let customers_try = carol.form(Method::POST, &format!("{tea_url}/delete"), &[]).await;
    assert_eq!(customers_try.status(), StatusCode::FORBIDDEN);
    posts(&admin, &format!("/products/{pot}/delete"), &[], "/products", "The product was deleted.").await;
    assert_eq!(admin.get_json(&format!("/products/{pot}")).await.status(), StatusCode::NOT_FOUND);
    let deleted_by_htmx = admin.htmx(Method::POST, &format!("{tea_url}/delete")).send().await.expect("an answer");
    assert!(text(deleted_by_htmx).await.contains("The product was deleted."));

    let cup = admin.product("Cup", 300, 5).await;
    let another = location(
        &carol.json(Method::POST, "/orders", json!({ "items": [{ "product_id": cup, "quantity": 1 }] })).await,
    );
    posts(
        &admin,
        &format!("{another}/status"),
        &[("status", "shipped"), ("next", "/orders")],
        "/orders",
        "is now shipped",
    )
    .await;
    // `next` stays on this site.
    let elsewhere = admin
        .form(Method::POST, &format!("{another}/status"), &[("status", "delivered"), ("next", "//evil.example")])
        .await;
    assert_eq!(location(&elsewhere), "/");

    // And the account goes: signed out, told so on the home page.
    posts(&carol, &format!("{profile}/delete"), &[], "/", "The account was deleted.").await;
    assert_eq!(carol.get_json("/orders").await.status(), StatusCode::UNAUTHORIZED);

    // A cross-site form post is refused like any other write.
    let forged = admin
        .request(Method::POST, &format!("{another}/status"))
        .header("origin", "https://evil.example")
        .form(&[("status", "cancelled")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

/// What each viewer may do with an order is the order service's answer
/// (`allowed_transitions`), shown as it is: the admin's status menu, the
/// customer's Cancel button and `next_statuses` in JSON, for every status;
/// another customer does not see the order at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_viewer_sees_what_they_may_do_with_an_order() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Tea", 450, 10).await;
    let (carol, dave) = (gateway.browser(), gateway.browser());
    carol.customer("Carol").await;
    dave.customer("Dave").await;
    let order = |quantity: i64| {
        let carol = &carol;
        async move {
            let placed = carol
                .json(Method::POST, "/orders", json!({ "items": [{ "product_id": tea, "quantity": quantity }] }))
                .await;
            assert_eq!(placed.status(), StatusCode::CREATED);
            location(&placed)
        }
    };
    let moved = |url: String, to: &'static str| {
        let admin = &admin;
        async move {
            assert_eq!(
                admin.json(Method::PATCH, &format!("{url}/status"), json!({ "status": to })).await.status(),
                StatusCode::OK
            )
        }
    };
    let confirmed = order(1).await;
    let shipped = order(1).await;
    moved(shipped.clone(), "shipped").await;
    let delivered = order(1).await;
    moved(delivered.clone(), "shipped").await;
    moved(delivered.clone(), "delivered").await;
    let cancelled = order(1).await;
    assert_eq!(
        carol.json(Method::PATCH, &format!("{cancelled}/status"), json!({ "status": "cancelled" })).await.status(),
        StatusCode::OK
    );
    // More than there is: kept as rejected, and the problem says so by its type.
    let refused =
        carol.json(Method::POST, "/orders", json!({ "items": [{ "product_id": tea, "quantity": 1000 }] })).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(refused.json::<Value>().await.expect("a problem")["type"], "/problems/order-rejected");
    // Kept for the shop's record (the admin's list), not in the customer's.
    let everyone: Value = admin.get_json("/orders").await.json().await.expect("a list");
    let rejected = everyone["orders"]
        .as_array()
        .and_then(|orders| orders.iter().find(|o| o["status"] == "rejected"))
        .map(|o| format!("/orders/{}", o["id"]))
        .expect("the rejected order is kept");
    let mine: Value = carol.get_json("/orders").await.json().await.expect("a list");
    assert_eq!(mine["total"], 4, "a refused checkout is not one of her orders");
    assert!(mine["orders"].as_array().is_some_and(|orders| orders.iter().all(|o| o["status"] != "rejected")));

    let expected: [(&str, &[&str], &[&str]); 5] = [
        (&confirmed, &["shipped", "cancelled"], &["cancelled"]),
        (&shipped, &["delivered"], &[]),
        (&delivered, &[], &[]),
        (&cancelled, &[], &[]),
        (&rejected, &[], &[]),
    ];
    for (url, admin_may, customer_may) in expected {
        let as_admin: Value = admin.get_json(url).await.json().await.expect("an order");
        assert_eq!(as_admin["next_statuses"], json!(admin_may), "the admin, {} order", as_admin["status"]);
        let as_owner: Value = carol.get_json(url).await.json().await.expect("an order");
        assert_eq!(as_owner["next_statuses"], json!(customer_may), "the owner, {} order", as_owner["status"]);
        let stranger = dave.get_json(url).await;
        assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
        assert_eq!(stranger.json::<Value>().await.expect("a problem")["type"], "/problems/order-not-found");

        let admin_page = text(admin.page(url).await).await;
        assert_eq!(admin_page.contains("status-form"), !admin_may.is_empty(), "{url}");
        for status in admin_may {
            assert!(admin_page.contains(&format!(r#"<option value="{status}">"#)), "{url} offers {status}");
        }
        let owner_page = text(carol.page(url).await).await;
        assert_eq!(owner_page.contains("Cancel order"), !customer_may.is_empty(), "{url}");
        assert!(!owner_page.contains("status-form"), "a customer has no status menu");
    }
    // What the service refuses is refused whatever the page offered.
    let forbidden = carol.json(Method::PATCH, &format!("{shipped}/status"), json!({ "status": "delivered" })).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let backwards = admin.json(Method::PATCH, &format!("{delivered}/status"), json!({ "status": "shipped" })).await;
    assert_eq!(backwards.status(), StatusCode::CONFLICT);
    assert_eq!(backwards.json::<Value>().await.expect("a problem")["type"], "/problems/transition-forbidden");
    let problem_page = text(admin.page("/problems/transition-forbidden").await).await;
    assert!(problem_page.contains("cannot move to that status"));
}

/// Pages, styles and JSON travel compressed when the client accepts it; the
/// icon is there; a price may be typed with a decimal comma.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_light_and_prices_take_either_decimal_mark() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    for (path, accept) in [("/", "text/html"), ("/static/style.css", "text/css"), ("/products", "application/json")] {
        for encoding in ["gzip", "br"] {
            let answer = admin
                .request(Method::GET, path)
                .header(ACCEPT, accept)
                .header("accept-encoding", encoding)
                .send()
                .await
                .expect("an answer");
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            assert_eq!(answer.headers()["content-encoding"], encoding, "{path}");
        }
    }
    let plain = admin.page("/").await;
    assert!(plain.headers().get("content-encoding").is_none(), "uncompressed for a client that asks for nothing");

    let icon = admin.request(Method::GET, "/favicon.ico").send().await.expect("an answer");
    assert_eq!(icon.status(), StatusCode::TEMPORARY_REDIRECT);
    let to = location(&icon);
    assert!(to.starts_with("/static/favicon.svg?v="), "{to}");
    let svg = admin.request(Method::GET, &to).send().await.expect("an answer");
    assert_eq!((svg.status(), svg.headers()["content-type"].to_str().ok()), (StatusCode::OK, Some("image/svg+xml")));

    let created =
        admin.form(Method::POST, "/products", &[("name", "Kettle"), ("price", "29,90"), ("stock", "3")]).await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    let kettle: Value = admin.get_json(&location(&created)).await.json().await.expect("a product");
    assert_eq!(kettle["price_minor"], 2990);
}

/// A cart says plainly what changed since things were put in it: a product
/// no longer sold is taken out (once, with a message), a line beyond the
/// stock says how many are left; a refused checkout names the product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_tells_what_changed_since() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Green tea", 450, 10).await;
    let pot = admin.product("Teapot", 3_200, 2).await;
    let gone = admin.product("Old mug", 900, 5).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;
    for (product, quantity) in [(tea, 1), (pot, 2), (gone, 1)] {
        let added =
            carol.json(Method::POST, "/cart/items", json!({ "product_id": product, "quantity": quantity })).await;
        assert_eq!(added.status(), StatusCode::OK);
    }
    assert_eq!(
        admin.json(Method::DELETE, &format!("/products/{gone}"), Value::Null).await.status(),
        StatusCode::NO_CONTENT
    );
    admin.json(Method::PUT, &format!("/products/{pot}"), json!({ "stock_delta": -1 })).await;

    let page = text(carol.page("/cart").await).await;
    assert!(page.contains("Old mug") && page.contains("No longer sold"), "{page}");
    assert!(page.contains("Only 1 left"), "{page}");
    let cart: Value = carol.get_json("/cart").await.json().await.expect("a cart");
    assert_eq!((cart["gone"].as_array().map(Vec::len), cart["lines"].as_array().map(Vec::len)), (Some(1), Some(2)));

    // Checkout orders what can be ordered and names what stayed in the cart.
    carol.choose_delivery(admin.delivery_method().await).await;
    let review = text(carol.page("/checkout/review").await).await;
    let left_out = review.split("Not in this order").nth(1).unwrap_or_default();
    assert!(left_out.contains("Teapot") && left_out.contains("Old mug"), "the review names what stays: {review}");
    let placed = carol.place_order("cart-changed-1").await;
    assert_eq!(placed.status(), StatusCode::SEE_OTHER);
    assert!(location(&placed).ends_with("/confirmation"), "{}", location(&placed));
    let told = text(carol.page(&location(&placed)).await).await;
    assert!(told.contains("Only 1 Teapot left and Old mug is no longer sold: they stayed in your cart."), "{told}");
    // As before that checkout, less the line no longer sold.
    carol.json(Method::DELETE, &format!("/cart/items/{gone}"), Value::Null).await;
    carol.json(Method::POST, "/cart/items", json!({ "product_id": tea, "quantity": 1 })).await;

    // Quantities change in place, at most what is in stock, by name.
    let too_many = carol.json(Method::PUT, &format!("/cart/items/{pot}"), json!({ "quantity": 2 })).await;
    assert_problem(too_many, StatusCode::UNPROCESSABLE_ENTITY, "Teapot: only 1 left").await;
    let fixed = carol.json(Method::PUT, &format!("/cart/items/{pot}"), json!({ "quantity": 1 })).await;
    let fixed: Value = fixed.json().await.expect("a cart");
    assert_eq!(fixed["count"], 2);
    posts(&carol, &format!("/cart/items/{tea}"), &[("quantity", "3")], "/cart", "Green tea: 3 in your cart.").await;
    let none = carol.json(Method::PUT, &format!("/cart/items/{tea}"), json!({ "quantity": 0 })).await;
    assert_eq!(none.json::<Value>().await.expect("a cart")["count"], 1, "0 takes the line out");

    // The checkout form sent twice (a double click without scripts): the
    // second lands on the order the first placed, not on "your cart is empty".
    assert_eq!(
        carol.json(Method::PUT, &format!("/cart/items/{tea}"), json!({ "quantity": 1 })).await.status(),
        StatusCode::OK
    );
    let first = carol.place_order("twice-1").await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert!(location(&first).ends_with("/confirmation"), "{}", location(&first));
    let second = carol.place_order("twice-1").await;
    assert_eq!((second.status(), location(&second)), (StatusCode::SEE_OTHER, location(&first)));

    // Only a rejection renews the form's key: any other failure keeps it, so
    // trying again is the same order, never a second one.
    let placed = carol
        .json(
            Method::POST,
            "/orders",
            json!({ "items": [{ "product_id": tea, "quantity": 1 }], "idempotency_key": "kept-1" }),
        )
        .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let cart = carol.json(Method::PUT, &format!("/cart/items/{tea}"), json!({ "quantity": 2 })).await;
    assert_eq!(cart.status(), StatusCode::OK, "a cart other than that order");
    let reused = carol
        .htmx(Method::POST, "/checkout")
        .form(&[("idempotency_key", "kept-1"), ("terms", "on")])
        .send()
        .await
        .expect("an answer");
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reused = text(reused).await;
    assert!(reused.contains("idempotency_key") && !reused.contains("checkout-key"), "{reused}");
}

/// A fresh shop offers its admin the demo catalogue on the home page; it is
/// loaded once, by a plain form, and nobody else may load it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_loads_the_demo_catalogue_into_an_empty_shop() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;
    assert!(text(admin.page("/").await).await.contains("Load the demo catalogue"));
    assert!(!text(carol.page("/").await).await.contains("Load the demo catalogue"));
    assert_eq!(carol.form(Method::POST, "/products/demo", &[]).await.status(), StatusCode::FORBIDDEN);

    posts(&admin, "/products/demo", &[], "/products", "demo products.").await;
    let list: Value = carol.get_json("/products?page_size=100").await.json().await.expect("a list");
    let total = list["total"].as_u64().unwrap_or(0);
    assert!(total >= 24, "a few dozen products, not {total}");
    assert!(!text(admin.page("/").await).await.contains("Load the demo catalogue"), "offered to an empty shop only");
    posts(&admin, "/products/demo", &[], "/products", "nothing was loaded").await;
    let again: Value = carol.get_json("/products").await.json().await.expect("a list");
    assert_eq!(again["total"].as_u64(), Some(total));
}

/// The ids of a JSON list of orders.
fn order_ids(list: &Value) -> Vec<i64> {
    list["orders"].as_array().map(|orders| orders.iter().filter_map(|o| o["id"].as_i64()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_paged_by_cursor_in_html_htmx_and_json() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let tea = admin.product("Tea", 450, 100).await;
    let (carol, dave) = (gateway.browser(), gateway.browser());
    let carol_id = carol.customer("Carol").await["id"].as_i64().expect("her id");
    dave.customer("Dave").await;
    let mut hers = Vec::new();
    for _ in 0..5 {
        hers.push(place(&carol, tea, 1).await.expect("her order"));
        place(&dave, tea, 1).await.expect("his order");
    }
    // A refused checkout: the admin's lists hold it, hers does not.
    assert_eq!(place(&carol, tea, 1_000).await, None);
    hers.reverse();

    // JSON, forward by `next`: every order once, newest first.
    let (mut seen, mut path) = (Vec::new(), Some("/orders?page_size=2".to_owned()));
    while let Some(at) = path {
        let page: Value = carol.get_json(&at).await.json().await.expect("a page");
        assert_eq!((&page["total"], &page["total_is_lower_bound"]), (&json!(5), &json!(false)));
        assert_eq!(page["has_previous"], json!(!seen.is_empty()));
        seen.extend(order_ids(&page));
        path = page["next"].as_str().map(str::to_owned);
        if let Some(next) = &path {
            let cursor = page["next_cursor"].as_str().expect("the cursor");
            assert_eq!(next, &format!("/orders?page_size=2&after={cursor}"));
            assert_eq!(page["last"], "/orders?page_size=2&last=1");
        }
    }
    assert_eq!(seen, hers);

    // Back from the last page by `previous`: the same orders.
    let (mut back, mut path) = (Vec::new(), Some("/orders?page_size=2&last=1".to_owned()));
    while let Some(at) = path {
        let page: Value = carol.get_json(&at).await.json().await.expect("a page");
        back.splice(0..0, order_ids(&page));
        path = page["previous"].as_str().map(str::to_owned);
        if path.is_some() {
            assert_eq!(page["first"], "/orders?page_size=2");
        }
    }
    assert_eq!(back, hers);
    let last: Value = carol.get_json("/orders?page_size=2&last=1").await.json().await.expect("a page");
    assert_eq!((order_ids(&last), &last["next"], &last["has_next"]), (hers[3..].to_vec(), &Value::Null, &json!(false)));

    // The admin's lists: everyone's, and Carol's with her refusal; the
    // filter stays in every link.
    let everyone: Value = admin.get_json("/orders?page_size=4").await.json().await.expect("a page");
    assert_eq!((everyone["total"].as_i64(), order_ids(&everyone).len()), (Some(11), 4));
    let filtered = format!("/orders?user_id={carol_id}&page_size=4");
    let theirs: Value = admin.get_json(&filtered).await.json().await.expect("a page");
    assert_eq!(theirs["total"], 6);
    let next = theirs["next"].as_str().expect("a next page");
    assert!(next.starts_with(&format!("{filtered}&after=")), "{next}");
    let rest: Value = admin.get_json(next).await.json().await.expect("a page");
    assert_eq!(order_ids(&rest), hers[3..]);

    // HTML: the count and the pager's plain links, which htmx swaps and pushes
    // (read with the template's escapes of `/` and `&` undone).
    let unescaped = |html: String| html.replace("&#x2f;", "/").replace("&amp;", "&");
    let page = unescaped(text(carol.page("/orders?page_size=2").await).await);
    assert!(page.starts_with("<!doctype html>") && page.contains("5 orders"), "{page}");
    let next = format!("/orders?page_size=2&after={}", seen_cursor(&carol, "/orders?page_size=2").await);
    assert!(page.contains(&format!("href=\"{next}\" hx-get=\"{next}\"")) && page.contains("rel=\"next\""), "{page}");
    assert!(page.contains("href=\"/orders?page_size=2&last=1\"") && !page.contains("rel=\"prev\""));
    let partial = unescaped(text(carol.htmx(Method::GET, &next).send().await.expect("an answer")).await);
    assert!(partial.contains("id=\"order-list\"") && !partial.contains("<!doctype html>"), "{partial}");
    assert!(partial.contains("href=\"/orders?page_size=2\"") && partial.contains(">First</a>"), "{partial}");
    assert!(partial.contains("rel=\"prev\"") && partial.contains("hx-push-url=\"true\""));
    let many = text(admin.page("/orders").await).await;
    assert!(many.contains("11 orders"), "the admin's count");

    // An old numbered link still answers, with cursor links onwards.
    let old: Value = carol.get_json("/orders?page=2&page_size=2").await.json().await.expect("a page");
    assert_eq!(order_ids(&old), hers[2..4]);
    assert!(old["next"].as_str().is_some_and(|next| next.contains("after=")));
    assert!(old["previous"].as_str().is_some_and(|previous| previous.contains("before=")));
    let past: Value = carol.get_json("/orders?page=9&page_size=2").await.json().await.expect("a page");
    assert_eq!((order_ids(&past), &past["next"]), (vec![], &Value::Null));
    assert!(text(carol.page("/orders?page=9&page_size=2").await).await.contains("See the newest"));

    // Bad positions are refused naming the field; a crafted cursor moves
    // Dave's page, never into Carol's orders.
    for (path, field) in [
        ("/orders?after=%3Cscript%3E", "after"),
        ("/orders?after=zz", "after"),
        ("/orders?before=i5.i6", "before"),
        ("/orders?after=i5&before=i9", "before"),
        ("/orders?after=i5&last=1", "last"),
        ("/orders?page=5002&page_size=2", "page"),
    ] {
        assert_problem(carol.get_json(path).await, StatusCode::UNPROCESSABLE_ENTITY, field).await;
    }
    for cursor in [format!("i{}", hers[0] + 1), "i9223372036854775807".to_owned(), "i-1".to_owned()] {
        for side in ["after", "before"] {
            let page: Value = dave.get_json(&format!("/orders?{side}={cursor}")).await.json().await.expect("a page");
            assert!(page["orders"].as_array().is_some_and(|orders| orders.iter().all(|o| o["user_id"] != carol_id)));
        }
    }
}

/// The id of an order of `quantity` of `product`, if it was placed.
async fn place(browser: &Browser, product: i64, quantity: i64) -> Option<i64> {
    let body = json!({ "items": [{ "product_id": product, "quantity": quantity }] });
    let placed = browser.json(Method::POST, "/orders", body).await;
    location(&placed).trim_start_matches("/orders/").parse::<i64>().ok()
}

/// The `next_cursor` of the JSON list at `path`.
async fn seen_cursor(browser: &Browser, path: &str) -> String {
    let page: Value = browser.get_json(path).await.json().await.expect("a page");
    page["next_cursor"].as_str().unwrap_or_default().to_owned()
}

/// Signing in gives the session a new id, so an id known before it (a
/// planted one, a guest's) is signed in to nothing; a client that came
/// without a session gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_the_session_a_new_id() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let email = format!("sid-{}@example.com", uuid::Uuid::new_v4().simple());
    gateway.browser().register("Sid", &email).await;
    // Cookies by hand: no jar.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let login = |session: Option<&str>| {
        let request = client
            .post(format!("{}/users/login", gateway.url))
            .header(ACCEPT, "application/json")
            .json(&json!({ "email": email, "password": PASSWORD }));
        match session {
            Some(session) => request.header(reqwest::header::COOKIE, format!("shop_session={session}")),
            None => request,
        }
        .send()
    };
    let orders_with = |session: &str| {
        client
            .get(format!("{}/orders", gateway.url))
            .header(ACCEPT, "application/json")
            .header(reqwest::header::COOKIE, format!("shop_session={session}"))
            .send()
    };
    let session_set_by = |response: &reqwest::Response| -> String {
        response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok()?.strip_prefix("shop_session="))
            .map(|cookie| cookie.split(';').next().unwrap_or_default().to_owned())
            .next()
            .expect("a session cookie")
    };

    let fresh = login(None).await.expect("the gateway answers");
    assert_eq!(fresh.status(), StatusCode::OK);
    let first = session_set_by(&fresh);
    assert_eq!(orders_with(&first).await.expect("answered").status(), StatusCode::OK, "signed in");

    let again = login(Some(&first)).await.expect("the gateway answers");
    assert_eq!(again.status(), StatusCode::OK);
    let second = session_set_by(&again);
    assert_ne!(second, first, "a new id at sign-in");
    assert_eq!(orders_with(&second).await.expect("answered").status(), StatusCode::OK);
    assert_eq!(orders_with(&first).await.expect("answered").status(), StatusCode::UNAUTHORIZED, "the old id is gone");
}
