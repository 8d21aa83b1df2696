//! Batches on PostgreSQL: the one-transaction submit of a batch and its dependencies (ids
//! drawn from the sequence first, rows inserted from arrays), the blocking of dependents of a
//! failed item, and `batch show|list|retry|cancel` and the end of a batch. The release of
//! dependents rides in the completion's own statement (`fenced_update`).

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fabric_core::batch::{retry_states, BatchId, BatchState};
use fabric_core::{JobId, JobState, NewJob};

use super::{PostgresStore, CANCEL_MARK, JOBS_CHANNEL};
use crate::batch::{callback_job, ended_state};
use crate::{
    BatchCancelled, BatchDetail, BatchItemRecord, BatchRecord, BatchRetried, BatchStore,
    FinishedBatch, NewBatch, Result, StateCounts, StoreError,
};

/// Rows per insert statement of a batch submit.
const CHUNK: usize = 10_000;

/// Blocks every waiting item that depends, directly or not, on job `id`, which was just
/// quarantined or cancelled (`what`).
pub(super) async fn block_dependents<C: GenericClient>(
    c: &C,
    id: JobId,
    what: &str,
    now: i64,
) -> Result<()> {
    let error = format!("dependency_failure: job {id} was {what}");
    let stmt = c
        .prepare_cached(
            "WITH RECURSIVE d(id) AS (
                 SELECT job_id FROM job_deps WHERE depends_on = $1
                 UNION SELECT jd.job_id FROM job_deps jd JOIN d ON jd.depends_on = d.id)
             UPDATE jobs SET state = 'blocked', last_error = $3, updated_at = $2
             WHERE id IN (SELECT id FROM d) AND state = 'waiting'",
        )
        .await?;
    c.execute(&stmt, &[&id, &now, &error]).await?;
    Ok(())
}

async fn counts<C: GenericClient>(c: &C, id: BatchId) -> Result<StateCounts> {
    let mut out = StateCounts::default();
    let stmt = c
        .prepare_cached("SELECT state, count(*) FROM jobs WHERE batch_id = $1 GROUP BY state")
        .await?;
    for r in c.query(&stmt, &[&id]).await? {
        let state: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        out.add(JobState::parse(&state)?, n as u64);
    }
    Ok(out)
}

const BATCH_COLS: &str = "id, name, state, items, created_at, updated_at, finished_at, \
     on_complete, callback_job_id, cancel_reason, generation";

async fn batch_row<C: GenericClient>(c: &C, r: &tokio_postgres::Row) -> Result<BatchRecord> {
    let id: BatchId = r.try_get(0)?;
    let state: String = r.try_get(2)?;
    let on_complete: Option<serde_json::Value> = r.try_get(7)?;
    let on_complete = on_complete
        .map(serde_json::from_value::<NewJob>)
        .transpose()
        .map_err(|e| StoreError::Backend(format!("batch {id}: on_complete: {e}")))?
        .map(|j| j.kind);
    Ok(BatchRecord {
        id,
        name: r.try_get(1)?,
        state: BatchState::parse(&state)?,
        items: r.try_get::<_, i64>(3)? as u64,
        counts: counts(c, id).await?,
        created_at: r.try_get(4)?,
        updated_at: r.try_get(5)?,
        finished_at: r.try_get(6)?,
        on_complete,
        callback_job_id: r.try_get(8)?,
        cancel_reason: r.try_get(9)?,
        retries: r.try_get::<_, i32>(10)? as u32,
    })
}

/// The state of batch `id` alone, its row locked (no item counts: what retry and cancel
/// check).
async fn lock_batch_state<C: GenericClient>(c: &C, id: BatchId) -> Result<BatchState> {
    match c
        .query_opt("SELECT state FROM batches WHERE id = $1 FOR UPDATE", &[&id])
        .await?
    {
        Some(r) => Ok(BatchState::parse(&r.try_get::<_, String>(0)?)?),
        None => Err(StoreError::batch_not_found(id)),
    }
}

async fn get_batch<C: GenericClient>(c: &C, id: BatchId) -> Result<BatchRecord> {
    let sql = format!("SELECT {BATCH_COLS} FROM batches WHERE id = $1");
    match c.query_opt(&sql, &[&id]).await? {
        Some(r) => batch_row(c, &r).await,
        None => Err(StoreError::batch_not_found(id)),
    }
}

