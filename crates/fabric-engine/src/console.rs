//! The Console: every operator action, validated, applied to the store and audited. The CLI
//! and the HTTP API are two thin faces of it and never touch the store themselves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fabric_core::config::Config;
use fabric_core::quarantine::{redact_json, redact_paths, QuarantineReason};
use fabric_core::{Clock, Job, JobId, NewJob};
use fabric_store::{
    AuditEntry, JobDetail, JobFilter, QuarantineEntry, QuarantineFilter, QuarantineStats,
    RecoveryReport, StateCounts, Store, Submitted,
};
use serde::Serialize;

use crate::measured::Memo;
use crate::{EngineError, Metrics, Registry, Waker};

pub(crate) type Result<T> = std::result::Result<T, EngineError>;

pub use crate::health::{Check, Health};

/// A node as `fabric nodes list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: fabric_core::Node,
    /// Health at the time of the listing: a stopped or silent node is offline.
    pub effective_health: fabric_core::NodeHealth,
    /// Milliseconds since the last heartbeat.
    pub heartbeat_age_ms: i64,
    /// Holds the maintenance leader's lease now.
    pub leader: bool,
}

/// What an operator does to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Takes no work; its jobs are reassigned.
    Offline,
    /// Takes work again (also ends a drain).
    Online,
    /// Finishes what it holds and takes nothing new.
    Drain,
}

/// A daemon's worker slots ([`Console::workers`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Workers {
    /// Busy slots (at most `max`).
    pub active: u64,
    /// Jobs the daemon holds: running, or claimed ahead for slots about to free.
    pub claimed: u64,
    pub max: u32,
    /// `active / max`.
    pub utilization: f64,
}

/// A backup file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backup {
    pub path: String,
    pub bytes: u64,
    pub modified: String,
}

/// The operator service layer.
#[derive(Clone)]
pub struct Console {
    store: Arc<dyn Store>,
    registry: Registry,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    actor: String,
    waker: Option<Waker>,
    metrics: Option<Metrics>,
    /// The last full integrity check, shared by clones (a probe reads it; see `health`).
    pub(crate) integrity: Arc<crate::health::IntegrityCache>,
    /// The last job counts by state and SLO report, shared by clones (see `measured`).
    counts_memo: Arc<Memo<(), StateCounts>>,
    pub(crate) slo_memo: Arc<Memo<crate::slo::SloConfigs, crate::slo::SloReport>>,
    /// The file that keeps source definitions beyond the store (see `sources`).
    pub(crate) sources_file: Option<PathBuf>,
}

