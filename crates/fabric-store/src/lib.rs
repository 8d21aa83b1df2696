//! The durable state of Fabric: the [`Store`] trait every backend implements, the records it
//! returns, and the backends themselves (`sqlite`, embedded and the default; `postgres`, for
//! many daemons on one database).
//!
//! The store is the control plane: the daemon, the CLI and the HTTP API all read and write
//! it and none of them holds truth in memory. Every mutating call returns only once its write
//! is durable in the backend's sense (SQLite: WAL commit).

pub mod alerts;
pub mod batch;
pub mod docs;
mod error;
pub mod fleet;
pub mod outbox;
pub mod postgres;
pub mod schedule;
pub mod sqlite;
pub mod testing;
mod types;
mod windows;

pub use alerts::{
    AlertPhase, AlertState, AlertStore, DeliveryAttempt, GroupFlush, JobSignals,
    NewDeliveryAttempt, NewNotification, NewSilence, Notification, NotifyStatus, QueueState,
    Settle, Silence,
};
pub use batch::{
    BatchCancelled, BatchDetail, BatchItemRecord, BatchRecord, BatchRetried, BatchStore,
    FinishedBatch, NewBatch, NewBatchItem,
};
pub use docs::DocStore;
pub use error::StoreError;
pub use fleet::FleetStore;
pub use outbox::OutboxStore;
pub use postgres::PostgresStore;
pub use schedule::{NewSchedule, ScheduleFired, ScheduleFiring, ScheduleRecord, ScheduleStore};
pub use sqlite::SqliteStore;
pub use types::*;
pub use windows::FinishedWindow;

/// A page size as SQL's `LIMIT`: at least 1, and saturating at `i64::MAX` (a `usize::MAX`
/// cast with `as` would be `-1`, which SQLite reads as "no limit" and PostgreSQL refuses).
pub(crate) fn sql_limit(n: usize) -> i64 {
    i64::try_from(n.max(1)).unwrap_or(i64::MAX)
}

use async_trait::async_trait;
use fabric_core::{JobId, NewJob};