/// The callback of batch `id` as it ends in `state`, inserted once (its unique key), and
/// recorded on the batch.
async fn enqueue_callback<C: GenericClient>(
    c: &C,
    id: BatchId,
    state: BatchState,
    counts: &StateCounts,
    now: i64,
) -> Result<Option<JobId>> {
    let row = c
        .query_one(
            "SELECT on_complete, name, generation FROM batches WHERE id = $1",
            &[&id],
        )
        .await?;
    let Some(base) = row.try_get::<_, Option<serde_json::Value>>(0)? else {
        return Ok(None);
    };
    let base: NewJob = serde_json::from_value(base)
        .map_err(|e| StoreError::Backend(format!("batch {id}: on_complete: {e}")))?;
    let name: Option<String> = row.try_get(1)?;
    let generation: i32 = row.try_get(2)?;
    let job = callback_job(base, id, name.as_deref(), state, counts, generation.into());
    let job_id = super::insert_unique(c, &job, now).await?.id;
    c.execute(
        "UPDATE batches SET callback_job_id = $2 WHERE id = $1",
        &[&id, &job_id],
    )
    .await?;
    Ok(Some(job_id))
}

/// Every item of batch `id` (id, state) in id order, and each one's dependencies as
/// indices into that order.
async fn graph<C: GenericClient>(
    c: &C,
    id: BatchId,
) -> Result<(Vec<JobId>, Vec<JobState>, Vec<Vec<usize>>)> {
    let mut ids = Vec::new();
    let mut states = Vec::new();
    let mut index: HashMap<JobId, usize> = HashMap::new();
    for r in c
        .query(
            "SELECT id, state FROM jobs WHERE batch_id = $1 ORDER BY batch_pos, id",
            &[&id],
        )
        .await?
    {
        let job: JobId = r.try_get(0)?;
        let state: String = r.try_get(1)?;
        index.insert(job, ids.len());
        ids.push(job);
        states.push(JobState::parse(&state)?);
    }
    let mut deps = vec![Vec::new(); ids.len()];
    for r in c
        .query(
            "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id
             WHERE j.batch_id = $1",
            &[&id],
        )
        .await?
    {
        let (job, on): (JobId, JobId) = (r.try_get(0)?, r.try_get(1)?);
        if let (Some(&i), Some(&j)) = (index.get(&job), index.get(&on)) {
            deps[i].push(j);
        }
    }
    Ok((ids, states, deps))
}

#[async_trait]
impl BatchStore for PostgresStore {
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchId> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let on_complete = batch
            .on_complete
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let bid: BatchId = tx
            .query_one(
                "INSERT INTO batches (name, state, items, created_at, updated_at, on_complete)
                 VALUES ($1, 'running', $2, $3, $3, $4) RETURNING id",
                &[&batch.name, &(batch.items.len() as i64), &now, &on_complete],
            )
            .await?
            .try_get(0)?;
        let seq: Vec<i64> = tx
            .query(
                "SELECT nextval(pg_get_serial_sequence('jobs', 'id'))
                 FROM generate_series(1, $1::bigint)",
                &[&(batch.items.len() as i64)],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        // Stored in run order: the k-th item of that order gets the k-th id and is inserted
        // k-th; `ids` by position in the file.
        let order = batch.storage_order()?;
        let mut ids = vec![0i64; batch.items.len()];
        for (&pos, &id) in order.iter().zip(&seq) {
            ids[pos] = id;
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO jobs (id, kind, shard, payload, priority, state, max_attempts, run_at,
                     source, created_at, updated_at, batch_id, batch_key, deps_remaining,
                     batch_pos)
                 SELECT i, k, s, p, pr, st, m, r, src, $10, $10, $11, key, dr, pos
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::int[],
                             $6::text[], $7::int[], $8::bigint[], $9::text[], $12::text[],
                             $13::int[], $14::int[])
                      AS t(i, k, s, p, pr, st, m, r, src, key, dr, pos)",
            )
            .await?;
        for (chunk, ids) in order.chunks(CHUNK).zip(seq.chunks(CHUNK)) {
            let items: Vec<&crate::NewBatchItem> = chunk.iter().map(|&p| &batch.items[p]).collect();
            let kinds: Vec<&str> = items.iter().map(|i| i.job.kind.as_str()).collect();
            let shards: Vec<&str> = items.iter().map(|i| i.job.shard.as_str()).collect();
            let payloads: Vec<&serde_json::Value> = items.iter().map(|i| &i.job.payload).collect();
            let priorities: Vec<i32> = items.iter().map(|i| i.job.priority.0).collect();
            let states: Vec<&str> = items
                .iter()
                .map(|i| {
                    if i.depends_on.is_empty() {
                        "pending"
                    } else {
                        "waiting"
                    }
                })
                .collect();
            let attempts: Vec<i32> = items.iter().map(|i| i.job.max_attempts as i32).collect();
            let run_ats: Vec<i64> = items.iter().map(|i| i.job.run_at.unwrap_or(now)).collect();
            let sources: Vec<Option<&str>> =
                items.iter().map(|i| i.job.source.as_deref()).collect();
            let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
            let deps: Vec<i32> = items.iter().map(|i| i.depends_on.len() as i32).collect();
            let positions: Vec<i32> = chunk.iter().map(|&p| p as i32).collect();
            tx.execute(
                &insert,
                &[
                    &ids,
                    &kinds,
                    &shards,
                    &payloads,
                    &priorities,
                    &states,
                    &attempts,
                    &run_ats,
                    &sources,
                    &now,
                    &bid,
                    &keys,
                    &deps,
                    &positions,
                ],
            )
            .await?;
        }
        let mut on = Vec::new();
        let mut of = Vec::new();
        for (item, &id) in batch.items.iter().zip(&ids) {
            for &d in &item.depends_on {
                let dep = *ids.get(d).ok_or_else(|| {
                    StoreError::Backend(format!("item {} depends on index {d}", item.key))
                })?;
                on.push(dep);
                of.push(id);
            }
        }
        let dep_insert = tx
            .prepare_cached(
                "INSERT INTO job_deps (depends_on, job_id)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            )
            .await?;
        for (on, of) in on.chunks(CHUNK * 5).zip(of.chunks(CHUNK * 5)) {
            tx.execute(&dep_insert, &[&on, &of]).await?;
        }
        tx.commit().await?;
        drop(client);
        self.notify_inserted().await;
        Ok(bid)
    }

