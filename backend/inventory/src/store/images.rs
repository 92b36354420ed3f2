//! Stored pictures: each variant's bytes once in `image_blobs` (by hash),
//! and each product's pictures in `product_images`.

use std::collections::HashMap;

use shop_events::ProductChanged;
use shop_storage::sqlx::{self, AnyConnection, Row, any::AnyRow};
use shop_storage::{Db, Violation, now_ms, violation};

use super::{Tx, placeholders, read, record};
use crate::InventoryError;
use crate::domain::{NewImage, Product, ProductImage, StoredVariant};
use crate::images::{ImageProblem, MAX_IMAGES, Variant};

fn dimension(row: &AnyRow, column: &str) -> Result<u32, sqlx::Error> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn image_from_row(row: &AnyRow) -> Result<ProductImage, sqlx::Error> {
    Ok(ProductImage {
        id: row.try_get("id")?,
        alt: row.try_get("alt")?,
        content_type: row.try_get("content_type")?,
        thumbnail: StoredVariant {
            hash: row.try_get("thumbnail_hash")?,
            width: dimension(row, "thumbnail_width")?,
            height: dimension(row, "thumbnail_height")?,
        },
        large: StoredVariant {
            hash: row.try_get("large_hash")?,
            width: dimension(row, "large_width")?,
            height: dimension(row, "large_height")?,
        },
    })
}

/// The pictures of each of `product_ids`, in the order they were added:
/// one query.
pub(super) async fn of_products(
    conn: &mut AnyConnection,
    product_ids: &[i64],
) -> Result<HashMap<i64, Vec<ProductImage>>, InventoryError> {
    let sql = format!(
        "SELECT id, product_id, alt, content_type, thumbnail_hash, thumbnail_width, thumbnail_height, \
         large_hash, large_width, large_height FROM product_images WHERE product_id IN ({}) \
         ORDER BY product_id, position",
        placeholders(1, product_ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in product_ids {
        query = query.bind(*id);
    }
    let mut by_product: HashMap<i64, Vec<ProductImage>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        let product_id: i64 = row.try_get("product_id")?;
        by_product.entry(product_id).or_default().push(image_from_row(&row)?);
    }
    Ok(by_product)
}

/// Refuses early, before a file is read, when the product is missing or
/// full. (The insertion checks again: this answer may be stale by then.)
pub async fn check_room(db: &Db, product_id: i64) -> Result<(), InventoryError> {
    db.observe("image_room", async move {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM product_images WHERE product_id = $1) FROM products WHERE id = $1",
        )
        .bind(product_id)
        .fetch_optional(&db.pool)
        .await?;
        match row {
            None => Err(InventoryError::ProductNotFound(product_id)),
            Some((count,)) if count >= MAX_IMAGES => Err(InventoryError::ImageRefused(ImageProblem::TooManyImages)),
            Some(_) => Ok(()),
        }
    })
    .await
}

/// Adds a picture to a product, stores its variants (a hash stored already
/// is kept as it is) and announces the change, in one transaction.
pub async fn add(db: &Db, product_id: i64, image: &NewImage) -> Result<Product, InventoryError> {
    db.observe("add_image", async move {
        // A variant shared with a picture being deleted at the same moment
        // can lose its blob under us (a foreign key violation): once more,
        // from the start, stores it again.
        match add_once(db, product_id, image).await {
            Err(InventoryError::Storage(error)) if violation(&error) == Some(Violation::ForeignKey) => {
                add_once(db, product_id, image).await
            }
            outcome => outcome,
        }
    })
    .await
}

async fn add_once(db: &Db, product_id: i64, image: &NewImage) -> Result<Product, InventoryError> {
    let mut tx = db.pool.begin().await?;
    let stock = touch(&mut tx, product_id).await?;
    insert(&mut tx, product_id, image).await?;
    record(&mut tx, &ProductChanged { product_id, change: "images".into(), stock: Some(stock) }).await?;
    let product = read(&mut tx, product_id).await?;
    tx.commit().await?;
    Ok(product)
}

/// Marks a product changed, and returns its stock. The row lock this takes
/// (on PostgreSQL) also queues concurrent uploads for the same product, so
/// two cannot both take the eighth place.
async fn touch(tx: &mut Tx<'_>, product_id: i64) -> Result<i64, InventoryError> {
    let row: Option<(i64,)> = sqlx::query_as("UPDATE products SET updated_at_ms = $2 WHERE id = $1 RETURNING stock")
        .bind(product_id)
        .bind(now_ms())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|(stock,)| stock).ok_or(InventoryError::ProductNotFound(product_id))
}

