//! The admins' delivery-methods screen (`/delivery-methods`): a page, htmx
//! partials and JSON on one URL, every change also a plain form post;
//! against the whole shop in this process.

mod in_process;

use in_process::Shop;
use in_process::browser::{assert_problem, location, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_keep_the_delivery_methods() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let carol = gateway.browser();
    carol.customer("Carol").await;
    let stranger = gateway.browser();

    // A fresh shop has none, and says what that means.
    let empty = text(admin.page("/delivery-methods").await).await;
    assert!(empty.contains("customers cannot check out until you add one"), "{empty}");

    // JSON: 201 with the method, amounts in both forms.
    let created = admin
        .json(
            Method::POST,
            "/delivery-methods",
            json!({ "name": "Standard", "price_minor": 490, "free_above_minor": 5000 }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let standard: Value = created.json().await.expect("a method");
    assert_eq!(
        (standard["price"].as_str(), standard["free_above"].as_str(), standard["active"].as_bool()),
        (Some("4.90"), Some("50.00"), Some(true))
    );
    let standard_url = format!("/delivery-methods/{}", standard["id"]);

    // A plain form: 303 back to the page, which says what happened once.
    let added = admin
        .form(Method::POST, "/delivery-methods", &[("name", "Express"), ("price", "9,90"), ("free_above", "")])
        .await;
    assert_eq!((added.status(), location(&added).as_str()), (StatusCode::SEE_OTHER, "/delivery-methods"));
    let page = text(admin.page("/delivery-methods").await).await;
    assert!(page.contains("Added the delivery method Express."), "{page}");
    assert!(page.contains("9.90") && page.contains("free from 50.00"), "{page}");

    // A bad form comes back with the field in error and what was typed.
    let bad = admin.form(Method::POST, "/delivery-methods", &[("name", "Cheap"), ("price", "-1")]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad = text(bad).await;
    assert!(bad.contains("delivery-method-price-error") && bad.contains("value=\"Cheap\""), "{bad}");
    let unnamed = admin.json(Method::POST, "/delivery-methods", json!({ "name": " ", "price_minor": 1 })).await;
    assert_problem(unnamed, StatusCode::UNPROCESSABLE_ENTITY, "name").await;

    // Edit by JSON (only what is sent), clear the threshold by a form.
    let renamed = admin.json(Method::PUT, &standard_url, json!({ "name": "Standard (3-5 days)" })).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let renamed: Value = renamed.json().await.expect("a method");
    assert_eq!((renamed["name"].as_str(), renamed["price_minor"].as_i64()), (Some("Standard (3-5 days)"), Some(490)));
    let cleared = admin
        .form(Method::POST, &standard_url, &[("name", "Standard (3-5 days)"), ("price", "4.90"), ("free_above", "")])
        .await;
    assert_eq!(cleared.status(), StatusCode::SEE_OTHER);
    let methods: Value = admin.get_json("/delivery-methods").await.json().await.expect("a list");
    assert_eq!(methods[0]["free_above_minor"], Value::Null);

    // Deactivated with htmx: the list comes back in place, with the message.
    let partial = admin.htmx(Method::POST, &standard_url).form(&[("active", "false")]).send().await.expect("an answer");
    assert_eq!(partial.status(), StatusCode::OK);
    let partial = text(partial).await;
    assert!(partial.contains("id=\"delivery-methods\"") && !partial.contains("<html"), "{partial}");
    assert!(partial.contains("not offered") && partial.contains("Offer again"), "{partial}");
    assert!(partial.contains("no longer offered at checkout"), "{partial}");
    let methods: Value = admin.get_json("/delivery-methods").await.json().await.expect("a list");
    assert_eq!(
        methods.as_array().map(|m| m.iter().map(|m| m["active"].as_bool()).collect::<Vec<_>>()),
        Some(vec![Some(false), Some(true)])
    );

    // Only admins; a method that does not exist is not found.
    assert_problem(carol.get_json("/delivery-methods").await, StatusCode::FORBIDDEN, "not allowed").await;
    assert_problem(
        carol.json(Method::POST, "/delivery-methods", json!({ "name": "Mine", "price_minor": 0 })).await,
        StatusCode::FORBIDDEN,
        "not allowed",
    )
    .await;
    assert_problem(stranger.get_json("/delivery-methods").await, StatusCode::UNAUTHORIZED, "sign in").await;
    let missing = admin.json(Method::PUT, "/delivery-methods/9999", json!({ "active": true })).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let not_an_id = admin.json(Method::PUT, "/delivery-methods/abc", json!({ "active": true })).await;
    assert_eq!(not_an_id.status(), StatusCode::NOT_FOUND);

    // In the OpenAPI document.
    let openapi: Value = stranger.get_json("/openapi.json").await.json().await.expect("the document");
    assert!(openapi["paths"]["/delivery-methods"]["post"].is_object());
    assert!(openapi["paths"]["/delivery-methods/{id}"]["put"].is_object());
}
