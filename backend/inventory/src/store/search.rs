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
//!
//! On PostgreSQL the words table (`product_words`, every word of the
//! catalogue with how many products have it) answers whether a word matches
//! as typed, which words it stands for and how many products those are in;
//! from that, a search either walks the index of its order testing each row
//! (words most products have) or reads every match from the GIN index and
//! sorts them (rare words). The planner cannot tell the two apart: it
//! estimates every prefix query alike.

use shop_storage::cursor::Key;
use shop_storage::sqlx::{self, AnyConnection, Row, any::AnyRow};
use shop_storage::{Backend, Db};

use super::{P_COLUMNS, attach, product_from_row};
use crate::InventoryError;
use crate::domain::Product;
use crate::search::{
    COUNT_BOUND, Position, ProductFilter, RANKED_MATCHES, SearchTerm, Sort, closest_words, max_distance,
};

/// One page of matches, the sort keys of the rows at its two ends when
/// there are pages beyond them, how many match, and the words searched.
pub struct Found {
    pub products: Vec<Product>,
    /// Matches in all, counted up to [`COUNT_BOUND`].
    pub total: i64,
    /// There are more than `total` matches: counting stopped.
    pub total_is_lower_bound: bool,
    /// The key of the page's last row, when a page follows.
    pub next: Option<Vec<Key>>,
    /// The key of the page's first row, when a page precedes.
    pub previous: Option<Vec<Key>>,
    pub terms: Vec<SearchTerm>,
}

/// A value bound to a numbered placeholder.
enum Arg {
    Int(i64),
    Float(f64),
    Text(String),
}

impl From<&Key> for Arg {
    fn from(key: &Key) -> Self {
        match key {
            Key::Int(value) => Arg::Int(*value),
            Key::Float(value) => Arg::Float(*value),
            Key::Text(value) => Arg::Text(value.clone()),
        }
    }
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
                Arg::Float(value) => query.bind(*value),
                Arg::Text(value) => query.bind(value.as_str()),
            };
        }
        query
    }
}

/// Which way a page is read along its order: backwards for a page before
/// a cursor and for the last page (then turned round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// Where reading starts: after a row's key, or at an offset (old clients'
/// page numbers; 0 for an end of the list).
enum Start<'a> {
    After(&'a [Key]),
    Offset(i64),
}

/// How a PostgreSQL search reads its matches (docs/search.md, "Measured").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// No words (or SQLite): the database's planner chooses.
    Planner,
    /// Walk the index of the list's order (newest: the primary key) and
    /// test each row against the words: a word most products have fills a
    /// page, and the newest 1,001 matches, within a few rows per match.
    Walk,
    /// Read every match from the GIN index, then sort them: a rare word's
    /// matches are few, and a walk would pass many rows for each.
    Matches,
}

/// Most catalogue words a query word is searched as exactly: beyond, it is
/// searched as a prefix. The GIN index finds a set of whole words several
/// times faster than a prefix (`darjeeling:*` 43 ms, `darjeeling` 7 ms, in
/// an AND of two words at 1,000,000 products).
const EXACT_WORDS: usize = 16;
/// Most catalogue words read for a query word's prefix; beyond this many
/// the word is taken to be common.
const PREFIX_WORDS: i64 = 256;

/// The catalogue words a query word's alternatives begin, from the words
/// table, with how many products have each (PostgreSQL).
#[derive(Debug, Default)]
struct Vocabulary {
    words: Vec<(String, i64)>,
    /// Every such word was read (at most [`PREFIX_WORDS`] of them).
    complete: bool,
}

impl Vocabulary {
    /// At most how many products have one of the words (a product with two
    /// counts twice); `None` when not every word was read.
    fn products(&self) -> Option<i64> {
        self.complete.then(|| self.words.iter().map(|(_, n)| *n).fold(0_i64, i64::saturating_add))
    }

    fn add(&mut self, other: Vocabulary) {
        self.complete = self.complete && other.complete;
        for word in other.words {
            if !self.words.iter().any(|(w, _)| *w == word.0) {
                self.words.push(word);
            }
        }
    }
}

