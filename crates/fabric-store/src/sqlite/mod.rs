//! The embedded SQLite backend: WAL mode, versioned migrations, one group-committing writer
//! thread and a small pool of read connections.

mod alerts;
mod batches;
mod deferred;
mod docs;
mod inspect;
mod outbox;
mod outbox_codec;
mod ranking;
mod schedules;
mod sources;
mod telemetry;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fabric_core::job::AttemptError;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState, NewJob, Node, NodeHealth, Priority};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::{
    AuditEntry, ClaimRequest, CompleteReport, Completion, JobDetail, JobFilter, Lease, NodeChange,
    Note, Outcome, Overdue, PendingKey, QuarantineEntry, QuarantineFilter, QuarantineStats,
    RecoveryReport, RescueReport, Result, SourceRecord, StateCounts, Store, StoreError, Submitted,
    TelemetrySample, TelemetryTotal, LEASE_UPSERT,
};
pub use inspect::{inspect, FileCheck};
use writer::Writer;

/// The claim of one shard on a store with the per-shard index ([`SqliteOptions::shard_index`]:
/// the scheduler's per-shard dispatch): that shard's queue only, and no optional filters.
/// `LIMIT +?4`, not `LIMIT ?4`: SQLite plans with a bare LIMIT parameter's value, so every new
/// binding would re-prepare the statement.
static CLAIM_ONE_SHARD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
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
static CLAIM_ANY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claim_any("jobs_ready"));

/// [`claim_any`] on a store with only the per-shard pending index (a scenario run's): it
/// reads every due job of the shards asked for and sorts them.
static CLAIM_ANY_BY_SHARD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claim_any("jobs_shard_ready"));

/// Migrations in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_nodes.sql"),
    include_str!("../../migrations/sqlite/0003_shards.sql"),
    include_str!("../../migrations/sqlite/0004_no_shard_index.sql"),
    include_str!("../../migrations/sqlite/0005_failed_state.sql"),
    include_str!("../../migrations/sqlite/0006_sources.sql"),
    include_str!("../../migrations/sqlite/0007_telemetry.sql"),
    include_str!("../../migrations/sqlite/0008_docs.sql"),
    include_str!("../../migrations/sqlite/0009_fts_per_batch.sql"),
    include_str!("../../migrations/sqlite/0010_alerts.sql"),
    include_str!("../../migrations/sqlite/0011_outbox.sql"),
    include_str!("../../migrations/sqlite/0012_batches.sql"),
    include_str!("../../migrations/sqlite/0013_schedules.sql"),
    include_str!("../../migrations/sqlite/0014_console_reads.sql"),
    include_str!("../../migrations/sqlite/0015_batch_pos.sql"),
    include_str!("../../migrations/sqlite/0016_batches_multi.sql"),
];

/// The indexes of [`SqliteOptions::shard_index`]: pending jobs per shard, in place of the
/// cross-shard index, and no index of leases (the scheduler that owns such a store settles
/// every job it claims; a rescue or recovery on it reads the table).
const SHARD_INDEX: &str = "CREATE INDEX IF NOT EXISTS jobs_shard_ready
        ON jobs (shard, priority DESC, id) WHERE state IN ('pending', 'failed');
    DROP INDEX IF EXISTS jobs_ready;
    DROP INDEX IF EXISTS jobs_leased;";

/// Columns of `jobs` in the order [`row_to_job`] reads them.
const JOB_COLS: &str = "id, kind, shard, payload, priority, state, attempt, max_attempts, run_at, \
     lease_owner, lease_expires_at, unique_key, source, created_at, updated_at, started_at, \
     finished_at, last_error, cancel_reason, result, batch_id";

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

