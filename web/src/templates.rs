//! minijinja templates and static assets, embedded in the binary. Every
//! template name ends in `.html`, which is what turns on auto-escaping.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use rust_embed::RustEmbed;

use crate::negotiate::Want;
use crate::session::Viewer;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct TemplateFiles;

#[derive(RustEmbed)]
#[folder = "static/"]
pub struct StaticFiles;

#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
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
        let versions = asset_versions();
        env.add_function("asset", move |name: String| -> Value {
            // Built from our own file names and hashes: safe to emit as is.
            Value::from_safe_string(match versions.get(&name) {
                Some(version) => format!("/static/{name}?v={version}"),
                None => format!("/static/{name}"),
            })
        });
        Self { env: Arc::new(env) }
    }

    pub fn render(&self, name: &str, context: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }

    /// JSON for API clients; otherwise the page, or its fragment for an
    /// HTMX request, showing `value` as `name`. One view serves all three.
    pub fn represent<T: serde::Serialize>(
        &self,
        viewer: &Viewer,
        want: Want,
        (page, partial): (&str, &str),
        name: &str,
        value: &T,
    ) -> Response {
        match want {
            Want::Json => axum::Json(value).into_response(),
            Want::Page | Want::Partial => {
                let value = Value::from(minijinja::value::Serde(value));
                let context = Value::from(std::collections::BTreeMap::from([(name.to_owned(), value)]));
                self.respond(viewer, want, page, partial, context)
            }
        }
    }

    /// A full page, or just its fragment for an HTMX request. Every page
    /// also gets the viewer, for the navigation bar.
    pub fn respond(&self, viewer: &Viewer, want: Want, page: &str, partial: &str, context: Value) -> Response {
        let name = if want == Want::Partial { partial } else { page };
        let context = minijinja::context! { viewer => minijinja::value::Serde(viewer), partial => want == Want::Partial, ..context };
        match self.render(name, context) {
            Ok(html) => Html(html).into_response(),
            Err(error) => {
                // Not an AppError: rendering the error page could fail the same way.
                tracing::error!(template = name, error = %error, "rendering a template failed");
                let mut response =
                    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side.").into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                response
            }
        }
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
