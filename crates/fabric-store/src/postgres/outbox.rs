//! The outbox on PostgreSQL (see `0009_outbox.sql`): two statement-level triggers on `jobs`
//! (over transition tables: one `INSERT … SELECT` per statement, so a completion batch makes
//! one message, not one row per job) capture lifecycle events while the setting `bus.events`
//! is on, in the transaction of the change. `id`s come from a sequence, so they follow
//! statement order, not commit order; a job's own events are in order all the same, since
//! each change of a job waits for the previous one's row lock and so for its commit.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::outbox::{
    NewOutboxRow, OutboxLane, OutboxRow, OutboxStats, OutboxStore, CAPTURE_SETTING,
};
use crate::Result;

async fn capturing<C: GenericClient>(c: &C) -> Result<bool> {
    Ok(c.query_one("SELECT outbox_capturing()", &[])
        .await?
        .try_get(0)?)
}

const COLS: &str = "id, lane, events, body, at";

fn row_to_outbox(r: &Row) -> Result<OutboxRow> {
    let lane: String = r.try_get(1)?;
    Ok(OutboxRow {
        seq: r.try_get(0)?,
        lane: OutboxLane::parse(&lane)?,
        events: r.try_get::<_, i32>(2)?.max(0).unsigned_abs(),
        body: r.try_get(3)?,
        at: r.try_get(4)?,
    })
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn set_event_capture(&self, on: bool) -> Result<bool> {
        let client = self.pool.get().await?;
        if capturing(&client).await? == on {
            return Ok(false);
        }
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&CAPTURE_SETTING, &if on { "on" } else { "off" }],
            )
            .await?;
        Ok(true)
    }

    async fn event_capture(&self) -> Result<bool> {
        let client = self.relaxed.get().await?;
        capturing(&client).await
    }

    async fn outbox_append(&self, rows: Vec<NewOutboxRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare_cached("INSERT INTO outbox (lane, events, body, at) VALUES ($1, 0, $2, $3)")
            .await?;
        for r in &rows {
            tx.execute(&stmt, &[&r.lane.as_str(), &r.body, &r.at])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_peek(&self, limit: usize, skip_normal: bool) -> Result<Vec<OutboxRow>> {
        let client = self.relaxed.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLS} FROM outbox WHERE (NOT $2 OR lane <> 'normal')
                 ORDER BY id LIMIT $1"
            ))
            .await?;
        client
            .query(&stmt, &[&crate::sql_limit(limit), &skip_normal])
            .await?
            .iter()
            .map(row_to_outbox)
            .collect()
    }

    async fn outbox_remove(&self, seqs: Vec<i64>) -> Result<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        // Relaxed commit: a removal undone by a database crash only sends those rows again
        // (at-least-once).
        let client = self.relaxed.get().await?;
        let stmt = client
            .prepare_cached("DELETE FROM outbox WHERE id = ANY($1)")
            .await?;
        Ok(client.execute(&stmt, &[&seqs]).await?)
    }

    async fn outbox_prune(&self, before: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM outbox WHERE at < $1", &[&before])
            .await?)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        let client = self.relaxed.get().await?;
        let r = client
            .query_one(
                "SELECT count(*), coalesce(sum(events), 0)::bigint,
                        (SELECT at FROM outbox ORDER BY id LIMIT 1)
                 FROM outbox",
                &[],
            )
            .await?;
        Ok(OutboxStats {
            pending: r.try_get::<_, i64>(0)?.max(0).unsigned_abs(),
            events: r.try_get::<_, i64>(1)?.max(0).unsigned_abs(),
            oldest_at: r.try_get(2)?,
        })
    }
}
