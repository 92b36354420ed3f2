//! minijinja templates and static assets, embedded in the binary. Every
//! template name ends in `.html`, which is what turns on auto-escaping.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use rust_embed::RustEmbed;

use crate::cache::Lookup;
use crate::negotiate::Want;
use crate::viewer::{SessionUser, Viewer};

#[derive(RustEmbed)]
#[folder = "templates/"]
struct TemplateFiles;

#[derive(RustEmbed)]
#[folder = "static/"]
pub struct StaticFiles;

#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    fragments: Fragments,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// A short content hash per static file, for cache-busting URLs.
pub fn asset_versions() -> HashMap<String, String> {
    StaticFiles::iter()
        .filter_map(|name| {
            let file = StaticFiles::get(&name)?;
            let hash: String = file.metadata.sha256_hash()[..6].iter().map(|b| format!("{b:02x}")).collect();
            Some((name.into_owned(), hash))
        })
        .collect()
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_loader(|name| Ok(TemplateFiles::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned())));
        env.add_filter("money", crate::views::money);
        // "FR" → "France": addresses keep codes, people read names.
        env.add_filter("country", |code: String| crate::routes::addresses::country_name(&code).to_owned());
        let versions = asset_versions();
        env.add_function("asset", move |name: String| -> Value {
            // Built from our own file names and hashes: safe to emit as is.
            Value::from_safe_string(match versions.get(&name) {
                Some(version) => format!("/static/{name}?v={version}"),
                None => format!("/static/{name}"),
            })
        });
        Self { env: Arc::new(env), fragments: Fragments::new(Duration::from_secs(30)) }
    }

    /// Kept fragments live at most `ttl` (see [`Fragments`]).
    pub fn keeping_fragments_for(self, ttl: Duration) -> Self {
        Self { fragments: Fragments::new(ttl), ..self }
    }

    pub fn fragments(&self) -> &Fragments {
        &self.fragments
    }

    pub fn render(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }

    /// A full page, or just its fragment for an HTMX request. Every page
    /// also gets the viewer, for the navigation bar.
    pub fn respond(&self, viewer: &Viewer, want: Want, page: &str, partial: &str, context: Value) -> Response {
        let name = if want == Want::Partial { partial } else { page };
        let context = minijinja::context! { viewer => minijinja::value::Serde(viewer), partial => want == Want::Partial, ..context };
        // A fragment that carries a message brings the message area along.
        let flash =
            (want == Want::Partial && viewer.flash.is_some()).then(|| self.render("_flash_oob.html", context.clone()));
        let rendered = match (self.render(name, context), flash) {
            (Ok(html), Some(Ok(message))) => Ok(html + &message),
            (Ok(html), None) => Ok(html),
            (Err(error), _) | (_, Some(Err(error))) => Err(error),
        };
        match rendered {
            Ok(html) => Html(html).into_response(),
            Err(error) => failed(name, &error),
        }
    }

    /// What `template` shows for `audience` with `context`: a page's
    /// `title` and `content` blocks when `whole` (it extends `base.html`),
    /// else the fragment whole; what [`Templates::respond_with`] puts in an
    /// answer for anyone of that audience.
    pub fn render_fragment(
        &self,
        audience: Audience,
        want: Want,
        (template, whole): (&str, bool),
        context: Value,
    ) -> Result<Fragment, minijinja::Error> {
        let viewer = audience.viewer();
        let context = minijinja::context! { viewer => minijinja::value::Serde(&viewer), partial => want == Want::Partial, ..context };
        if !whole {
            let content = self.render(template, context)?;
            return Ok(Fragment { title: String::new(), content, whole, headers: Vec::new() });
        }
        let mut captured = self.env.get_template(template)?.render_captured(context)?;
        let title = captured.with_state_mut(|state| state.render_block("title"))?;
        let content = captured.with_state_mut(|state| state.render_block("content"))?;
        Ok(Fragment { title, content, whole, headers: Vec::new() })
    }

    /// The answer `fragment` makes for `viewer`: a page's content inside
    /// the navigation, message area and footer rendered for them
    /// (`base.html` alone), or an HTMX fragment as it is; with the message
    /// area after it for HTMX when there is a message, as [`Templates::respond`].
    pub fn respond_with(&self, viewer: &Viewer, want: Want, fragment: &Fragment, lookup: Lookup) -> Response {
        let context =
            minijinja::context! { viewer => minijinja::value::Serde(viewer), partial => want == Want::Partial };
        let page = if fragment.whole {
            self.render(
                "base.html",
                minijinja::context! {
                    title_html => Value::from_safe_string(fragment.title.clone()),
                    content_html => Value::from_safe_string(fragment.content.clone()),
                    ..context.clone()
                },
            )
        } else {
            Ok(fragment.content.clone())
        };
        let flash = (want == Want::Partial && viewer.flash.is_some()).then(|| self.render("_flash_oob.html", context));
        let rendered = match (page, flash) {
            (Ok(html), Some(Ok(message))) => Ok(html + &message),
            (Ok(html), None) => Ok(html),
            (Err(error), _) | (_, Some(Err(error))) => Err(error),
        };
        let mut response = match rendered {
            Ok(html) => Html(html).into_response(),
            Err(error) => return failed("base.html", &error),
        };
        let headers = response.headers_mut();
        for (name, value) in &fragment.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert("x-cache", HeaderValue::from_static(lookup.header()));
        response
    }
}