impl Console {
    /// A console acting as `actor` (recorded in the audit log).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            store,
            registry,
            config,
            clock,
            actor: actor.into(),
            waker: None,
            metrics: None,
            integrity: Arc::default(),
            counts_memo: Arc::default(),
            slo_memo: Arc::default(),
            sources_file: None,
        }
    }

    /// Measurements of the whole store (counts by state, SLOs) that took less than `cheap`
    /// are made again for every reader; dearer ones are shared (see `measured`; the default
    /// is [`crate::measured::CHEAP`]). For building a Console: clones made before keep the
    /// default.
    pub fn share_measurements_above(mut self, cheap: std::time::Duration) -> Self {
        self.counts_memo = Arc::new(Memo::sharing_above(cheap));
        self.slo_memo = Arc::new(Memo::sharing_above(cheap));
        self
    }

    /// Wakes the local engine on submit and counts enqueues.
    pub fn with_engine(mut self, waker: Waker, metrics: Metrics) -> Self {
        self.waker = Some(waker);
        self.metrics = Some(metrics);
        self
    }

    /// Keeps source definitions in `path` too (the home's `config/sources.yaml`), so they
    /// outlive the store.
    pub fn with_sources_file(mut self, path: PathBuf) -> Self {
        self.sources_file = Some(path);
        self
    }

    /// The same console acting as someone else.
    pub fn as_actor(&self, actor: impl Into<String>) -> Self {
        let mut c = self.clone();
        c.actor = actor.into();
        c
    }

    /// Who this console acts as (the audit log's actor).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The store behind this console.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The effective configuration, shared (for services beside the Console, such as
    /// alerting).
    pub fn config_shared(&self) -> Arc<Config> {
        self.config.clone()
    }

    /// The clock this console reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Now, by this console's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Records an operator action taken outside the Console's own methods (on the bus, for
    /// example) in the audit log, like every other.
    pub async fn audit_action(
        &self,
        action: &str,
        target: String,
        reason: Option<String>,
    ) -> Result<()> {
        self.audit(action, target, reason).await
    }

    pub(crate) async fn audit(
        &self,
        action: &str,
        target: String,
        reason: Option<String>,
    ) -> Result<()> {
        if !self.config.security.audit_logging {
            return Ok(());
        }
        self.store
            .audit(AuditEntry {
                at: self.clock.now_ms(),
                actor: self.actor.clone(),
                action: action.into(),
                target,
                reason,
            })
            .await?;
        Ok(())
    }

    /// A job's `max_attempts` as it will be stored: [`NewJob::POLICY_ATTEMPTS`] becomes the
    /// `max_attempts` of its retry policy (its source's, else its kind's, else `retry`).
    pub(crate) fn with_policy_attempts(&self, mut job: NewJob) -> NewJob {
        if job.max_attempts == NewJob::POLICY_ATTEMPTS {
            job.max_attempts = self
                .config
                .retry_policy_of(job.source.as_deref(), &job.kind)
                .max_attempts;
        }
        job
    }

    /// Checks a job against the model and its handler, naming the bad field.
    pub fn validate(&self, job: &NewJob) -> Result<()> {
        let resolved;
        let job = if job.max_attempts == NewJob::POLICY_ATTEMPTS {
            resolved = self.with_policy_attempts(job.clone());
            &resolved
        } else {
            job
        };
        job.validate()?;
        let Some(handler) = self.registry.get(&job.kind) else {
            if self.config.workers.external_kinds.contains(&job.kind) {
                // Served by external workers: the payload is theirs to judge.
                return Ok(());
            }
            return Err(EngineError::invalid(
                "kind",
                format!(
                    "unknown handler kind '{}' (known: {}; a kind external workers serve is \
                     declared in workers.external_kinds)",
                    job.kind,
                    self.registry.kinds().join(", ")
                ),
            ));
        };
        handler
            .validate(&job.payload)
            .map_err(|m| EngineError::invalid("payload", m))
    }

    /// Submits one job; returns its id (the existing one for a repeated unique key).
    pub async fn submit(&self, job: NewJob) -> Result<Submitted> {
        let mut out = self.write_jobs(vec![job], false).await?;
        out.pop()
            .ok_or_else(|| EngineError::Failed("the store returned no id".into()))
    }

    /// Submits jobs in one durable write; nothing is written if any is invalid, and the
    /// error names the job by its index (`jobs[1].kind`), even in a batch of one.
    pub async fn submit_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Submitted>> {
        self.write_jobs(jobs, true).await
    }

    /// [`Console::submit_many`]; `batch` names a bad field by the job's index.
    async fn write_jobs(&self, jobs: Vec<NewJob>, batch: bool) -> Result<Vec<Submitted>> {
        let jobs: Vec<NewJob> = jobs
            .into_iter()
            .map(|j| self.with_policy_attempts(j))
            .collect();
        for (i, j) in jobs.iter().enumerate() {
            self.validate(j).map_err(|e| match e {
                EngineError::InvalidInput { field, message } if batch => {
                    EngineError::invalid(format!("jobs[{i}].{field}"), message)
                }
                other => other,
            })?;
        }
        let n = jobs.len();
        let out = self.store.submit(jobs, self.clock.now_ms()).await?;
        let created = out.iter().filter(|s| s.created).count();
        self.submitted(created as u64);
        let target = match out.as_slice() {
            [one] => format!("job {}", one.id),
            _ => format!("{n} jobs"),
        };
        // A job whose unique key was taken was not submitted again: the entry says so, so
        // that the log does not read as two submissions of one job.
        let existed = (created < n).then(|| match n {
            1 => "already submitted (unique key)".to_string(),
            _ => format!("{} already submitted (unique key)", n - created),
        });
        self.audit("jobs.submit", target, existed).await?;
        Ok(out)
    }

    /// Counts `n` enqueued jobs and wakes the local engine.
    pub(crate) fn submitted(&self, n: u64) {
        if let Some(m) = &self.metrics {
            m.enqueued.inc_by(n);
        }
        self.work_due();
    }

    /// Counts attempts that external workers finished through this daemon, as its own workers'
    /// are counted (`fabric_jobs_completed_total`, `…_failed_total`, `…_quarantined_total`).
    pub(crate) fn finished_externally(&self, completed: u64, failed: u64, quarantined: u64) {
        if let Some(m) = &self.metrics {
            m.completed.inc_by(completed);
            m.failed.inc_by(failed);
            m.quarantined.inc_by(quarantined);
        }
    }

    /// Tells the local engine that an owner lever changed (it reads them again at once).
    pub(crate) async fn levers_changed(&self) {
        if let Some(w) = &self.waker {
            w.levers_changed().await;
        }
    }

    /// Tells the local engine (and external workers waiting in a claim) that work may be
    /// due: jobs were released or brought back without being enqueued.
    pub(crate) fn work_due(&self) {
        if let Some(w) = &self.waker {
            w.wake();
        }
    }

    /// Resolves at the next enqueue the local engine hears of after this call (never
    /// without an engine).
    pub(crate) fn waiter(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self.waker.as_ref().map(|w| w.enqueues());
        async move {
            match rx {
                Some(mut rx) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
    }

    /// Stops the attempt of job `id` if the local engine runs it (elsewhere: the store's
    /// notification or the CLI's signal, and the next lease heartbeat).
    pub(crate) fn stop_attempt(&self, id: JobId) {
        if let Some(w) = &self.waker {
            w.cancelled(id);
        }
    }

    /// Jobs matching `filter`, newest first.
    pub async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>> {
        Ok(self.store.jobs(filter).await?)
    }

    /// How many jobs match `filter`, whatever its page.
    pub async fn count_jobs(&self, filter: JobFilter) -> Result<u64> {
        if filter.counted_by_state() {
            return Ok(filter.count_by_state(&self.counts().await?).unwrap_or(0));
        }
        Ok(self.store.count_jobs(filter).await?)
    }

    /// One job with its attempts.
    pub async fn job(&self, id: JobId) -> Result<JobDetail> {
        Ok(self.store.job(id).await?)
    }

    /// Cancels a job; `reason` is required.
    pub async fn cancel(&self, id: JobId, reason: &str) -> Result<Job> {
        if reason.trim().is_empty() {
            return Err(EngineError::invalid("reason", "a reason is required"));
        }
        let job = self.store.cancel(id, reason, self.clock.now_ms()).await?;
        // A running attempt stops now: here when this process's engine runs it; elsewhere
        // through the store's notification (PostgreSQL) or the CLI's signal (SQLite), with
        // the next lease heartbeat as the fallback.
        if let Some(w) = &self.waker {
            w.cancelled(id);
        }
        self.audit("jobs.cancel", format!("job {id}"), Some(reason.into()))
            .await?;
        Ok(job)
    }

    /// Sends a quarantined job back to `pending` with fresh attempts.
    pub async fn retry(&self, id: JobId, note: Option<&str>) -> Result<Job> {
        self.retry_as("jobs.retry", id, note).await
    }

    /// The store refuses anything but a quarantined job; wakes the engine and audits.
    async fn retry_as(&self, action: &str, id: JobId, note: Option<&str>) -> Result<Job> {
        let job = self.store.retry(id, note, self.clock.now_ms()).await?;
        if let Some(w) = &self.waker {
            w.wake();
        }
        self.audit(action, format!("job {id}"), note.map(String::from))
            .await?;
        Ok(job)
    }

    /// Number of jobs per state, measured for this reader or shared with others when
    /// measuring is dear (see `measured`).
    pub async fn counts(&self) -> Result<StateCounts> {
        let (store, clock) = (self.store.clone(), self.clock.clone());
        self.counts_memo
            .get((), self.clock.now_ms(), move || {
                let (store, clock) = (store.clone(), clock.clone());
                async move {
                    let at = clock.now_ms();
                    Ok::<_, crate::EngineError>((at, store.counts().await?))
                }
            })
            .await
    }

    /// Quarantined jobs.
    pub async fn quarantine(&self, filter: QuarantineFilter) -> Result<Vec<QuarantineEntry>> {
        let list = self.store.quarantine(filter).await?;
        self.redacted(list).await
    }

    /// One quarantine record.
    pub async fn quarantine_entry(&self, id: JobId) -> Result<QuarantineEntry> {
        let q = self.store.quarantine_entry(id).await?;
        Ok(self.redacted(vec![q]).await?.remove(0))
    }

    /// Entries as an operator sees them (CLI and API alike): with `security.path_redaction`,
    /// the user's home becomes `~` and every source root (and `security.redact_roots`)
    /// `<root>` in their payloads and errors. The store keeps the original payload, which a
    /// retry runs again.
    async fn redacted(&self, mut list: Vec<QuarantineEntry>) -> Result<Vec<QuarantineEntry>> {
        let security = &self.config.security;
        if !security.path_redaction || list.is_empty() {
            return Ok(list);
        }
        let mut roots: Vec<String> = self
            .store
            .source_defs()
            .await?
            .into_iter()
            .map(|d| d.path)
            .chain(security.redact_roots.iter().cloned())
            .collect();
        // Longest first, so a root that prefixes another does not cut it.
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        let home = std::env::var("HOME").ok();
        for q in &mut list {
            redact_json(&mut q.payload, home.as_deref(), &roots);
            q.error = redact_paths(&q.error, home.as_deref(), &roots);
        }
        Ok(list)
    }

    /// Retries a quarantined job, keeping the operator's note.
    pub async fn quarantine_retry(&self, id: JobId, note: Option<&str>) -> Result<Job> {
        // A job that was never quarantined has no entry: not found, rather than a conflict.
        self.store.quarantine_entry(id).await?;
        self.retry_as("quarantine.retry", id, note).await
    }

    /// Purges entries quarantined more than `days` days ago.
    pub async fn quarantine_purge(
        &self,
        days: u32,
        reason: Option<QuarantineReason>,
        dry_run: bool,
    ) -> Result<Vec<JobId>> {
        let before = self.clock.now_ms() - i64::from(days) * 86_400_000;
        let ids = self.store.purge_quarantine(before, reason, dry_run).await?;
        if !dry_run {
            let why = format!(
                "older than {days} days{}",
                reason.map(|r| format!(", reason {r}")).unwrap_or_default()
            );
            self.audit("quarantine.purge", format!("{} jobs", ids.len()), Some(why))
                .await?;
        }
        Ok(ids)
    }

    /// Quarantine totals.
    pub async fn quarantine_stats(&self) -> Result<QuarantineStats> {
        Ok(self.store.quarantine_stats().await?)
    }

    /// Audit entries, newest first.
    pub async fn audit_log(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(self.store.audit_log(since, limit).await?)
    }

    /// The latest crash-recovery report.
    pub async fn last_recovery(&self) -> Result<Option<RecoveryReport>> {
        Ok(self.store.last_recovery_report().await?)
    }

    /// Runs the store's integrity check.
    pub async fn db_check(&self) -> Result<Vec<String>> {
        let lines = self.store.integrity_check().await?;
        self.audit("db.check", "store".into(), None).await?;
        Ok(lines)
    }

    /// Writes an online backup to `to`, or to `<backups>/queue-<time>.db`.
    pub async fn db_backup(&self, to: Option<PathBuf>, backups: &Path) -> Result<PathBuf> {
        let to = match to {
            Some(p) => p,
            None => {
                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
                backups.join(format!("queue-{stamp}.db"))
            }
        };
        self.store.backup(&to).await?;
        self.audit("db.backup", to.display().to_string(), None)
            .await?;
        // `backups.keep`: the new backup counts; a failure to prune does not undo it.
        let kept = self.config.backups.keep as usize;
        crate::retention::log_outcome(
            "backups",
            backups,
            crate::retention::prune_backups(backups, kept),
        );
        Ok(to)
    }

    /// Compacts the store.
    pub async fn db_vacuum(&self) -> Result<()> {
        self.store.vacuum().await?;
        self.audit("db.vacuum", "store".into(), None).await
    }

    /// Records an action done outside the store (restore, start, stop).
    pub async fn record(&self, action: &str, target: &str, reason: Option<&str>) -> Result<()> {
        self.audit(action, target.into(), reason.map(String::from))
            .await
    }
}
