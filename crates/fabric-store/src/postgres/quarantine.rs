//! The quarantine on PostgreSQL: reading its entries with their jobs, their statistics, and
//! purging them (and finished jobs) for good.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::JobId;
use tokio_postgres::Row;

use super::rows::{row_to_job, JOB_COLS};
use super::{backend, PostgresStore};
use crate::{QuarantineEntry, QuarantineFilter, QuarantineStats, Result, StoreError};

pub(super) async fn quarantine(
    s: &PostgresStore,
    filter: QuarantineFilter,
) -> Result<Vec<QuarantineEntry>> {
    let client = s.pool.get().await?;
    let reason = filter.reason.map(|r| r.as_str());
    client
        .query(
            &format!(
                "{} WHERE j.state = 'quarantined' AND ($1::text IS NULL OR q.reason = $1)
                   AND ($2::bigint IS NULL OR q.quarantined_at >= $2)
                 ORDER BY q.quarantined_at DESC, q.job_id DESC LIMIT $3",
                quarantine_select()
            ),
            &[&reason, &filter.since, &(crate::sql_limit(filter.limit))],
        )
        .await?
        .iter()
        .map(row_to_entry)
        .collect()
}

pub(super) async fn quarantine_entry(s: &PostgresStore, id: JobId) -> Result<QuarantineEntry> {
    let client = s.pool.get().await?;
    let row = client
        .query_opt(
            &format!("{} WHERE q.job_id = $1", quarantine_select()),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "quarantined job",
            id: id.to_string(),
        })?;
    row_to_entry(&row)
}

pub(super) async fn purge_quarantine(
    s: &PostgresStore,
    before: i64,
    reason: Option<QuarantineReason>,
    dry_run: bool,
) -> Result<Vec<JobId>> {
    let client = s.pool.get().await?;
    let reason = reason.map(|r| r.as_str());
    let select = "SELECT q.job_id FROM quarantine q JOIN jobs j ON j.id = q.job_id
                  WHERE j.state = 'quarantined' AND q.quarantined_at < $1
                    AND ($2::text IS NULL OR q.reason = $2)";
    let sql = if dry_run {
        format!("{select} ORDER BY q.job_id")
    } else {
        format!("DELETE FROM jobs WHERE id IN ({select}) RETURNING id")
    };
    let mut ids: Vec<JobId> = client
        .query(&sql, &[&before, &reason])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    ids.sort();
    Ok(ids)
}

pub(super) async fn purge_jobs(s: &PostgresStore, ids: Vec<JobId>) -> Result<Vec<JobId>> {
    let client = s.pool.get().await?;
    let mut gone: Vec<JobId> = client
        .query(
            "DELETE FROM jobs WHERE id = ANY($1)
               AND state IN ('succeeded', 'cancelled', 'quarantined') RETURNING id",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    gone.sort_unstable();
    Ok(gone)
}

pub(super) async fn quarantine_stats(s: &PostgresStore) -> Result<QuarantineStats> {
    let client = s.pool.get().await?;
    let mut stats = QuarantineStats::default();
    for r in client
        .query(
            "SELECT q.reason, count(*), min(q.quarantined_at), max(q.quarantined_at),
                    sum(q.retries)::bigint
             FROM quarantine q JOIN jobs j ON j.id = q.job_id
             WHERE j.state = 'quarantined' GROUP BY q.reason",
            &[],
        )
        .await?
    {
        let reason: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        let oldest: i64 = r.try_get(2)?;
        let newest: i64 = r.try_get(3)?;
        let retries: i64 = r.try_get(4)?;
        stats.total += n as u64;
        stats.retries += retries as u64;
        stats.by_reason.insert(reason, n as u64);
        stats.oldest_at = Some(stats.oldest_at.map_or(oldest, |o| o.min(oldest)));
        stats.newest_at = Some(stats.newest_at.map_or(newest, |o| o.max(newest)));
    }
    Ok(stats)
}

/// A quarantine record with its job: `JOB_COLS` (0..=20), then the quarantine columns.
fn quarantine_select() -> String {
    format!(
        "SELECT {JOB_COLS}, reason, error, failure, attempts, quarantined_at, retries, notes
         FROM quarantine q JOIN jobs j ON j.id = q.job_id"
    )
}

fn row_to_entry(r: &Row) -> Result<QuarantineEntry> {
    let job = row_to_job(r)?;
    let reason: String = r.try_get(21)?;
    let notes: serde_json::Value = r.try_get(27)?;
    Ok(QuarantineEntry {
        id: job.id,
        kind: job.kind,
        shard: job.shard,
        source: job.source,
        payload: job.payload,
        state: job.state,
        reason: QuarantineReason::parse(&reason)?,
        error: r.try_get(22)?,
        failure: r.try_get(23)?,
        attempts: r.try_get::<_, i32>(24)? as u32,
        quarantined_at: r.try_get(25)?,
        retries: r.try_get::<_, i32>(26)? as u32,
        notes: serde_json::from_value(notes).map_err(backend)?,
    })
}
