//! Categories and which products are in them.

use std::collections::HashMap;

use shop_events::CategoryChanged;
use shop_storage::sqlx::{self, AnyConnection, Row, any::AnyRow};
use shop_storage::{Db, Violation, now_ms, violation};

use super::{placeholders, record};
use crate::InventoryError;
use crate::categories::{Category, CategoryName};

fn category_from_row(row: &AnyRow) -> Result<Category, sqlx::Error> {
    Ok(Category {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        product_count: row.try_get("product_count")?,
    })
}

/// A unique slug means the name (or one that reads the same) is taken.
fn taken(name: &CategoryName) -> impl Fn(sqlx::Error) -> InventoryError + '_ {
    move |error| match violation(&error) {
        Some(Violation::Unique) => InventoryError::CategoryNameTaken(name.as_str().to_owned()),
        _ => InventoryError::Storage(error),
    }
}

/// Every category by name (case-insensitively), with its product count.
pub async fn list(db: &Db) -> Result<Vec<Category>, InventoryError> {
    db.observe("list_categories", async move {
        let rows = sqlx::query(
            "SELECT c.id, c.name, c.slug, \
             (SELECT COUNT(*) FROM product_categories pc WHERE pc.category_id = c.id) AS product_count \
             FROM categories c ORDER BY lower(c.name), c.id",
        )
        .fetch_all(&db.pool)
        .await?;
        Ok(rows.iter().map(category_from_row).collect::<Result<_, _>>()?)
    })
    .await
}

pub async fn create(db: &Db, name: &CategoryName) -> Result<Category, InventoryError> {
    db.observe("create_category", async move {
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO categories (name, slug, created_at_ms) VALUES ($1, $2, $3) \
             RETURNING id, name, slug, CAST(0 AS BIGINT) AS product_count",
        )
        .bind(name.as_str())
        .bind(name.slug())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(taken(name))?;
        let category = category_from_row(&row)?;
        record(&mut tx, &CategoryChanged { category_id: category.id, change: "created".into() }).await?;
        tx.commit().await?;
        Ok(category)
    })
    .await
}

/// Renames a category; its slug follows.
pub async fn rename(db: &Db, id: i64, name: &CategoryName) -> Result<Category, InventoryError> {
    db.observe("rename_category", async move {
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE categories SET name = $2, slug = $3 WHERE id = $1 RETURNING id, name, slug, \
             (SELECT COUNT(*) FROM product_categories pc WHERE pc.category_id = $1) AS product_count",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(name.slug())
        .fetch_optional(&mut *tx)
        .await
        .map_err(taken(name))?;
        let category = row.as_ref().map(category_from_row).transpose()?.ok_or(InventoryError::CategoryNotFound(id))?;
        record(&mut tx, &CategoryChanged { category_id: id, change: "renamed".into() }).await?;
        tx.commit().await?;
        Ok(category)
    })
    .await
}

/// Deletes a category; its products stay, without it (ON DELETE CASCADE).
pub async fn delete(db: &Db, id: i64) -> Result<(), InventoryError> {
    db.observe("delete_category", async move {
        let mut tx = db.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM categories WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(InventoryError::CategoryNotFound(id));
        }
        record(&mut tx, &CategoryChanged { category_id: id, change: "deleted".into() }).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// The category with this slug, made if missing (the demo catalogue's).
pub async fn get_or_create(db: &Db, name: &CategoryName) -> Result<Category, InventoryError> {
    let found = db
        .observe("category_by_slug", async move {
            let row = sqlx::query(
                "SELECT id, name, slug, CAST(0 AS BIGINT) AS product_count FROM categories WHERE slug = $1",
            )
            .bind(name.slug())
            .fetch_optional(&db.pool)
            .await?;
            Ok::<_, InventoryError>(row.as_ref().map(category_from_row).transpose()?)
        })
        .await?;
    match found {
        Some(category) => Ok(category),
        None => create(db, name).await,
    }
}

/// Makes `ids` (de-duplicated by the caller) a product's categories
/// exactly; CATEGORY_NOT_FOUND names the first that does not exist.
pub(super) async fn set_of_product(
    conn: &mut AnyConnection,
    product_id: i64,
    ids: &[i64],
) -> Result<(), InventoryError> {
    if !ids.is_empty() {
        let sql = format!("SELECT id FROM categories WHERE id IN ({})", placeholders(1, ids.len()));
        let mut query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        let found: Vec<i64> = query.fetch_all(&mut *conn).await?.into_iter().map(|(id,)| id).collect();
        if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
            return Err(InventoryError::CategoryNotFound(*missing));
        }
    }
    sqlx::query("DELETE FROM product_categories WHERE product_id = $1").bind(product_id).execute(&mut *conn).await?;
    for id in ids {
        sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES ($1, $2)")
            .bind(product_id)
            .bind(*id)
            .execute(&mut *conn)
            .await
            .map_err(|error| match violation(&error) {
                // Deleted since it was checked.
                Some(Violation::ForeignKey) => InventoryError::CategoryNotFound(*id),
                _ => InventoryError::Storage(error),
            })?;
    }
    Ok(())
}

/// The categories of each of `product_ids`, by name: one query.
pub(super) async fn of_products(
    conn: &mut AnyConnection,
    product_ids: &[i64],
) -> Result<HashMap<i64, Vec<Category>>, InventoryError> {
    let sql = format!(
        "SELECT pc.product_id, c.id, c.name, c.slug, CAST(0 AS BIGINT) AS product_count FROM product_categories pc \
         JOIN categories c ON c.id = pc.category_id WHERE pc.product_id IN ({}) ORDER BY lower(c.name), c.id",
        placeholders(1, product_ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in product_ids {
        query = query.bind(*id);
    }
    let mut by_product: HashMap<i64, Vec<Category>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let product_id: i64 = row.try_get("product_id")?;
        by_product.entry(product_id).or_default().push(category_from_row(&row)?);
    }
    Ok(by_product)
}
