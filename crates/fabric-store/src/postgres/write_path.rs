//! The statements of the job write path on PostgreSQL: the claim, the fenced completions (and
//! the quarantine entries and attempt errors they write), and the inserts of new jobs.

use deadpool_postgres::GenericClient;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{JobId, JobState, NewJob};

use super::rows::JOB_COLS;
use crate::{Completion, Outcome, Result};

/// The claim: due pending jobs of the shards asked for, highest priority then oldest, locked
/// with `SKIP LOCKED` so concurrent daemons never wait on each other, leased in one update.
pub(super) static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH picked AS (
                         SELECT id FROM jobs
                         WHERE state IN ('pending', 'failed') AND run_at <= $3
                           AND ($5::text[] IS NULL OR shard = ANY($5))
                           AND ($6::text[] IS NULL OR shard <> ALL($6))
                           AND ($7::int IS NULL OR priority >= $7)
                           AND ($8::text[] IS NULL OR kind = ANY($8))
                           AND ($9::text[] IS NULL OR kind <> ALL($9))
                         ORDER BY priority DESC, id LIMIT $4
                         FOR UPDATE SKIP LOCKED)
                     UPDATE jobs j SET state = 'running', attempt = j.attempt + 1,
                         lease_owner = $1, lease_expires_at = $2, started_at = $3, updated_at = $3
                     FROM picked WHERE j.id = picked.id
                     RETURNING {}",
        JOB_COLS
            .split(", ")
            .map(|c| format!("j.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});

pub(super) async fn add_error<C: GenericClient>(
    c: &C,
    x: &Completion,
    error: &str,
    failure: &str,
) -> Result<()> {
    c.execute(
        "INSERT INTO job_errors (job_id, attempt, error, failure, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &x.id,
            &(x.attempt as i32),
            &error,
            &failure,
            &x.started_at,
            &x.finished_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn quarantine_job<C: GenericClient>(
    c: &C,
    id: JobId,
    reason: QuarantineReason,
    error: &str,
    failure: &str,
    now: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO quarantine (job_id, reason, error, failure, attempts, quarantined_at)
         SELECT id, $2, $3, $4, attempt, $5 FROM jobs WHERE id = $1
         ON CONFLICT (job_id) DO UPDATE SET reason = excluded.reason, error = excluded.error,
             failure = excluded.failure, attempts = quarantine.attempts + excluded.attempts,
             quarantined_at = excluded.quarantined_at",
        &[&id, &reason.as_str(), &error, &failure, &now],
    )
    .await?;
    Ok(())
}

/// Inserts the jobs at `plain` (none with a unique key) in one multi-row statement; ids are
/// drawn in `ord` order, so the ascending ids map back to the input positions.
pub(super) async fn insert_plain<C: GenericClient>(
    c: &C,
    jobs: &[NewJob],
    plain: &[usize],
    now: i64,
) -> Result<Vec<i64>> {
    let col = |f: &dyn Fn(&NewJob) -> String| -> Vec<String> {
        plain.iter().map(|i| f(&jobs[*i])).collect()
    };
    let kinds = col(&|j| j.kind.clone());
    let shards = col(&|j| j.shard.clone());
    let payloads: Vec<&serde_json::Value> = plain.iter().map(|i| &jobs[*i].payload).collect();
    let priorities: Vec<i32> = plain.iter().map(|i| jobs[*i].priority.0).collect();
    let attempts: Vec<i32> = plain.iter().map(|i| jobs[*i].max_attempts as i32).collect();
    let run_ats: Vec<i64> = plain
        .iter()
        .map(|i| jobs[*i].run_at.unwrap_or(now))
        .collect();
    let sources: Vec<Option<&str>> = plain.iter().map(|i| jobs[*i].source.as_deref()).collect();
    let stmt = c
        .prepare_cached(
            "INSERT INTO jobs (kind, shard, payload, priority, state, max_attempts, run_at,
                     source, created_at, updated_at)
                 SELECT k, s, p, pr, 'pending', m, r, src, $8, $8
                 FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::int[],
                             $6::bigint[], $7::text[])
                      WITH ORDINALITY AS t(k, s, p, pr, m, r, src, ord)
                 ORDER BY ord
                 RETURNING id",
        )
        .await?;
    let rows = c
        .query(
            &stmt,
            &[
                &kinds,
                &shards,
                &payloads,
                &priorities,
                &attempts,
                &run_ats,
                &sources,
                &now,
            ],
        )
        .await?;
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The fenced update of a completion batch, in one statement: a row applies only while its
/// job is still `running` under that attempt and owner. Returns the (id, attempt, owner)
/// applied.
pub(super) async fn fenced_update<C: GenericClient>(
    c: &C,
    batch: &[Completion],
) -> Result<(std::collections::HashSet<(i64, i32, String)>, u64)> {
    let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
    let attempts: Vec<i32> = batch.iter().map(|d| d.attempt as i32).collect();
    let owners: Vec<&str> = batch.iter().map(|d| d.owner.as_str()).collect();
    let finished: Vec<i64> = batch.iter().map(|d| d.finished_at).collect();
    let mut states = Vec::with_capacity(batch.len());
    let mut run_ats = Vec::with_capacity(batch.len());
    let mut errors = Vec::with_capacity(batch.len());
    let mut results = Vec::with_capacity(batch.len());
    for done in batch {
        let (state, run_at, error, result) = match &done.outcome {
            Outcome::Succeeded { result } => (JobState::Succeeded, None, None, result.clone()),
            Outcome::Retry { run_at, error, .. } => {
                (JobState::Failed, Some(*run_at), Some(error.as_str()), None)
            }
            Outcome::Quarantine { error, .. } => {
                (JobState::Quarantined, None, Some(error.as_str()), None)
            }
        };
        states.push(state.as_str());
        run_ats.push(run_at);
        errors.push(error);
        results.push(result);
    }
    // One fenced statement for the whole batch: a row applies only while its job is still
    // `running` under that attempt and owner. The same statement releases the dependents of
    // the batch items it succeeds (atomic with the success: no dependent is ever stranded).
    let stmt = c
        .prepare_cached(
            "WITH done AS (
                 UPDATE jobs j SET state = u.state, run_at = coalesce(u.run_at, j.run_at),
                     last_error = coalesce(u.err, j.last_error), result = u.res,
                     finished_at = CASE WHEN u.state = 'failed' THEN j.finished_at ELSE u.fin END,
                     updated_at = u.fin, lease_owner = NULL, lease_expires_at = NULL
                 FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[],
                             $6::bigint[], $7::text[], $8::jsonb[])
                      AS u(id, attempt, owner, fin, state, run_at, err, res)
                 WHERE j.id = u.id AND j.state = 'running' AND j.attempt = u.attempt
                   AND j.lease_owner = u.owner
                 RETURNING j.id, u.attempt, u.owner, u.state, u.fin, j.batch_id),
             freed AS (
                 SELECT d.job_id, count(*) AS n, max(done.fin) AS fin
                 FROM done JOIN job_deps d ON d.depends_on = done.id
                 WHERE done.state = 'succeeded' AND done.batch_id IS NOT NULL
                 GROUP BY d.job_id),
             released AS (
                 UPDATE jobs w SET deps_remaining = w.deps_remaining - freed.n,
                     state = CASE WHEN w.deps_remaining <= freed.n THEN 'pending'
                                  ELSE w.state END,
                     run_at = CASE WHEN w.deps_remaining <= freed.n
                                   THEN greatest(w.run_at, freed.fin) ELSE w.run_at END,
                     updated_at = freed.fin
                 FROM freed WHERE w.id = freed.job_id AND w.state = 'waiting'
                 RETURNING w.id)
             SELECT id, attempt, owner, (SELECT count(*) FROM released) FROM done",
        )
        .await?;
    let rows = c
        .query(
            &stmt,
            &[
                &ids, &attempts, &owners, &finished, &states, &run_ats, &errors, &results,
            ],
        )
        .await?;
    let released = match rows.first() {
        Some(r) => r.try_get::<_, i64>(3)? as u64,
        None => 0,
    };
    let applied = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_>>()?;
    Ok((applied, released))
}
