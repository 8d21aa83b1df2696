//! Batches on SQLite: the one-transaction submit of a batch and its dependencies, the
//! release of dependents inside the completion that succeeds their last dependency, the
//! blocking of dependents of a failed item, and `batch show|list|retry|cancel` and the end of
//! a batch.

use std::collections::HashMap;

use async_trait::async_trait;
use fabric_core::batch::{retry_states, BatchId, BatchState};
use fabric_core::{JobId, JobState, NewJob};
use rusqlite::{params, Connection, OptionalExtension};

use super::{insert_jobs, outbox, SqliteStore};
use crate::batch::{callback_job, ended_state};
use crate::{
    BatchCancelled, BatchDetail, BatchItemRecord, BatchRecord, BatchRetried, BatchStore,
    FinishedBatch, NewBatch, Result, StateCounts, StoreError,
};

/// Whether any job has dependents (a write that finds none skips the per-job releases).
pub(super) fn any_dependencies(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM job_deps)")?
        .query_row([], |r| r.get(0))?)
}

/// Releases the dependents of the jobs `ids`, which just succeeded: each waiting dependent
/// counts its dependencies among them less, and one whose count reaches zero becomes
/// `pending`. One statement for a whole write of completions.
///
/// While no running batch has an item that waits for more than one dependency (chains and
/// trees; an O(1) probe of the index `batches_multi`), each dependent waits for one of `ids`
/// alone and becomes `pending` without its dependencies among them being counted (no
/// grouping of the dependents). A waiting item belongs to a running batch: a batch ends only
/// when none of its items waits, and only `batch retry` makes an item wait again, running
/// its batch again.
pub(super) fn release_dependents(conn: &Connection, ids: &[JobId], now: i64) -> Result<u64> {
    let ids = serde_json::to_string(ids).map_err(|e| StoreError::Backend(e.to_string()))?;
    let sql = if waiting_for_several(conn)? {
        "UPDATE jobs SET deps_remaining = jobs.deps_remaining - r.n,
             state = CASE WHEN jobs.deps_remaining <= r.n THEN 'pending' ELSE jobs.state END,
             run_at = CASE WHEN jobs.deps_remaining <= r.n THEN max(jobs.run_at, ?2)
                           ELSE jobs.run_at END,
             updated_at = ?2
         FROM (SELECT d.job_id AS id, count(*) AS n
               FROM json_each(?1) AS e JOIN job_deps AS d ON d.depends_on = e.value
               GROUP BY d.job_id) AS r
         WHERE jobs.id = r.id AND jobs.state = 'waiting'"
    } else {
        "UPDATE jobs SET deps_remaining = 0, state = 'pending', run_at = max(run_at, ?2),
             updated_at = ?2
         WHERE id IN (SELECT d.job_id FROM json_each(?1) AS e
                      JOIN job_deps AS d ON d.depends_on = e.value)
           AND state = 'waiting' AND deps_remaining = 1"
    };
    let n = conn.prepare_cached(sql)?.execute(params![ids, now])?;
    Ok(n as u64)
}

/// Whether any running batch has an item that waits for more than one dependency (read from
/// the partial index `batches_multi`, never the table). Not asked of the jobs: an index on
/// the jobs' state would cost every claim and completion its upkeep.
fn waiting_for_several(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(WAITING_FOR_SEVERAL)?
        .query_row([], |r| r.get(0))?)
}

const WAITING_FOR_SEVERAL: &str =
    "SELECT EXISTS (SELECT 1 FROM batches WHERE state = 'running' AND multi = 1)";

/// Blocks every waiting item that depends, directly or not, on job `id`, which was just
/// quarantined or cancelled (`what`).
pub(super) fn block_dependents(conn: &Connection, id: JobId, what: &str, now: i64) -> Result<()> {
    let error = format!("dependency_failure: job {id} was {what}");
    conn.prepare_cached(
        "WITH RECURSIVE d(id) AS (
             SELECT job_id FROM job_deps WHERE depends_on = ?1
             UNION SELECT jd.job_id FROM job_deps jd JOIN d ON jd.depends_on = d.id)
         UPDATE jobs SET state = 'blocked', last_error = ?3, updated_at = ?2
         WHERE id IN (SELECT id FROM d) AND state = 'waiting'",
    )?
    .execute(params![id, now, error])?;
    Ok(())
}

/// Items of batch `id` per state.
fn counts(conn: &Connection, id: BatchId) -> Result<StateCounts> {
    let mut c = StateCounts::default();
    let mut stmt =
        conn.prepare_cached("SELECT state, count(*) FROM jobs WHERE batch_id = ?1 GROUP BY state")?;
    let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (state, n) = row?;
        c.add(JobState::parse(&state)?, n as u64);
    }
    Ok(c)
}

