//! The PostgreSQL backend for scale-out: many daemons on one database. A pooled async driver
//! (tokio-postgres + deadpool), versioned migrations, claims in one CTE with
//! `FOR UPDATE SKIP LOCKED`, completions fenced by owner + attempt.

mod alerts;
mod batches;
mod docs;
mod outbox;
mod schedules;
mod sources;
mod telemetry;

use std::path::Path;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use fabric_core::job::AttemptError;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState, NewJob, Node, NodeHealth, Priority};
use tokio_postgres::{NoTls, Row};

use crate::{
    AuditEntry, ClaimRequest, CompleteReport, Completion, JobDetail, JobFilter, Lease, NodeChange,
    Note, Outcome, Overdue, PendingKey, QuarantineEntry, QuarantineFilter, QuarantineStats,
    RecoveryReport, RescueReport, Result, SourceRecord, StateCounts, Store, StoreError, StoreEvent,
    Submitted, TelemetrySample, TelemetryTotal, LEASE_UPSERT,
};

/// Migrations in order; `fabric_schema.version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_nodes.sql"),
    include_str!("../../migrations/postgres/0003_shards.sql"),
    include_str!("../../migrations/postgres/0004_failed_state.sql"),
    include_str!("../../migrations/postgres/0005_sources.sql"),
    include_str!("../../migrations/postgres/0006_telemetry.sql"),
    include_str!("../../migrations/postgres/0007_docs.sql"),
    include_str!("../../migrations/postgres/0008_alerts.sql"),
    include_str!("../../migrations/postgres/0009_outbox.sql"),
    include_str!("../../migrations/postgres/0010_batches.sql"),
    include_str!("../../migrations/postgres/0011_schedules.sql"),
    include_str!("../../migrations/postgres/0012_console_reads.sql"),
    include_str!("../../migrations/postgres/0013_batch_pos.sql"),
];

/// The claim: due pending jobs of the shards asked for, highest priority then oldest, locked
/// with `SKIP LOCKED` so concurrent daemons never wait on each other, leased in one update.
static CLAIM_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
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

/// Channel of the jobs-inserted notification; the payload is the schema.
const JOBS_CHANNEL: &str = "fabric_jobs";
/// Between the schema and the job id in the payload of a cancel notification.
const CANCEL_MARK: &str = ":cancel:";

const JOB_COLS: &str = "id, kind, shard, payload, priority, state, attempt, max_attempts, run_at, \
     lease_owner, lease_expires_at, unique_key, source, created_at, updated_at, started_at, \
     finished_at, last_error, cancel_reason, result, batch_id";

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

