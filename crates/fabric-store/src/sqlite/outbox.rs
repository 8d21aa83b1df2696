//! The outbox on SQLite (see `0011_outbox.sql`). The writes that change jobs call
//! [`record`] (or [`record_submitted`]) inside their own transaction: while capture is on
//! (one settings lookup per write) they add one message per lane holding the write's
//! lifecycle events in a compact form (outbox_codec.rs), turned into the published form when
//! a message is read to be sent. The single writer hands out `id`s in commit order.

use async_trait::async_trait;
use fabric_core::{JobId, JobState, NewJob};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::outbox_codec::{self, Messages};
use super::SqliteStore;
use crate::outbox::{
    self, NewOutboxRow, OutboxLane, OutboxRow, OutboxStats, OutboxStore, CAPTURE_SETTING,
};
use crate::{Result, Submitted};

/// Whether lifecycle events are captured (the setting, as this transaction sees it).
pub(crate) fn capturing(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT value = 'on' FROM settings WHERE key = ?1")?
        .query_row([CAPTURE_SETTING], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

/// One change of a job's state, as the write that made it knows it.
pub(crate) struct Change<'a> {
    pub id: JobId,
    /// The attempt number after the change (`None`: read from the job).
    pub attempt: Option<u32>,
    pub from: JobState,
    pub to: JobState,
    /// The error or cancel reason.
    pub detail: Option<&'a str>,
    pub at: i64,
}

/// Adds one message per lane of `m` (and per [`outbox::MAX_EVENTS_PER_MESSAGE`] events).
fn write(conn: &Connection, m: Messages<'_>) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO outbox (lane, events, body, at) VALUES (?1, ?2, ?3, ?4)")?;
    for (lane, events) in [
        (OutboxLane::Normal, &m.normal),
        (OutboxLane::Emergency, &m.emergency),
    ] {
        if events.is_empty() {
            continue;
        }
        for (body, n, at) in events.encode()? {
            insert.execute(params![lane.as_str(), n, body, at])?;
        }
    }
    Ok(())
}

/// Records the jobs a submit created (`out`, in the order of `jobs`) as `job.submitted`.
pub(crate) fn record_submitted(
    conn: &Connection,
    jobs: &[NewJob],
    out: &[Submitted],
    now: i64,
) -> Result<()> {
    if !capturing(conn)? {
        return Ok(());
    }
    let mut m = Messages::default();
    for (j, s) in jobs.iter().zip(out).filter(|(_, s)| s.created) {
        m.normal.submitted(s.id, &j.kind, &j.shard, now);
    }
    write(conn, m)
}

/// Records `changes` (already applied) as lifecycle events.
pub(crate) fn record(conn: &Connection, changes: &[Change<'_>]) -> Result<()> {
    if changes.is_empty() || !capturing(conn)? {
        return Ok(());
    }
    let mut attempt = conn.prepare_cached("SELECT attempt FROM jobs WHERE id = ?1")?;
    let mut m = Messages::default();
    for c in changes {
        if outbox::event_name(Some(c.from), c.to).is_none() {
            continue;
        }
        let n = match c.attempt {
            Some(n) => n,
            None => attempt.query_row([c.id], |r| r.get(0))?,
        };
        m.lane(outbox::lane_of(c.to))
            .changed(c.id, n, c.at, c.from, c.to, c.detail);
    }
    write(conn, m)
}

const COLS: &str = "id, lane, events, body, at";

fn row_to_outbox(r: &Row<'_>) -> Result<OutboxRow> {
    let lane: String = r.get(1)?;
    Ok(OutboxRow {
        seq: r.get(0)?,
        lane: OutboxLane::parse(&lane)?,
        events: r.get(2)?,
        body: r.get(3)?,
        at: r.get(4)?,
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
                conn.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute([CAPTURE_SETTING, if on { "on" } else { "off" }])?;
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
                    "INSERT INTO outbox (lane, events, body, at) VALUES (?1, 0, ?2, ?3)",
                )?;
                for r in &rows {
                    stmt.execute(params![r.lane.as_str(), r.body, r.at])?;
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
                let mut row = row_to_outbox(r)?;
                if row.lane != OutboxLane::Telemetry {
                    row.body = outbox_codec::expand(&row.body, row.at)?;
                }
                out.push(row);
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
                // Sent messages are mostly one run of consecutive numbers: one range delete
                // each (every number of a run is in `seqs`, so nothing else goes).
                let mut stmt =
                    conn.prepare_cached("DELETE FROM outbox WHERE id BETWEEN ?1 AND ?2")?;
                let mut n = 0;
                for (first, last) in outbox::runs(seqs) {
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
            let (pending, events, oldest_at) = conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(events), 0),
                            (SELECT at FROM outbox ORDER BY id LIMIT 1)
                     FROM outbox",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(OutboxStats {
                pending,
                events,
                oldest_at,
            })
        })
        .await
    }
}