    async fn batch(&self, id: BatchId) -> Result<BatchDetail> {
        let client = self.pool.get().await?;
        let batch = get_batch(&client, id).await?;
        let mut items = Vec::new();
        let mut key_of: HashMap<JobId, usize> = HashMap::new();
        for r in client
            .query(
                "SELECT id, batch_key, kind, state, attempt, max_attempts, started_at,
                     finished_at, last_error
                 FROM jobs WHERE batch_id = $1 ORDER BY batch_pos, id",
                &[&id],
            )
            .await?
        {
            let job_id: JobId = r.try_get(0)?;
            let state: String = r.try_get(3)?;
            key_of.insert(job_id, items.len());
            items.push(BatchItemRecord {
                key: r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
                job_id,
                kind: r.try_get(2)?,
                state: JobState::parse(&state)?,
                attempt: r.try_get::<_, i32>(4)? as u32,
                max_attempts: r.try_get::<_, i32>(5)? as u32,
                started_at: r.try_get(6)?,
                finished_at: r.try_get(7)?,
                last_error: r.try_get(8)?,
                depends_on: Vec::new(),
            });
        }
        for r in client
            .query(
                "SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id
                 WHERE j.batch_id = $1 ORDER BY d.job_id, d.depends_on",
                &[&id],
            )
            .await?
        {
            let (job, on): (JobId, JobId) = (r.try_get(0)?, r.try_get(1)?);
            if let (Some(&i), Some(&j)) = (key_of.get(&job), key_of.get(&on)) {
                let key = items[j].key.clone();
                items[i].depends_on.push(key);
            }
        }
        Ok(BatchDetail { batch, items })
    }

