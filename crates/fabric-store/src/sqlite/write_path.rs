//! The statements of the job write path on SQLite: the claims, the fenced completions (and
//! the quarantine entries and attempt errors they write), and the inserts of new jobs.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState, NewJob};
use rusqlite::{params, Connection};

use super::rows::{get_job, JOB_COLS};
use super::{batches, deferred, outbox};
use crate::{CompleteReport, Completion, Outcome, Result, Submitted};

/// The claim of one shard on a store with the per-shard index ([`SqliteOptions::shard_index`]:
/// the scheduler's per-shard dispatch): that shard's queue only, and no optional filters.
/// `LIMIT +?4`, not `LIMIT ?4`: SQLite plans with a bare LIMIT parameter's value, so every new
/// binding would re-prepare the statement.
pub(super) static CLAIM_ONE_SHARD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?1,
             lease_expires_at = ?2, started_at = ?3, updated_at = ?3
         WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_shard_ready
             WHERE state IN ('pending', 'failed') AND shard = ?5 AND run_at <= ?3
               AND priority >= ?6
             ORDER BY priority DESC, id LIMIT +?4)
         RETURNING {JOB_COLS}"
    )
});

/// Every other claim, over the pending index `index`: NULL parameters switch their filter
/// off, so one cached statement serves them all.
fn claim_any(index: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?1,
             lease_expires_at = ?2, started_at = ?3, updated_at = ?3
         WHERE id IN (SELECT id FROM jobs INDEXED BY {index}
             WHERE state IN ('pending', 'failed') AND run_at <= ?3
               AND (?5 IS NULL OR shard IN (SELECT value FROM json_each(?5)))
               AND (?6 IS NULL OR shard NOT IN (SELECT value FROM json_each(?6)))
               AND (?7 IS NULL OR priority >= ?7)
               AND (?8 IS NULL OR kind IN (SELECT value FROM json_each(?8)))
               AND (?9 IS NULL OR kind NOT IN (SELECT value FROM json_each(?9)))
             ORDER BY priority DESC, id LIMIT +?4)
         RETURNING {JOB_COLS}"
    )
}

/// [`claim_any`] on a store with the cross-shard pending index (the daemon's).
pub(super) static CLAIM_ANY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claim_any("jobs_ready"));

/// [`claim_any`] on a store with only the per-shard pending index (a scenario run's): it
/// reads every due job of the shards asked for and sorts them.
pub(super) static CLAIM_ANY_BY_SHARD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claim_any("jobs_shard_ready"));

/// Moves job `id` from its current state to `to`, checked against the transition table.
pub(super) fn check(conn: &Connection, id: JobId, to: JobState) -> Result<Job> {
    let job = get_job(conn, id)?;
    job.state.check_transition(id, to)?;
    Ok(job)
}

fn add_error(conn: &Connection, c: &Completion, error: &str, failure: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO job_errors (job_id, attempt, error, failure, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        c.id,
        c.attempt,
        error,
        failure,
        c.started_at,
        c.finished_at
    ])?;
    Ok(())
}

pub(super) fn quarantine_job(
    conn: &Connection,
    id: JobId,
    reason: QuarantineReason,
    error: &str,
    failure: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO quarantine (job_id, reason, error, failure, attempts, quarantined_at)
         SELECT id, ?2, ?3, ?4, attempt, ?5 FROM jobs WHERE id = ?1
         ON CONFLICT (job_id) DO UPDATE SET reason = excluded.reason, error = excluded.error,
             failure = excluded.failure, attempts = quarantine.attempts + excluded.attempts,
             quarantined_at = excluded.quarantined_at",
    )?
    .execute(params![id, reason.as_str(), error, failure, now])?;
    Ok(())
}

