//! `ListProducts`: filters, order and full-text search, paged in the
//! database. PostgreSQL searches a weighted `tsvector` (name A, description
//! B) and adds trigram similarity to the rank; SQLite searches an FTS5
//! index ranked by bm25 (name ten times the description). On both, each
//! word matches as a prefix, a whole word ranks above a prefix, and a word
//! that matches nothing is replaced by the nearest words of the index.
//!
//! User text never becomes SQL: query words are letters and digits only
//! (see `search::QueryWords`), the full-text query built from them is bound
//! as a parameter, and the SQL around it is built from fixed pieces.

use shop_storage::sqlx::{self, AnyConnection};
use shop_storage::{Backend, Db, Page};

use super::{P_COLUMNS, attach, product_from_row};
use crate::InventoryError;
use crate::domain::Product;
use crate::search::{ProductFilter, SearchTerm, Sort, closest_words, max_distance};

/// One page of matches, how many match in all, and the words searched.
pub struct Found {
    pub products: Vec<Product>,
    pub total: i64,
    pub terms: Vec<SearchTerm>,
}

/// A value bound to a numbered placeholder.
enum Arg {
    Int(i64),
    Text(String),
}

/// SQL text and the values of its placeholders, in order.
#[derive(Default)]
struct Statement {
    sql: String,
    args: Vec<Arg>,
}

impl Statement {
    /// Binds `arg` and returns its placeholder.
    fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql.clone()));
        for arg in &self.args {
            query = match arg {
                Arg::Int(value) => query.bind(*value),
                Arg::Text(value) => query.bind(value.as_str()),
            };
        }
        query
    }
}

pub async fn list(db: &Db, filter: &ProductFilter, sort: Sort, page: Page) -> Result<Found, InventoryError> {
    db.observe("list", async move {
        let mut conn = db.pool.acquire().await?;
        let mut terms = Vec::with_capacity(filter.words.words().len());
        for word in filter.words.words() {
            terms.push(resolve(&mut conn, db.backend, word).await?);
        }

        let mut select = Statement::default();
        let from = from_and_where(&mut select, db.backend, filter, &terms);
        let order = order_by(&mut select, db.backend, sort, &terms);
        let limit = select.bind(Arg::Int(page.limit()));
        let offset = select.bind(Arg::Int(page.offset()));
        select.sql = format!("SELECT {P_COLUMNS} {from} ORDER BY {order} LIMIT {limit} OFFSET {offset}");
        let rows = select.query().fetch_all(&mut *conn).await?;
        let mut products = rows.iter().map(product_from_row).collect::<Result<Vec<_>, _>>()?;

        let mut count = Statement::default();
        let from = from_and_where(&mut count, db.backend, filter, &terms);
        count.sql = format!("SELECT COUNT(*) AS total {from}");
        let total: i64 = sqlx::Row::try_get(&count.query().fetch_one(&mut *conn).await?, "total")?;

        attach(&mut conn, &mut products).await?;
        Ok(Found { products, total, terms })
    })
    .await
}

/// The FROM and WHERE clauses shared by a page and its count.
fn from_and_where(statement: &mut Statement, backend: Backend, filter: &ProductFilter, terms: &[SearchTerm]) -> String {
    let mut conditions = Vec::new();
    let from = if terms.is_empty() {
        "FROM products p".to_owned()
    } else {
        let query = statement.bind(Arg::Text(full_text_query(backend, terms, true)));
        match backend {
            Backend::Postgres => {
                conditions.push(format!("p.search @@ to_tsquery('simple', {query})"));
                "FROM products p".to_owned()
            }
            Backend::Sqlite => {
                conditions.push(format!("products_search MATCH {query}"));
                "FROM products_search JOIN products p ON p.id = products_search.rowid".to_owned()
            }
        }
    };
    if let Some(category_id) = filter.category_id {
        let category = statement.bind(Arg::Int(category_id));
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM product_categories pc WHERE pc.product_id = p.id AND pc.category_id = {category})"
        ));
    }
    if filter.in_stock_only {
        conditions.push("p.stock > 0".to_owned());
    }
    if let Some(min) = filter.min_price_minor {
        conditions.push(format!("p.price_minor >= {}", statement.bind(Arg::Int(min))));
    }
    if let Some(max) = filter.max_price_minor {
        conditions.push(format!("p.price_minor <= {}", statement.bind(Arg::Int(max))));
    }
    if let Some(excluded) = filter.exclude_product_id {
        conditions.push(format!("p.id <> {}", statement.bind(Arg::Int(excluded))));
    }
    if conditions.is_empty() { from } else { format!("{from} WHERE {}", conditions.join(" AND ")) }
}