/// Takes or renews a lease in one statement (the same SQL on both backends): a free or
/// lapsed lease, or one the holder already has, is (re)written and returned; otherwise no row.
pub(crate) const LEASE_UPSERT: &str = "INSERT INTO leases (name, holder, acquired_at, expires_at)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
         acquired_at = CASE WHEN leases.holder = excluded.holder
                            THEN leases.acquired_at ELSE excluded.acquired_at END,
         expires_at = excluded.expires_at
     WHERE leases.holder = excluded.holder OR leases.expires_at < excluded.acquired_at
     RETURNING holder";

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Fabric keeps durably. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Backend name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// The documents of the ingestion layer and their search, kept in the same database.
    fn docs(&self) -> &dyn DocStore;

    /// Alert state, silences, the notification queue and delivery history.
    fn alerts(&self) -> &dyn AlertStore;

    /// The outbox of messages bound for the bus, kept in the same database (job lifecycle
    /// events commit with their change).
    fn outbox(&self) -> &dyn OutboxStore;

    /// Batches and the dependencies of their items.
    fn batches(&self) -> &dyn BatchStore;

    /// Cron schedules and their firing.
    fn schedules(&self) -> &dyn ScheduleStore;

    /// Nodes, leases, shards and fleet-wide settings.
    fn fleet(&self) -> &dyn FleetStore;

    /// Inserts jobs (validated by the caller); a job whose unique key already exists is not
    /// inserted and its existing id is returned with `created: false`. One call is one
    /// all-or-nothing write; concurrent callers may share a transaction (group commit).
    async fn submit(&self, jobs: Vec<NewJob>, now: i64) -> Result<Vec<Submitted>>;

    /// Leases up to `limit` due `pending` jobs (highest priority, then oldest) to `owner`,
    /// moving them to `running` with `attempt + 1`.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<fabric_core::Job>>;

    /// Applies finished attempts, each fenced by owner + attempt: one whose job is no longer
    /// `running` under that attempt changes nothing and is counted as late.
    async fn complete(&self, batch: Vec<Completion>) -> Result<CompleteReport>;

    /// Extends the leases of `(id, attempt)` held by `owner` to `until`; returns the jobs of
    /// `jobs` whose lease `owner` no longer holds (cancelled, rescued or finished): their
    /// attempts are to be stopped.
    async fn heartbeat(
        &self,
        owner: &str,
        jobs: Vec<(JobId, u32)>,
        until: i64,
    ) -> Result<Vec<JobId>>;

    /// Returns `running` jobs whose lease expired before `now` to `pending` (or to quarantine
    /// when that was their last attempt). With `owner_prefix`, every `running` job whose lease
    /// owner starts with it is reset, expired or not (crash recovery of this node).
    async fn rescue(&self, now: i64, owner_prefix: Option<&str>) -> Result<RescueReport>;

    /// Earliest `run_at` later than `after` among pending and failed jobs, if any. (A
    /// dispatcher passes the time of its last claim: what was due then and is still waiting
    /// is not for it to claim: an external worker's kind, a paused shard.)
    async fn next_run_at(&self, after: i64) -> Result<Option<i64>>;

    /// One job with its attempt history.
    async fn job(&self, id: JobId) -> Result<JobDetail>;

    /// Jobs matching `filter`, newest first.
    async fn jobs(&self, filter: JobFilter) -> Result<Vec<fabric_core::Job>>;

    /// How many jobs match `filter`, whatever its `before` and `limit` (a console's "all N
    /// matching").
    async fn count_jobs(&self, filter: JobFilter) -> Result<u64>;

    /// Pending jobs with an id above `after_id`, lowest id first, at most `limit`, without
    /// their payloads: walks a queue of millions (a checkpoint) at a fraction of the cost of
    /// [`Store::jobs`].
    async fn pending_keys(&self, after_id: JobId, limit: usize) -> Result<Vec<PendingKey>>;

    /// Number of jobs in each state.
    async fn counts(&self) -> Result<StateCounts>;

    /// Number of jobs in each state among the jobs of `source` and `kind` with an id above
    /// `after_id` (what a triggered scan enqueued, as `sources trigger --wait` follows it).
    async fn counts_of(&self, source: &str, kind: &str, after_id: JobId) -> Result<StateCounts>;

    /// Jobs waiting to run (`pending`, and `failed` ones waiting for their retry) per shard;
    /// shards with none are left out.
    async fn queue_depths(&self) -> Result<std::collections::BTreeMap<String, u64>>;

    /// Some queued job (`pending` or `failed`) due before `due_before` in `shards` (all when
    /// empty), not in `exclude_shards` and of none of `exclude_kinds` (the kinds external
    /// workers serve): work a dispatcher with free slots should have
    /// claimed (the `workers` health check). Any such job, not the oldest: cheap to ask
    /// (SQLite, without an index on the due time, looks at the first 1,000 queued jobs in
    /// dispatch order only).
    async fn overdue(
        &self,
        due_before: i64,
        shards: &[String],
        exclude_shards: &[String],
        exclude_kinds: &[String],
    ) -> Result<Option<Overdue>>;

    /// Jobs that succeeded at or after `since` (throughput).
    async fn succeeded_since(&self, since: i64) -> Result<u64>;

    /// For each of `since` (epoch ms): the jobs that succeeded or were quarantined since
    /// then, and per `slow_ms` threshold the successes that ended more than that long after
    /// they were due; one scan of the recent jobs for all of them.
    async fn finished_windows(&self, since: &[i64], slow_ms: &[i64])
        -> Result<Vec<FinishedWindow>>;

    /// Cancels a pending, running or quarantined job.
    async fn cancel(&self, id: JobId, reason: &str, now: i64) -> Result<fabric_core::Job>;

    /// Sends a quarantined job back to `pending` with a fresh set of attempts, counting the
    /// retry and keeping `note` with the quarantine record.
    async fn retry(&self, id: JobId, note: Option<&str>, now: i64) -> Result<fabric_core::Job>;

    /// Quarantined jobs, newest first.
    async fn quarantine(&self, filter: QuarantineFilter) -> Result<Vec<QuarantineEntry>>;

    /// One quarantine record (the job must be or have been quarantined).
    async fn quarantine_entry(&self, id: JobId) -> Result<QuarantineEntry>;

    /// Deletes quarantined jobs quarantined before `before` (optionally of one reason);
    /// with `dry_run` only lists them.
    async fn purge_quarantine(
        &self,
        before: i64,
        reason: Option<fabric_core::quarantine::QuarantineReason>,
        dry_run: bool,
    ) -> Result<Vec<JobId>>;

    /// Deletes those of `ids` that are finished (succeeded, cancelled or quarantined), with
    /// their history; returns the ids deleted, lowest first. Others are left alone.
    async fn purge_jobs(&self, ids: Vec<JobId>) -> Result<Vec<JobId>>;

    /// Totals by reason.
    async fn quarantine_stats(&self) -> Result<QuarantineStats>;

    /// Appends to the audit log.
    async fn audit(&self, entry: AuditEntry) -> Result<()>;

    /// Audit entries since `since`, newest first.
    async fn audit_log(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>>;

    /// Deletes audit entries recorded before `before`; returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64>;

    /// Stores a crash-recovery report.
    async fn put_recovery_report(&self, report: RecoveryReport) -> Result<()>;

    /// The latest crash-recovery report.
    async fn last_recovery_report(&self) -> Result<Option<RecoveryReport>>;

    /// Deletes every crash-recovery report but the newest `keep` (by time, then by insertion);
    /// returns how many.
    async fn prune_recovery_reports(&self, keep: usize) -> Result<u64>;

    /// Runs the backend's integrity check; `Ok(vec!["ok"])` when sound.
    async fn integrity_check(&self) -> Result<Vec<String>>;

    /// Writes a consistent copy of the store to `path` while it stays online.
    async fn backup(&self, path: &std::path::Path) -> Result<()>;

    /// Compacts the store and checkpoints its log.
    async fn vacuum(&self) -> Result<()>;

    /// Checkpoints the write-ahead log (no-op where there is none).
    async fn checkpoint(&self) -> Result<()>;

    /// Makes every write that has returned so far durable. A no-op where each write commits
    /// before it returns (the default); a write-behind store (`SqliteOptions::write_behind`)
    /// commits its open transaction.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Deletes finished (succeeded, cancelled) jobs that finished before `before`.
    async fn prune_finished(&self, before: i64) -> Result<u64>;

    /// Answers when the backend is reachable (health checks).
    async fn ping(&self) -> Result<()>;

    /// Adds source `def.name` or replaces its definition; its runtime state stays.
    async fn put_source(&self, def: fabric_core::source::SourceDef, now: i64) -> Result<()>;

    /// Every source with its state, by name.
    async fn sources(&self) -> Result<Vec<SourceRecord>>;

    /// Every source's definition, by name, without its state or counts (cheap: what path
    /// redaction needs).
    async fn source_defs(&self) -> Result<Vec<fabric_core::source::SourceDef>>;

    /// One source with its state (`NotFound` when unknown).
    async fn source(&self, name: &str) -> Result<SourceRecord> {
        self.sources()
            .await?
            .into_iter()
            .find(|s| s.def.name == name)
            .ok_or_else(|| StoreError::source_not_found(name))
    }

    /// Removes a source and its state (`NotFound` when unknown); its jobs stay.
    async fn remove_source(&self, name: &str) -> Result<()>;

    /// Pauses source `name` with `reason` (`Some`), or resumes it (`None`); `NotFound` when
    /// unknown.
    async fn set_source_paused(&self, name: &str, reason: Option<&str>, now: i64) -> Result<()>;

    /// Records the end of a scan of source `name`: when, how (`ok` or what failed) and the
    /// files its index holds; `NotFound` when unknown.
    async fn record_source_scan(
        &self,
        name: &str,
        at: i64,
        outcome: &str,
        files: u64,
    ) -> Result<()>;

    /// Sets when source `name`'s schedule runs it next (`None`: not scheduled); `NotFound`
    /// when unknown.
    async fn set_source_next_run(&self, name: &str, at: Option<i64>) -> Result<()>;

    /// Appends telemetry samples.
    async fn record_telemetry(&self, samples: Vec<TelemetrySample>) -> Result<()>;

    /// Telemetry at or after `since`, of `source` (all when `None`), summed per source,
    /// outcome and reason.
    async fn telemetry(&self, since: i64, source: Option<&str>) -> Result<Vec<TelemetryTotal>>;

    /// Deletes the samples before `before` (with `dry_run`, only counts them); returns how
    /// many.
    async fn prune_telemetry(&self, before: i64, dry_run: bool) -> Result<u64>;

    /// Calls `wake` whenever any process inserts jobs or cancels a running one, until `wake`
    /// returns false or the returned task is aborted. `None` where the backend has no such
    /// channel (SQLite: the CLI signals the daemon instead).
    fn listen(
        &self,
        wake: Box<dyn Fn(StoreEvent) -> bool + Send + Sync>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let _ = wake;
        None
    }
}
