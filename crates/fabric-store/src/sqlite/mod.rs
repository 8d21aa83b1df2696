//! The embedded SQLite backend: WAL mode, versioned migrations, one group-committing writer
//! thread and a small pool of read connections.

mod alerts;
mod audit;
mod batches;
mod deferred;
mod docs;
mod fleet;
mod inspect;
mod open;
mod outbox;
mod outbox_codec;
mod quarantine;
mod ranking;
mod rows;
mod schedules;
mod sources;
mod telemetry;
mod write_path;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fabric_core::job::AttemptError;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState, NewJob};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    AuditEntry, ClaimRequest, CompleteReport, Completion, JobDetail, JobFilter, Note, Overdue,
    PendingKey, QuarantineEntry, QuarantineFilter, QuarantineStats, RecoveryReport, RescueReport,
    Result, SourceRecord, StateCounts, Store, StoreError, Submitted, TelemetrySample,
    TelemetryTotal,
};
pub use inspect::{inspect, FileCheck};
use open::{migrate, open_conn, restrict_permissions, start_checkpointer, MIGRATIONS, SHARD_INDEX};
use rows::{conversion, get_job, job_filter_sql, json_list, row_to_job, JOB_COLS};
use write_path::{
    check, finish, insert_jobs, quarantine_job, CLAIM_ANY, CLAIM_ANY_BY_SHARD, CLAIM_ONE_SHARD,
};
use writer::Writer;

/// How the SQLite file is opened.
#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    /// `synchronous = FULL` (durable across power loss) instead of `NORMAL` (durable across
    /// process crashes; the default).
    pub synchronous_full: bool,
    /// Page cache of each connection in KiB; `None` = [`DEFAULT_CACHE_KIB`]. SQLite's work at
    /// every commit grows with the cache once it is full (measured: a 1,000,000-job scenario
    /// ran in 49 s with 4 MiB and 60–66 s with 64 MiB), so a write-heavy store much larger than
    /// its hot set does better with a small one; the OS page cache holds the rest.
    pub cache_kib: Option<u32>,
    /// The indexes of a scenario run's store: pending jobs per shard instead of across shards
    /// (a claim of one shard then reads only that shard's queue, and a claim across shards
    /// reads the due jobs of its shards and sorts them), and no index of leases (a rescue or
    /// recovery reads the table). Every index is one more B-tree write per enqueue, claim or
    /// completion, so this pays where one scheduler claims shard by shard and settles every
    /// job it claims; the daemon claims across shards, rescues often, and keeps the default
    /// indexes. A store keeps the indexes it was created with whatever options later open it.
    pub shard_index: bool,
    /// Write-behind: run every write and read on the caller's thread over one connection,
    /// and leave one transaction open across writes, committed at most this long after it
    /// began and at [`Store::sync`]. A write then returns before it is durable: a crash of
    /// the process loses at most this interval of writes (never a torn one). For a store
    /// with one busy owner that makes its own recovery points (a scenario run syncs before
    /// every checkpoint); `None` (the daemon): the group-committing writer thread, where a
    /// write returns only once committed.
    pub write_behind: Option<std::time::Duration>,
}

/// Page cache per connection when none is set: 64 MiB.
pub const DEFAULT_CACHE_KIB: u32 = 65_536;

/// Largest page cache of a read connection (and the checkpointer's), in KiB.
pub const READER_CACHE_KIB: u32 = 8_192;