/// `host:port` of a URL, for messages that must not carry the password.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl PostgresStore {
    /// Connects to `url`; tables live in `schema`. A new schema gets the current tables; one
    /// at an older version is refused (see [`PostgresStore::migrate`]), as is a newer one.
    /// Errors name host and port, never the password.
    pub async fn open(url: &str, schema: &str) -> Result<Self> {
        Ok(Self::connect(url, schema, false).await?.0)
    }

    /// Brings `schema` to this binary's version; returns the store and the versions before
    /// and after.
    pub async fn migrate(url: &str, schema: &str) -> Result<(Self, (usize, usize))> {
        Self::connect(url, schema, true).await
    }

    async fn connect(url: &str, schema: &str, upgrade: bool) -> Result<(Self, (usize, usize))> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Invalid(fabric_core::CoreError::invalid(
                "store.schema",
                format!("'{schema}' must be letters, digits and '_'"),
            )));
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::Invalid(fabric_core::CoreError::invalid(
                "store.url",
                "is not a valid PostgreSQL URL (postgres://user@host:port/db)",
            ))
        })?;
        let at = endpoint(&config);
        config.options(format!(
            "-c search_path={schema} -c client_min_messages=warning"
        ));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(12)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL at {at}: {e}")))?;
        let mut relaxed_config = config.clone();
        relaxed_config.options(format!("-c search_path={schema} -c synchronous_commit=off"));
        let relaxed = Pool::builder(Manager::from_config(
            relaxed_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(8)
        .build()
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL at {at}: {e}")))?;
        let store = Self {
            pool,
            relaxed,
            notifier: Default::default(),
            schema: schema.to_string(),
            config,
        };
        let mut client = store.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {at}: {e}"))
        })?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
        let tx = client.transaction().await?;
        // One migrator at a time across every daemon.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()))",
            &[],
        )
        .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS fabric_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = match tx
            .query_opt("SELECT version FROM fabric_schema", &[])
            .await?
        {
            Some(r) => r.get(0),
            None => {
                tx.execute("INSERT INTO fabric_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let version = version as usize;
        let refusal = if version > MIGRATIONS.len() {
            Some(StoreError::schema_newer(version, MIGRATIONS.len()))
        } else if version > 0 && version < MIGRATIONS.len() && !upgrade {
            Some(StoreError::schema_older(version, MIGRATIONS.len()))
        } else {
            None
        };
        if let Some(e) = refusal {
            // Release the migration lock now, not whenever the connection is reaped.
            tx.rollback().await?;
            return Err(e);
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "UPDATE fabric_schema SET version = $1",
                &[&((i + 1) as i32)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((store, (version, MIGRATIONS.len())))
    }

    /// Makes claims, completions and heartbeats wait for the WAL flush too (`store.synchronous:
    /// full`). By default only they skip it: a database crash may undo the last few hundred
    /// milliseconds of them, and those jobs run again (at-least-once); enqueues and operator
    /// actions always wait.
    pub fn fully_synchronous(mut self) -> Self {
        self.relaxed = self.pool.clone();
        self
    }

    /// Tells listening daemons (of this schema) that jobs were inserted; see [`Notifier`].
    /// A failure only costs them a poll interval, so it is logged, not returned.
    async fn notify_inserted(&self) {
        use std::sync::atomic::Ordering;
        let mine = self.notifier.committed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut sent = self.notifier.sent_upto.lock().await;
        if *sent >= mine {
            return;
        }
        let upto = self.notifier.committed.load(Ordering::SeqCst);
        let result = async {
            let client = self.relaxed.get().await?;
            let stmt = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
            client
                .execute(&stmt, &[&JOBS_CHANNEL, &self.schema])
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => *sent = upto,
            Err(e) => tracing::debug!(error = %e, "NOTIFY failed; listeners fall back to polling"),
        }
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it (tests).
    pub async fn drop_schema(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await?;
        Ok(())
    }
}

/// The parameters of a job listing's `WHERE` ([`JobWhere::SQL`], `$1`–`$9`).
struct JobWhere<'a> {
    state: Option<&'static str>,
    filter: &'a JobFilter,
    failed: bool,
    error: Option<&'a str>,
    before: Option<JobId>,
}

impl<'a> JobWhere<'a> {
    /// `failed` lists the jobs that failed an attempt in the window (`since`, `until`),
    /// whatever became of them since: the daily check of failures.
    const SQL: &'static str =
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
    fn new(filter: &'a JobFilter, page: bool) -> Self {
        let failed = filter.state == Some(JobState::Failed);
        Self {
            state: filter.state.filter(|_| !failed).map(|s| s.as_str()),
            filter,
            failed,
            error: filter.error.as_deref().filter(|e| !e.is_empty()),
            before: filter.before.filter(|_| page),
        }
    }

    fn args(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
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

fn row_to_job(r: &Row) -> Result<Job> {
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

const NODE_COLS: &str = "id, shard, capacity, specialties, health, draining, load, heartbeat_at, \
     started_at, stopped_at, host, pid, version";

fn row_to_node(r: &Row) -> Result<Node> {
    let specialties: serde_json::Value = r.try_get(3)?;
    let health: String = r.try_get(4)?;
    Ok(Node {
        id: r.try_get(0)?,
        shard: r.try_get(1)?,
        capacity: r.try_get::<_, i32>(2)? as u32,
        specialties: serde_json::from_value(specialties).map_err(backend)?,
        health: NodeHealth::parse(&health)?,
        draining: r.try_get(5)?,
        load: r.try_get::<_, i32>(6)? as u32,
        heartbeat_at: r.try_get(7)?,
        started_at: r.try_get(8)?,
        stopped_at: r.try_get(9)?,
        host: r.try_get(10)?,
        pid: r.try_get::<_, i32>(11)? as u32,
        version: r.try_get(12)?,
    })
}

/// Holds a dedicated connection that LISTENs on [`JOBS_CHANNEL`] and calls `wake` for each
/// notification of `schema` (and once after every reconnect, as notifications sent while
/// disconnected are lost), until `wake` returns false.
async fn listen_loop(
    config: tokio_postgres::Config,
    schema: String,
    wake: Box<dyn Fn(StoreEvent) -> bool + Send + Sync>,
) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match msg {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost");
                                return;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
                    .await
                {
                    Ok(()) => {
                        delay = std::time::Duration::from_millis(100);
                        // Notifications sent while disconnected are lost: say so once.
                        let mut wanted = wake(StoreEvent::Inserted);
                        let cancelled = format!("{schema}{CANCEL_MARK}");
                        while wanted {
                            match rx.recv().await {
                                Some(payload) if payload == schema => {
                                    wanted = wake(StoreEvent::Inserted)
                                }
                                Some(payload) => {
                                    let id = payload
                                        .strip_prefix(&cancelled)
                                        .and_then(|id| id.parse::<JobId>().ok());
                                    if let Some(id) = id {
                                        wanted = wake(StoreEvent::Cancelled(id));
                                    }
                                }
                                None => break,
                            }
                        }
                        if !wanted {
                            driver.abort();
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}

async fn get_node<C: GenericClient>(c: &C, id: &str) -> Result<Node> {
    let row = c
        .query_opt(
            &format!("SELECT {NODE_COLS} FROM nodes WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::node_not_found(id))?;
    row_to_node(&row)
}

async fn get_job<C: GenericClient>(c: &C, id: JobId) -> Result<Job> {
    let row = c
        .query_opt(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::job_not_found(id))?;
    row_to_job(&row)
}

async fn get_job_for_update<C: GenericClient>(c: &C, id: JobId) -> Result<Job> {
    let row = c
        .query_opt(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or_else(|| StoreError::job_not_found(id))?;
    row_to_job(&row)
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

async fn add_error<C: GenericClient>(
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

async fn quarantine_job<C: GenericClient>(
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
async fn insert_plain<C: GenericClient>(
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

/// The fenced update of a completion batch, in one statement: a row applies only while its
/// job is still `running` under that attempt and owner. Returns the (id, attempt, owner)
/// applied.
async fn fenced_update<C: GenericClient>(
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

    async fn next_run_at(&self) -> Result<Option<i64>> {
        let client = self.relaxed.get().await?;
        let stmt = client
            .prepare_cached("SELECT min(run_at) FROM jobs WHERE state IN ('pending', 'failed')")
            .await?;
        let row = client.query_one(&stmt, &[]).await?;
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
    ) -> Result<Option<Overdue>> {
        let client = self.pool.get().await?;
        let only = (!shards.is_empty()).then_some(shards);
        let except = (!exclude_shards.is_empty()).then_some(exclude_shards);
        client
            .query_opt(
                "SELECT id, shard, run_at FROM jobs
                 WHERE state IN ('pending', 'failed') AND run_at < $1
                   AND ($2::text[] IS NULL OR shard = ANY($2))
                   AND ($3::text[] IS NULL OR shard <> ALL($3))
                 LIMIT 1",
                &[&due_before, &only, &except],
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
        let client = self.pool.get().await?;
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

    async fn quarantine_entry(&self, id: JobId) -> Result<QuarantineEntry> {
        let client = self.pool.get().await?;
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

    async fn purge_quarantine(
        &self,
        before: i64,
        reason: Option<QuarantineReason>,
        dry_run: bool,
    ) -> Result<Vec<JobId>> {
        let client = self.pool.get().await?;
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

    async fn purge_jobs(&self, ids: Vec<JobId>) -> Result<Vec<JobId>> {
        let client = self.pool.get().await?;
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

    async fn quarantine_stats(&self) -> Result<QuarantineStats> {
        let client = self.pool.get().await?;
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

    async fn audit(&self, e: AuditEntry) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO audit (at, actor, action, target, reason) VALUES ($1, $2, $3, $4, $5)",
                &[&e.at, &e.actor, &e.action, &e.target, &e.reason],
            )
            .await?;
        Ok(())
    }

    async fn audit_log(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT at, actor, action, target, reason FROM audit
                 WHERE $1::bigint IS NULL OR at >= $1 ORDER BY id DESC LIMIT $2",
                &[&since, &(crate::sql_limit(limit))],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    action: r.try_get(2)?,
                    target: r.try_get(3)?,
                    reason: r.try_get(4)?,
                })
            })
            .collect()
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM audit WHERE at < $1", &[&before])
            .await?)
    }

    async fn put_recovery_report(&self, report: RecoveryReport) -> Result<()> {
        let client = self.pool.get().await?;
        let value = serde_json::to_value(&report).map_err(backend)?;
        client
            .execute(
                "INSERT INTO recovery_reports (at, report) VALUES ($1, $2)",
                &[&report.at, &value],
            )
            .await?;
        Ok(())
    }

    async fn last_recovery_report(&self) -> Result<Option<RecoveryReport>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT report FROM recovery_reports ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?;
        row.map(|r| {
            let v: serde_json::Value = r.try_get(0)?;
            serde_json::from_value(v).map_err(backend)
        })
        .transpose()
    }

    async fn prune_recovery_reports(&self, keep: usize) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM recovery_reports WHERE id NOT IN
                 (SELECT id FROM recovery_reports ORDER BY at DESC, id DESC LIMIT $1)",
                &[&keep],
            )
            .await?)
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

    async fn register_node(&self, node: Node) -> Result<Node> {
        let client = self.pool.get().await?;
        let specialties = serde_json::to_value(&node.specialties).map_err(backend)?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO nodes (id, shard, capacity, specialties, health, draining, load,
                         heartbeat_at, started_at, stopped_at, host, pid, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12)
                     ON CONFLICT (id) DO UPDATE SET shard = excluded.shard,
                         capacity = excluded.capacity, specialties = excluded.specialties,
                         load = excluded.load, heartbeat_at = excluded.heartbeat_at,
                         started_at = excluded.started_at, stopped_at = NULL,
                         host = excluded.host, pid = excluded.pid, version = excluded.version
                     RETURNING {NODE_COLS}"
                ),
                &[
                    &node.id,
                    &node.shard,
                    &(node.capacity as i32),
                    &specialties,
                    &node.health.as_str(),
                    &node.draining,
                    &(node.load as i32),
                    &node.heartbeat_at,
                    &node.started_at,
                    &node.host,
                    &(node.pid as i32),
                    &node.version,
                ],
            )
            .await?;
        row_to_node(&row)
    }

    async fn node_heartbeat(&self, id: &str, load: u32, now: i64) -> Result<Option<Node>> {
        let client = self.relaxed.get().await?;
        client
            .query_opt(
                &format!(
                    "UPDATE nodes SET load = $2, heartbeat_at = $3, stopped_at = NULL
                     WHERE id = $1 RETURNING {NODE_COLS}"
                ),
                &[&id, &(load as i32), &now],
            )
            .await?
            .as_ref()
            .map(row_to_node)
            .transpose()
    }

    async fn nodes(&self) -> Result<Vec<Node>> {
        let client = self.pool.get().await?;
        client
            .query(&format!("SELECT {NODE_COLS} FROM nodes ORDER BY id"), &[])
            .await?
            .iter()
            .map(row_to_node)
            .collect()
    }

    async fn update_node(&self, id: &str, change: NodeChange) -> Result<Node> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE nodes SET health = coalesce($2, health),
                     draining = coalesce($3, draining),
                     stopped_at = coalesce($4, stopped_at),
                     load = CASE WHEN $4::bigint IS NULL THEN load ELSE 0 END
                 WHERE id = $1",
                &[
                    &id,
                    &change.health.map(|h| h.as_str()),
                    &change.draining,
                    &change.stopped_at,
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::node_not_found(id));
        }
        get_node(&client, id).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        let client = self.relaxed.get().await?;
        Ok(client
            .query_opt(LEASE_UPSERT, &[&name, &holder, &now, &(now + ttl_ms)])
            .await?
            .is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<Lease>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT name, holder, acquired_at, expires_at FROM leases ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(Lease {
                    name: r.try_get(0)?,
                    holder: r.try_get(1)?,
                    acquired_at: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                })
            })
            .collect()
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

    async fn shards(&self) -> Result<Vec<fabric_core::Shard>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT name, paused, spillover_limit, latency_budget_ms FROM shards ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(fabric_core::Shard {
                    name: r.try_get(0)?,
                    paused: r.try_get(1)?,
                    spillover_limit: r.try_get::<_, i32>(2)? as u32,
                    latency_budget_ms: r.try_get::<_, i64>(3)? as u64,
                })
            })
            .collect()
    }

    async fn put_shard(&self, shard: fabric_core::Shard) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO shards (name, paused, spillover_limit, latency_budget_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                     spillover_limit = excluded.spillover_limit,
                     latency_budget_ms = excluded.latency_budget_ms",
                &[
                    &shard.name,
                    &shard.paused,
                    &(shard.spillover_limit as i32),
                    &(shard.latency_budget_ms as i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn remove_shard(&self, name: &str) -> Result<()> {
        let client = self.pool.get().await?;
        if client
            .execute("DELETE FROM shards WHERE name = $1", &[&name])
            .await?
            == 0
        {
            return Err(StoreError::shard_not_found(name));
        }
        Ok(())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        let client = self.pool.get().await?;
        client
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    async fn remove_setting(&self, key: &str) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM settings WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }
}
