//! The PostgreSQL backend for scale-out: many daemons on one database. A pooled async driver
//! (tokio-postgres + deadpool), versioned migrations, claims in one CTE with
//! `FOR UPDATE SKIP LOCKED`, completions fenced by owner + attempt.

mod alerts;
mod audit;
mod batches;
mod connect;
mod docs;
mod fleet;
mod outbox;
mod quarantine;
mod rows;
mod schedules;
mod sources;
mod telemetry;
mod write_path;

use std::path::Path;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use fabric_core::job::AttemptError;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState, NewJob};

use connect::{listen_loop, MIGRATIONS};
use rows::{get_job, get_job_for_update, row_to_job, JobWhere, JOB_COLS};
use write_path::{add_error, fenced_update, insert_plain, quarantine_job, CLAIM_SQL};

use crate::{
    AuditEntry, ClaimRequest, CompleteReport, Completion, JobDetail, JobFilter, Note, Outcome,
    Overdue, PendingKey, QuarantineEntry, QuarantineFilter, QuarantineStats, RecoveryReport,
    RescueReport, Result, SourceRecord, StateCounts, Store, StoreError, StoreEvent, Submitted,
    TelemetrySample, TelemetryTotal,
};

/// Channel of the jobs-inserted notification; the payload is the schema.
const JOBS_CHANNEL: &str = "fabric_jobs";
/// Between the schema and the job id in the payload of a cancel notification.
const CANCEL_MARK: &str = ":cancel:";

/// The PostgreSQL store. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Connections with `synchronous_commit = off`, for writes whose loss in a database
    /// crash only makes a job run again (claims, completions, heartbeats, leases); the same
    /// pool as `pool` when everything must wait for the WAL flush.
    relaxed: Pool,
    schema: String,
    /// Connection settings, for the dedicated LISTEN connection.
    config: tokio_postgres::Config,
    notifier: std::sync::Arc<Notifier>,
}

