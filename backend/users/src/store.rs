//! The SQL of the user service. Every statement runs unchanged on SQLite and
//! PostgreSQL.

use shop_storage::sqlx::{self, Row, any::AnyRow};
use shop_storage::{Db, Violation, now_ms, violation};

use shop_events::{Event, Payload, UserDeleted, UserRegistered, outbox};

use crate::UserError;
use crate::domain::{Email, Role, User, UserName};

const USER_COLUMNS: &str = "id, email, name, role, created_at_ms, updated_at_ms";

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: Role::from_db(&role).ok_or_else(|| sqlx::Error::Decode(format!("unknown role {role:?}").into()))?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// The unique email constraint is the one client-visible violation here.
fn map_write_error(error: sqlx::Error) -> UserError {
    match violation(&error) {
        Some(Violation::Unique) => UserError::EmailTaken,
        _ => UserError::Storage(error),
    }
}

pub async fn insert(db: &Db, email: &Email, name: &UserName, password_hash: &str) -> Result<User, UserError> {
    db.observe("insert", async move {
        let sql = format!(
            "INSERT INTO users (email, name, password_hash, role, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, 'customer', $4, $4) RETURNING {USER_COLUMNS}"
        );
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.as_str())
            .bind(name.as_str())
            .bind(password_hash)
            .bind(now_ms())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_write_error)?;
        let user = user_from_row(&row)?;
        let registered = UserRegistered { user_id: user.id, email: user.email.clone(), name: user.name.clone() };
        record(&mut tx, &registered).await?;
        tx.commit().await?;
        Ok(user)
    })
    .await
}

/// Writes an event to the outbox, in the transaction of its change.
async fn record<P: Payload>(tx: &mut sqlx::Transaction<'_, sqlx::Any>, payload: &P) -> Result<(), UserError> {
    let event = Event::new(payload).map_err(|e| UserError::Storage(sqlx::Error::Encode(Box::new(e))))?;
    Ok(outbox::record(tx, &event).await?)
}

pub async fn get(db: &Db, id: i64) -> Result<User, UserError> {
    db.observe("get", async move {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&db.pool).await?;
        row.as_ref().map(user_from_row).transpose()?.ok_or(UserError::NotFound)
    })
    .await
}

/// The user and their password hash, for authentication.
pub async fn find_credentials(db: &Db, email: &Email) -> Result<Option<(User, String)>, UserError> {
    db.observe("find_credentials", async move {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(email.as_str()).fetch_optional(&db.pool).await?;
        match row {
            Some(row) => Ok(Some((user_from_row(&row)?, row.try_get("password_hash")?))),
            None => Ok(None),
        }
    })
    .await
}

/// The fields to change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct Changes {
    pub email: Option<Email>,
    pub name: Option<UserName>,
    pub password_hash: Option<String>,
}

pub async fn update(db: &Db, id: i64, changes: &Changes) -> Result<User, UserError> {
    db.observe("update", async move {
        let sql = format!(
            "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name), \
         password_hash = COALESCE($4, password_hash), updated_at_ms = $5 \
         WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.email.as_ref().map(|e| e.as_str().to_owned()))
            .bind(changes.name.as_ref().map(|n| n.as_str().to_owned()))
            .bind(changes.password_hash.clone())
            .bind(now_ms())
            .fetch_optional(&db.pool)
            .await
            .map_err(map_write_error)?;
        row.as_ref().map(user_from_row).transpose()?.ok_or(UserError::NotFound)
    })
    .await
}

pub async fn delete(db: &Db, id: i64) -> Result<(), UserError> {
    db.observe("delete", async move {
        let mut tx = db.pool.begin().await?;
        let result = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if result.rows_affected() == 0 {
            return Err(UserError::NotFound);
        }
        record(&mut tx, &UserDeleted { user_id: id }).await?;
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// Gives an existing account a role; the only way to make an admin.
pub async fn set_role(db: &Db, email: &Email, role: Role) -> Result<User, UserError> {
    db.observe("set_role", async move {
        let sql = format!("UPDATE users SET role = $2, updated_at_ms = $3 WHERE email = $1 RETURNING {USER_COLUMNS}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.as_str())
            .bind(role.as_str())
            .bind(now_ms())
            .fetch_optional(&db.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()?.ok_or(UserError::NotFound)
    })
    .await
}
