//! Accounts beyond sign-in, through the gateway against the real services:
//! the address book by form and JSON (and nobody else's), password reset
//! (the same answer for any email; the link ends every session), and the
//! admins' customers screen.

mod in_process;

use in_process::Shop;
use in_process::browser::{PASSWORD, assert_problem, location, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shop_storage::sqlx;

/// As minijinja writes it into an attribute (it escapes slashes).
fn html(text: &str) -> String {
    text.replace('/', "&#x2f;")
}

fn address(name: &str) -> Value {
    json!({ "name": name, "line1": "12 rue de Rivoli", "postcode": "75004", "city": "Paris", "country": "FR", "phone": "" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_books_are_kept_by_form_and_json_and_only_by_their_owner() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let ada_browser = gateway.browser();
    let ada = ada_browser.customer("Ada").await;
    let eve_browser = gateway.browser();
    let eve = eve_browser.customer("Eve").await;
    let book = format!("/users/{}/addresses", ada["id"]);

    // JSON: 201 with Location, then listed.
    let created = ada_browser.json(Method::POST, &book, address("Ada Lovelace")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let home_url = location(&created);
    let home: Value = created.json().await.expect("an address");
    assert_eq!(home_url, format!("{book}/{}", home["id"]));
    assert_eq!((home["country"].as_str(), home["country_name"].as_str()), (Some("FR"), Some("France")));
    let listed: Value = ada_browser.get_json(&book).await.json().await.expect("a book");
    assert_eq!(listed["addresses"].as_array().map(Vec::len), Some(1));

    // A form: 303 back to the book, which then shows it and says so.
    let fields = [
        ("name", "Ada at work"),
        ("line1", "1 Main St"),
        ("postcode", "SW1Y 4JH"),
        ("city", "London"),
        ("country", "GB"),
    ];
    let posted = ada_browser.form(Method::POST, &book, &fields).await;
    assert_eq!((posted.status(), location(&posted)), (StatusCode::SEE_OTHER, book.clone()));
    let page = text(ada_browser.page(&book).await).await;
    assert!(page.contains("Ada at work") && page.contains("United Kingdom") && page.contains("was added"), "{page}");
    assert!(page.contains("<select id=\"address-country\" name=\"country\""));
    // A refused form comes back with each wrong field named, what was typed kept.
    let refused =
        ada_browser.form(Method::POST, &book, &[("name", "Bad"), ("postcode", "<>"), ("country", "ZZ")]).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let form = text(refused).await;
    for id in ["address-line1-error", "address-postcode-error", "address-city-error", "address-country-error"] {
        assert!(form.contains(id), "{id} in {form}");
    }
    assert!(form.contains("value=\"Bad\""));
    let problem = assert_problem(
        ada_browser.json(Method::POST, &book, json!({ "country": "XX" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "",
    )
    .await;
    assert!(problem.to_string().contains("line1"), "{problem}");

    // Changed by PUT and by the edit form's POST; deleted by the form's POST.
    let changed = ada_browser
        .json(Method::PUT, &home_url, {
            let mut moved = address("Ada L");
            moved["city"] = json!("Lyon");
            moved
        })
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let edit = text(ada_browser.page(&format!("{home_url}/edit")).await).await;
    assert!(edit.contains("value=\"Lyon\"") && edit.contains(&html(&format!("action=\"{home_url}\""))));
    let by_form = ada_browser
        .form(
            Method::POST,
            &home_url,
            &[("name", "Ada"), ("line1", "2 Quai"), ("postcode", "69001"), ("city", "Lyon"), ("country", "FR")],
        )
        .await;
    assert_eq!(by_form.status(), StatusCode::SEE_OTHER);

    // Eve, guessing: another customer's address is "not found", like a missing one.
    let missing = format!("{book}/999999");
    for url in [home_url.as_str(), missing.as_str()] {
        assert_problem(eve_browser.get_json(url).await, StatusCode::NOT_FOUND, "not found").await;
        assert_problem(eve_browser.json(Method::PUT, url, address("Eve")).await, StatusCode::NOT_FOUND, "not found")
            .await;
        assert_problem(eve_browser.json(Method::DELETE, url, Value::Null).await, StatusCode::NOT_FOUND, "not found")
            .await;
        let deleted = eve_browser.form(Method::POST, &format!("{url}/delete"), &[]).await;
        assert_eq!(deleted.status(), StatusCode::NOT_FOUND);
    }
    assert_problem(eve_browser.get_json(&book).await, StatusCode::NOT_FOUND, "not found").await;
    assert_problem(eve_browser.json(Method::POST, &book, address("Eve")).await, StatusCode::NOT_FOUND, "not found")
        .await;
    // Under her own id, Ada's address id is still not hers.
    let eve_url = format!("/users/{}/addresses/{}", eve["id"], home["id"]);
    assert_problem(eve_browser.get_json(&eve_url).await, StatusCode::NOT_FOUND, "not found").await;
    assert_problem(eve_browser.json(Method::PUT, &eve_url, address("Eve")).await, StatusCode::NOT_FOUND, "not found")
        .await;
    let still: Value = ada_browser.get_json(&home_url).await.json().await.expect("hers");
    assert_eq!(still["line1"], "2 Quai");
    // A stranger is asked to sign in.
    assert_problem(gateway.browser().get_json(&book).await, StatusCode::UNAUTHORIZED, "sign in").await;

    let deleted = ada_browser.form(Method::POST, &format!("{home_url}/delete"), &[]).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_problem(ada_browser.get_json(&home_url).await, StatusCode::NOT_FOUND, "not found").await;
    // The profile links to the book.
    assert!(text(ada_browser.page(&format!("/users/{}", ada["id"])).await).await.contains(&format!("href=\"{book}\"")));
}

/// The newest reset token sent to `email`, read from the outbox of the
/// users database of whichever test shop holds that (unique) email.
async fn reset_token(email: &str) -> String {
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(std::env::temp_dir()).expect("the temporary directory").flatten() {
        let file = entry.path().join("users.db");
        if file.exists() {
            candidates.push(file);
        }
    }
    for file in candidates {
        let url = format!("sqlite://{}?mode=ro", file.display());
        let Ok(mut connection) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await else { continue };
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT payload FROM outbox WHERE kind = 'user.password_reset_requested' ORDER BY id DESC")
                .fetch_all(&mut connection)
                .await
                .unwrap_or_default();
        for (payload,) in rows {
            let payload: Value = serde_json::from_str(&payload).expect("a JSON event");
            let data = if payload["data"].is_object() { &payload["data"] } else { &payload };
            if data["email"] == email {
                return data["token"].as_str().expect("a token").to_owned();
            }
        }
    }
    panic!("no reset token for {email}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_sets_the_password_once_and_ends_every_session() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let email = format!("ada-{}@example.com", uuid::Uuid::new_v4().simple());
    let laptop = gateway.browser();
    let ada = laptop.register("Ada", &email).await;
    let profile = format!("/users/{}", ada["id"]);
    assert_eq!(laptop.get_json(&profile).await.status(), StatusCode::OK);

    // The same status and body for a known email and an unknown one.
    let anyone = gateway.browser();
    let page = text(anyone.page("/users/password-reset").await).await;
    assert!(page.contains(&html("action=\"/users/password-reset\"")) && page.contains("method=\"post\""));
    assert!(text(anyone.page("/users/login").await).await.contains("Forgot your password?"));
    let ask = |email: String| {
        let anyone = anyone.stranger();
        async move {
            let response = anyone.form(Method::POST, "/users/password-reset", &[("email", email.as_str())]).await;
            (response.status(), text(response).await)
        }
    };
    let known = ask(email.clone()).await;
    let unknown = ask(format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple())).await;
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(known, unknown);
    assert!(known.1.contains("If an account has this email, we sent a link to it; it works for 30 minutes."));
    let json_known = anyone.json(Method::POST, "/users/password-reset", json!({ "email": email })).await;
    let json_unknown =
        anyone.json(Method::POST, "/users/password-reset", json!({ "email": "nobody@example.com" })).await;
    assert_eq!(json_known.status(), json_unknown.status());
    assert_eq!(text(json_known).await, text(json_unknown).await);

    // The link's page: a form, named to no other site.
    let token = reset_token(&email).await;
    let link = format!("/users/password-reset/{token}");
    let form = anyone.page(&link).await;
    assert_eq!(form.headers().get("referrer-policy").and_then(|v| v.to_str().ok()), Some("no-referrer"));
    assert!(text(form).await.contains(&html(&format!("action=\"{link}\""))));
    // A tampered link is refused, and says how to get a new one.
    let tampered = format!("/users/password-reset/{}", "0".repeat(64));
    let refused = anyone.form(Method::POST, &tampered, &[("new_password", "a brand new password")]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(text(refused).await.contains("ask for a new one"));
    // A short password is refused beside its field; the link still works.
    let short = anyone.form(Method::POST, &link, &[("new_password", "short")]).await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(short).await.contains("reset-new_password-error"));

    let done = anyone.form(Method::POST, &link, &[("new_password", "a brand new password")]).await;
    assert_eq!((done.status(), location(&done)), (StatusCode::SEE_OTHER, "/users/login".to_owned()));
    assert!(text(anyone.page("/users/login").await).await.contains("Sign in with your new password"));
    // Once only.
    let again = anyone.json(Method::POST, &link, json!({ "new_password": "yet another password" })).await;
    assert_problem(again, StatusCode::BAD_REQUEST, "no longer valid").await;

    // The session signed in before the reset has ended.
    assert_problem(laptop.get_json(&profile).await, StatusCode::UNAUTHORIZED, "sign in").await;
    // The new password signs in; the old one does not.
    let phone = gateway.browser();
    let old = phone.json(Method::POST, "/users/login", json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new =
        phone.json(Method::POST, "/users/login", json!({ "email": email, "password": "a brand new password" })).await;
    assert_eq!(new.status(), StatusCode::OK);
    assert_eq!(phone.get_json(&profile).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_see_the_customers_screen() {
    let shop = Shop::start().await;
    let gateway = shop.gateway();
    let admin = shop.admin(&gateway).await;
    let customer = gateway.browser();
    let carol =
        customer.register("Carol Searchable", &format!("carol-{}@example.com", uuid::Uuid::new_v4().simple())).await;
    customer.json(Method::POST, &format!("/users/{}/addresses", carol["id"]), address("Carol at home")).await;
    let dave = gateway.browser();
    dave.customer("Dave").await;

    let found: Value = admin.get_json("/customers?q=searchABLE").await.json().await.expect("a list");
    assert_eq!(found["total"], 1);
    assert_eq!(found["customers"][0]["id"], carol["id"]);
    assert_eq!(found["customers"][0]["email"], carol["email"]);
    let page = text(admin.page("/customers?q=carol").await).await;
    assert!(
        page.contains("Carol Searchable")
            && !page.contains(">Dave<")
            && page.contains("table class=\"customers stack\"")
    );
    assert!(page.contains("data-label=\"Orders\"") && page.contains(&format!("href=\"/customers/{}\"", carol["id"])));
    let partial = text(admin.htmx(Method::GET, "/customers?q=carol").send().await.expect("an answer")).await;
    assert!(partial.contains("id=\"customer-list\"") && !partial.contains("<!doctype"));

    let detail: Value = admin.get_json(&format!("/customers/{}", carol["id"])).await.json().await.expect("a customer");
    assert_eq!(detail["customer"]["name"], "Carol Searchable");
    assert_eq!(detail["addresses"][0]["name"], "Carol at home");
    assert_eq!(detail["orders"]["total"], 0);
    let page = text(admin.page(&format!("/customers/{}", carol["id"])).await).await;
    assert!(page.contains("Carol at home") && page.contains("No orders yet"));
    // The admin reads Carol's book but cannot write to it.
    let book = format!("/users/{}/addresses", carol["id"]);
    assert_eq!(admin.get_json(&book).await.status(), StatusCode::OK);
    assert_problem(
        admin.json(Method::POST, &book, address("Admin was here")).await,
        StatusCode::NOT_FOUND,
        "not found",
    )
    .await;

    // Nobody else.
    assert_problem(customer.get_json("/customers").await, StatusCode::FORBIDDEN, "not allowed").await;
    assert_problem(
        customer.get_json(&format!("/customers/{}", carol["id"])).await,
        StatusCode::FORBIDDEN,
        "not allowed",
    )
    .await;
    assert_problem(gateway.browser().get_json("/customers").await, StatusCode::UNAUTHORIZED, "sign in").await;
}