/// The plan for words in `products` products each at most (`None`: many),
/// in a catalogue of `catalogue`. The walk tests about `1,001 x catalogue /
/// matches` rows to find the newest 1,001 matches (what the count and
/// relevance need); the GIN index reads every match: the walk is cheaper
/// from `matches² > 1,001 x catalogue` on (31,600 matches at 1,000,000
/// products, 1 in 32). Words together are taken to be independent, so the
/// matches of all of them are `catalogue x Π(products / catalogue)`.
fn plan(catalogue: i64, products: &[Option<i64>]) -> Plan {
    if catalogue <= 0 {
        // Never analysed: small, or just loaded; the walk stops on its own.
        return Plan::Walk;
    }
    let catalogue = catalogue as f64;
    let matches = products
        .iter()
        .map(|n| n.map_or(catalogue, |n| (n as f64).min(catalogue)))
        .fold(catalogue, |matches, n| matches * n / catalogue);
    let needed = (COUNT_BOUND.max(RANKED_MATCHES) + 1) as f64;
    if matches * matches < needed * catalogue { Plan::Matches } else { Plan::Walk }
}

/// One page of `filter`'s matches in `sort` at `position`, `size` rows.
/// A page is one index range read (`WHERE key > cursor ORDER BY key LIMIT
/// size + 1`, the extra row saying whether more follow), whatever its
/// depth; the count stops at [`COUNT_BOUND`].
pub async fn list(
    db: &Db,
    filter: &ProductFilter,
    sort: Sort,
    position: &Position,
    size: u32,
) -> Result<Found, InventoryError> {
    db.observe("list", async move {
        let mut conn = db.pool.acquire().await?;
        let mut terms = Vec::with_capacity(filter.words.words().len());
        let mut vocabularies = Vec::with_capacity(filter.words.words().len());
        for word in filter.words.words() {
            let (term, vocabulary) = resolve(&mut conn, db.backend, word).await?;
            terms.push(term);
            vocabularies.extend(vocabulary);
        }
        // Relevance needs words to rank by.
        let sort = if terms.is_empty() && sort == Sort::Relevance { Sort::Newest } else { sort };
        let (plan, matching) = if db.backend == Backend::Postgres && !terms.is_empty() {
            if vocabularies.iter().any(|v| v.complete && v.words.is_empty()) {
                // A word no product has a word beginning with: every word
                // must match, so nothing does.
                let none = Found {
                    products: Vec::new(),
                    total: 0,
                    total_is_lower_bound: false,
                    next: None,
                    previous: None,
                    terms,
                };
                return Ok(none);
            }
            let (catalogue,): (i64,) = sqlx::query_as(
                "SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = CAST('products' AS regclass)",
            )
            .fetch_one(&mut *conn)
            .await?;
            let products: Vec<Option<i64>> = vocabularies.iter().map(Vocabulary::products).collect();
            (plan(catalogue, &products), Some(matching_query(&terms, &vocabularies)))
        } else {
            (Plan::Planner, None)
        };
        let list = List { backend: db.backend, filter, terms: &terms, sort, plan, matching };
        let size = i64::from(size);

        let mut matched = None;
        let page = match position {
            Position::First => {
                let mut rows =
                    list.read(&mut conn, Start::Offset(0), Direction::Forward, size + 1, &mut matched).await?;
                let more = trim(&mut rows, size);
                Page { rows, previous: false, next: more, from_an_end: true }
            }
            Position::Number(number) => {
                let offset = i64::from(number.saturating_sub(1)) * size;
                let start = Start::Offset(offset);
                let mut rows = list.read(&mut conn, start, Direction::Forward, size + 1, &mut matched).await?;
                let more = trim(&mut rows, size);
                Page { previous: offset > 0 && !rows.is_empty(), rows, next: more, from_an_end: false }
            }
            Position::After(key) => {
                let start = Start::After(key);
                let mut rows = list.read(&mut conn, start, Direction::Forward, size + 1, &mut matched).await?;
                let more = trim(&mut rows, size);
                Page { previous: !rows.is_empty(), rows, next: more, from_an_end: false }
            }
            Position::Before(key) => {
                let start = Start::After(key);
                let mut rows = list.read(&mut conn, start, Direction::Backward, size + 1, &mut matched).await?;
                // Fewer than a page before the cursor: this is the first
                // page, short, so a walk backwards visits each row once.
                let more = trim(&mut rows, size);
                rows.reverse();
                Page { rows, previous: more, next: true, from_an_end: false }
            }
            Position::Last => {
                let start = Start::Offset(0);
                let mut rows = list.read(&mut conn, start, Direction::Backward, size + 1, &mut matched).await?;
                let more = trim(&mut rows, size);
                rows.reverse();
                Page { rows, previous: more, next: false, from_an_end: true }
            }
        };

        // A page read from an end with nothing beyond it is the whole
        // list: no count needed.
        let (total, total_is_lower_bound) = if page.from_an_end && !page.previous && !page.next {
            (i64::try_from(page.rows.len()).unwrap_or(i64::MAX), false)
        } else if let Some(matched) = matched {
            list.bounded(matched)
        } else {
            let matched = list.count(&mut conn).await?;
            list.bounded(matched)
        };
        let previous = page.rows.first().filter(|_| page.previous).map(|(_, key)| key.clone());
        let next = page.rows.last().filter(|_| page.next).map(|(_, key)| key.clone());
        let mut products: Vec<Product> = page.rows.into_iter().map(|(product, _)| product).collect();
        attach(&mut conn, &mut products).await?;
        Ok(Found { products, total, total_is_lower_bound, next, previous, terms })
    })
    .await
}