/// A 500 for a template that failed to render. Not an AppError: rendering
/// the error page could fail the same way.
pub fn failed(name: &str, error: &minijinja::Error) -> Response {
    tracing::error!(template = name, error = %error, "rendering a template failed");
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side.").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Whom a kept fragment was rendered for. The pages kept show the same to
/// everyone of one audience (an admin's have delete buttons, a visitor's
/// and a customer's do not): `fragments_depend_only_on_the_audience` checks
/// that for every kept page, against viewers differing in everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Visitor,
    Customer,
    Admin,
}

impl Audience {
    pub fn of(viewer: &Viewer) -> Self {
        match &viewer.user {
            None => Self::Visitor,
            Some(user) if user.admin => Self::Admin,
            Some(_) => Self::Customer,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Visitor => "visitor",
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    /// A viewer of this audience and nothing else: no name, no cart, no message.
    fn viewer(self) -> Viewer {
        let user = |admin| SessionUser { id: 0, name: String::new(), email: String::new(), admin, signed_in_at_ms: 0 };
        let user = match self {
            Self::Visitor => None,
            Self::Customer => Some(user(false)),
            Self::Admin => Some(user(true)),
        };
        Viewer { user, cart_count: 0, flash: None }
    }
}

/// A page's content rendered once, and the headers its answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub title: String,
    pub content: String,
    /// A page's blocks (put inside `base.html`), not a fragment as it is.
    pub whole: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Rendered fragments of pages that show the same to everyone of an
/// audience, kept so the next request renders only the navigation around
/// them. A handler names a fragment by the cache keys of the data it shows
/// (the product lists' version, the product's id, the query), so what
/// retires the data retires the fragment: a write moves the lists' version
/// on, here or (through Redis or `product.changed`) on another replica, and
/// a fragment of the old version is never asked for again. A fragment
/// lives at most half the data cache's TTL: rendered from data at most one
/// TTL old, what a missed invalidation leaves is gone within 1.5 TTL.
/// Bounded by size; in-process only (rendering is this process's work).
#[derive(Clone)]
pub struct Fragments {
    kept: moka::future::Cache<String, Arc<Fragment>>,
}

/// How many bytes of fragments are kept (a list page's is about 15 KiB).
const FRAGMENT_BYTES: u64 = 4 * 1024 * 1024;

impl Fragments {
    pub fn new(ttl: Duration) -> Self {
        let kept = moka::future::Cache::builder()
            .max_capacity(FRAGMENT_BYTES)
            .weigher(|key: &String, fragment: &Arc<Fragment>| {
                u32::try_from(key.len() + fragment.title.len() + fragment.content.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl.max(Duration::from_millis(1)))
            .build();
        Self { kept }
    }

    /// The key of `key`'s fragment of `template` for `audience`.
    pub fn key(audience: Audience, template: &str, key: &str) -> String {
        format!("{}|{template}|{key}", audience.name())
    }

    pub async fn get(&self, key: &str) -> Option<Arc<Fragment>> {
        let found = self.kept.get(key).await;
        let result = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("shop_cache_requests_total", "kind" => "fragment", "result" => result).increment(1);
        found
    }

    pub async fn keep(&self, key: String, fragment: Arc<Fragment>) {
        self.kept.insert(key, fragment).await;
    }

    /// Forgets every fragment (tests; a deploy starts empty anyway).
    pub fn clear(&self) {
        self.kept.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_it_shows() -> Result<(), minijinja::Error> {
        let viewer = Viewer::default();
        let product = crate::views::ProductView {
            id: 1,
            name: "<script>alert(1)</script>".into(),
            description: "\"><img src=x onerror=alert(1)>".into(),
            price_minor: 100,
            price: "1.00".into(),
            stock: 1,
            created_at: String::new(),
            updated_at: String::new(),
            categories: Vec::new(),
            images: Vec::new(),
        };
        let html = Templates::new().render(
            "products/show.html",
            minijinja::context! { viewer => minijinja::value::Serde(&viewer), product => minijinja::value::Serde(&product) },
        )?;
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<img src=x"));
        Ok(())
    }

    #[test]
    fn every_template_compiles() {
        let templates = Templates::new();
        for name in TemplateFiles::iter() {
            assert!(templates.env.get_template(&name).is_ok(), "{name} does not compile");
        }
    }
}

/// Every form works without scripts and none can put what it carries in a
/// URL: each one, in every template, as rendered for a visitor, a customer
/// and an admin, posts to an action of its own; only a search or filter
/// form (which changes nothing and holds no password) may use GET.
#[cfg(test)]
mod forms {
    use serde_json::{Value as Json, json};

    use super::*;

    /// A form's opening tag and what it holds, in the order they appear.
    fn forms(html: &str) -> Vec<(&str, &str)> {
        let mut found = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find("<form") {
            let form = &rest[start..];
            let Some(open) = form.find('>') else { break };
            let close = form.find("</form>").unwrap_or(form.len()).max(open + 1);
            found.push((&form[..=open], &form[open + 1..close]));
            rest = &form[open + 1..];
        }
        found
    }

    /// An attribute's value as the browser reads it (minijinja escapes `/`
    /// and friends as character references).
    fn attribute(tag: &str, name: &str) -> Option<String> {
        let needle = format!(" {name}=\"");
        let start = tag.find(&needle)? + needle.len();
        let end = tag[start..].find('"')? + start;
        let references =
            [("&#x2f;", "/"), ("&quot;", "\""), ("&#x27;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")];
        Some(
            references
                .iter()
                .fold(tag[start..end].to_owned(), |value, (reference, text)| value.replace(reference, text)),
        )
    }

    /// Why a form breaks the rule, if it does.
    fn fault(tag: &str, body: &str) -> Option<String> {
        let holds_password = body.contains("type=\"password\"") || body.contains("type=password");
        match attribute(tag, "method").map(|method| method.to_ascii_lowercase()).as_deref() {
            Some("post") => {}
            Some("get") if !holds_password => {}
            Some("get") => return Some("holds a password field but submits by GET".into()),
            other => return Some(format!("has method {other:?}; it must say post (or get for a search)")),
        }
        match attribute(tag, "action") {
            Some(action) if action.starts_with('/') && !action.starts_with("//") => None,
            other => Some(format!("has action {other:?}; it must name where it goes")),
        }
    }

    pub(super) fn context(viewer: Json, partial: bool) -> Value {
        let product = json!({ "id": 7, "name": "Tea", "description": "Green", "price_minor": 450, "price": "4.50",
            "stock": 3, "created_at": "2026-11-30T10:00:00Z", "updated_at": "2026-11-30T10:00:00Z",
            "categories": [{ "id": 1, "name": "Green tea", "slug": "green-tea", "product_count": 0 }],
            "images": [{ "id": 3, "alt": "A tin", "thumbnail": { "url": "/images/ab", "width": 400, "height": 400 },
                         "large": { "url": "/images/cd", "width": 1200, "height": 1200 } }] });
        let order = json!({ "id": 5, "user_id": 2, "status": "confirmed", "total_minor": 450, "total": "4.50",
            "items": [{ "product_id": 7, "product_name": "Tea", "quantity": 1, "unit_price_minor": 450,
                        "unit_price": "4.50", "line_total": "4.50" }],
            "created_at": "2026-11-30T10:00:00Z", "updated_at": "2026-11-30T10:00:00Z",
            "history": [{ "status": "confirmed", "actor": "system", "at": "2026-11-30T10:00:00Z" }],
            "next_statuses": ["shipped", "cancelled"],
            "delivery_address": { "name": "Casey", "line1": "1 rue de la Paix", "line2": "", "postcode": "75002",
                                  "city": "Paris", "country": "FR", "phone": "" },
            "delivery_method": "Standard", "delivery_minor": 490, "delivery": "4.90", "subtotal_minor": 450,
            "subtotal": "4.50", "vat_included_minor": 157, "vat_included": "1.57", "vat_rate": "20",
            "payment_method": "bank_transfer", "payment_state": "unpaid", "payment_reference": "ORDER-000005",
            "tracking_reference": "", "next_payment_states": ["paid"],
            "payment_history": [{ "status": "paid", "actor": "user:1", "at": "2026-11-30T10:00:00Z" }] });
        let order_address = order["delivery_address"].clone();
        let page =
            json!({ "page": 2, "page_size": 20, "total": 60, "pages": 3, "has_previous": true, "has_next": true });
        let mut list = page.clone();
        list["products"] = json!([product]);
        list["orders"] = json!([order]);
        list["searched_for"] = json!("earl grey");
        list["query"] = json!({ "q": "earl gery", "category": "black-tea", "sort": "relevance", "in_stock": true,
            "min_price_minor": 100, "max_price_minor": null, "page": 2, "page_size": 20 });
        list["category"] = json!({ "id": 2, "name": "Black tea", "slug": "black-tea", "product_count": 4 });
        let mut context = json!({
            "viewer": viewer, "partial": partial,
            "user": { "id": 2, "email": "casey@example.com", "name": "Casey", "role": "customer",
                      "created_at": "2026-11-30T10:00:00Z" },
            "product": product, "order": order, "list": list, "total": 60, "products": [product],
            "cart": { "lines": [{ "product": product, "quantity": 1, "line_total": "4.50" }], "count": 1,
                      "total_minor": 450, "total": "4.50" },
            "checkout_key": "k", "quantity": 1, "user_filter": 2,
            "categories": [{ "id": 1, "name": "Green tea", "slug": "green-tea", "product_count": 3 }],
            "selected": [1], "related": [product], "sorts": [["relevance", "Best match"], ["name", "Name: A to Z"]],
            "min_price": "1.00", "max_price": null, "self_url": "/products?q=earl+gery&page=2",
            "query_string": "q=earl+gery", "focus_list": true,

            "image_values": { "alt": "A tin" }, "image_errors": { "image": "Not a picture." },
            "problem": { "slug": "stock-short", "type": "/problems/stock-short", "meaning": "Not enough." },
            "values": { "next": "/cart", "name": "Casey" }, "errors": { "name": "is required" },
        });
        // Checkout, confirmation and packing slip (a second object: one
        // json! this size passes the macro recursion limit).
        let checkout = json!({
            "step": "review", "addresses": [{ "id": 3, "name": "Casey", "lines": "1 rue de la Paix, 75002 Paris, FR" }],
            "chosen": 3, "countries": [["FR", "France"]], "methods": [{ "id": 1, "name": "Standard", "price": "4.90",
            "free_now": false, "free_above": "50.00" }], "subtotal": "4.50", "address": order_address,
            "method": "Standard", "payment": "bank_transfer", "lines": [{ "name": "Tea", "quantity": 1, "price": "4.50",
            "total": "4.50" }], "left": ["Cups"], "delivery": "4.90", "delivery_free": false, "total_text": "9.40",
            "vat_included": "1.57", "vat_rate": "20", "bank_details": "IBAN FR76 0000", "shop_name": "Shop",
            "people": { "2": { "name": "Casey", "email": "casey@example.com" } },
        });
        if let (Some(all), Some(more)) = (context.as_object_mut(), checkout.as_object()) {
            all.extend(more.clone());
        }
        Value::from(minijinja::value::Serde(context))
    }

    #[test]
    fn every_form_posts_to_an_action_unless_it_only_searches() -> Result<(), minijinja::Error> {
        let templates = Templates::new();
        let viewers = [
            json!({ "user": null, "cart_count": 1, "flash": "Saved." }),
            json!({ "user": { "id": 2, "name": "Casey", "email": "c@example.com", "admin": false }, "cart_count": 1 }),
            json!({ "user": { "id": 1, "name": "Avery", "email": "a@example.com", "admin": true }, "cart_count": 0 }),
        ];
        let mut checked = 0;
        for name in TemplateFiles::iter().filter(|name| !name.starts_with('_') && !name.contains("error")) {
            for viewer in &viewers {
                for partial in [false, true] {
                    let html = templates.render(&name, context(viewer.clone(), partial))?;
                    for (tag, body) in forms(&html) {
                        assert_eq!(fault(tag, body), None, "{name}: {tag}");
                        checked += 1;
                    }
                }
            }
        }
        // The pages are full of forms (sign out, add to cart, ...): had the
        // renders found none, this test would prove nothing.
        assert!(checked > 100, "only {checked} forms were found");
        Ok(())
    }

    /// Forms are made by the `form` macro, which always says `method="post"`;
    /// a form written by hand may only be a search, with no password field.
    #[test]
    fn only_the_form_macro_writes_a_form_that_changes_things() {
        for name in TemplateFiles::iter().filter(|name| name != "_forms.html") {
            let file = TemplateFiles::get(&name).expect("an embedded template");
            let source = String::from_utf8_lossy(&file.data);
            for (tag, body) in forms(&source) {
                let searches = attribute(tag, "method").as_deref() == Some("get") && !body.contains("password");
                assert!(searches, "{name}: write `{tag}` with the form macro of _forms.html");
            }
        }
    }

    #[test]
    fn an_empty_shop_offers_its_admin_the_demo_catalogue() -> Result<(), minijinja::Error> {
        let templates = Templates::new();
        let admin =
            json!({ "user": { "id": 1, "name": "Avery", "email": "a@example.com", "admin": true }, "cart_count": 0 });
        let context = Value::from(minijinja::value::Serde(json!({ "viewer": admin, "products": [], "total": 0 })));
        let html = templates.render("home.html", context)?;
        let offered: Vec<_> = forms(&html).into_iter().filter(|(tag, _)| tag.contains("demo")).collect();
        assert_eq!(offered.len(), 1, "{html}");
        assert_eq!(fault(offered[0].0, offered[0].1), None);
        let visitor = json!({ "user": null, "cart_count": 0 });
        let html = templates.render(
            "home.html",
            Value::from(minijinja::value::Serde(json!({ "viewer": visitor, "products": [], "total": 0 }))),
        )?;
        assert!(!html.contains("demo"), "only an admin is offered it");
        Ok(())
    }

    #[test]
    fn the_checks_catch_what_they_look_for() {
        assert_eq!(fault(r#"<form method="post" action="/x">"#, ""), None);
        assert_eq!(fault(r#"<form method="get" action="/products">"#, r#"<input name="q">"#), None);
        assert!(fault(r#"<form id="profile" hx-patch="/users/7">"#, "").is_some());
        assert!(fault(r#"<form method="post">"#, "").is_some());
        assert!(fault(r#"<form method="get" action="/x">"#, r#"<input type="password">"#).is_some());
        let html = r#"<p><form method="post" action="/a"><input></form><form action="/b"></form>"#;
        assert_eq!(
            forms(html),
            vec![(r#"<form method="post" action="/a">"#, "<input>"), (r#"<form action="/b">"#, "")]
        );
    }
}

/// Kept fragments answer exactly what rendering the page afresh would.
#[cfg(test)]
mod fragments {
    use serde_json::json;

    use super::*;

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn viewers() -> Vec<Viewer> {
        let user = |id, name: &str, admin| SessionUser {
            id,
            name: name.into(),
            email: format!("{name}@example.com"),
            admin,
            signed_in_at_ms: 5,
        };
        vec![
            Viewer::default(),
            Viewer { user: None, cart_count: 3, flash: Some("Added <b>tea</b>.".into()) },
            Viewer { user: Some(user(2, "Casey", false)), cart_count: 1, flash: None },
            Viewer { user: Some(user(3, "Robin", false)), cart_count: 0, flash: Some("Saved.".into()) },
            Viewer { user: Some(user(1, "Avery", true)), cart_count: 0, flash: None },
            Viewer { user: Some(user(4, "Sam", true)), cart_count: 2, flash: Some("Deleted.".into()) },
        ]
    }

    /// Every page kept (`render_kept`'s callers), for every viewer, as a
    /// page and as HTMX: a fragment rendered for the viewer's audience,
    /// answered with the viewer's navigation, is the page rendered for the
    /// viewer. A template that came to show a viewer's name or cart in a
    /// kept part would fail here.
    #[tokio::test]
    async fn fragments_depend_only_on_the_audience() -> Result<(), minijinja::Error> {
        let templates = Templates::new();
        let kept = [
            ("products/index.html", "products/_list.html"),
            ("products/show.html", "products/_card.html"),
            ("home.html", "home.html"),
        ];
        for (page, partial) in kept {
            for want in [Want::Page, Want::Partial] {
                for viewer in viewers() {
                    let context = || super::forms::context(json!(null), want == Want::Partial);
                    let direct = body(templates.respond(&viewer, want, page, partial, context())).await;
                    let whole = want != Want::Partial || page == partial;
                    let template = if whole { page } else { partial };
                    let fragment =
                        templates.render_fragment(Audience::of(&viewer), want, (template, whole), context())?;
                    let kept = body(templates.respond_with(&viewer, want, &fragment, Lookup::Hit)).await;
                    assert_eq!(kept, direct, "{template} ({want:?}) for {viewer:?}");
                    assert!(direct.len() > 200, "{template}: {direct}");
                    // Not vacuous: the audiences do see different things.
                    if template != "home.html" {
                        assert_eq!(
                            direct.contains(">Delete<"),
                            viewer.user.as_ref().is_some_and(|u| u.admin),
                            "{template}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn fragments_are_kept_by_key_and_say_they_were() {
        let templates = Templates::new();
        let fragment = Fragment { title: "T".into(), content: "<p>kept</p>".into(), whole: false, headers: Vec::new() };
        let key = Fragments::key(Audience::Visitor, "products/_list.html", "products:v1:");
        assert!(templates.fragments().get(&key).await.is_none());
        templates.fragments().keep(key.clone(), Arc::new(fragment)).await;
        let other = Fragments::key(Audience::Admin, "products/_list.html", "products:v1:");
        assert!(templates.fragments().get(&other).await.is_none(), "an admin's is another fragment");
        let found = templates.fragments().get(&key).await.expect("kept");
        let response = templates.respond_with(&Viewer::default(), Want::Partial, &found, Lookup::Hit);
        assert_eq!(response.headers().get("x-cache").and_then(|v| v.to_str().ok()), Some("hit"));
        assert_eq!(body(response).await, "<p>kept</p>");
        templates.fragments().clear();
        templates.fragments().kept.run_pending_tasks().await;
        assert!(templates.fragments().get(&key).await.is_none());
    }
}
