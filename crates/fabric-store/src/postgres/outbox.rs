//! The outbox on PostgreSQL (see `0009_outbox.sql`): the table, and two statement-level
//! triggers on `jobs` (over transition tables: one `INSERT … SELECT` per claim or completion
//! batch, not one per row) that capture lifecycle events while capture is on. An event
//! commits (or rolls back) with its change. `id`s come from a sequence, so they follow
//! statement order, not commit order; a job's own events are in order all the same, since
//! each change of a job waits for the previous one's row lock and so for its commit.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
use crate::outbox::{NewOutboxRow, OutboxLane, OutboxRow, OutboxStats, OutboxStore};
use crate::Result;

const CAPTURE_ON: &str = "
CREATE TRIGGER outbox_jobs_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_jobs_inserted();
CREATE TRIGGER outbox_jobs_moved AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_jobs_moved();";

const CAPTURE_OFF: &str = "DROP TRIGGER IF EXISTS outbox_jobs_inserted ON jobs;
     DROP TRIGGER IF EXISTS outbox_jobs_moved ON jobs;";

async fn capturing<C: GenericClient>(c: &C) -> Result<bool> {
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'jobs'::regclass
             AND tgname IN ('outbox_jobs_inserted', 'outbox_jobs_moved')",
            &[],
        )
        .await?
        .try_get(0)?;
    Ok(n == 2)
}

const COLS: &str = "id, lane, event, job_id, kind, shard, attempt, from_state, detail, at";

fn row_to_outbox(r: &Row) -> Result<OutboxRow> {
    let lane: String = r.try_get(1)?;
    Ok(OutboxRow {
        seq: r.try_get(0)?,
        lane: OutboxLane::parse(&lane)?,
        event: r.try_get(2)?,
        job_id: r.try_get(3)?,
        kind: r.try_get(4)?,
        shard: r.try_get(5)?,
        attempt: r
            .try_get::<_, Option<i32>>(6)?
            .map(|a| a.max(0).unsigned_abs()),
        from: r.try_get(7)?,
        detail: r.try_get(8)?,
        at: r.try_get(9)?,
    })
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn set_event_capture(&self, on: bool) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Daemons starting together switch one at a time; the DDL itself takes a brief
        // exclusive lock on `jobs`, so it runs only when something changes.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':outbox'))",
            &[],
        )
        .await?;
        if capturing(&tx).await? == on {
            return Ok(false);
        }
        tx.batch_execute(CAPTURE_OFF).await?;
        if on {
            tx.batch_execute(CAPTURE_ON).await?;
        }
        tx.commit().await?;
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
            .prepare_cached("INSERT INTO outbox (lane, event, detail, at) VALUES ($1, $2, $3, $4)")
            .await?;
        for r in &rows {
            tx.execute(&stmt, &[&r.lane.as_str(), &r.event, &r.detail, &r.at])
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
                "SELECT count(*), (SELECT at FROM outbox ORDER BY id LIMIT 1) FROM outbox",
                &[],
            )
            .await?;
        Ok(OutboxStats {
            pending: r.try_get::<_, i64>(0)?.max(0).unsigned_abs(),
            oldest_at: r.try_get(1)?,
        })
    }
}