const BATCH_COLS: &str = "id, name, state, items, created_at, updated_at, finished_at, \
     on_complete, callback_job_id, cancel_reason, generation";

fn batch_row(conn: &Connection, r: &rusqlite::Row<'_>) -> Result<BatchRecord> {
    let id: BatchId = r.get(0)?;
    let state: String = r.get(2)?;
    let on_complete: Option<String> = r.get(7)?;
    let on_complete = on_complete
        .map(|t| serde_json::from_str::<NewJob>(&t).map(|j| j.kind))
        .transpose()
        .map_err(|e| StoreError::Backend(format!("batch {id}: on_complete: {e}")))?;
    Ok(BatchRecord {
        id,
        name: r.get(1)?,
        state: BatchState::parse(&state)?,
        items: r.get::<_, i64>(3)? as u64,
        counts: counts(conn, id)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        finished_at: r.get(6)?,
        on_complete,
        callback_job_id: r.get(8)?,
        cancel_reason: r.get(9)?,
        retries: r.get(10)?,
    })
}

/// The state of batch `id` alone (no item counts: what retry and cancel check).
fn batch_state(conn: &Connection, id: BatchId) -> Result<BatchState> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM batches WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    Ok(BatchState::parse(
        &state.ok_or_else(|| StoreError::batch_not_found(id))?,
    )?)
}

fn get_batch(conn: &Connection, id: BatchId) -> Result<BatchRecord> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {BATCH_COLS} FROM batches WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => batch_row(conn, r),
        None => Err(StoreError::batch_not_found(id)),
    }
}

/// The dependencies of each item of batch `id`, as positions in `index` (job id → position).
fn dependencies(
    conn: &Connection,
    id: BatchId,
    index: &HashMap<JobId, usize>,
) -> Result<Vec<Vec<usize>>> {
    let mut deps = vec![Vec::new(); index.len()];
    let mut stmt = conn.prepare_cached(
        "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id
         WHERE j.batch_id = ?1 ORDER BY d.job_id, d.depends_on",
    )?;
    let mut rows = stmt.query([id])?;
    while let Some(r) = rows.next()? {
        let (job, on): (JobId, JobId) = (r.get(0)?, r.get(1)?);
        if let (Some(&i), Some(&j)) = (index.get(&job), index.get(&on)) {
            deps[i].push(j);
        }
    }
    Ok(deps)
}

/// The callback of batch `id` as it ends in `state`, inserted once (its unique key), and
/// recorded on the batch.
fn enqueue_callback(
    conn: &Connection,
    id: BatchId,
    state: BatchState,
    counts: &StateCounts,
    now: i64,
) -> Result<Option<JobId>> {
    let row: Option<(Option<String>, Option<String>, i64)> = conn
        .prepare_cached("SELECT on_complete, name, generation FROM batches WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((Some(text), name, generation)) = row else {
        return Ok(None);
    };
    let base: NewJob = serde_json::from_str(&text)
        .map_err(|e| StoreError::Backend(format!("batch {id}: on_complete: {e}")))?;
    let job = callback_job(base, id, name.as_deref(), state, counts, generation);
    let out = insert_jobs(conn, std::slice::from_ref(&job), now)?;
    let job_id = out.first().map(|s| s.id);
    conn.prepare_cached("UPDATE batches SET callback_job_id = ?2 WHERE id = ?1")?
        .execute(params![id, job_id])?;
    Ok(job_id)
}

