//! How many calls a page costs the services, counted by the shop's own
//! metrics (`grpc_server_handled_total` of the inventory service) around
//! one request to `shop all`.

mod support;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::json;
use support::{Process, Web, admin_on, shop};

/// Inventory calls handled so far, by method.
async fn inventory_calls(metrics_url: &str) -> BTreeMap<String, f64> {
    let text = reqwest::get(metrics_url).await.expect("metrics").text().await.expect("text");
    let mut calls = BTreeMap::new();
    for line in text.lines().filter(|line| line.starts_with("grpc_server_handled_total{")) {
        if !line.contains(r#"grpc_service="shop.inventory.v1.InventoryService""#) {
            continue;
        }
        let method = line.split(r#"grpc_method=""#).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("?");
        let count: f64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        *calls.entry(method.to_owned()).or_insert(0.0) += count;
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_page_makes_one_inventory_call_for_all_its_products() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let running = Process::start(shop(dir.path()), "gateway (HTTP) listening");
    let web = Web::new(running.addresses.gateway());
    admin_on(&web, dir.path(), "calls@example.com").await;
    for n in 0..7 {
        let product = json!({ "name": format!("Cup {n}"), "price_minor": 300 + n, "stock": 10 });
        let created = web.json(Method::POST, "/products", product).await;
        assert_eq!(created.status(), 201);
        let id = created.json::<serde_json::Value>().await.expect("a product")["id"].clone();
        assert_eq!(
            web.json(Method::POST, "/cart/items", json!({ "product_id": id, "quantity": 1 })).await.status(),
            200
        );
    }

    for representation in ["application/json", "text/html"] {
        let before = inventory_calls(&running.addresses.metrics()).await;
        let cart = web.client.get(format!("{}/cart", web.base)).header("Accept", representation).send().await;
        assert_eq!(cart.expect("an answer").status(), 200);
        let after = inventory_calls(&running.addresses.metrics()).await;
        let made: BTreeMap<&String, f64> = after
            .iter()
            .map(|(method, count)| (method, count - before.get(method).copied().unwrap_or(0.0)))
            .filter(|(_, made)| *made > 0.0)
            .collect();
        assert_eq!(
            made,
            BTreeMap::from([(&"GetProducts".to_owned(), 1.0)]),
            "a cart of 7 products as {representation}"
        );
    }
}