    async fn list_batches(
        &self,
        state: Option<BatchState>,
        limit: usize,
    ) -> Result<Vec<BatchRecord>> {
        let client = self.pool.get().await?;
        let state = state.map(|s| s.as_str());
        let rows = client
            .query(
                &format!(
                    "SELECT {BATCH_COLS} FROM batches WHERE ($1::text IS NULL OR state = $1)
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&state, &crate::sql_limit(limit)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(batch_row(&client, r).await?);
        }
        Ok(out)
    }

    async fn retry_batch(&self, id: BatchId, now: i64) -> Result<BatchRetried> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let state = lock_batch_state(&tx, id).await?;
        if state == BatchState::Cancelled {
            return Err(fabric_core::CoreError::StateConflict(format!(
                "batch {id} was cancelled; a cancelled batch is not retried"
            ))
            .into());
        }
        let (ids, states, deps) = graph(&tx, id).await?;
        let plan = retry_states(&states, &deps);
        let mut out = BatchRetried::default();
        for (i, change) in plan.iter().enumerate() {
            let Some((to, remaining)) = change else {
                if states[i] == JobState::Blocked {
                    out.still_blocked += 1;
                }
                continue;
            };
            let remaining = *remaining as i32;
            if states[i] == JobState::Quarantined {
                tx.execute(
                    "UPDATE jobs SET state = $2, deps_remaining = $3,
                         max_attempts = attempt + max_attempts, run_at = $4, updated_at = $4,
                         finished_at = NULL
                     WHERE id = $1 AND state = 'quarantined'",
                    &[&ids[i], &to.as_str(), &remaining, &now],
                )
                .await?;
                tx.execute(
                    "UPDATE quarantine SET retries = retries + 1 WHERE job_id = $1",
                    &[&ids[i]],
                )
                .await?;
                out.requeued += 1;
            } else {
                tx.execute(
                    "UPDATE jobs SET state = $2, deps_remaining = $3, last_error = NULL,
                         run_at = $4, updated_at = $4
                     WHERE id = $1 AND state = 'blocked'",
                    &[&ids[i], &to.as_str(), &remaining, &now],
                )
                .await?;
                out.unblocked += 1;
            }
        }
        if out.requeued + out.unblocked > 0 {
            tx.execute(
                "UPDATE batches SET state = 'running', finished_at = NULL, updated_at = $2,
                     generation = generation + CASE WHEN state = 'running' THEN 0 ELSE 1 END
                 WHERE id = $1",
                &[&id, &now],
            )
            .await?;
        }
        tx.commit().await?;
        drop(client);
        if out.requeued + out.unblocked > 0 {
            self.notify_inserted().await;
        }
        Ok(out)
    }

    async fn cancel_batch(&self, id: BatchId, reason: &str, now: i64) -> Result<BatchCancelled> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let state = lock_batch_state(&tx, id).await?;
        if state != BatchState::Running {
            return Err(fabric_core::CoreError::StateConflict(format!(
                "batch {id} has ended ({}); only a running batch is cancelled",
                state
            ))
            .into());
        }
        let running: Vec<JobId> = tx
            .query(
                "SELECT id FROM jobs WHERE batch_id = $1 AND state = 'running' FOR UPDATE",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let cancelled = tx
            .execute(
                "UPDATE jobs SET state = 'cancelled', cancel_reason = $2, finished_at = $3,
                     updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
                 WHERE batch_id = $1
                   AND state IN ('pending', 'failed', 'waiting', 'blocked', 'running')",
                &[&id, &reason, &now],
            )
            .await?;
        for job in &running {
            // Delivered at commit: the daemon running the attempt stops it at once.
            let payload = format!("{}{CANCEL_MARK}{job}", self.schema);
            tx.execute("SELECT pg_notify($1, $2)", &[&JOBS_CHANNEL, &payload])
                .await?;
        }
        tx.execute(
            "UPDATE batches SET state = 'cancelled', cancel_reason = $2, finished_at = $3,
                 updated_at = $3 WHERE id = $1",
            &[&id, &reason, &now],
        )
        .await?;
        let counts = counts(&tx, id).await?;
        let callback_job_id =
            enqueue_callback(&tx, id, BatchState::Cancelled, &counts, now).await?;
        tx.commit().await?;
        drop(client);
        if callback_job_id.is_some() {
            self.notify_inserted().await;
        }
        Ok(BatchCancelled {
            cancelled,
            running,
            callback_job_id,
        })
    }

    async fn finish_batches(&self, now: i64) -> Result<Vec<FinishedBatch>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Locked, skipping a batch another daemon is ending or retrying right now.
        let ended: Vec<BatchId> = tx
            .query(
                "SELECT id FROM batches b WHERE state = 'running' AND NOT EXISTS (
                     SELECT 1 FROM jobs WHERE batch_id = b.id
                       AND state IN ('pending', 'failed', 'waiting', 'running'))
                 ORDER BY id FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::with_capacity(ended.len());
        for id in ended {
            let counts = counts(&tx, id).await?;
            let state = ended_state(&counts);
            let n = tx
                .execute(
                    "UPDATE batches SET state = $2, finished_at = $3, updated_at = $3
                     WHERE id = $1 AND state = 'running'",
                    &[&id, &state.as_str(), &now],
                )
                .await?;
            if n == 0 {
                continue;
            }
            let callback_job_id = enqueue_callback(&tx, id, state, &counts, now).await?;
            out.push(FinishedBatch {
                id,
                state,
                callback_job_id,
            });
        }
        tx.commit().await?;
        drop(client);
        if out.iter().any(|b| b.callback_job_id.is_some()) {
            self.notify_inserted().await;
        }
        Ok(out)
    }
}
