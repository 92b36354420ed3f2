//! The events whose email went out (table `sent_emails`), so that an event
//! delivered again sends nothing twice.

use shop_storage::Db;
use shop_storage::sqlx;

/// Ids are kept this long: longer than the NATS stream keeps events (7 days),
/// so no event can come back after its id is forgotten.
const KEEP_MS: i64 = 8 * 24 * 60 * 60 * 1000;

/// Whether the email of event `event_id` has gone out.
pub async fn contains(db: &Db, event_id: &str) -> Result<bool, sqlx::Error> {
    db.observe("sent_contains", async {
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sent_emails WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&db.pool)
            .await?;
        Ok(found > 0)
    })
    .await
}

/// Records that event `event_id`'s email went out (again is harmless), and
/// forgets ids older than the stream keeps events.
pub async fn record(db: &Db, event_id: &str, kind: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    db.observe("sent_record", async {
        sqlx::query("INSERT INTO sent_emails (event_id, kind, sent_at_ms) VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING")
            .bind(event_id)
            .bind(kind)
            .bind(now_ms)
            .execute(&db.pool)
            .await?;
        sqlx::query("DELETE FROM sent_emails WHERE sent_at_ms < $1")
            .bind(now_ms.saturating_sub(KEEP_MS))
            .execute(&db.pool)
            .await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use shop_testkit::{Backend, TestDb};

    use super::*;

    async fn remembers_and_forgets_after_a_week(backend: Backend) {
        let test = TestDb::new(backend, &crate::MIGRATIONS).await;
        let db = &test.db;
        let now = shop_storage::now_ms();
        assert!(!contains(db, "e1").await.expect("read"));
        record(db, "e1", "order_confirmed", now - KEEP_MS - 1).await.expect("recorded");
        record(db, "e2", "order_shipped", now).await.expect("recorded");
        record(db, "e2", "order_shipped", now).await.expect("recorded again");
        assert!(contains(db, "e2").await.expect("read"));
        assert!(!contains(db, "e1").await.expect("read"), "older than the stream keeps events: forgotten");
    }

    shop_testkit::on_both_backends!(remembers_and_forgets_after_a_week);
}