/// Applies a batch of completions, each fenced: it applies only while the job is still
/// `running` under its attempt and owner. A completion of a claim `claims` holds in memory
/// writes the claim and the outcome as one row update.
pub(super) fn finish(
    conn: &Connection,
    mut claims: Option<&mut deferred::Deferred>,
    batch: &[Completion],
) -> Result<CompleteReport> {
    let mut report = CompleteReport::default();
    // Lifecycle events of the applied outcomes, recorded when capture is on (a claim held in
    // memory and its outcome are one row update: the event is from `running` all the same).
    let mut changes = Vec::with_capacity(batch.len());
    // One fenced statement for every outcome.
    let mut fenced = conn.prepare_cached(
        "UPDATE jobs SET state = ?5, run_at = coalesce(?6, run_at),
             last_error = coalesce(?7, last_error), result = ?8,
             finished_at = CASE WHEN ?5 = 'failed' THEN finished_at ELSE ?4 END,
             updated_at = ?4, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1 AND state = 'running' AND attempt = ?2 AND lease_owner = ?3",
    )?;
    // Whether any job has dependents at all: one probe a write, not one a completion.
    let deps = batches::any_dependencies(conn)?;
    // Successes whose dependents are released, all in one statement after the loop.
    let mut succeeded = Vec::new();
    let mut released_at = i64::MIN;
    let mut claimed = match claims {
        Some(_) => Some(conn.prepare_cached(deferred::FINISH_CLAIMED)?),
        None => None,
    };
    for c in batch {
        let (state, run_at, error, result) = match &c.outcome {
            Outcome::Succeeded { result } => (
                JobState::Succeeded,
                None,
                None,
                result.as_ref().map(|v| v.to_string()),
            ),
            Outcome::Retry { run_at, error, .. } => {
                (JobState::Failed, Some(*run_at), Some(error), None)
            }
            Outcome::Quarantine { error, .. } => (JobState::Quarantined, None, Some(error), None),
        };
        let held = claims
            .as_deref_mut()
            .and_then(|h| h.take(c.id, c.attempt, &c.owner));
        let n = match (held, claimed.as_mut()) {
            (Some(started_at), Some(stmt)) => stmt.execute(params![
                c.id,
                c.attempt,
                c.finished_at,
                state.as_str(),
                run_at,
                error,
                result,
                started_at
            ])?,
            _ => fenced.execute(params![
                c.id,
                c.attempt,
                c.owner,
                c.finished_at,
                state.as_str(),
                run_at,
                error,
                result
            ])?,
        };
        if n == 1 {
            changes.push(outbox::Change {
                id: c.id,
                attempt: Some(c.attempt),
                from: JobState::Running,
                to: state,
                detail: error.map(String::as_str),
                at: c.finished_at,
            });
            match &c.outcome {
                Outcome::Succeeded { .. } => {
                    if deps {
                        succeeded.push(c.id);
                        released_at = released_at.max(c.finished_at);
                    }
                }
                Outcome::Retry { error, failure, .. } => add_error(conn, c, error, failure)?,
                Outcome::Quarantine {
                    reason,
                    error,
                    failure,
                } => {
                    add_error(conn, c, error, failure)?;
                    quarantine_job(conn, c.id, *reason, error, failure, c.finished_at)?;
                    if deps {
                        batches::block_dependents(conn, c.id, "quarantined", c.finished_at)?;
                    }
                }
            }
            report.applied_ids.push(c.id);
        } else {
            report.late += 1;
        }
    }
    if !succeeded.is_empty() {
        report.released = batches::release_dependents(conn, &succeeded, released_at)?;
    }
    outbox::record(conn, &changes)?;
    Ok(report)
}

/// Inserts `jobs` as `pending` (a job whose unique key exists is not inserted: its id comes
/// back with `created: false`) and records their events.
pub(super) fn insert_jobs(conn: &Connection, jobs: &[NewJob], now: i64) -> Result<Vec<Submitted>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO jobs (kind, shard, payload, priority, state, max_attempts, run_at,
             unique_key, source, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
    )?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let payload = j.payload.to_string();
        let n = insert.execute(params![
            j.kind,
            j.shard,
            payload,
            j.priority.0,
            j.max_attempts,
            j.run_at.unwrap_or(now),
            j.unique_key,
            j.source,
            now
        ])?;
        if n == 1 {
            out.push(Submitted {
                id: conn.last_insert_rowid(),
                created: true,
            });
        } else {
            let id: JobId = conn
                .prepare_cached("SELECT id FROM jobs WHERE unique_key = ?1")?
                .query_row([&j.unique_key], |r| r.get(0))?;
            out.push(Submitted { id, created: false });
        }
    }
    outbox::record_submitted(conn, jobs, &out, now)?;
    Ok(out)
}