/// Rows of a page, each with its sort key, in the list's order.
struct Page {
    rows: Vec<(Product, Vec<Key>)>,
    previous: bool,
    next: bool,
    /// Read from the first or the last row.
    from_an_end: bool,
}

/// Keeps the first `size` rows; whether there were more.
fn trim<T>(rows: &mut Vec<T>, size: i64) -> bool {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    more
}

/// A list: what it matches and its order.
struct List<'a> {
    backend: Backend,
    filter: &'a ProductFilter,
    terms: &'a [SearchTerm],
    sort: Sort,
    plan: Plan,
    /// PostgreSQL: the `tsquery` the words must match (see [`matching_query`]).
    matching: Option<String>,
}

impl List<'_> {
    /// The sort key's columns, each with whether it descends.
    fn key_columns(&self) -> &'static [(&'static str, bool)] {
        match self.sort {
            Sort::Newest => &[("p.id", true)],
            Sort::PriceLowFirst => &[("p.price_minor", false), ("p.id", true)],
            Sort::PriceHighFirst => &[("p.price_minor", true), ("p.id", true)],
            Sort::Name => &[("lower(p.name)", false), ("p.id", false)],
            Sort::Relevance => &[("p.sort_rank", true), ("p.id", true)],
        }
    }

    /// Up to `limit` rows from `start` in `direction`, with their keys.
    async fn read(
        &self,
        conn: &mut AnyConnection,
        start: Start<'_>,
        direction: Direction,
        limit: i64,
        matched: &mut Option<i64>,
    ) -> Result<Vec<(Product, Vec<Key>)>, InventoryError> {
        let mut select = Statement::default();
        let mut with: Vec<String> = self.found(&mut select).into_iter().collect();
        let mut counted = String::new();
        let (from, mut conditions) = if self.sort == Sort::Relevance {
            // The ranked matches stand in for the products table: the key
            // compares `p.sort_rank` as it would a column.
            let ranked = match self.backend {
                Backend::Postgres => {
                    // The newest matches are read once: ranked, and counted.
                    let newest = self.newest(&mut select);
                    with.push(format!("newest AS MATERIALIZED ({newest})"));
                    counted = ", (SELECT COUNT(*) FROM newest) AS matched".to_owned();
                    self.ranked(&mut select)
                }
                Backend::Sqlite => self.ranked(&mut select),
            };
            (format!("FROM ({ranked}) p"), Vec::new())
        } else {
            if self.plan != Plan::Planner {
                // The count rides along with the page: one statement.
                let newest = self.newest(&mut select);
                counted = format!(", (SELECT COUNT(*) FROM ({newest}) AS c) AS matched");
            }
            self.source(&mut select)
        };
        let columns = self.key_columns();
        let mut offset = String::new();
        match start {
            Start::After(key) => conditions.push(keyset(&mut select, columns, key, direction)),
            Start::Offset(0) => {}
            Start::Offset(rows) => offset = format!(" OFFSET {}", select.bind(Arg::Int(rows))),
        }
        let order: Vec<String> = columns
            .iter()
            .map(|(column, descending)| {
                let descending = *descending != (direction == Direction::Backward);
                format!("{column} {}", if descending { "DESC" } else { "ASC" })
            })
            .collect();
        let extra = match self.sort {
            Sort::Name => ", lower(p.name) AS sort_name",
            Sort::Relevance => ", p.sort_rank",
            _ => "",
        };
        let limit = select.bind(Arg::Int(limit));
        let with = if with.is_empty() { String::new() } else { format!("WITH {} ", with.join(", ")) };
        select.sql = format!(
            "{with}SELECT {P_COLUMNS}{extra}{counted} {} ORDER BY {} LIMIT {limit}{offset}",
            clause(&from, &conditions),
            order.join(", ")
        );
        let rows = select.query().fetch_all(&mut *conn).await?;
        if !counted.is_empty()
            && let Some(row) = rows.first()
        {
            *matched = Some(row.try_get("matched")?);
        }
        rows.iter().map(|row| self.row(row)).collect::<Result<_, _>>().map_err(Into::into)
    }

    /// For [`Plan::Matches`], `found`: every match, read once from the GIN
    /// index (a materialized CTE, so the planner cannot turn it into a walk).
    fn found(&self, statement: &mut Statement) -> Option<String> {
        (self.plan == Plan::Matches).then(|| {
            let (from, conditions) = self.narrowed(statement);
            format!("found AS MATERIALIZED (SELECT {P_COLUMNS} {})", clause(&from, &conditions))
        })
    }

    /// The rows a page is read from: `found`, or the products narrowed.
    fn source(&self, statement: &mut Statement) -> (String, Vec<String>) {
        if self.plan == Plan::Matches { ("FROM found p".to_owned(), Vec::new()) } else { self.narrowed(statement) }
    }

    /// The ids of the newest matches, as many as relevance ranks or the
    /// count counts, and one more (PostgreSQL).
    fn newest(&self, statement: &mut Statement) -> String {
        let (from, conditions) = self.source(statement);
        let bound = statement.bind(Arg::Int(COUNT_BOUND.max(RANKED_MATCHES) + 1));
        format!("SELECT p.id {} ORDER BY p.id DESC LIMIT {bound}", clause(&from, &conditions))
    }

    /// The total as answered: up to [`COUNT_BOUND`] of `matched`, and
    /// whether there are more.
    fn bounded(&self, matched: i64) -> (i64, bool) {
        // Relevance pages end with the ranked matches.
        let reachable = if self.sort == Sort::Relevance { RANKED_MATCHES } else { COUNT_BOUND };
        (matched.min(COUNT_BOUND).min(reachable), matched > COUNT_BOUND)
    }

    /// A product and its sort key.
    fn row(&self, row: &AnyRow) -> Result<(Product, Vec<Key>), sqlx::Error> {
        let product = product_from_row(row)?;
        let id = Key::Int(product.id);
        let key = match self.sort {
            Sort::Newest => vec![id],
            Sort::PriceLowFirst | Sort::PriceHighFirst => vec![Key::Int(product.price_minor), id],
            Sort::Name => vec![Key::Text(row.try_get("sort_name")?), id],
            Sort::Relevance => vec![Key::Float(row.try_get("sort_rank")?), id],
        };
        Ok((product, key))
    }

    /// The newest [`RANKED_MATCHES`] matches with their rank (higher is
    /// better on both backends), as a subquery. Only these are ranked: the
    /// newest of a word most products have are one backwards walk of the
    /// primary key, where ranking every match would read them all.
    fn ranked(&self, statement: &mut Statement) -> String {
        let (backend, terms) = (self.backend, self.terms);
        match backend {
            Backend::Postgres => {
                // `newest`, the CTE of the newest matches.
                let matches = format!("SELECT id FROM newest ORDER BY id DESC LIMIT {RANKED_MATCHES}");
                // The whole-word query adds to the prefix query's rank: "tea"
                // ranks "Green tea" above "Teapot"; the name's likeness to
                // the words searched breaks what ties remain. Ranked after
                // the limit, so only the candidates are ranked.
                let prefixes = statement.bind(Arg::Text(full_text_query(backend, terms, true)));
                let whole_words = statement.bind(Arg::Text(full_text_query(backend, terms, false)));
                let words = statement.bind(Arg::Text(searched_words(terms)));
                format!(
                    "SELECT {P_COLUMNS}, CAST(ts_rank(p.search, to_tsquery('simple', {prefixes})) \
                     + ts_rank(p.search, to_tsquery('simple', {whole_words})) \
                     + 0.5 * word_similarity({words}, p.name) AS DOUBLE PRECISION) AS sort_rank \
                     FROM products p WHERE p.id IN ({matches})"
                )
            }
            Backend::Sqlite => {
                // bm25 is better when lower, and only callable beside the
                // MATCH, so it is taken with the candidates; a product
                // without a whole word gets no bonus.
                let whole_words = statement.bind(Arg::Text(full_text_query(backend, terms, false)));
                let (from, conditions) = self.narrowed(statement);
                format!(
                    "SELECT {P_COLUMNS}, c.sort_rank FROM (SELECT p.id AS ranked_id, \
                     -(bm25(products_search, 10.0, 1.0) + COALESCE((SELECT bm25(products_search, 10.0, 1.0) \
                     FROM products_search WHERE products_search MATCH {whole_words} \
                     AND products_search.rowid = p.id), 0)) AS sort_rank {} \
                     ORDER BY p.id DESC LIMIT {RANKED_MATCHES}) c JOIN products p ON p.id = c.ranked_id",
                    clause(&from, &conditions)
                )
            }
        }
    }

    /// How many match, counted up to [`COUNT_BOUND`] and one more.
    async fn count(&self, conn: &mut AnyConnection) -> Result<i64, InventoryError> {
        let mut count = Statement::default();
        count.sql = if self.plan == Plan::Planner {
            let (from, conditions) = self.narrowed(&mut count);
            let bound = count.bind(Arg::Int(COUNT_BOUND + 1));
            format!(
                "SELECT COUNT(*) AS total FROM (SELECT 1 AS hit {} LIMIT {bound}) AS bounded",
                clause(&from, &conditions)
            )
        } else {
            let with = self.found(&mut count).map(|found| format!("WITH {found} ")).unwrap_or_default();
            let newest = self.newest(&mut count);
            format!("{with}SELECT COUNT(*) AS total FROM ({newest}) AS bounded")
        };
        Ok(count.query().fetch_one(&mut *conn).await?.try_get("total")?)
    }

    /// The FROM clause and conditions shared by a page and its count.
    fn narrowed(&self, statement: &mut Statement) -> (String, Vec<String>) {
        let (backend, filter, terms) = (self.backend, self.filter, self.terms);
        let mut conditions = Vec::new();
        let from = if terms.is_empty() {
            "FROM products p".to_owned()
        } else {
            match backend {
                Backend::Postgres => {
                    let query = match &self.matching {
                        Some(matching) => matching.clone(),
                        None => full_text_query(backend, terms, true),
                    };
                    let query = statement.bind(Arg::Text(query));
                    conditions.push(if self.plan == Plan::Walk {
                        // The function behind `@@`, which no index serves:
                        // the order's own index is walked and each row
                        // tested, never the GIN index read whole.
                        format!("ts_match_vq(p.search, CAST({query} AS tsquery))")
                    } else {
                        format!("p.search @@ CAST({query} AS tsquery)")
                    });
                    "FROM products p".to_owned()
                }
                Backend::Sqlite => {
                    let query = statement.bind(Arg::Text(full_text_query(backend, terms, true)));
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
        (from, conditions)
    }
}

/// `FROM ...` and its conditions joined.
fn clause(from: &str, conditions: &[String]) -> String {
    if conditions.is_empty() { from.to_owned() } else { format!("{from} WHERE {}", conditions.join(" AND ")) }
}

/// Rows past `key` in the order of `columns` read in `direction`: for a
/// key (a, b), `a >= $a AND (a > $a OR (a = $a AND b > $b))` (each
/// comparison turned for a descending column or a backwards read). The
/// leading `a >= $a` is what an index range starts at.
fn keyset(statement: &mut Statement, columns: &[(&str, bool)], key: &[Key], direction: Direction) -> String {
    let past = |descending: bool| if descending != (direction == Direction::Backward) { "<" } else { ">" };
    let mut condition = String::new();
    for (i, ((column, descending), value)) in columns.iter().zip(key).enumerate().rev() {
        let value_past = statement.bind(value.into());
        condition = if condition.is_empty() {
            format!("{column} {} {value_past}", past(*descending))
        } else {
            let value_equal = statement.bind(value.into());
            format!("({column} {} {value_past} OR ({column} = {value_equal} AND {condition}))", past(*descending))
        };
        if i == 0 && columns.len() > 1 {
            let value_from = statement.bind(value.into());
            condition = format!("{column} {}= {value_from} AND {condition}", past(*descending));
        }
    }
    condition
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

/// The `tsquery` a PostgreSQL search's words must match: each term as the
/// catalogue words it stands for, `('tea' | 'teapot') & 'darjeeling'`, when
/// the words table listed them all and they are few; otherwise as
/// prefixes, `'tea':*`. The same matches either way: the table holds every
/// word of every product, in the same transaction as the product.
/// Catalogue words are quoted (`'` doubled, `\` escaped) and the query is
/// cast, not parsed, so a word like `pu-erh` stays one lexeme.
fn matching_query(terms: &[SearchTerm], vocabularies: &[Vocabulary]) -> String {
    let quoted = |word: &str| format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''"));
    let groups: Vec<String> = terms
        .iter()
        .zip(vocabularies)
        .map(|(term, vocabulary)| {
            let words: Vec<String> = if vocabulary.complete && vocabulary.words.len() <= EXACT_WORDS {
                vocabulary.words.iter().map(|(word, _)| quoted(word)).collect()
            } else {
                term.alternatives.iter().map(|word| format!("{}:*", quoted(word))).collect()
            };
            if words.len() == 1 { words.join("") } else { format!("({})", words.join(" | ")) }
        })
        .collect();
    groups.join(" & ")
}

/// The catalogue words beginning with `prefix` and how many products have
/// each, from the words table (PostgreSQL), at most [`PREFIX_WORDS`]: one
/// range of its `COLLATE "C"` index, in which the words sharing a prefix
/// are next to each other whatever the database's collation.
async fn prefixed(conn: &mut AnyConnection, prefix: &str) -> Result<Vocabulary, InventoryError> {
    // The highest code point: every word beginning with `prefix` sorts
    // below `prefix` followed by it.
    let end = format!("{prefix}\u{10FFFF}");
    let words: Vec<(String, i64)> = sqlx::query_as(
        "SELECT word, products FROM product_words WHERE word COLLATE \"C\" >= $1 AND word COLLATE \"C\" < $2 \
         AND products > 0 ORDER BY word COLLATE \"C\" LIMIT $3",
    )
    .bind(prefix)
    .bind(end)
    .bind(PREFIX_WORDS + 1)
    .fetch_all(&mut *conn)
    .await?;
    let mut vocabulary = Vocabulary { complete: words.len() <= usize::try_from(PREFIX_WORDS).unwrap_or(0), words };
    vocabulary.words.truncate(usize::try_from(PREFIX_WORDS).unwrap_or(0));
    Ok(vocabulary)
}

/// A query word as searched: itself when some product has a word it
/// begins, otherwise the nearest words of the index (or itself, matching
/// nothing, when none is near). On PostgreSQL also the catalogue words it
/// stands for.
async fn resolve(
    conn: &mut AnyConnection,
    backend: Backend,
    word: &str,
) -> Result<(SearchTerm, Option<Vocabulary>), InventoryError> {
    let as_typed = SearchTerm::as_typed(word);
    match backend {
        Backend::Postgres => {
            // The words table, not the products: for a word that matches
            // nothing the planner would read every product.
            let vocabulary = prefixed(conn, word).await?;
            if !vocabulary.words.is_empty() {
                return Ok((as_typed, Some(vocabulary)));
            }
        }
        Backend::Sqlite => {
            let probe = full_text_query(backend, std::slice::from_ref(&as_typed), true);
            let sql =
                "SELECT COUNT(*) FROM (SELECT 1 FROM products_search WHERE products_search MATCH $1 LIMIT 1) AS hit";
            let (hits,): (i64,) = sqlx::query_as(sql).bind(probe).fetch_one(&mut *conn).await?;
            if hits > 0 {
                return Ok((as_typed, None));
            }
        }
    }
    // Only words of a length within reach can be near enough. The
    // vocabulary is read, never the products: on PostgreSQL the table of
    // words that triggers keep (`product_words`), on SQLite the FTS index's
    // own. Words with digits (sizes, codes) are never offered: a code near
    // another is another product, not a typo.
    let length = i64::try_from(word.chars().count()).unwrap_or(i64::MAX);
    let reach = i64::try_from(max_distance(word)).unwrap_or(2);
    let sql = match backend {
        Backend::Postgres => {
            // `word !~ '[0-9]'` as written in the partial index on the
            // length (migration 0006), so that index serves it.
            "SELECT word, products FROM product_words WHERE length(word) BETWEEN $1 AND $2 AND products > 0 \
             AND word !~ '[0-9]'"
        }
        Backend::Sqlite => {
            "SELECT term, doc FROM products_search_words WHERE length(term) BETWEEN $1 AND $2 \
             AND term NOT GLOB '*[0-9]*'"
        }
    };
    let candidates: Vec<(String, i64)> =
        sqlx::query_as(sql).bind(length - reach).bind(length + reach).fetch_all(&mut *conn).await?;
    let alternatives = closest_words(word, candidates);
    let vocabulary = match backend {
        Backend::Postgres => {
            let mut vocabulary = Vocabulary { words: Vec::new(), complete: true };
            for alternative in &alternatives {
                vocabulary.add(prefixed(conn, alternative).await?);
            }
            Some(vocabulary)
        }
        Backend::Sqlite => None,
    };
    if alternatives.is_empty() {
        return Ok((as_typed, vocabulary));
    }
    Ok((SearchTerm { typed: word.to_owned(), alternatives }, vocabulary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_in_many_products_is_walked_a_rare_one_read_from_the_index() {
        // At 1,000,000 products the two meet near 31,600 matches.
        assert_eq!(plan(1_000_000, &[Some(77_000)]), Plan::Walk);
        assert_eq!(plan(1_000_000, &[Some(20_000)]), Plan::Matches);
        assert_eq!(plan(1_000_000, &[None]), Plan::Walk, "too many words to add up: common");
        // Two words together: 59,000 x 77,000 / 1,000,000 = 4,500 matches.
        assert_eq!(plan(1_000_000, &[Some(59_000), Some(77_000)]), Plan::Matches);
        assert_eq!(plan(1_000_000, &[None, Some(5)]), Plan::Matches);
        // A catalogue never analysed: the walk, which stops by itself.
        assert_eq!(plan(0, &[Some(1)]), Plan::Walk);
        assert_eq!(plan(-1, &[Some(1)]), Plan::Walk);
    }

    #[test]
    fn catalogue_words_are_quoted_and_few_searched_exactly() {
        let term = |word: &str| SearchTerm::as_typed(word);
        let vocabulary = |words: &[&str], complete| Vocabulary {
            words: words.iter().map(|w| ((*w).to_owned(), 1)).collect(),
            complete,
        };
        let query = matching_query(
            &[term("tea"), term("pu"), term("x")],
            &[
                vocabulary(&["tea", "teapot"], true),
                vocabulary(&["pu-erh", "o'clock\\"], true),
                vocabulary(&["x1"], false),
            ],
        );
        assert_eq!(query, "('tea' | 'teapot') & ('pu-erh' | 'o''clock\\\\') & 'x':*");
    }
}