/// ORDER BY for a sort; relevance needs terms (the caller asks for it
/// only with some), and ends on the id so equal ranks page stably.
fn order_by(statement: &mut Statement, backend: Backend, sort: Sort, terms: &[SearchTerm]) -> String {
    match sort {
        Sort::Relevance if !terms.is_empty() => {
            // The whole-word query adds to the prefix query's rank: "tea"
            // ranks "Green tea" above "Teapot".
            let whole_words = statement.bind(Arg::Text(full_text_query(backend, terms, false)));
            match backend {
                Backend::Postgres => {
                    let prefixes = statement.bind(Arg::Text(full_text_query(backend, terms, true)));
                    let words = statement.bind(Arg::Text(searched_words(terms)));
                    format!(
                        "ts_rank(p.search, to_tsquery('simple', {prefixes})) \
                         + ts_rank(p.search, to_tsquery('simple', {whole_words})) \
                         + 0.5 * word_similarity({words}, p.name) DESC, p.id DESC"
                    )
                }
                Backend::Sqlite => format!(
                    // bm25 is better when lower; a product without a whole
                    // word gets no bonus.
                    "bm25(products_search, 10.0, 1.0) + COALESCE((SELECT bm25(products_search, 10.0, 1.0) \
                     FROM products_search WHERE products_search MATCH {whole_words} \
                     AND products_search.rowid = p.id), 0) ASC, p.id DESC"
                ),
            }
        }
        Sort::Newest | Sort::Relevance => "p.id DESC".to_owned(),
        Sort::PriceLowFirst => "p.price_minor ASC, p.id DESC".to_owned(),
        Sort::PriceHighFirst => "p.price_minor DESC, p.id DESC".to_owned(),
        Sort::Name => "lower(p.name) ASC, p.id ASC".to_owned(),
    }
}

/// The words searched, each the first of its alternatives.
fn searched_words(terms: &[SearchTerm]) -> String {
    terms.iter().map(|t| t.alternatives.first().unwrap_or(&t.typed).as_str()).collect::<Vec<_>>().join(" ")
}

/// Every term, each as any of its alternatives: `earl:* & (grey:* |
/// gray:*)` on PostgreSQL, `"earl"* AND ("grey"* OR "gray"*)` in FTS5.
fn full_text_query(backend: Backend, terms: &[SearchTerm], prefix: bool) -> String {
    let groups: Vec<String> = terms
        .iter()
        .map(|term| {
            let words: Vec<String> = term.alternatives.iter().map(|word| one_word(backend, word, prefix)).collect();
            let or = match backend {
                Backend::Postgres => " | ",
                Backend::Sqlite => " OR ",
            };
            if words.len() == 1 { words.join("") } else { format!("({})", words.join(or)) }
        })
        .collect();
    let and = match backend {
        Backend::Postgres => " & ",
        Backend::Sqlite => " AND ",
    };
    groups.join(and)
}

/// One word of a full-text query. Words hold letters and digits only;
/// FTS5's quotes are doubled anyway, so a word is always one string.
fn one_word(backend: Backend, word: &str, prefix: bool) -> String {
    let star = if prefix { "*" } else { "" };
    match backend {
        Backend::Postgres => {
            let word: String = word.chars().filter(|c| c.is_alphanumeric()).collect();
            if prefix { format!("{word}:*") } else { word }
        }
        Backend::Sqlite => format!("\"{}\"{star}", word.replace('"', "\"\"")),
    }
}

/// A query word as searched: itself when some product has a word it
/// begins, otherwise the nearest words of the index (or itself, matching
/// nothing, when none is near).
async fn resolve(conn: &mut AnyConnection, backend: Backend, word: &str) -> Result<SearchTerm, InventoryError> {
    let as_typed = SearchTerm::as_typed(word);
    let probe = full_text_query(backend, std::slice::from_ref(&as_typed), true);
    let sql = match backend {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM (SELECT 1 FROM products WHERE search @@ to_tsquery('simple', $1) LIMIT 1) AS hit"
        }
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM (SELECT 1 FROM products_search WHERE products_search MATCH $1 LIMIT 1) AS hit"
        }
    };
    let (hits,): (i64,) = sqlx::query_as(sql).bind(probe).fetch_one(&mut *conn).await?;
    if hits > 0 {
        return Ok(as_typed);
    }
    // Only words of a length within reach can be near enough; the index's
    // vocabulary is read, never the products.
    let length = i64::try_from(word.chars().count()).unwrap_or(i64::MAX);
    let reach = i64::try_from(max_distance(word)).unwrap_or(2);
    let sql = match backend {
        Backend::Postgres => {
            "SELECT word, CAST(ndoc AS BIGINT) FROM ts_stat('SELECT search FROM products') \
             WHERE length(word) BETWEEN $1 AND $2"
        }
        Backend::Sqlite => "SELECT term, doc FROM products_search_words WHERE length(term) BETWEEN $1 AND $2",
    };
    let candidates: Vec<(String, i64)> =
        sqlx::query_as(sql).bind(length - reach).bind(length + reach).fetch_all(&mut *conn).await?;
    let alternatives = closest_words(word, candidates);
    if alternatives.is_empty() {
        return Ok(as_typed);
    }
    Ok(SearchTerm { typed: word.to_owned(), alternatives })
}
