//! Reading jobs on PostgreSQL: the columns read, the row mappers and the `WHERE` of a job
//! listing.

use deadpool_postgres::GenericClient;
use fabric_core::{Job, JobId, JobState, Priority};
use tokio_postgres::Row;

use crate::{JobFilter, Result, StoreError};

pub(super) const JOB_COLS: &str =
    "id, kind, shard, payload, priority, state, attempt, max_attempts, run_at, \
     lease_owner, lease_expires_at, unique_key, source, created_at, updated_at, started_at, \
     finished_at, last_error, cancel_reason, result, batch_id";

/// The parameters of a job listing's `WHERE` ([`JobWhere::SQL`], `$1`–`$9`).
pub(super) struct JobWhere<'a> {
    state: Option<&'static str>,
    filter: &'a JobFilter,
    failed: bool,
    error: Option<&'a str>,
    before: Option<JobId>,
}

impl<'a> JobWhere<'a> {
    /// `failed` lists the jobs that failed an attempt in the window (`since`, `until`),
    /// whatever became of them since: the daily check of failures.
    pub(super) const SQL: &'static str =
        "($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR shard = $2)
        AND ($3::text IS NULL OR source = $3) AND ($4::text IS NULL OR kind = $4)
        AND ($5::bigint IS NULL OR $7 OR updated_at >= $5)
        AND ($6::bigint IS NULL OR $7 OR updated_at < $6)
        AND (NOT $7 OR EXISTS (SELECT 1 FROM job_errors e WHERE e.job_id = jobs.id
             AND ($5::bigint IS NULL OR e.finished_at >= $5)
             AND ($6::bigint IS NULL OR e.finished_at < $6)))
        AND ($8::text IS NULL OR position(lower($8) in lower(last_error)) > 0)
        AND ($9::bigint IS NULL OR id < $9)";

    /// `before` (the keyset page) only when `page`.
    pub(super) fn new(filter: &'a JobFilter, page: bool) -> Self {
        let failed = filter.state == Some(JobState::Failed);
        Self {
            state: filter.state.filter(|_| !failed).map(|s| s.as_str()),
            filter,
            failed,
            error: filter.error.as_deref().filter(|e| !e.is_empty()),
            before: filter.before.filter(|_| page),
        }
    }

    pub(super) fn args(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        vec![
            &self.state,
            &self.filter.shard,
            &self.filter.source,
            &self.filter.kind,
            &self.filter.since,
            &self.filter.until,
            &self.failed,
            &self.error,
            &self.before,
        ]
    }
}

pub(super) fn row_to_job(r: &Row) -> Result<Job> {
    let state: String = r.try_get(5)?;
    Ok(Job {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        shard: r.try_get(2)?,
        payload: r.try_get(3)?,
        priority: Priority(r.try_get(4)?),
        state: JobState::parse(&state)?,
        attempt: r.try_get::<_, i32>(6)? as u32,
        max_attempts: r.try_get::<_, i32>(7)? as u32,
        run_at: r.try_get(8)?,
        lease_owner: r.try_get(9)?,
        lease_expires_at: r.try_get(10)?,
        unique_key: r.try_get(11)?,
        source: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
        started_at: r.try_get(15)?,
        finished_at: r.try_get(16)?,
        last_error: r.try_get(17)?,
        cancel_reason: r.try_get(18)?,
        result: r.try_get(19)?,
        batch_id: r.try_get(20)?,
    })
}

pub(super) async fn get_job<C: GenericClient>(c: &C, id: JobId) -> Result<Job> {
    read_job(c, id, "").await
}

pub(super) async fn get_job_for_update<C: GenericClient>(c: &C, id: JobId) -> Result<Job> {
    read_job(c, id, " FOR UPDATE").await
}

async fn read_job<C: GenericClient>(c: &C, id: JobId, lock: &str) -> Result<Job> {
    let row = c
        .query_opt(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1{lock}"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::job_not_found(id))?;
    row_to_job(&row)
}
