//! The SQL of the user service. Every statement runs unchanged on SQLite and
//! PostgreSQL.

use shop_storage::sqlx::{self, Row, any::AnyRow};
use shop_storage::{Db, Violation, now_ms, violation};

use shop_events::{Event, PasswordReset, PasswordResetRequested, Payload, UserDeleted, UserRegistered, outbox};

use crate::UserError;
use crate::address::{Address, AddressFields, MAX_PER_ACCOUNT};
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
        let mut tx = db.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(changes.email.as_ref().map(|e| e.as_str().to_owned()))
            .bind(changes.name.as_ref().map(|n| n.as_str().to_owned()))
            .bind(changes.password_hash.clone())
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_write_error)?;
        let user = row.as_ref().map(user_from_row).transpose()?.ok_or(UserError::NotFound)?;
        if changes.password_hash.is_some() || changes.email.is_some() {
            // A reset link asked for before the password or the address
            // changed must not outlive the change.
            sqlx::query("DELETE FROM password_reset_tokens WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(user)
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

/// One page of customers whose name or email contains `query`
/// (case-insensitively), newest first, and how many match in all.
pub async fn list_customers(db: &Db, query: &str, limit: i64, offset: i64) -> Result<(Vec<User>, i64), UserError> {
    db.observe("list_customers", async move {
        // LIKE's wildcards in the query are matched as themselves.
        let escaped = query.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        let filter = "role = 'customer' AND (LOWER(name) LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\')";
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY id DESC LIMIT $2 OFFSET $3");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&pattern).bind(limit).bind(offset).fetch_all(&db.pool).await?;
        let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>, _>>()?;
        let (total,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM users WHERE {filter}")))
                .bind(&pattern)
                .fetch_one(&db.pool)
                .await?;
        Ok((users, total))
    })
    .await
}

const ADDRESS_COLUMNS: &str =
    "id, user_id, name, line1, line2, postcode, city, country, phone, created_at_ms, updated_at_ms";

fn address_from_row(row: &AnyRow) -> Result<Address, sqlx::Error> {
    Ok(Address {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        fields: AddressFields {
            name: row.try_get("name")?,
            line1: row.try_get("line1")?,
            line2: row.try_get("line2")?,
            postcode: row.try_get("postcode")?,
            city: row.try_get("city")?,
            country: row.try_get("country")?,
            phone: row.try_get("phone")?,
        },
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

/// A user's addresses, most recently changed first.
pub async fn list_addresses(db: &Db, user_id: i64) -> Result<Vec<Address>, UserError> {
    db.observe("list_addresses", async move {
        let sql =
            format!("SELECT {ADDRESS_COLUMNS} FROM addresses WHERE user_id = $1 ORDER BY updated_at_ms DESC, id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(&db.pool).await?;
        Ok(rows.iter().map(address_from_row).collect::<Result<Vec<_>, _>>()?)
    })
    .await
}

/// An address, if it is `owner`'s (any owner's when `owner` is `None`).
pub async fn get_address(db: &Db, id: i64, owner: Option<i64>) -> Result<Address, UserError> {
    db.observe("get_address", async move {
        let sql = format!("SELECT {ADDRESS_COLUMNS} FROM addresses WHERE id = $1 AND ($2 IS NULL OR user_id = $2)");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(owner).fetch_optional(&db.pool).await?;
        row.as_ref().map(address_from_row).transpose()?.ok_or(UserError::AddressNotFound(id))
    })
    .await
}

/// Adds an address to `user_id`'s book, unless it is full: the count and
/// the insert are one statement.
pub async fn insert_address(db: &Db, user_id: i64, fields: &AddressFields) -> Result<Address, UserError> {
    db.observe("insert_address", async move {
        let sql = format!(
            "INSERT INTO addresses (user_id, name, line1, line2, postcode, city, country, phone, created_at_ms, updated_at_ms) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $9 \
             WHERE (SELECT COUNT(*) FROM addresses WHERE user_id = $1) < $10 \
             RETURNING {ADDRESS_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .bind(&fields.name)
            .bind(&fields.line1)
            .bind(&fields.line2)
            .bind(&fields.postcode)
            .bind(&fields.city)
            .bind(&fields.country)
            .bind(&fields.phone)
            .bind(now_ms())
            .bind(MAX_PER_ACCOUNT)
            .fetch_optional(&db.pool)
            .await?;
        match row {
            Some(row) => Ok(address_from_row(&row)?),
            None => Err(UserError::invalid("addresses", format!("an account keeps at most {MAX_PER_ACCOUNT} addresses; delete one first"))),
        }
    })
    .await
}

/// Replaces the fields of one of `user_id`'s addresses.
pub async fn update_address(db: &Db, id: i64, user_id: i64, fields: &AddressFields) -> Result<Address, UserError> {
    db.observe("update_address", async move {
        let sql = format!(
            "UPDATE addresses SET name = $3, line1 = $4, line2 = $5, postcode = $6, city = $7, country = $8, \
             phone = $9, updated_at_ms = $10 WHERE id = $1 AND user_id = $2 RETURNING {ADDRESS_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(user_id)
            .bind(&fields.name)
            .bind(&fields.line1)
            .bind(&fields.line2)
            .bind(&fields.postcode)
            .bind(&fields.city)
            .bind(&fields.country)
            .bind(&fields.phone)
            .bind(now_ms())
            .fetch_optional(&db.pool)
            .await?;
        row.as_ref().map(address_from_row).transpose()?.ok_or(UserError::AddressNotFound(id))
    })
    .await
}

/// Deletes one of `user_id`'s addresses.
pub async fn delete_address(db: &Db, id: i64, user_id: i64) -> Result<(), UserError> {
    db.observe("delete_address", async move {
        let result = sqlx::query("DELETE FROM addresses WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&db.pool)
            .await?;
        if result.rows_affected() == 0 { Err(UserError::AddressNotFound(id)) } else { Ok(()) }
    })
    .await
}

/// Stores a reset token's hash for `user` (when there is one), replacing the
/// account's older tokens, and records the event with the plain token in
/// the same transaction. Without a user it runs the same transaction with
/// nothing to delete or insert, so both answers cost about the same.
pub async fn request_password_reset(
    db: &Db,
    user: Option<&User>,
    token: &str,
    token_hash: &str,
    now: i64,
    expires_at_ms: i64,
) -> Result<(), UserError> {
    db.observe("request_password_reset", async move {
        let mut tx = db.pool.begin().await?;
        let user_id = user.map_or(0, |user| user.id);
        sqlx::query("DELETE FROM password_reset_tokens WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        if let Some(user) = user {
            sqlx::query(
                "INSERT INTO password_reset_tokens (user_id, token_hash, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(user.id)
            .bind(token_hash)
            .bind(now)
            .bind(expires_at_ms)
            .execute(&mut *tx)
            .await?;
            let requested = PasswordResetRequested {
                user_id: user.id,
                email: user.email.clone(),
                name: user.name.clone(),
                token: token.to_owned(),
                expires_at_ms,
            };
            record(&mut tx, &requested).await?;
        }
        tx.commit().await?;
        Ok(())
    })
    .await
}

/// The account a token would reset, if it is unused and unexpired at `now`.
pub async fn reset_token_user(db: &Db, token_hash: &str, now: i64) -> Result<i64, UserError> {
    db.observe("reset_token_user", async move {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM password_reset_tokens WHERE token_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&db.pool)
        .await?;
        row.map(|(user_id,)| user_id).ok_or(UserError::ResetLinkInvalid)
    })
    .await
}

/// Uses a token: marks it used and sets the password in one transaction,
/// the marking first and conditional, so of two racing uses one wins.
pub async fn reset_password(db: &Db, token_hash: &str, password_hash: &str, now: i64) -> Result<i64, UserError> {
    db.observe("reset_password", async move {
        let mut tx = db.pool.begin().await?;
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE password_reset_tokens SET used_at_ms = $2 \
             WHERE token_hash = $1 AND used_at_ms IS NULL AND expires_at_ms > $2 RETURNING user_id",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id,)) = row else { return Err(UserError::ResetLinkInvalid) };
        let updated = sqlx::query("UPDATE users SET password_hash = $2, updated_at_ms = $3 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(UserError::ResetLinkInvalid);
        }
        // Every gateway ends the account's older sessions on hearing this,
        // whatever happens to the one that served the reset.
        record(&mut tx, &PasswordReset { user_id, at_ms: now }).await?;
        tx.commit().await?;
        Ok(user_id)
    })
    .await
}
