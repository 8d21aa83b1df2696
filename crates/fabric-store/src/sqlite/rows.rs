//! Reading jobs on SQLite: the columns read, the row mapper and the `WHERE` of a job
//! listing.

use fabric_core::{Job, JobId, JobState, Priority};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::{JobFilter, Result, StoreError};

/// Columns of `jobs` in the order [`row_to_job`] reads them.
pub(super) const JOB_COLS: &str =
    "id, kind, shard, payload, priority, state, attempt, max_attempts, run_at, \
     lease_owner, lease_expires_at, unique_key, source, created_at, updated_at, started_at, \
     finished_at, last_error, cancel_reason, result, batch_id";

/// `SELECT {cols} FROM jobs WHERE …` for `filter`, with its arguments; `before` (the keyset
/// page) only when `page`.
pub(super) fn job_filter_sql(
    filter: &JobFilter,
    cols: &str,
    page: bool,
) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = format!("SELECT {cols} FROM jobs WHERE 1 = 1");
    // `failed` lists the jobs that failed an attempt (in the window, with `since`), whatever
    // became of them since: the daily check of failures.
    let failed = filter.state == Some(JobState::Failed);
    if let Some(s) = filter.state.filter(|_| !failed) {
        // A literal (the names are fixed), so that the partial index of the state, if it has
        // one, serves the query: SQLite matches an index's WHERE against literals only.
        sql.push_str(&format!(" AND state = '{}'", s.as_str()));
    }
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut add = |clause: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {clause}?{}", args.len()));
    };
    if let Some(s) = &filter.shard {
        add("shard = ", s.clone().into());
    }
    if let Some(s) = &filter.source {
        add("source = ", s.clone().into());
    }
    if let Some(s) = &filter.kind {
        add("kind = ", s.clone().into());
    }
    if let Some(t) = filter.since.filter(|_| !failed) {
        add("updated_at >= ", t.into());
    }
    if let Some(t) = filter.until.filter(|_| !failed) {
        add("updated_at < ", t.into());
    }
    if let Some(b) = filter.before.filter(|_| page) {
        add("id < ", b.into());
    }
    if let Some(e) = filter.error.as_ref().filter(|e| !e.is_empty()) {
        args.push(e.clone().into());
        sql.push_str(&format!(
            " AND last_error IS NOT NULL AND instr(lower(last_error), lower(?{})) > 0",
            args.len()
        ));
    }
    if failed {
        args.push(filter.since.unwrap_or(i64::MIN).into());
        args.push(filter.until.unwrap_or(i64::MAX).into());
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM job_errors e WHERE e.job_id = jobs.id
                 AND e.finished_at >= ?{} AND e.finished_at < ?{})",
            args.len() - 1,
            args.len()
        ));
    }
    (sql, args)
}

pub(super) fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
    let payload: String = r.get(3)?;
    let state: String = r.get(5)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        shard: r.get(2)?,
        payload: serde_json::from_str(&payload).map_err(|e| conversion(3, e))?,
        priority: Priority(r.get(4)?),
        state: JobState::parse(&state).map_err(|e| conversion(5, e))?,
        attempt: r.get(6)?,
        max_attempts: r.get(7)?,
        run_at: r.get(8)?,
        lease_owner: r.get(9)?,
        lease_expires_at: r.get(10)?,
        unique_key: r.get(11)?,
        source: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        started_at: r.get(15)?,
        finished_at: r.get(16)?,
        last_error: r.get(17)?,
        cancel_reason: r.get(18)?,
        result: r
            .get::<_, Option<String>>(19)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| conversion(19, e))?,
        batch_id: r.get(20)?,
    })
}

pub(super) fn conversion(
    col: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn get_job(conn: &Connection, id: JobId) -> Result<Job> {
    conn.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))?
        .query_row([id], row_to_job)
        .optional()?
        .ok_or_else(|| StoreError::job_not_found(id))
}

/// A shard filter as a JSON array for `json_each` (`None`, no filter, when empty).
pub(super) fn json_list(v: &[String]) -> Result<Option<String>> {
    if v.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(v)
        .map(Some)
        .map_err(|e| StoreError::Backend(e.to_string()))
}