/// Sends the "jobs inserted" notification after inserts, coalescing concurrent ones: a
/// NOTIFY serialises commits on a global lock, so one per insert would cut concurrent enqueue
/// throughput by two thirds. Every insert returns only once a NOTIFY that started after its
/// commit has been sent, so no listener can miss it.
#[derive(Default)]
struct Notifier {
    /// Inserts committed so far (a sequence number per insert).
    committed: std::sync::atomic::AtomicU64,
    /// Every insert up to this sequence number is covered by a sent NOTIFY.
    sent_upto: tokio::sync::Mutex<u64>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            StoreError::Backend(format!("{} ({})", db.message(), db.code().code()))
        } else {
            // Connection-level: the database went away or cannot be reached.
            StoreError::Unavailable(e.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Inserts `job` unless its unique key exists; returns its id and whether it is new.
pub(super) async fn insert_unique<C: GenericClient>(
    c: &C,
    j: &NewJob,
    now: i64,
) -> Result<Submitted> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO jobs (kind, shard, payload, priority, state, max_attempts, run_at,
                 unique_key, source, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $9)
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .await?;
    let row = c
        .query_opt(
            &stmt,
            &[
                &j.kind,
                &j.shard,
                &j.payload,
                &j.priority.0,
                &(j.max_attempts as i32),
                &j.run_at.unwrap_or(now),
                &j.unique_key,
                &j.source,
                &now,
            ],
        )
        .await?;
    Ok(match row {
        Some(r) => Submitted {
            id: r.try_get(0)?,
            created: true,
        },
        None => Submitted {
            id: c
                .query_one(
                    "SELECT id FROM jobs WHERE unique_key = $1",
                    &[&j.unique_key],
                )
                .await?
                .try_get(0)?,
            created: false,
        },
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn docs(&self) -> &dyn crate::DocStore {
        self
    }

    fn alerts(&self) -> &dyn crate::AlertStore {
        self
    }

    fn outbox(&self) -> &dyn crate::OutboxStore {
        self
    }

    fn batches(&self) -> &dyn crate::BatchStore {
        self
    }

    fn schedules(&self) -> &dyn crate::ScheduleStore {
        self
    }

    fn fleet(&self) -> &dyn crate::FleetStore {
        self
    }

    async fn submit(&self, jobs: Vec<NewJob>, now: i64) -> Result<Vec<Submitted>> {
        let plain: Vec<usize> = (0..jobs.len())
            .filter(|i| jobs[*i].unique_key.is_none())
            .collect();
        let mut client = self.pool.get().await?;
        if plain.len() == jobs.len() {
            // One statement is atomic on its own: no BEGIN/COMMIT round trips.
            let ids = insert_plain(&client, &jobs, &plain, now).await?;
            drop(client);
            self.notify_inserted().await;
            return Ok(ids
                .into_iter()
                .map(|id| Submitted { id, created: true })
                .collect());
        }
        let tx = client.transaction().await?;
        let mut out: Vec<Option<Submitted>> = vec![None; jobs.len()];
        if !plain.is_empty() {
            let ids = insert_plain(&tx, &jobs, &plain, now).await?;
            for (pos, id) in plain.iter().zip(ids) {
                out[*pos] = Some(Submitted { id, created: true });
            }
        }
        for (i, j) in jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.unique_key.is_some())
        {
            out[i] = Some(insert_unique(&tx, j, now).await?);
        }
        tx.commit().await?;
        drop(client);
        if out.iter().flatten().any(|s| s.created) {
            self.notify_inserted().await;
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| StoreError::Backend("a submitted job got no id".into())))
            .collect()
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Job>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.relaxed.get().await?;
        let until = req.now + req.lease_ms;
        let limit = crate::sql_limit(req.limit);
        let shards: Option<Vec<String>> = (!req.shards.is_empty()).then(|| req.shards.clone());
        let except: Option<Vec<String>> =
            (!req.exclude_shards.is_empty()).then(|| req.exclude_shards.clone());
        let kinds: Option<Vec<String>> = (!req.kinds.is_empty()).then(|| req.kinds.clone());
        let not_kinds: Option<Vec<String>> =
            (!req.exclude_kinds.is_empty()).then(|| req.exclude_kinds.clone());
        let stmt = client.prepare_cached(&CLAIM_SQL).await?;
        let rows = client
            .query(
                &stmt,
                &[
                    &req.owner,
                    &until,
                    &req.now,
                    &limit,
                    &shards,
                    &except,
                    &req.min_priority,
                    &kinds,
                    &not_kinds,
                ],
            )
            .await?;
        let mut jobs = rows.iter().map(row_to_job).collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
        Ok(jobs)
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<CompleteReport> {
        if batch.is_empty() {
            return Ok(CompleteReport::default());
        }
        let mut client = self.relaxed.get().await?;
        if batch
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
        {
            // Successes touch only the jobs table: one statement, atomic on its own.
            let (applied, released) = fenced_update(&client, &batch).await?;
            let applied_ids: Vec<JobId> = batch
                .iter()
                .filter(|c| applied.contains(&(c.id, c.attempt as i32, c.owner.clone())))
                .map(|c| c.id)
                .collect();
            return Ok(CompleteReport {
                late: (batch.len() - applied_ids.len()) as u64,
                released,
                applied_ids,
            });
        }
        let tx = client.transaction().await?;
        let (applied, released) = fenced_update(&tx, &batch).await?;
        let mut report = CompleteReport {
            released,
            ..CompleteReport::default()
        };
        for c in &batch {
            if !applied.contains(&(c.id, c.attempt as i32, c.owner.clone())) {
                report.late += 1;
                continue;
            }
            report.applied_ids.push(c.id);
            match &c.outcome {
                Outcome::Succeeded { .. } => {}
                Outcome::Retry { error, failure, .. } => add_error(&tx, c, error, failure).await?,
                Outcome::Quarantine {
                    reason,
                    error,
                    failure,
                } => {
                    add_error(&tx, c, error, failure).await?;
                    quarantine_job(&tx, c.id, *reason, error, failure, c.finished_at).await?;
                    batches::block_dependents(&tx, c.id, "quarantined", c.finished_at).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn heartbeat(
        &self,
        owner: &str,
        jobs: Vec<(JobId, u32)>,
        until: i64,
    ) -> Result<Vec<JobId>> {
        let client = self.relaxed.get().await?;
        let ids: Vec<i64> = jobs.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i32> = jobs.iter().map(|(_, a)| *a as i32).collect();
        let held: std::collections::HashSet<i64> = client
            .query(
                &client
                    .prepare_cached(
                        "UPDATE jobs j SET lease_expires_at = $3
                 FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
                 WHERE j.id = h.id AND j.attempt = h.attempt AND j.lease_owner = $4
                   AND j.state = 'running'
                 RETURNING j.id",
                    )
                    .await?,
                &[&ids, &attempts, &until, &owner],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(ids.into_iter().filter(|id| !held.contains(id)).collect())
    }

    async fn rescue(&self, now: i64, owner_prefix: Option<&str>) -> Result<RescueReport> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let cond = match owner_prefix {
            Some(_) => "$1::bigint IS NOT NULL AND left(lease_owner, length($2)) = $2",
            None => "lease_expires_at < $1 AND $2::text IS NULL",
        };
        let prefix: Option<&str> = owner_prefix;
        let exhausted: Vec<JobId> = tx
            .query(
                &format!(
                    "SELECT id FROM jobs WHERE state = 'running' AND {cond}
                     AND attempt >= max_attempts ORDER BY id FOR UPDATE"
                ),
                &[&now, &prefix],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        let error = "lease lost on the last attempt (worker or daemon died)";
        for id in &exhausted {
            tx.execute(
                "UPDATE jobs SET state = 'quarantined', last_error = $2, finished_at = $3,
                     updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1",
                &[id, &error, &now],
            )
            .await?;
            quarantine_job(
                &tx,
                *id,
                QuarantineReason::Timeout,
                error,
                "lease_expired",
                now,
            )
            .await?;
            batches::block_dependents(&tx, *id, "quarantined", now).await?;
        }
        let reset: Vec<JobId> = tx
            .query(
                &format!(
                    "UPDATE jobs SET state = 'pending', lease_owner = NULL,
                         lease_expires_at = NULL, updated_at = $1
                     WHERE state = 'running' AND {cond}
                     RETURNING id"
                ),
                &[&now, &prefix],
            )
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        tx.commit().await?;
        let mut reset = reset;
        reset.sort();
        Ok(RescueReport {
            reset,
            quarantined: exhausted,
        })
    }

    async fn next_run_at(&self, after: i64) -> Result<Option<i64>> {
        let client = self.relaxed.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT min(run_at) FROM jobs
                 WHERE state IN ('pending', 'failed') AND run_at > $1",
            )
            .await?;
        let row = client.query_one(&stmt, &[&after]).await?;
        Ok(row.try_get(0)?)
    }

    async fn job(&self, id: JobId) -> Result<JobDetail> {
        let client = self.pool.get().await?;
        let job = get_job(&client, id).await?;
        let errors = client
            .query(
                "SELECT attempt, error, failure, started_at, finished_at FROM job_errors
                 WHERE job_id = $1 ORDER BY id",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AttemptError {
                    attempt: r.try_get::<_, i32>(0)? as u32,
                    error: r.try_get(1)?,
                    failure: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(JobDetail { job, errors })
    }

    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        let client = self.pool.get().await?;
        let params = JobWhere::new(&filter, true);
        let limit = crate::sql_limit(filter.limit);
        let mut args = params.args();
        args.push(&limit);
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE {} ORDER BY id DESC LIMIT $10",
                    JobWhere::SQL
                ),
                &args,
            )
            .await?;
        rows.iter().map(row_to_job).collect()
    }

    async fn count_jobs(&self, filter: JobFilter) -> Result<u64> {
        let client = self.pool.get().await?;
        let params = JobWhere::new(&filter, false);
        let row = client
            .query_one(
                &format!("SELECT count(*) FROM jobs WHERE {}", JobWhere::SQL),
                &params.args(),
            )
            .await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn pending_keys(&self, after_id: JobId, limit: usize) -> Result<Vec<PendingKey>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, shard, priority, attempt, created_at FROM jobs
                 WHERE id > $1 AND state IN ('pending', 'failed') ORDER BY id LIMIT $2",
                &[&after_id, &(crate::sql_limit(limit))],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingKey {
                    id: r.try_get(0)?,
                    shard: r.try_get(1)?,
                    priority: r.try_get(2)?,
                    attempt: r.try_get::<_, i32>(3)? as u32,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<StateCounts> {
        let client = self.pool.get().await?;
        let mut counts = StateCounts::default();
        for r in client
            .query("SELECT state, count(*) FROM jobs GROUP BY state", &[])
            .await?
        {
            let state: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            counts.add(JobState::parse(&state)?, n as u64);
        }
        Ok(counts)
    }

    async fn counts_of(&self, source: &str, kind: &str, after_id: JobId) -> Result<StateCounts> {
        let client = self.pool.get().await?;
        let mut counts = StateCounts::default();
        for r in client
            .query(
                "SELECT state, count(*) FROM jobs WHERE id > $1 AND source = $2 AND kind = $3
                 GROUP BY state",
                &[&after_id, &source, &kind],
            )
            .await?
        {
            let state: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            counts.add(JobState::parse(&state)?, n.max(0) as u64);
        }
        Ok(counts)
    }

    async fn queue_depths(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT shard, count(*) FROM jobs WHERE state IN ('pending', 'failed')
                 GROUP BY shard",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64)))
            .collect()
    }

    async fn overdue(
        &self,
        due_before: i64,
        shards: &[String],
        exclude_shards: &[String],
        exclude_kinds: &[String],
    ) -> Result<Option<Overdue>> {
        let client = self.pool.get().await?;
        let only = (!shards.is_empty()).then_some(shards);
        let except = (!exclude_shards.is_empty()).then_some(exclude_shards);
        let not_kinds = (!exclude_kinds.is_empty()).then_some(exclude_kinds);
        client
            .query_opt(
                "SELECT id, shard, run_at FROM jobs
                 WHERE state IN ('pending', 'failed') AND run_at < $1
                   AND ($2::text[] IS NULL OR shard = ANY($2))
                   AND ($3::text[] IS NULL OR shard <> ALL($3))
                   AND ($4::text[] IS NULL OR kind <> ALL($4))
                 LIMIT 1",
                &[&due_before, &only, &except, &not_kinds],
            )
            .await?
            .map(|r| {
                Ok(Overdue {
                    id: r.try_get(0)?,
                    shard: r.try_get(1)?,
                    run_at: r.try_get(2)?,
                })
            })
            .transpose()
    }

    async fn succeeded_since(&self, since: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND finished_at >= $1",
                &[&since],
            )
            .await?
            .try_get(0)?;
        Ok(n as u64)
    }

    async fn finished_windows(
        &self,
        since: &[i64],
        slow_ms: &[i64],
    ) -> Result<Vec<crate::FinishedWindow>> {
        if since.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        let row = client
            .query_one(&crate::windows::sql(since, slow_ms), &[])
            .await?;
        let values = (0..row.len())
            .map(|i| row.try_get::<_, i64>(i))
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        Ok(crate::windows::windows(since, slow_ms, &values))
    }

    async fn cancel(&self, id: JobId, reason: &str, now: i64) -> Result<Job> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let job = get_job_for_update(&tx, id).await?;
        job.state.check_transition(id, JobState::Cancelled)?;
        tx.execute(
            "UPDATE jobs SET state = 'cancelled', cancel_reason = $2, finished_at = $3,
                 updated_at = $3, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1",
            &[&id, &reason, &now],
        )
        .await?;
        batches::block_dependents(&tx, id, "cancelled", now).await?;
        if job.state == JobState::Running {
            // Delivered at commit: the daemon running the attempt stops it at once.
            let payload = format!("{}{CANCEL_MARK}{id}", self.schema);
            tx.execute("SELECT pg_notify($1, $2)", &[&JOBS_CHANNEL, &payload])
                .await?;
        }
        let job = get_job(&tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn retry(&self, id: JobId, note: Option<&str>, now: i64) -> Result<Job> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let job = get_job_for_update(&tx, id).await?;
        job.state.check_transition(id, JobState::Pending)?;
        if !matches!(job.state, JobState::Quarantined | JobState::Failed) {
            return Err(fabric_core::CoreError::IllegalTransition {
                id,
                from: job.state.as_str(),
                to: "pending (operator retry: only quarantined jobs)",
            }
            .into());
        }
        tx.execute(
            "UPDATE jobs SET state = 'pending', max_attempts = attempt + max_attempts,
                 run_at = $2, updated_at = $2, finished_at = NULL
             WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        if let Some(row) = tx
            .query_opt("SELECT notes FROM quarantine WHERE job_id = $1", &[&id])
            .await?
        {
            let notes: serde_json::Value = row.try_get(0)?;
            let mut notes: Vec<Note> = serde_json::from_value(notes).map_err(backend)?;
            if let Some(n) = note {
                notes.push(Note {
                    at: now,
                    note: n.to_string(),
                });
            }
            let notes = serde_json::to_value(&notes).map_err(backend)?;
            tx.execute(
                "UPDATE quarantine SET retries = retries + 1, notes = $2 WHERE job_id = $1",
                &[&id, &notes],
            )
            .await?;
        }
        let job = get_job(&tx, id).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn quarantine(&self, filter: QuarantineFilter) -> Result<Vec<QuarantineEntry>> {
        quarantine::quarantine(self, filter).await
    }

    async fn quarantine_entry(&self, id: JobId) -> Result<QuarantineEntry> {
        quarantine::quarantine_entry(self, id).await
    }

    async fn purge_quarantine(
        &self,
        before: i64,
        reason: Option<QuarantineReason>,
        dry_run: bool,
    ) -> Result<Vec<JobId>> {
        quarantine::purge_quarantine(self, before, reason, dry_run).await
    }

    async fn purge_jobs(&self, ids: Vec<JobId>) -> Result<Vec<JobId>> {
        quarantine::purge_jobs(self, ids).await
    }

    async fn quarantine_stats(&self) -> Result<QuarantineStats> {
        quarantine::quarantine_stats(self).await
    }

    async fn audit(&self, e: AuditEntry) -> Result<()> {
        audit::audit(self, e).await
    }

    async fn audit_log(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        audit::audit_log(self, since, limit).await
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        audit::prune_audit(self, before).await
    }

    async fn put_recovery_report(&self, report: RecoveryReport) -> Result<()> {
        audit::put_recovery_report(self, report).await
    }

    async fn last_recovery_report(&self) -> Result<Option<RecoveryReport>> {
        audit::last_recovery_report(self).await
    }

    async fn prune_recovery_reports(&self, keep: usize) -> Result<u64> {
        audit::prune_recovery_reports(self, keep).await
    }

    async fn integrity_check(&self) -> Result<Vec<String>> {
        // PostgreSQL checks its own pages; what can be checked from here is that the schema
        // is the one this binary knows and every table answers.
        let client = self.pool.get().await?;
        let version: i32 = client
            .query_one("SELECT version FROM fabric_schema", &[])
            .await?
            .try_get(0)?;
        let mut problems = Vec::new();
        if version as usize != MIGRATIONS.len() {
            problems.push(format!(
                "schema version {version}, this fabric expects {}",
                MIGRATIONS.len()
            ));
        }
        for table in [
            "jobs",
            "job_errors",
            "quarantine",
            "audit",
            "recovery_reports",
        ] {
            if let Err(e) = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
            {
                problems.push(format!("{table}: {e}"));
            }
        }
        if problems.is_empty() {
            problems.push("ok".into());
        }
        Ok(problems)
    }

    async fn backup(&self, _path: &Path) -> Result<()> {
        Err(StoreError::Unavailable(
            "online backup of a PostgreSQL store is done with pg_dump (or the server's own \
             backups)"
                .into(),
        ))
    }

    async fn vacuum(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .batch_execute("VACUUM (ANALYZE) jobs, job_errors, quarantine, audit")
            .await?;
        Ok(())
    }

    async fn checkpoint(&self) -> Result<()> {
        // The server checkpoints its own WAL.
        Ok(())
    }

    async fn prune_finished(&self, before: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < $1",
                &[&before],
            )
            .await?)
    }

    async fn ping(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    fn listen(
        &self,
        wake: Box<dyn Fn(StoreEvent) -> bool + Send + Sync>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        Some(tokio::spawn(listen_loop(
            self.config.clone(),
            self.schema.clone(),
            wake,
        )))
    }

    async fn put_source(&self, def: fabric_core::source::SourceDef, now: i64) -> Result<()> {
        sources::put(&self.pool.get().await?, &def, now).await
    }

    async fn source_defs(&self) -> Result<Vec<fabric_core::source::SourceDef>> {
        sources::defs(&self.pool.get().await?).await
    }

    async fn sources(&self) -> Result<Vec<SourceRecord>> {
        sources::list(&self.pool.get().await?).await
    }

    async fn remove_source(&self, name: &str) -> Result<()> {
        sources::remove(&self.pool.get().await?, name).await
    }

    async fn set_source_paused(&self, name: &str, reason: Option<&str>, now: i64) -> Result<()> {
        sources::set_paused(&self.pool.get().await?, name, reason, now).await
    }

    async fn record_source_scan(
        &self,
        name: &str,
        at: i64,
        outcome: &str,
        files: u64,
    ) -> Result<()> {
        sources::record_scan(&self.pool.get().await?, name, at, outcome, files).await
    }

    async fn set_source_next_run(&self, name: &str, at: Option<i64>) -> Result<()> {
        sources::set_next_run(&self.pool.get().await?, name, at).await
    }

    async fn record_telemetry(&self, samples: Vec<TelemetrySample>) -> Result<()> {
        telemetry::record(&self.pool.get().await?, &samples).await
    }

    async fn telemetry(&self, since: i64, source: Option<&str>) -> Result<Vec<TelemetryTotal>> {
        telemetry::totals(&self.pool.get().await?, since, source).await
    }

    async fn prune_telemetry(&self, before: i64, dry_run: bool) -> Result<u64> {
        telemetry::prune(&self.pool.get().await?, before, dry_run).await
    }
}