#[async_trait]
impl BatchStore for SqliteStore {
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchId> {
        self.inner
            .writer
            .write(move |conn| {
                let on_complete = batch
                    .on_complete
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                conn.prepare_cached(
                    "INSERT INTO batches (name, state, items, created_at, updated_at, on_complete,
                         multi)
                     VALUES (?1, 'running', ?2, ?3, ?3, ?4, ?5)",
                )?
                .execute(params![
                    batch.name,
                    batch.items.len() as i64,
                    now,
                    on_complete,
                    batch.items.iter().any(|i| i.depends_on.len() > 1)
                ])?;
                let bid = conn.last_insert_rowid();
                let mut insert = conn.prepare_cached(
                    "INSERT INTO jobs (kind, shard, payload, priority, state, max_attempts, run_at,
                         source, created_at, updated_at, batch_id, batch_key, deps_remaining,
                         batch_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13)",
                )?;
                // Stored in run order (ids, and so rows, in that order); `ids` by position.
                let mut ids = vec![0; batch.items.len()];
                for pos in batch.storage_order()? {
                    let item = &batch.items[pos];
                    let j = &item.job;
                    let deps = item.depends_on.len() as i64;
                    let state = if deps == 0 { "pending" } else { "waiting" };
                    insert.execute(params![
                        j.kind,
                        j.shard,
                        j.payload.to_string(),
                        j.priority.0,
                        state,
                        j.max_attempts,
                        j.run_at.unwrap_or(now),
                        j.source,
                        now,
                        bid,
                        item.key,
                        deps,
                        pos as i64
                    ])?;
                    ids[pos] = conn.last_insert_rowid();
                }
                let mut dep = conn
                    .prepare_cached("INSERT INTO job_deps (depends_on, job_id) VALUES (?1, ?2)")?;
                for (item, &id) in batch.items.iter().zip(&ids) {
                    for &d in &item.depends_on {
                        let on = *ids.get(d).ok_or_else(|| {
                            StoreError::Backend(format!("item {} depends on index {d}", item.key))
                        })?;
                        dep.execute(params![on, id])?;
                    }
                }
                let jobs: Vec<NewJob> = batch.items.into_iter().map(|i| i.job).collect();
                let submitted: Vec<crate::Submitted> = ids
                    .iter()
                    .map(|&id| crate::Submitted { id, created: true })
                    .collect();
                outbox::record_submitted(conn, &jobs, &submitted, now)?;
                Ok(bid)
            })
            .await
    }

    async fn batch(&self, id: BatchId) -> Result<BatchDetail> {
        self.read(move |conn| {
            let batch = get_batch(conn, id)?;
            let mut items = Vec::new();
            let mut key_of: HashMap<JobId, usize> = HashMap::new();
            let mut stmt = conn.prepare_cached(
                "SELECT id, batch_key, kind, state, attempt, max_attempts, started_at,
                     finished_at, last_error
                 FROM jobs WHERE batch_id = ?1 ORDER BY batch_pos, id",
            )?;
            let mut rows = stmt.query([id])?;
            while let Some(r) = rows.next()? {
                let job_id: JobId = r.get(0)?;
                let state: String = r.get(3)?;
                key_of.insert(job_id, items.len());
                items.push(BatchItemRecord {
                    key: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    job_id,
                    kind: r.get(2)?,
                    state: JobState::parse(&state)?,
                    attempt: r.get(4)?,
                    max_attempts: r.get(5)?,
                    started_at: r.get(6)?,
                    finished_at: r.get(7)?,
                    last_error: r.get(8)?,
                    depends_on: Vec::new(),
                });
            }
            drop(rows);
            for (i, on) in dependencies(conn, id, &key_of)?.into_iter().enumerate() {
                items[i].depends_on = on.into_iter().map(|j| items[j].key.clone()).collect();
            }
            Ok(BatchDetail { batch, items })
        })
        .await
    }

    async fn list_batches(
        &self,
        state: Option<BatchState>,
        limit: usize,
    ) -> Result<Vec<BatchRecord>> {
        let state = state.map(|s| s.as_str());
        let limit = crate::sql_limit(limit);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {BATCH_COLS} FROM batches WHERE (?1 IS NULL OR state = ?1)
                 ORDER BY id DESC LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![state, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(batch_row(conn, r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn retry_batch(&self, id: BatchId, now: i64) -> Result<BatchRetried> {
        self.inner
            .writer
            .write(move |conn| {
                let state = batch_state(conn, id)?;
                if state == BatchState::Cancelled {
                    return Err(fabric_core::CoreError::StateConflict(format!(
                        "batch {id} was cancelled; a cancelled batch is not retried"
                    ))
                    .into());
                }
                let mut ids = Vec::new();
                let mut states = Vec::new();
                let mut index: HashMap<JobId, usize> = HashMap::new();
                {
                    let mut stmt = conn.prepare_cached(
                        "SELECT id, state FROM jobs WHERE batch_id = ?1 ORDER BY batch_pos, id",
                    )?;
                    let mut rows = stmt.query([id])?;
                    while let Some(r) = rows.next()? {
                        let job: JobId = r.get(0)?;
                        let state: String = r.get(1)?;
                        index.insert(job, ids.len());
                        ids.push(job);
                        states.push(JobState::parse(&state)?);
                    }
                }
                let deps = dependencies(conn, id, &index)?;
                let plan = retry_states(&states, &deps);
                let mut out = BatchRetried::default();
                let mut changes = Vec::new();
                let mut requeue = conn.prepare_cached(
                    "UPDATE jobs SET state = ?2, deps_remaining = ?3,
                         max_attempts = attempt + max_attempts, run_at = ?4, updated_at = ?4,
                         finished_at = NULL
                     WHERE id = ?1 AND state = 'quarantined'",
                )?;
                let mut unblock = conn.prepare_cached(
                    "UPDATE jobs SET state = ?2, deps_remaining = ?3, last_error = NULL,
                         run_at = ?4, updated_at = ?4
                     WHERE id = ?1 AND state = 'blocked'",
                )?;
                let mut noted = conn.prepare_cached(
                    "UPDATE quarantine SET retries = retries + 1 WHERE job_id = ?1",
                )?;
                for (i, change) in plan.iter().enumerate() {
                    let Some((to, remaining)) = change else {
                        if states[i] == JobState::Blocked {
                            out.still_blocked += 1;
                        }
                        continue;
                    };
                    let job = ids[i];
                    if states[i] == JobState::Quarantined {
                        requeue.execute(params![job, to.as_str(), remaining, now])?;
                        noted.execute([job])?;
                        out.requeued += 1;
                    } else {
                        unblock.execute(params![job, to.as_str(), remaining, now])?;
                        out.unblocked += 1;
                    }
                    changes.push(outbox::Change {
                        id: job,
                        attempt: None,
                        from: states[i],
                        to: *to,
                        detail: None,
                        at: now,
                    });
                }
                outbox::record(conn, &changes)?;
                if out.requeued + out.unblocked > 0 {
                    conn.prepare_cached(
                        "UPDATE batches SET state = 'running', finished_at = NULL, updated_at = ?2,
                             generation = generation + CASE WHEN state = 'running' THEN 0 ELSE 1 END
                         WHERE id = ?1",
                    )?
                    .execute(params![id, now])?;
                }
                Ok(out)
            })
            .await
    }

    async fn cancel_batch(&self, id: BatchId, reason: &str, now: i64) -> Result<BatchCancelled> {
        let reason = reason.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let state = batch_state(conn, id)?;
                if state != BatchState::Running {
                    return Err(fabric_core::CoreError::StateConflict(format!(
                        "batch {id} has ended ({}); only a running batch is cancelled",
                        state
                    ))
                    .into());
                }
                let open: Vec<(JobId, String, u32)> = conn
                    .prepare_cached(
                        "SELECT id, state, attempt FROM jobs WHERE batch_id = ?1
                         AND state IN ('pending', 'failed', 'waiting', 'blocked', 'running')",
                    )?
                    .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                conn.prepare_cached(
                    "UPDATE jobs SET state = 'cancelled', cancel_reason = ?2, finished_at = ?3,
                         updated_at = ?3, lease_owner = NULL, lease_expires_at = NULL
                     WHERE batch_id = ?1
                       AND state IN ('pending', 'failed', 'waiting', 'blocked', 'running')",
                )?
                .execute(params![id, reason, now])?;
                let mut out = BatchCancelled::default();
                let mut changes = Vec::with_capacity(open.len());
                for (job, state, attempt) in &open {
                    let from = JobState::parse(state)?;
                    if from == JobState::Running {
                        out.running.push(*job);
                    }
                    changes.push(outbox::Change {
                        id: *job,
                        attempt: Some(*attempt),
                        from,
                        to: JobState::Cancelled,
                        detail: Some(&reason),
                        at: now,
                    });
                }
                outbox::record(conn, &changes)?;
                out.cancelled = open.len() as u64;
                conn.prepare_cached(
                    "UPDATE batches SET state = 'cancelled', cancel_reason = ?2, finished_at = ?3,
                         updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id, reason, now])?;
                let counts = counts(conn, id)?;
                out.callback_job_id =
                    enqueue_callback(conn, id, BatchState::Cancelled, &counts, now)?;
                Ok(out)
            })
            .await
    }

    async fn finish_batches(&self, now: i64) -> Result<Vec<FinishedBatch>> {
        self.inner
            .writer
            .write(move |conn| {
                let ended: Vec<BatchId> = conn
                    .prepare_cached(
                        "SELECT id FROM batches b WHERE state = 'running' AND NOT EXISTS (
                             SELECT 1 FROM jobs WHERE batch_id = b.id
                               AND state IN ('pending', 'failed', 'waiting', 'running'))",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut out = Vec::with_capacity(ended.len());
                for id in ended {
                    let counts = counts(conn, id)?;
                    let state = ended_state(&counts);
                    conn.prepare_cached(
                        "UPDATE batches SET state = ?2, finished_at = ?3, updated_at = ?3
                         WHERE id = ?1 AND state = 'running'",
                    )?
                    .execute(params![id, state.as_str(), now])?;
                    let callback_job_id = enqueue_callback(conn, id, state, &counts, now)?;
                    out.push(FinishedBatch {
                        id,
                        state,
                        callback_job_id,
                    });
                }
                Ok(out)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe runs on every write of completions while any job has dependencies: a scan
    /// of every batch ever kept would grow with the history.
    #[test]
    fn the_probe_for_items_waiting_for_several_reads_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        drop(super::super::SqliteStore::open(&path, Default::default()).unwrap());
        let conn = Connection::open(&path).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {WAITING_FOR_SEVERAL}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("INDEX batches_multi")),
            "{plan:?}"
        );
    }
}