/// How often the checkpointer copies committed WAL pages into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts the thread that checkpoints the WAL every [`CHECKPOINT_EVERY`] and, for a
/// write-behind store (`behind`), commits its open transaction once due even when its owner
/// has gone quiet, so the interval bounds what a crash can lose and no write lock is held
/// for longer.
fn start_checkpointer(
    conn: Connection,
    behind: Option<(std::sync::Weak<Mutex<writer::Behind>>, std::time::Duration)>,
) -> Result<std::sync::mpsc::Sender<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let step = behind
        .as_ref()
        .map_or(CHECKPOINT_EVERY, |(_, i)| (*i / 2).min(CHECKPOINT_EVERY));
    std::thread::Builder::new()
        .name("fabric-sqlite-checkpointer".into())
        .spawn(move || {
            let mut checkpointed = std::time::Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(step) {
                if let Some(b) = behind.as_ref().and_then(|(b, _)| b.upgrade()) {
                    if let Ok(mut b) = b.lock() {
                        if let Err(e) = b.commit_if_due() {
                            tracing::error!(error = %e, "write-behind commit failed");
                        }
                    }
                }
                if checkpointed.elapsed() < CHECKPOINT_EVERY {
                    continue;
                }
                checkpointed = std::time::Instant::now();
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "passive WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(tx)
}

fn open_conn(path: &Path, options: &SqliteOptions, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_handler(Some(busy_retry))?;
    let sync = if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    // Turning a new file to WAL needs a moment of exclusive access, and SQLite answers
    // "locked" at once (without its busy handler) when another process opens the file at
    // the same time: retried like any other wait for a lock.
    let mut attempt = 0;
    while let Err(e) = conn.execute_batch("PRAGMA journal_mode = WAL") {
        let busy = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy);
        if !busy || !busy_retry(attempt) {
            return Err(e.into());
        }
        attempt += 1;
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache};",
        cache = if create {
            options.cache_kib.unwrap_or(DEFAULT_CACHE_KIB)
        } else {
            // Up to 8 pooled readers and the checkpointer: their caches would add up to over
            // half a gigabyte of a daemon's memory; the OS page cache holds the rest.
            options
                .cache_kib
                .unwrap_or(DEFAULT_CACHE_KIB)
                .min(READER_CACHE_KIB)
        }
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Waits for a lock another connection holds: retries every millisecond for about ten
/// seconds. SQLite's own busy timeout backs off to 100 ms between tries, and so could miss
/// the short moments in which a busy writer (a write-behind scenario run) leaves the lock
/// free.
fn busy_retry(attempt: i32) -> bool {
    if attempt >= BUSY_RETRIES {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    true
}

/// Tries of [`busy_retry`].
const BUSY_RETRIES: i32 = 10_000;

/// Applies pending migrations to a new database, or to an older one when `upgrade` is set;
/// returns the version found.
fn migrate(conn: &mut Connection, upgrade: bool) -> Result<usize> {
    let current = |c: &Connection| -> Result<usize> {
        Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    };
    if current(conn)? == MIGRATIONS.len() {
        return Ok(MIGRATIONS.len());
    }
    // Under the write lock and in one transaction: two processes may open a new file at once
    // (a run and an operator's command); one applies everything, the other then finds it
    // done, and neither sees it half done.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version = current(&tx)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::schema_newer(version, MIGRATIONS.len()));
    }
    if version > 0 && version < MIGRATIONS.len() && !upgrade {
        return Err(StoreError::schema_older(version, MIGRATIONS.len()));
    }
    for sql in MIGRATIONS.iter().skip(version) {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(version)
}

/// Makes the database and its `-wal`/`-shm` files 0600 (best effort: they may not exist yet).
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// `SELECT {cols} FROM jobs WHERE …` for `filter`, with its arguments; `before` (the keyset
/// page) only when `page`.
fn job_filter_sql(
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

fn row_to_job(r: &Row<'_>) -> rusqlite::Result<Job> {
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

fn conversion(col: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
}

fn get_job(conn: &Connection, id: JobId) -> Result<Job> {
    conn.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))?
        .query_row([id], row_to_job)
        .optional()?
        .ok_or_else(|| StoreError::job_not_found(id))
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

fn quarantine_entry(conn: &Connection, id: JobId) -> Result<QuarantineEntry> {
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

/// Moves job `id` from its current state to `to`, checked against the transition table.
fn check(conn: &Connection, id: JobId, to: JobState) -> Result<Job> {
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

fn quarantine_job(
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

const NODE_COLS: &str = "id, shard, capacity, specialties, health, draining, load, heartbeat_at, \
     started_at, stopped_at, host, pid, version";

fn row_to_node(r: &Row<'_>) -> rusqlite::Result<Node> {
    let specialties: String = r.get(3)?;
    let health: String = r.get(4)?;
    Ok(Node {
        id: r.get(0)?,
        shard: r.get(1)?,
        capacity: r.get(2)?,
        specialties: serde_json::from_str(&specialties).map_err(|e| conversion(3, e))?,
        health: NodeHealth::parse(&health).map_err(|e| conversion(4, e))?,
        draining: r.get(5)?,
        load: r.get(6)?,
        heartbeat_at: r.get(7)?,
        started_at: r.get(8)?,
        stopped_at: r.get(9)?,
        host: r.get(10)?,
        pid: r.get(11)?,
        version: r.get(12)?,
    })
}

fn get_node(conn: &Connection, id: &str) -> Result<Node> {
    conn.prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes WHERE id = ?1"))?
        .query_row([id], row_to_node)
        .optional()?
        .ok_or_else(|| StoreError::node_not_found(id))
}

/// A shard filter as a JSON array for `json_each` (`None`, no filter, when empty).
fn json_list(v: &[String]) -> Result<Option<String>> {
    if v.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(v)
        .map(Some)
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// Applies a batch of completions, each fenced: it applies only while the job is still
/// `running` under its attempt and owner. A completion of a claim `claims` holds in memory
/// writes the claim and the outcome as one row update.
fn finish(
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
fn insert_jobs(conn: &Connection, jobs: &[NewJob], now: i64) -> Result<Vec<Submitted>> {
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

    async fn next_run_at(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT min(run_at) FROM jobs WHERE state IN ('pending', 'failed')",
                )?
                .query_row([], |r| r.get(0))?)
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
    ) -> Result<Option<Overdue>> {
        let (only, except) = (json_list(shards)?, json_list(exclude_shards)?);
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
                         ORDER BY priority DESC, id LIMIT 1000)
                     WHERE run_at < ?1 LIMIT 1",
                )?
                .query_row(params![due_before, only, except], |r| {
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
        self.read(move |conn| {
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

    async fn quarantine_entry(&self, id: JobId) -> Result<QuarantineEntry> {
        self.read(move |conn| quarantine_entry(conn, id)).await
    }

    async fn purge_quarantine(
        &self,
        before: i64,
        reason: Option<QuarantineReason>,
        dry_run: bool,
    ) -> Result<Vec<JobId>> {
        self.inner
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

    async fn purge_jobs(&self, ids: Vec<JobId>) -> Result<Vec<JobId>> {
        self.inner
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

    async fn quarantine_stats(&self) -> Result<QuarantineStats> {
        self.read(|conn| {
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

    async fn audit(&self, e: AuditEntry) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit (at, actor, action, target, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![e.at, e.actor, e.action, e.target, e.reason])?;
                Ok(())
            })
            .await
    }

    async fn audit_log(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT at, actor, action, target, reason FROM audit
                     WHERE ?1 IS NULL OR at >= ?1 ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![since, crate::sql_limit(limit)], |r| {
                    Ok(AuditEntry {
                        at: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        reason: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        self.inner
            .writer
            .write(
                move |conn| Ok(conn.execute("DELETE FROM audit WHERE at < ?1", [before])? as u64),
            )
            .await
    }

    async fn put_recovery_report(&self, report: RecoveryReport) -> Result<()> {
        let text =
            serde_json::to_string(&report).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.inner
            .writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO recovery_reports (at, report) VALUES (?1, ?2)",
                    params![report.at, text],
                )?;
                Ok(())
            })
            .await
    }

    async fn last_recovery_report(&self) -> Result<Option<RecoveryReport>> {
        self.read(|conn| {
            let text: Option<String> = conn
                .query_row(
                    "SELECT report FROM recovery_reports ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Backend(e.to_string())))
                .transpose()
        })
        .await
    }

    async fn prune_recovery_reports(&self, keep: usize) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.inner
            .writer
            .write(move |conn| {
                let n = conn.execute(
                    "DELETE FROM recovery_reports WHERE id NOT IN
                     (SELECT id FROM recovery_reports ORDER BY at DESC, id DESC LIMIT ?1)",
                    [keep],
                )?;
                Ok(n as u64)
            })
            .await
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

    async fn register_node(&self, node: Node) -> Result<Node> {
        self.inner
            .writer
            .write(move |conn| {
                let specialties = serde_json::to_string(&node.specialties)
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                conn.prepare_cached(
                    "INSERT INTO nodes (id, shard, capacity, specialties, health, draining, load,
                         heartbeat_at, started_at, stopped_at, host, pid, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12)
                     ON CONFLICT (id) DO UPDATE SET shard = excluded.shard,
                         capacity = excluded.capacity, specialties = excluded.specialties,
                         load = excluded.load, heartbeat_at = excluded.heartbeat_at,
                         started_at = excluded.started_at, stopped_at = NULL,
                         host = excluded.host, pid = excluded.pid, version = excluded.version",
                )?
                .execute(params![
                    node.id,
                    node.shard,
                    node.capacity,
                    specialties,
                    node.health.as_str(),
                    node.draining,
                    node.load,
                    node.heartbeat_at,
                    node.started_at,
                    node.host,
                    node.pid,
                    node.version
                ])?;
                get_node(conn, &node.id)
            })
            .await
    }

    async fn node_heartbeat(&self, id: &str, load: u32, now: i64) -> Result<Option<Node>> {
        let id = id.to_string();
        self.inner
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "UPDATE nodes SET load = ?2, heartbeat_at = ?3, stopped_at = NULL
                         WHERE id = ?1 RETURNING {NODE_COLS}"
                    ))?
                    .query_row(params![id, load, now], row_to_node)
                    .optional()?)
            })
            .await
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"))?
                .query_map([], row_to_node)?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn update_node(&self, id: &str, change: NodeChange) -> Result<Node> {
        let id = id.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE nodes SET health = coalesce(?2, health),
                         draining = coalesce(?3, draining),
                         stopped_at = coalesce(?4, stopped_at),
                         load = CASE WHEN ?4 IS NULL THEN load ELSE 0 END
                     WHERE id = ?1",
                    params![
                        id,
                        change.health.map(|h| h.as_str()),
                        change.draining,
                        change.stopped_at
                    ],
                )?;
                if n == 0 {
                    return Err(StoreError::node_not_found(&id));
                }
                get_node(conn, &id)
            })
            .await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.inner
            .writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(LEASE_UPSERT)?
                    .query_row(params![name, holder, now, now + ttl_ms], |_| Ok(()))
                    .optional()?
                    .is_some())
            })
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.inner
            .writer
            .write(move |conn| {
                conn.execute(
                    "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )?;
                Ok(())
            })
            .await
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name",
                )?
                .query_map([], |r| {
                    Ok(Lease {
                        name: r.get(0)?,
                        holder: r.get(1)?,
                        acquired_at: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
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

    async fn shards(&self) -> Result<Vec<fabric_core::Shard>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, paused, spillover_limit, latency_budget_ms FROM shards
                     ORDER BY name",
                )?
                .query_map([], |r| {
                    Ok(fabric_core::Shard {
                        name: r.get(0)?,
                        paused: r.get(1)?,
                        spillover_limit: r.get(2)?,
                        latency_budget_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn put_shard(&self, shard: fabric_core::Shard) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO shards (name, paused, spillover_limit, latency_budget_ms)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                         spillover_limit = excluded.spillover_limit,
                         latency_budget_ms = excluded.latency_budget_ms",
                )?
                .execute(params![
                    shard.name,
                    shard.paused,
                    shard.spillover_limit,
                    shard.latency_budget_ms
                ])?;
                Ok(())
            })
            .await
    }

    async fn remove_shard(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| {
                if conn.execute("DELETE FROM shards WHERE name = ?1", [&name])? == 0 {
                    return Err(StoreError::shard_not_found(&name));
                }
                Ok(())
            })
            .await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![key, value])?;
                Ok(())
            })
            .await
    }

    async fn remove_setting(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM settings WHERE key = ?1")?
                    .execute([key])?;
                Ok(())
            })
            .await
    }
}
