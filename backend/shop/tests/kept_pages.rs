//! What the gateway does to answer fast must not change what it answers:
//! kept page fragments follow every change to what they show, each
//! audience keeps its own, and what answers nobody in particular (health,
//! assets, pictures) never makes a session.

mod in_process;

use in_process::Shop;
use in_process::browser::{Browser, text};
use reqwest::{Method, Response, StatusCode};
use serde_json::json;

fn cache_of(response: &Response) -> String {
    response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

/// The page at `path` (a full page, or HTMX's fragment) and whether a kept
/// fragment answered it.
async fn read(browser: &Browser, path: &str, htmx: bool) -> (String, String) {
    let response =
        if htmx { browser.htmx(Method::GET, path).send().await.expect("an answer") } else { browser.page(path).await };
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let cache = cache_of(&response);
    (text(response).await, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_pages_follow_every_change_and_each_audience_keeps_its_own() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let visitor = gateway.browser();
    let customer = gateway.browser();
    customer.customer("Casey").await;
    let id = admin.product("Teapot", 3450, 5).await;
    let product = format!("/products/{id}");

    for (path, htmx) in
        [(product.as_str(), false), (product.as_str(), true), ("/products", false), ("/products", true), ("/", false)]
    {
        let (first, _) = read(&visitor, path, htmx).await;
        let (again, cache) = read(&visitor, path, htmx).await;
        assert_eq!((again.as_str(), cache.as_str()), (first.as_str(), "hit"), "{path} (htmx: {htmx}) is kept");
        assert!(first.contains("Teapot") && !first.contains(">Delete<"), "{path}: {first}");
        // Another audience: the admin's controls, never the visitor's page.
        let (admins, _) = read(&admin, path, htmx).await;
        if path != "/" {
            assert!(admins.contains(">Delete<"), "{path} (htmx: {htmx}) for an admin");
        }
        // The same audience, another person: their own name and cart badge.
        let (customers, _) = read(&customer, path, htmx).await;
        assert!(!customers.contains(">Delete<"));
        if !htmx {
            assert!(customers.contains("Casey") && !first.contains("Casey"), "{path}: the navigation is the viewer's");
        }
    }

    // A change retires every kept page that shows the product, at once.
    let renamed = admin.json(Method::PUT, &product, json!({ "name": "Kettle", "stock_delta": -5 })).await;
    assert_eq!(renamed.status(), StatusCode::OK);
    for (path, htmx) in
        [(product.as_str(), false), (product.as_str(), true), ("/products", false), ("/products", true), ("/", false)]
    {
        let (page, _) = read(&visitor, path, htmx).await;
        assert!(page.contains("Kettle") && !page.contains("Teapot"), "{path} (htmx: {htmx}) after the change: {page}");
    }
    let (page, _) = read(&visitor, &product, false).await;
    assert!(page.contains("Out of stock"), "the stock shown follows too");

    // A message left for the next page is shown with a kept page, once.
    let added = admin.form(Method::POST, "/products", &[("name", "Cups"), ("price", "4.5"), ("stock", "10")]).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let (list, _) = read(&admin, "/products", false).await;
    assert!(list.contains("Cups") && list.contains("Added Cups"), "{list}");
    let (list, cache) = read(&admin, "/products", false).await;
    assert!(cache == "hit" && !list.contains("Added Cups"), "the message is shown once");

    // A deleted product's kept page is not shown again.
    assert_eq!(admin.json(Method::DELETE, &product, serde_json::Value::Null).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(visitor.page(&product).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_assets_and_pictures_never_make_a_session() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let visitor = gateway.browser();
    for path in ["/healthz", "/static/style.css", "/favicon.ico", "/images/0000"] {
        let response = visitor.request(Method::GET, path).header("Cookie", "shop_session=not-a-session").send().await;
        let response = response.expect("an answer");
        assert!(response.headers().get("set-cookie").is_none(), "{path} set a cookie");
        assert!(!response.status().is_server_error(), "{path}");
    }
    // A signed-in session's cookie is not refreshed by them either (the
    // session layer is not in their way at all), while a page refreshes it.
    let customer = gateway.browser();
    customer.customer("Casey").await;
    for path in ["/healthz", "/static/style.css"] {
        let response = customer.request(Method::GET, path).send().await.expect("an answer");
        assert!(response.headers().get("set-cookie").is_none(), "{path} touched the session");
    }
}