/// The SQLite store. Clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    /// Whether the pending index is per shard (see [`SqliteOptions::shard_index`]).
    by_shard: bool,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// Dropping it stops the checkpointer thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
    /// Document frequencies of common search terms (see [`ranking`]).
    doc_freqs: ranking::DocFrequencies,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and makes the database files readable
    /// by their owner only. A new database gets the current schema; one at an older schema
    /// version is refused (see [`SqliteStore::migrate`]), as is one at a newer version.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = open_conn(&path, &options, true)?;
        migrate(&mut conn, false)?;
        if options.shard_index {
            conn.execute_batch(SHARD_INDEX)?;
        }
        let by_shard: bool = conn.query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'jobs_ready')",
            [],
            |r| r.get(0),
        )?;
        restrict_permissions(&path);
        // Checkpoints run beside the writer, not inside its commits (which would stall
        // them); the writer's own auto-checkpoint stays as a bound on the WAL's size.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 10000")?;
        let writer = match options.write_behind {
            Some(interval) => Writer::behind(conn, interval),
            None => Writer::start(conn)
                .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?,
        };
        let checkpointer =
            start_checkpointer(open_conn(&path, &options, false)?, writer.behind_state())?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                by_shard,
                options,
                writer,
                readers: Mutex::new(Vec::new()),
                _checkpointer: checkpointer,
                doc_freqs: Default::default(),
            }),
        })
    }

    /// Brings the database at `path` to this binary's schema version; returns the versions
    /// before and after.
    pub fn migrate(path: impl AsRef<Path>, options: SqliteOptions) -> Result<(usize, usize)> {
        let path = path.as_ref();
        let mut conn = open_conn(path, &options, true)?;
        let from = migrate(&mut conn, true)?;
        restrict_permissions(path);
        Ok((from, MIGRATIONS.len()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled read connection in the blocking pool (write-behind: on the
    /// write connection, which sees the writes not yet committed).
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let f = match self.inner.writer.read_behind(f) {
            Ok(out) => return out,
            Err(f) => f,
        };
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&inner.path, &inner.options, false)?,
            };
            let out = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                if pool.len() < 8 {
                    pool.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
        self.inner
            .writer
            .write_bulk(move |conn| insert_jobs(conn, &jobs, now))
            .await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Job>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let by_shard = self.inner.by_shard;
        // One shard's queue over the per-shard index: no optional filters.
        let fast = by_shard
            && req.shards.len() == 1
            && req.exclude_shards.is_empty()
            && req.kinds.is_empty()
            && req.exclude_kinds.is_empty();
        if fast {
            let held = self
                .inner
                .writer
                .with_claims(false, |conn, claims| claims.claim(conn, &req));
            if let Some(out) = held {
                return out;
            }
        }
        self.inner
            .writer
            .write_one(move |conn| {
                let until = req.now + req.lease_ms;
                let limit = crate::sql_limit(req.limit);
                let (only, except) = if fast {
                    (None, None)
                } else {
                    (json_list(&req.shards)?, json_list(&req.exclude_shards)?)
                };
                let (kinds, not_kinds) = (json_list(&req.kinds)?, json_list(&req.exclude_kinds)?);
                let floor = req.min_priority.unwrap_or(i32::MIN);
                let (sql, args): (&str, Vec<&dyn rusqlite::ToSql>) = if fast {
                    let shard = &req.shards[0];
                    let args: Vec<&dyn rusqlite::ToSql> =
                        vec![&req.owner, &until, &req.now, &limit, shard, &floor];
                    (&CLAIM_ONE_SHARD, args)
                } else {
                    let sql: &str = if by_shard {
                        &CLAIM_ANY_BY_SHARD
                    } else {
                        &CLAIM_ANY
                    };
                    let args: Vec<&dyn rusqlite::ToSql> = vec![
                        &req.owner,
                        &until,
                        &req.now,
                        &limit,
                        &only,
                        &except,
                        &req.min_priority,
                        &kinds,
                        &not_kinds,
                    ];
                    (sql, args)
                };
                let mut jobs = conn
                    .prepare_cached(sql)?
                    .query_map(args.as_slice(), row_to_job)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id));
                Ok(jobs)
            })
            .await
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<CompleteReport> {
        if batch.is_empty() {
            return Ok(CompleteReport::default());
        }
        let held = self
            .inner
            .writer
            .with_claims(true, |conn, claims| finish(conn, Some(claims), &batch));
        match held {
            Some(out) => out,
            None => {
                self.inner
                    .writer
                    .write_bulk(move |conn| finish(conn, None, &batch))
                    .await
            }
        }
    }

    async fn heartbeat(
        &self,
        owner: &str,
        jobs: Vec<(JobId, u32)>,
        until: i64,
    ) -> Result<Vec<JobId>> {
        let owner = owner.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?4
                     WHERE id = ?1 AND attempt = ?2 AND lease_owner = ?3 AND state = 'running'",
                )?;
                let mut lost = Vec::new();
                for (id, attempt) in &jobs {
                    if stmt.execute(params![id, attempt, owner, until])? == 0 {
                        lost.push(*id);
                    }
                }
                Ok(lost)
            })
            .await
    }

    async fn rescue(&self, now: i64, owner_prefix: Option<&str>) -> Result<RescueReport> {
        let prefix = owner_prefix.map(|p| p.to_string());
        self.inner
            .writer
            .write(move |conn| {
                let (cond, arg) = match &prefix {
                    Some(p) => ("substr(lease_owner, 1, length(?2)) = ?2", p.clone()),
                    None => ("lease_expires_at < ?1 AND ?2 = ?2", String::new()),
                };
                let exhausted: Vec<JobId> = conn
                    .prepare(&format!(
                        "SELECT id FROM jobs WHERE state = 'running' AND {cond}
                         AND attempt >= max_attempts"
                    ))?
                    .query_map(params![now, arg], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let error = "lease lost on the last attempt (worker or daemon died)";
                for id in &exhausted {
                    conn.execute(
                        "UPDATE jobs SET state = 'quarantined', last_error = ?2, finished_at = ?3,
                             updated_at = ?3, lease_owner = NULL, lease_expires_at = NULL
                         WHERE id = ?1",
                        params![id, error, now],
                    )?;
                    quarantine_job(
                        conn,
                        *id,
                        QuarantineReason::Timeout,
                        error,
                        "lease_expired",
                        now,
                    )?;
                    batches::block_dependents(conn, *id, "quarantined", now)?;
                }
                let reset: Vec<JobId> = conn
                    .prepare(&format!(
                        "UPDATE jobs SET state = 'pending', lease_owner = NULL,
                             lease_expires_at = NULL, updated_at = ?1
                         WHERE state = 'running' AND {cond}
                         RETURNING id"
                    ))?
                    .query_map(params![now, arg], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let moved = |ids: &[JobId], to: JobState, detail: Option<&'static str>| {
                    ids.iter()
                        .map(move |&id| outbox::Change {
                            id,
                            attempt: None,
                            from: JobState::Running,
                            to,
                            detail,
                            at: now,
                        })
                        .collect::<Vec<_>>()
                };
                let mut changes = moved(&exhausted, JobState::Quarantined, Some(error));
                changes.extend(moved(&reset, JobState::Pending, None));
                outbox::record(conn, &changes)?;
                Ok(RescueReport {
                    reset,
                    quarantined: exhausted,
                })
            })
            .await
    }

    async fn next_run_at(&self, after: i64) -> Result<Option<i64>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT min(run_at) FROM jobs
                     WHERE state IN ('pending', 'failed') AND run_at > ?1",
                )?
                .query_row([after], |r| r.get(0))?)
        })
        .await
    }

    async fn job(&self, id: JobId) -> Result<JobDetail> {
        self.read(move |conn| {
            let job = get_job(conn, id)?;
            let errors = conn
                .prepare_cached(
                    "SELECT attempt, error, failure, started_at, finished_at FROM job_errors
                     WHERE job_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    Ok(AttemptError {
                        attempt: r.get(0)?,
                        error: r.get(1)?,
                        failure: r.get(2)?,
                        started_at: r.get(3)?,
                        finished_at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(JobDetail { job, errors })
        })
        .await
    }

    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        self.read(move |conn| {
            let (mut sql, args) = job_filter_sql(&filter, JOB_COLS, true);
            sql.push_str(&format!(
                " ORDER BY id DESC LIMIT {}",
                crate::sql_limit(filter.limit)
            ));
            let jobs = conn
                .prepare(&sql)?
                .query_map(rusqlite::params_from_iter(args), row_to_job)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(jobs)
        })
        .await
    }

    async fn count_jobs(&self, filter: JobFilter) -> Result<u64> {
        self.read(move |conn| {
            let (sql, args) = job_filter_sql(&filter, "count(*)", false);
            Ok(conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get(0))?)
        })
        .await
    }

    async fn pending_keys(&self, after_id: JobId, limit: usize) -> Result<Vec<PendingKey>> {
        self.read(move |conn| {
            let keys = conn
                .prepare_cached(
                    "SELECT id, shard, priority, attempt, created_at FROM jobs
                     WHERE id > ?1 AND state IN ('pending', 'failed') ORDER BY id LIMIT ?2",
                )?
                .query_map(params![after_id, crate::sql_limit(limit)], |r| {
                    Ok(PendingKey {
                        id: r.get(0)?,
                        shard: r.get(1)?,
                        priority: r.get(2)?,
                        attempt: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(keys)
        })
        .await
    }

    async fn counts(&self) -> Result<StateCounts> {
        self.read(|conn| {
            let mut counts = StateCounts::default();
            let mut stmt =
                conn.prepare_cached("SELECT state, count(*) FROM jobs GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                counts.add(JobState::parse(&state)?, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn counts_of(&self, source: &str, kind: &str, after_id: JobId) -> Result<StateCounts> {
        let (source, kind) = (source.to_string(), kind.to_string());
        self.read(move |conn| {
            let mut counts = StateCounts::default();
            let mut stmt = conn.prepare_cached(
                "SELECT state, count(*) FROM jobs WHERE id > ?1 AND source = ?2 AND kind = ?3
                 GROUP BY state",
            )?;
            let rows = stmt.query_map(params![after_id, source, kind], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
            })?;
            for row in rows {
                let (state, n) = row?;
                counts.add(JobState::parse(&state)?, n);
            }
            Ok(counts)
        })
        .await
    }

    async fn queue_depths(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT shard, count(*) FROM jobs WHERE state IN ('pending', 'failed')
                 GROUP BY shard",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn overdue(
        &self,
        due_before: i64,
        shards: &[String],
        exclude_shards: &[String],
        exclude_kinds: &[String],
    ) -> Result<Option<Overdue>> {
        let (only, except) = (json_list(shards)?, json_list(exclude_shards)?);
        let not_kinds = json_list(exclude_kinds)?;
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    // The head of the queue in dispatch order only: with no index on
                    // run_at, a million jobs scheduled for later would otherwise be read on
                    // every probe. A dispatcher that works claims from this head.
                    "SELECT id, shard, run_at FROM (
                         SELECT id, shard, run_at FROM jobs
                         WHERE state IN ('pending', 'failed')
                           AND (?2 IS NULL OR shard IN (SELECT value FROM json_each(?2)))
                           AND (?3 IS NULL OR shard NOT IN (SELECT value FROM json_each(?3)))
                           AND (?4 IS NULL OR kind NOT IN (SELECT value FROM json_each(?4)))
                         ORDER BY priority DESC, id LIMIT 1000)
                     WHERE run_at < ?1 LIMIT 1",
                )?
                .query_row(params![due_before, only, except, not_kinds], |r| {
                    Ok(Overdue {
                        id: r.get(0)?,
                        shard: r.get(1)?,
                        run_at: r.get(2)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn succeeded_since(&self, since: i64) -> Result<u64> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND finished_at >= ?1",
                )?
                .query_row([since], |r| r.get(0))?)
        })
        .await
    }

    async fn finished_windows(
        &self,
        since: &[i64],
        slow_ms: &[i64],
    ) -> Result<Vec<crate::FinishedWindow>> {
        if since.is_empty() {
            return Ok(Vec::new());
        }
        let (since, slow_ms) = (since.to_vec(), slow_ms.to_vec());
        self.read(move |conn| {
            let sql = crate::windows::sql(&since, &slow_ms);
            let n = since.len() * (2 + slow_ms.len());
            let row: Vec<i64> = conn.query_row(&sql, [], |r| (0..n).map(|i| r.get(i)).collect())?;
            Ok(crate::windows::windows(&since, &slow_ms, &row))
        })
        .await
    }

    async fn cancel(&self, id: JobId, reason: &str, now: i64) -> Result<Job> {
        let reason = reason.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let before = check(conn, id, JobState::Cancelled)?;
                conn.prepare_cached(
                    "UPDATE jobs SET state = 'cancelled', cancel_reason = ?2, finished_at = ?3,
                         updated_at = ?3, lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, reason, now])?;
                batches::block_dependents(conn, id, "cancelled", now)?;
                outbox::record(
                    conn,
                    &[outbox::Change {
                        id,
                        attempt: Some(before.attempt),
                        from: before.state,
                        to: JobState::Cancelled,
                        detail: Some(&reason),
                        at: now,
                    }],
                )?;
                get_job(conn, id)
            })
            .await
    }

    async fn retry(&self, id: JobId, note: Option<&str>, now: i64) -> Result<Job> {
        let note = note.map(|n| n.to_string());
        self.inner
            .writer
            .write(move |conn| {
                let job = check(conn, id, JobState::Pending)?;
                if !matches!(job.state, JobState::Quarantined | JobState::Failed) {
                    return Err(fabric_core::CoreError::IllegalTransition {
                        id,
                        from: job.state.as_str(),
                        to: "pending (operator retry: only quarantined jobs)",
                    }
                    .into());
                }
                // Attempt numbers never repeat (they fence completions), so a fresh set of
                // attempts raises the ceiling instead of resetting the counter.
                conn.prepare_cached(
                    "UPDATE jobs SET state = 'pending', max_attempts = attempt + max_attempts,
                         run_at = ?2, updated_at = ?2, finished_at = NULL
                     WHERE id = ?1",
                )?
                .execute(params![id, now])?;
                outbox::record(
                    conn,
                    &[outbox::Change {
                        id,
                        attempt: Some(job.attempt),
                        from: job.state,
                        to: JobState::Pending,
                        detail: None,
                        at: now,
                    }],
                )?;
                let notes: Option<String> = conn
                    .prepare_cached("SELECT notes FROM quarantine WHERE job_id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?;
                if let Some(notes) = notes {
                    let mut notes: Vec<Note> = serde_json::from_str(&notes)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    if let Some(n) = note {
                        notes.push(Note { at: now, note: n });
                    }
                    let notes = serde_json::to_string(&notes)
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    conn.prepare_cached(
                        "UPDATE quarantine SET retries = retries + 1, notes = ?2 WHERE job_id = ?1",
                    )?
                    .execute(params![id, notes])?;
                }
                get_job(conn, id)
            })
            .await
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
        self.read(|conn| {
            let rows = conn
                .prepare("PRAGMA integrity_check")?
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn backup(&self, path: &Path) -> Result<()> {
        if path.exists() {
            return Err(StoreError::Invalid(fabric_core::CoreError::invalid(
                "to",
                format!("{} already exists", path.display()),
            )));
        }
        let target = path.to_string_lossy().to_string();
        let dest = path.to_path_buf();
        let copy = move |conn: &Connection| -> Result<()> {
            conn.execute("VACUUM INTO ?1", [&target])?;
            restrict_permissions(&dest);
            Ok(())
        };
        if self.inner.writer.is_behind() {
            // VACUUM INTO cannot run inside the open transaction: commit it, then copy.
            return self.inner.writer.raw(move |conn| copy(conn)).await;
        }
        self.read(copy).await
    }

    async fn sync(&self) -> Result<()> {
        self.inner.writer.sync()
    }

    async fn vacuum(&self) -> Result<()> {
        self.inner
            .writer
            .raw(|conn| {
                conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
                Ok(())
            })
            .await
    }

    async fn checkpoint(&self) -> Result<()> {
        self.inner
            .writer
            .raw(|conn| {
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(())
            })
            .await
    }

    async fn prune_finished(&self, before: i64) -> Result<u64> {
        self.inner
            .writer
            .write(move |conn| {
                let n = conn.execute(
                    "DELETE FROM jobs WHERE state IN ('succeeded', 'cancelled') AND finished_at < ?1",
                    [before],
                )?;
                Ok(n as u64)
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn put_source(&self, def: fabric_core::source::SourceDef, now: i64) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| sources::put(conn, &def, now))
            .await
    }

    async fn source_defs(&self) -> Result<Vec<fabric_core::source::SourceDef>> {
        self.read(sources::defs).await
    }

    async fn sources(&self) -> Result<Vec<SourceRecord>> {
        self.read(sources::list).await
    }

    async fn remove_source(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| sources::remove(conn, &name))
            .await
    }

    async fn set_source_paused(&self, name: &str, reason: Option<&str>, now: i64) -> Result<()> {
        let (name, reason) = (name.to_string(), reason.map(String::from));
        self.inner
            .writer
            .write(move |conn| sources::set_paused(conn, &name, reason.as_deref(), now))
            .await
    }

    async fn record_source_scan(
        &self,
        name: &str,
        at: i64,
        outcome: &str,
        files: u64,
    ) -> Result<()> {
        let (name, outcome) = (name.to_string(), outcome.to_string());
        self.inner
            .writer
            .write(move |conn| sources::record_scan(conn, &name, at, &outcome, files))
            .await
    }

    async fn set_source_next_run(&self, name: &str, at: Option<i64>) -> Result<()> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| sources::set_next_run(conn, &name, at))
            .await
    }

    async fn record_telemetry(&self, samples: Vec<TelemetrySample>) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| telemetry::record(conn, &samples))
            .await
    }

    async fn telemetry(&self, since: i64, source: Option<&str>) -> Result<Vec<TelemetryTotal>> {
        let source = source.map(String::from);
        self.read(move |conn| telemetry::totals(conn, since, source.as_deref()))
            .await
    }

    async fn prune_telemetry(&self, before: i64, dry_run: bool) -> Result<u64> {
        self.inner
            .writer
            .write(move |conn| telemetry::prune(conn, before, dry_run))
            .await
    }
}
