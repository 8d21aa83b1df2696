//! The quarantine on SQLite: reading its entries with their jobs, their statistics, and
//! purging them (and finished jobs) for good.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::JobId;
use rusqlite::{params, Connection, Row};

use super::rows::{row_to_job, JOB_COLS};
use super::SqliteStore;
use crate::{QuarantineEntry, QuarantineFilter, QuarantineStats, Result, StoreError};

pub(super) async fn quarantine(
    s: &SqliteStore,
    filter: QuarantineFilter,
) -> Result<Vec<QuarantineEntry>> {
    s.read(move |conn| {
        let mut stmt = conn.prepare_cached(&format!(
            "{} WHERE j.state = 'quarantined' AND (?1 IS NULL OR q.reason = ?1)
               AND (?2 IS NULL OR q.quarantined_at >= ?2)
             ORDER BY q.quarantined_at DESC, q.job_id DESC LIMIT ?3",
            quarantine_select()
        ))?;
        let mut rows = stmt.query(params![
            filter.reason.map(|r| r.as_str()),
            filter.since,
            crate::sql_limit(filter.limit)
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(row_to_entry(r)?);
        }
        Ok(out)
    })
    .await
}

pub(super) async fn quarantine_entry(s: &SqliteStore, id: JobId) -> Result<QuarantineEntry> {
    s.read(move |conn| entry_of(conn, id)).await
}

pub(super) async fn purge_quarantine(
    s: &SqliteStore,
    before: i64,
    reason: Option<QuarantineReason>,
    dry_run: bool,
) -> Result<Vec<JobId>> {
    s.inner
        .writer
        .write(move |conn| {
            let ids: Vec<JobId> = conn
                .prepare_cached(
                    "SELECT q.job_id FROM quarantine q JOIN jobs j ON j.id = q.job_id
                     WHERE j.state = 'quarantined' AND q.quarantined_at < ?1
                       AND (?2 IS NULL OR q.reason = ?2)
                     ORDER BY q.job_id",
                )?
                .query_map(params![before, reason.map(|r| r.as_str())], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !dry_run {
                let mut del = conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")?;
                for id in &ids {
                    del.execute([id])?;
                }
            }
            Ok(ids)
        })
        .await
}

pub(super) async fn purge_jobs(s: &SqliteStore, ids: Vec<JobId>) -> Result<Vec<JobId>> {
    s.inner
        .writer
        .write(move |conn| {
            let mut del = conn.prepare_cached(
                "DELETE FROM jobs WHERE id = ?1
                   AND state IN ('succeeded', 'cancelled', 'quarantined')",
            )?;
            let mut gone = Vec::new();
            for id in ids {
                if del.execute([id])? == 1 {
                    gone.push(id);
                }
            }
            gone.sort_unstable();
            Ok(gone)
        })
        .await
}

pub(super) async fn quarantine_stats(s: &SqliteStore) -> Result<QuarantineStats> {
    s.read(|conn| {
        let mut stats = QuarantineStats::default();
        let mut stmt = conn.prepare_cached(
            "SELECT q.reason, count(*), min(q.quarantined_at), max(q.quarantined_at),
                    sum(q.retries)
             FROM quarantine q JOIN jobs j ON j.id = q.job_id
             WHERE j.state = 'quarantined' GROUP BY q.reason",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u64>(4)?,
            ))
        })?;
        for row in rows {
            let (reason, n, oldest, newest, retries) = row?;
            stats.total += n;
            stats.retries += retries;
            stats.by_reason.insert(reason, n);
            stats.oldest_at = Some(stats.oldest_at.map_or(oldest, |o| o.min(oldest)));
            stats.newest_at = Some(stats.newest_at.map_or(newest, |o| o.max(newest)));
        }
        Ok(stats)
    })
    .await
}

/// A quarantine record with its job: `JOB_COLS` (0..=20), then the quarantine columns.
/// `CROSS JOIN` keeps `quarantine` the outer table, so a page newest first walks its `quarantined_at` index and stops at the page's end (left to
/// itself the planner would read every quarantined job through `jobs_quarantined` and sort).
fn quarantine_select() -> String {
    format!(
        "SELECT {JOB_COLS}, reason, error, failure, attempts, quarantined_at, retries, notes
         FROM quarantine q CROSS JOIN jobs j ON j.id = q.job_id"
    )
}

fn row_to_entry(r: &Row<'_>) -> Result<QuarantineEntry> {
    let job = row_to_job(r)?;
    let reason: String = r.get(21)?;
    let notes: String = r.get(27)?;
    Ok(QuarantineEntry {
        id: job.id,
        kind: job.kind,
        shard: job.shard,
        source: job.source,
        payload: job.payload,
        state: job.state,
        reason: QuarantineReason::parse(&reason)?,
        error: r.get(22)?,
        failure: r.get(23)?,
        attempts: r.get(24)?,
        quarantined_at: r.get(25)?,
        retries: r.get(26)?,
        notes: serde_json::from_str(&notes).map_err(|e| StoreError::Backend(e.to_string()))?,
    })
}

/// The quarantine entry of job `id` with its job (`NotFound` when it has none).
fn entry_of(conn: &Connection, id: JobId) -> Result<QuarantineEntry> {
    let mut stmt = conn.prepare_cached(&format!("{} WHERE q.job_id = ?1", quarantine_select()))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => row_to_entry(r),
        None => Err(StoreError::NotFound {
            what: "quarantined job",
            id: id.to_string(),
        }),
    }
}