/// Stores a picture's variants and its row, after the product's last one.
pub(super) async fn insert(conn: &mut AnyConnection, product_id: i64, image: &NewImage) -> Result<(), InventoryError> {
    let (count, last): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(position), 0) FROM product_images WHERE product_id = $1")
            .bind(product_id)
            .fetch_one(&mut *conn)
            .await?;
    if count >= MAX_IMAGES {
        return Err(InventoryError::ImageRefused(ImageProblem::TooManyImages));
    }
    let variants = &image.variants;
    store_blob(conn, &variants.thumbnail, variants.content_type).await?;
    store_blob(conn, &variants.large, variants.content_type).await?;
    sqlx::query(
        "INSERT INTO product_images (product_id, position, alt, content_type, thumbnail_hash, thumbnail_width, \
         thumbnail_height, large_hash, large_width, large_height, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(product_id)
    .bind(last + 1)
    .bind(&image.alt)
    .bind(variants.content_type)
    .bind(&variants.thumbnail.hash)
    .bind(i64::from(variants.thumbnail.width))
    .bind(i64::from(variants.thumbnail.height))
    .bind(&variants.large.hash)
    .bind(i64::from(variants.large.width))
    .bind(i64::from(variants.large.height))
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The same hash is the same bytes: storing it again changes nothing.
async fn store_blob(conn: &mut AnyConnection, variant: &Variant, content_type: &str) -> Result<(), InventoryError> {
    sqlx::query(
        "INSERT INTO image_blobs (hash, content_type, data, created_at_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&variant.hash)
    .bind(content_type)
    .bind(variant.bytes.clone())
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes a picture off a product, and its variants unless another picture
/// shares them; announces the change.
pub async fn delete(db: &Db, product_id: i64, image_id: i64) -> Result<Product, InventoryError> {
    db.observe("delete_image", async move {
        match delete_once(db, product_id, image_id).await {
            // A picture added at the same moment took a variant we were
            // forgetting: once more sees it, and keeps it.
            Err(InventoryError::Storage(error)) if violation(&error) == Some(Violation::ForeignKey) => {
                delete_once(db, product_id, image_id).await
            }
            outcome => outcome,
        }
    })
    .await
}

async fn delete_once(db: &Db, product_id: i64, image_id: i64) -> Result<Product, InventoryError> {
    let mut tx = db.pool.begin().await?;
    let deleted: Option<(String, String)> = sqlx::query_as(
        "DELETE FROM product_images WHERE id = $1 AND product_id = $2 RETURNING thumbnail_hash, large_hash",
    )
    .bind(image_id)
    .bind(product_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((thumbnail, large)) = deleted else {
        return Err(InventoryError::ProductImageNotFound { product_id, image_id });
    };
    forget_unused_blobs(&mut tx, &[thumbnail, large]).await?;
    let stock = touch(&mut tx, product_id).await?;
    record(&mut tx, &ProductChanged { product_id, change: "images".into(), stock: Some(stock) }).await?;
    let product = read(&mut tx, product_id).await?;
    tx.commit().await?;
    Ok(product)
}

/// The variants a product's pictures use (before it is deleted).
pub(super) async fn hashes_of_product(
    conn: &mut AnyConnection,
    product_id: i64,
) -> Result<Vec<String>, InventoryError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT thumbnail_hash, large_hash FROM product_images WHERE product_id = $1")
            .bind(product_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().flat_map(|(t, l)| [t, l]).collect())
}

/// Deletes those of `hashes` no picture uses any more, so deleting
/// pictures frees their bytes.
pub(super) async fn forget_unused_blobs(conn: &mut AnyConnection, hashes: &[String]) -> Result<(), InventoryError> {
    let mut unique: Vec<&String> = hashes.iter().collect();
    unique.sort();
    unique.dedup();
    if unique.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM image_blobs WHERE hash IN ({}) AND NOT EXISTS (SELECT 1 FROM product_images pi \
         WHERE pi.thumbnail_hash = image_blobs.hash OR pi.large_hash = image_blobs.hash)",
        placeholders(1, unique.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for hash in unique {
        query = query.bind(hash.as_str());
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// One stored variant's content type and bytes.
pub async fn blob(db: &Db, hash: &str) -> Result<(String, Vec<u8>), InventoryError> {
    db.observe("image_blob", async move {
        let row = sqlx::query("SELECT content_type, data FROM image_blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&db.pool)
            .await?;
        let row = row.ok_or_else(|| InventoryError::ImageNotFound(hash.to_owned()))?;
        Ok((row.try_get("content_type")?, row.try_get("data")?))
    })
    .await
}
