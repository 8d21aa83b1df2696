//! The outbox on SQLite (see `0011_outbox.sql`): the table, and the two triggers on `jobs`
//! that capture lifecycle events while capture is on. SQLite triggers run inside the
//! statement that fired them, so an event commits (or rolls back) with its change, and the
//! single writer hands out `id`s in commit order.

use async_trait::async_trait;
use rusqlite::{params, Connection, Row};

use super::SqliteStore;
use crate::outbox::{NewOutboxRow, OutboxLane, OutboxRow, OutboxStats, OutboxStore};
use crate::Result;

/// The capture triggers: one row per inserted job (rows skipped by `ON CONFLICT DO NOTHING`
/// fire nothing), one per change of a job's state.
const CAPTURE_ON: &str = "
CREATE TRIGGER IF NOT EXISTS outbox_jobs_inserted AFTER INSERT ON jobs
BEGIN
    INSERT INTO outbox (lane, event, job_id, kind, shard, attempt, at)
    VALUES ('normal', 'job.submitted', new.id, new.kind, new.shard, new.attempt, new.created_at);
END;
CREATE TRIGGER IF NOT EXISTS outbox_jobs_moved AFTER UPDATE OF state ON jobs
WHEN old.state <> new.state
BEGIN
    INSERT INTO outbox (lane, event, job_id, kind, shard, attempt, from_state, detail, at)
    VALUES (CASE new.state WHEN 'quarantined' THEN 'emergency' ELSE 'normal' END,
            'job.' || CASE new.state WHEN 'running' THEN 'started'
                                     WHEN 'pending' THEN 'requeued' ELSE new.state END,
            new.id, new.kind, new.shard, new.attempt, old.state,
            CASE WHEN new.state = 'cancelled' THEN substr(new.cancel_reason, 1, 500)
                 WHEN new.state IN ('failed', 'quarantined') THEN substr(new.last_error, 1, 500)
            END,
            new.updated_at);
END;";

const CAPTURE_OFF: &str = "DROP TRIGGER IF EXISTS outbox_jobs_inserted;
     DROP TRIGGER IF EXISTS outbox_jobs_moved;";

fn capturing(conn: &Connection) -> Result<bool> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
             AND name IN ('outbox_jobs_inserted', 'outbox_jobs_moved')",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(n == 2)
}

const COLS: &str = "id, lane, event, job_id, kind, shard, attempt, from_state, detail, at";

fn row_to_outbox(r: &Row<'_>) -> Result<OutboxRow> {
    let lane: String = r.get(1)?;
    Ok(OutboxRow {
        seq: r.get(0)?,
        lane: OutboxLane::parse(&lane)?,
        event: r.get(2)?,
        job_id: r.get(3)?,
        kind: r.get(4)?,
        shard: r.get(5)?,
        attempt: r.get(6)?,
        from: r.get(7)?,
        detail: r.get(8)?,
        at: r.get(9)?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn set_event_capture(&self, on: bool) -> Result<bool> {
        self.inner
            .writer
            .write(move |conn| {
                if capturing(conn)? == on {
                    return Ok(false);
                }
                conn.execute_batch(if on { CAPTURE_ON } else { CAPTURE_OFF })?;
                Ok(true)
            })
            .await
    }

    async fn event_capture(&self) -> Result<bool> {
        self.read(capturing).await
    }

    async fn outbox_append(&self, rows: Vec<NewOutboxRow>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "INSERT INTO outbox (lane, event, detail, at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for r in &rows {
                    stmt.execute(params![r.lane.as_str(), r.event, r.detail, r.at])?;
                }
                Ok(())
            })
            .await
    }

    async fn outbox_peek(&self, limit: usize, skip_normal: bool) -> Result<Vec<OutboxRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLS} FROM outbox WHERE (?2 = 0 OR lane <> 'normal')
                 ORDER BY id LIMIT ?1"
            ))?;
            let mut rows = stmt.query(params![crate::sql_limit(limit), skip_normal])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(row_to_outbox(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_remove(&self, seqs: Vec<i64>) -> Result<u64> {
        if seqs.is_empty() {
            return Ok(0);
        }
        self.inner
            .writer
            .write(move |conn| {
                // A sent batch is mostly one run of consecutive numbers: one range delete
                // each (every number of a run is in `seqs`, so nothing else goes).
                let mut stmt =
                    conn.prepare_cached("DELETE FROM outbox WHERE id BETWEEN ?1 AND ?2")?;
                let mut n = 0;
                for (first, last) in crate::outbox::runs(seqs) {
                    n += stmt.execute([first, last])? as u64;
                }
                Ok(n)
            })
            .await
    }

    async fn outbox_prune(&self, before: i64) -> Result<u64> {
        self.inner
            .writer
            .write_one(move |conn| {
                Ok(conn
                    .prepare_cached("DELETE FROM outbox WHERE at < ?1")?
                    .execute([before])? as u64)
            })
            .await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats> {
        self.read(|conn| {
            let (pending, oldest_at): (u64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT count(*), (SELECT at FROM outbox ORDER BY id LIMIT 1) FROM outbox",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(OutboxStats { pending, oldest_at })
        })
        .await
    }
}
