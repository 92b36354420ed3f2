//! The catalogue through the gateway, as its clients meet it: categories,
//! search with filters and sort in the URL (HTML, partial and JSON alike),
//! pictures uploaded by multipart form and served by content hash.

mod in_process;

use in_process::Shop;
use in_process::browser::{Browser, assert_problem, location, text};
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A real PNG of `width` × `height`, a gradient (so it does not compress to nothing).
fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut bytes, image::ImageFormat::Png).expect("a PNG");
    bytes.into_inner()
}

fn upload(bytes: Vec<u8>, name: &str, alt: &str) -> Form {
    let file = Part::bytes(bytes).file_name(name.to_owned()).mime_str("image/png").expect("a MIME type");
    Form::new().text("alt", alt.to_owned()).part("image", file)
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON")
}

async fn category(admin: &Browser, name: &str) -> Value {
    let created = admin.json(Method::POST, "/categories", json!({ "name": name })).await;
    assert_eq!(created.status(), StatusCode::CREATED, "creating {name}");
    json_of(created).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_search_filters_and_sort_share_one_url() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    customer.customer("Casey").await;

    // Categories: admins keep them, names are unique whatever their case.
    let green = category(&admin, "Green tea").await;
    assert_eq!(green["slug"], "green-tea");
    let ware = category(&admin, "Teaware").await;
    let taken = admin.json(Method::POST, "/categories", json!({ "name": "green TEA" })).await;
    let problem = assert_problem(taken, StatusCode::CONFLICT, "already exists").await;
    assert_eq!(problem["type"], "/problems/category-name-taken");
    assert_problem(
        customer.json(Method::POST, "/categories", json!({ "name": "Mine" })).await,
        StatusCode::FORBIDDEN,
        "not allowed",
    )
    .await;
    let blank = admin.form(Method::POST, "/categories", &[("name", "  ")]).await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY, "a blank name is shown again on the form");
    assert!(text(blank).await.contains("category-name-error"));

    // Products in categories: by JSON, and by a form's ticked boxes.
    let sencha = admin
        .json(
            Method::POST,
            "/products",
            json!({ "name": "Sencha", "description": "A grassy green tea", "price_minor": 890, "stock": 4,
                    "category_ids": [green["id"]] }),
        )
        .await;
    let sencha = json_of(sencha).await;
    assert_eq!(sencha["categories"][0]["name"], "Green tea");
    let form = format!("name=Glass+teapot&price=29%2C90&stock=0&categories_sent=1&category_ids={}", ware["id"]);
    let by_form = admin
        .request(Method::POST, "/products")
        .header(ACCEPT, "text/html")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("an answer");
    assert_eq!(by_form.status(), StatusCode::SEE_OTHER);
    let teapot = json_of(customer.get_json(&location(&by_form)).await).await;
    assert_eq!(
        (teapot["price_minor"].as_i64(), teapot["categories"][0]["slug"].as_str()),
        (Some(2990), Some("teaware"))
    );
    let iron = admin
        .json(
            Method::POST,
            "/products",
            json!({ "name": "Cast iron teapot", "price_minor": 4900, "stock": 2, "category_ids": [ware["id"], green["id"]] }),
        )
        .await;
    let iron = json_of(iron).await;
    // Unticking every box clears the categories (the form says it had them).
    let cleared = admin.form(Method::POST, &format!("/products/{}", iron["id"]), &[("categories_sent", "1")]).await;
    assert_eq!(cleared.status(), StatusCode::SEE_OTHER);
    let iron_now = json_of(customer.get_json(&format!("/products/{}", iron["id"])).await).await;
    assert_eq!(iron_now["categories"], json!([]));
    let set =
        admin.json(Method::PUT, &format!("/products/{}", iron["id"]), json!({ "category_ids": [ware["id"]] })).await;
    assert_eq!(json_of(set).await["categories"][0]["id"], ware["id"]);

    // Search: a typo still finds, and the answer says what was searched.
    let found = json_of(customer.get_json("/products?q=tepot").await).await;
    let names: Vec<&str> =
        found["products"].as_array().expect("products").iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"Glass teapot") && names.contains(&"Cast iron teapot"), "{found}");
    assert!(!found["searched_for"].as_str().unwrap_or_default().is_empty(), "{found}");
    assert_eq!(found["query"]["q"], "tepot");
    let prefix = json_of(customer.get_json("/products?q=sench").await).await;
    assert_eq!(prefix["products"][0]["name"], "Sencha");

    // Filters and sort, the same in JSON, a page and a partial.
    let in_ware = json_of(customer.get_json("/products?category=teaware&sort=price-low").await).await;
    let prices: Vec<i64> =
        in_ware["products"].as_array().expect("products").iter().filter_map(|p| p["price_minor"].as_i64()).collect();
    assert_eq!(prices, vec![2990, 4900]);
    assert_eq!(in_ware["category"]["name"], "Teaware");
    let in_stock = json_of(customer.get_json("/products?category=teaware&in_stock=1").await).await;
    assert_eq!(in_stock["total"], 1, "the glass teapot has no stock");
    let range = json_of(customer.get_json("/products?min_price=10&max_price=30").await).await;
    assert_eq!(range["total"], 1, "{range}");
    let page = text(customer.page("/products?q=teapot&sort=name").await).await;
    assert!(
        page.contains("Cast iron teapot") && page.contains(r#"value="name" selected"#),
        "the form shows the sort chosen"
    );
    let partial = customer.htmx(Method::GET, "/products?category=teaware&sort=").send().await.expect("an answer");
    assert_eq!(partial.headers().get("hx-push-url").and_then(|v| v.to_str().ok()), Some("/products?category=teaware"));
    let partial = text(partial).await;
    assert!(!partial.contains("<!doctype") && partial.contains("Glass teapot") && !partial.contains("Sencha"));

    // Bad filters are refused, each naming its parameter.
    assert_problem(customer.get_json("/products?category=no-such").await, StatusCode::NOT_FOUND, "no such category")
        .await;
    assert_problem(customer.get_json("/products?sort=cheap").await, StatusCode::UNPROCESSABLE_ENTITY, "sort").await;
    assert_problem(customer.get_json("/products?min_price=x").await, StatusCode::UNPROCESSABLE_ENTITY, "min_price")
        .await;
    assert_problem(
        customer.get_json("/products?min_price=9&max_price=1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "max_price",
    )
    .await;

    // Related products: the product page offers others of its category.
    let sencha_page = text(customer.page(&format!("/products/{}", sencha["id"])).await).await;
    assert!(!sencha_page.contains("More in"), "nothing else is green tea");
    let iron_page = text(customer.page(&format!("/products/{}", iron["id"])).await).await;
    assert!(iron_page.contains("More in Teaware") && iron_page.contains("Glass teapot"));

    // Renaming and deleting a category; its products stay.
    let renamed = admin.json(Method::PUT, &format!("/categories/{}", ware["id"]), json!({ "name": "Pots" })).await;
    assert_eq!(json_of(renamed).await["slug"], "pots");
    let listed = json_of(customer.get_json("/categories").await).await;
    assert!(
        listed.as_array().expect("categories").iter().any(|c| c["name"] == "Pots" && c["product_count"] == 2),
        "{listed}"
    );
    let gone = admin.form(Method::POST, &format!("/categories/{}/delete", green["id"]), &[]).await;
    assert_eq!((gone.status(), location(&gone).as_str()), (StatusCode::SEE_OTHER, "/categories"));
    assert_eq!(json_of(customer.get_json("/products?q=sencha").await).await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_by_cursor_with_one_url_per_page() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    for n in 1..=5 {
        let created =
            admin.json(Method::POST, "/products", json!({ "name": format!("Cup {n}"), "price_minor": 100 })).await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let names = |list: &Value| -> Vec<String> {
        list["products"]
            .as_array()
            .expect("products")
            .iter()
            .filter_map(|p| p["name"].as_str().map(Into::into))
            .collect()
    };

    // JSON: the cursors and the URLs of the pages around, no page numbers.
    let first = json_of(customer.get_json("/products?page_size=2").await).await;
    assert_eq!(names(&first), ["Cup 5", "Cup 4"]);
    assert_eq!((first["total"].as_i64(), first["total_is_lower_bound"].as_bool()), (Some(5), Some(false)));
    let cursor = first["next_cursor"].as_str().expect("a next cursor");
    assert_eq!(first["next"], format!("/products?page_size=2&after={cursor}"));
    assert_eq!(first["last"], "/products?page_size=2&last=1");
    assert!(first["previous"].is_null() && first["first"].is_null() && first["previous_cursor"] == "", "{first}");
    let second = json_of(customer.get_json(first["next"].as_str().expect("a URL")).await).await;
    assert_eq!(names(&second), ["Cup 3", "Cup 2"]);
    assert_eq!(second["first"], "/products?page_size=2");
    let back = json_of(customer.get_json(second["previous"].as_str().expect("a URL")).await).await;
    assert_eq!(names(&back), ["Cup 5", "Cup 4"]);
    let last = json_of(customer.get_json("/products?page_size=2&last=1").await).await;
    assert_eq!(names(&last), ["Cup 2", "Cup 1"], "the last page is full");
    assert!(last["next"].is_null() && last["previous"].is_string(), "{last}");
    let old_link = json_of(customer.get_json("/products?page=2&page_size=2").await).await;
    assert_eq!(names(&old_link), ["Cup 3", "Cup 2"], "an old page number still works");

    // HTML: the pager's plain links, each swapped and pushed by htmx; the
    // count in words; the partial pushes the page's own URL.
    let next = second["next"].as_str().expect("a URL").to_owned();
    // As the browser reads the attributes (minijinja escapes `/` and `&`).
    let page = text(customer.page(&next).await).await.replace("&#x2f;", "/").replace("&amp;", "&");
    assert!(page.contains("5 products") && !page.contains("page 3 of"), "the count, no page numbers");
    for link in [
        r#"href="/products?page_size=2&before="#,
        r##"href="/products?page_size=2" hx-get="/products?page_size=2" hx-target="#product-list""##,
    ] {
        assert!(page.contains(link), "{link} in the pager");
    }
    assert!(page.contains(r#"rel="prev""#) && page.contains("First"));
    assert!(!page.contains(r#"rel="next""#) && !page.contains("last=1"), "the third page of five is the last");
    let partial = customer.htmx(Method::GET, &next).send().await.expect("an answer");
    assert_eq!(partial.headers().get("hx-push-url").and_then(|v| v.to_str().ok()), Some(next.as_str()));

    // Bad positions are refused, naming the parameter.
    assert_problem(customer.get_json("/products?after=x").await, StatusCode::UNPROCESSABLE_ENTITY, "after").await;
    assert_problem(customer.get_json("/products?sort=name&after=i1").await, StatusCode::UNPROCESSABLE_ENTITY, "after")
        .await;
    assert_problem(customer.get_json("/products?after=i1&before=i2").await, StatusCode::UNPROCESSABLE_ENTITY, "before")
        .await;
    assert_problem(
        customer.get_json("/products?page=1000&page_size=100").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "page",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_are_uploaded_checked_and_served_by_their_hash() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    customer.customer("Casey").await;
    let id = admin.product("Teapot", 3450, 5).await;
    let images = format!("/products/{id}/images");

    // JSON client: 201 with the product and its picture's variants.
    let added = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "application/json")
        .multipart(upload(png(1600, 900), "teapot.png", "A teapot on a table"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(added.status(), StatusCode::CREATED);
    let product = json_of(added).await;
    let picture = &product["images"][0];
    assert_eq!(picture["alt"], "A teapot on a table");
    assert_eq!((picture["large"]["width"].as_u64(), picture["large"]["height"].as_u64()), (Some(1200), Some(675)));
    assert!(picture["thumbnail"]["width"].as_u64().is_some_and(|w| w <= 400));

    // Served by hash: a year's caching, 304 on revalidation, 404 otherwise.
    let url = picture["large"]["url"].as_str().expect("a URL").to_owned();
    let served = customer.request(Method::GET, &url).send().await.expect("an answer");
    assert_eq!(served.status(), StatusCode::OK);
    let header = |name| {
        served.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned)
    };
    assert!(header(CONTENT_TYPE).is_some_and(|t| t.starts_with("image/")));
    assert!(header(CACHE_CONTROL).is_some_and(|c| c.contains("immutable") && c.contains("max-age=31536000")));
    let etag = header(ETAG).expect("an ETag");
    assert!(served.headers().get("set-cookie").is_none(), "a picture makes no session");
    assert!(!served.bytes().await.expect("bytes").is_empty());
    let again = customer.request(Method::GET, &url).header(IF_NONE_MATCH, etag).send().await.expect("an answer");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let unknown =
        customer.request(Method::GET, &format!("/images/{}", "0".repeat(64))).send().await.expect("an answer");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let malformed = customer.request(Method::GET, "/images/..%2Fetc").send().await.expect("an answer");
    assert_eq!(malformed.status(), StatusCode::NOT_FOUND);
    let listed = json_of(customer.get_json("/products").await).await;
    assert_eq!(
        listed["products"][0]["images"][0]["thumbnail"]["url"], picture["thumbnail"]["url"],
        "a list names the pictures too"
    );

    // Refused with a clear error, nothing stored: not a picture, no alt,
    // too large for the gateway, a customer.
    let fake = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "application/json")
        .multipart(upload(b"not a picture at all".to_vec(), "fake.png", "Fake"))
        .send()
        .await
        .expect("an answer");
    let problem = assert_problem(fake, StatusCode::UNPROCESSABLE_ENTITY, "image").await;
    assert!(problem.to_string().contains("PNG, JPEG"), "{problem}");
    let no_alt = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "application/json")
        .multipart(upload(png(10, 10), "small.png", ""))
        .send()
        .await
        .expect("an answer");
    assert_problem(no_alt, StatusCode::UNPROCESSABLE_ENTITY, "alt").await;
    let huge = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "application/json")
        .multipart(upload(vec![0_u8; 12 * 1024 * 1024], "huge.png", "Huge"))
        .send()
        .await;
    // The gateway stops reading past its limit: a clear refusal, or the
    // connection closed on a body it will not read.
    if let Ok(huge) = huge {
        assert_problem(huge, StatusCode::UNPROCESSABLE_ENTITY, "10 MiB").await;
    }
    let by_customer = customer
        .request(Method::POST, &images)
        .header(ACCEPT, "application/json")
        .multipart(upload(png(10, 10), "small.png", "Small"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(by_customer.status(), StatusCode::FORBIDDEN);
    let product = json_of(customer.get_json(&format!("/products/{id}")).await).await;
    assert_eq!(product["images"].as_array().map(Vec::len), Some(1), "nothing refused was stored");

    // A browser without scripts: the form posts, 303 back to the pictures;
    // a refused file shows the form again with the reason beside the field.
    let by_form = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "text/html")
        .multipart(upload(png(300, 300), "square.png", "A square"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        (by_form.status(), location(&by_form)),
        (StatusCode::SEE_OTHER, format!("/products/{id}/edit#pictures"))
    );
    let edit = text(admin.page(&format!("/products/{id}/edit")).await).await;
    assert!(edit.contains("Added a picture of Teapot") && edit.contains(r#"alt="A square""#));
    let refused = admin
        .request(Method::POST, &images)
        .header(ACCEPT, "text/html")
        .multipart(upload(b"GIF89a but not really".to_vec(), "x.gif", "X"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(refused).await.contains("picture-image-error"));

    // Deleting a picture (a form posts to …/delete).
    let product = json_of(customer.get_json(&format!("/products/{id}")).await).await;
    let first = product["images"][0]["id"].as_i64().expect("an id");
    let deleted = admin.form(Method::POST, &format!("/products/{id}/images/{first}/delete"), &[]).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    let product = json_of(customer.get_json(&format!("/products/{id}")).await).await;
    assert_eq!(product["images"].as_array().map(Vec::len), Some(1));
    let missing = admin.json(Method::DELETE, &format!("/products/{id}/images/{first}"), Value::Null).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
