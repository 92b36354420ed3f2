//! minijinja templates embedded in the binary. Every template name ends in
//! `.html`, which is what turns on minijinja's auto-escaping.

use std::sync::Arc;

use minijinja::Environment;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "templates/"]
struct Files;

#[derive(Clone)]
pub struct Templates(Arc<Environment<'static>>);

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_loader(|name| {
            Ok(Files::get(name).map(|file| String::from_utf8_lossy(&file.data).into_owned()))
        });
        env.add_filter("money", money);
        Self(Arc::new(env))
    }

    pub fn render(
        &self,
        name: &str,
        context: minijinja::Value,
    ) -> Result<String, minijinja::Error> {
        self.0.get_template(name)?.render(context)
    }
}

/// Minor units as a price: 1999 → "19.99".
fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02}", minor / 100, minor % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_money() {
        assert_eq!(money(1999), "19.99");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-120), "-1.20");
    }

    #[test]
    fn escapes_what_it_shows() -> Result<(), minijinja::Error> {
        let html = Templates::new().render(
            "home.html",
            minijinja::context! { products => vec![minijinja::context! { id => 1, name => "<script>alert(1)</script>", price_minor => 100, stock => 1 }], total => 1 },
        )?;
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>alert"));
        Ok(())
    }
}
