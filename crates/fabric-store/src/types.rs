//! Records the store takes and returns.

use std::collections::BTreeMap;

use fabric_core::job::AttemptError;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{Job, JobId, JobState};
use serde::{Deserialize, Serialize};

/// Outcome of submitting one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: JobId,
    /// False when a job with the same unique key already existed (its id is returned).
    pub created: bool,
}

/// A request to lease work.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    /// Lease owner token, e.g. `node-1/4711`.
    pub owner: String,
    /// Shards to claim from; empty = all.
    pub shards: Vec<String>,
    /// Shards not to claim from (paused by an operator).
    pub exclude_shards: Vec<String>,
    /// Only jobs of at least this priority (conservative mode).
    pub min_priority: Option<i32>,
    /// Only jobs of these kinds; empty = every kind.
    pub kinds: Vec<String>,
    /// Never jobs of these kinds (the daemon's own workers skip the kinds external workers
    /// serve).
    pub exclude_kinds: Vec<String>,
    /// At most this many jobs.
    pub limit: usize,
    /// Lease length.
    pub lease_ms: i64,
    /// Current time (epoch ms).
    pub now: i64,
}

/// How an attempt ended, as the engine decided it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded, with what the handler returned.
    Succeeded { result: Option<serde_json::Value> },
    /// Failed; back to `pending`, due at `run_at`.
    Retry {
        run_at: i64,
        error: String,
        failure: String,
    },
    /// Failed for good.
    Quarantine {
        reason: QuarantineReason,
        error: String,
        failure: String,
    },
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: JobId,
    pub attempt: u32,
    pub owner: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: Outcome,
}

/// What `complete` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteReport {
    /// Completions rejected because the attempt had been rescued, cancelled or finished.
    pub late: u64,
    /// Waiting batch items whose dependency count these successes lowered (some are now
    /// `pending`: a dispatcher that found nothing to claim should look again).
    pub released: u64,
    /// The jobs whose completion applied, in the order given.
    pub applied_ids: Vec<JobId>,
}

impl CompleteReport {
    /// Completions applied.
    pub fn applied(&self) -> u64 {
        self.applied_ids.len() as u64
    }
}

/// One telemetry sample: what one ingest job (or scan) of a source did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetrySample {
    /// When it ended (epoch ms).
    pub at: i64,
    pub source: String,
    pub job_id: Option<JobId>,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// `ok`, `failed` or `quarantined`.
    pub outcome: String,
    /// The quarantine reason or failure type, when not `ok`.
    pub reason: Option<String>,
}

/// Telemetry summed per source, outcome and reason over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryTotal {
    pub source: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub samples: u64,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// The window's first and last sample (epoch ms).
    pub first_at: i64,
    pub last_at: i64,
}

/// A source with what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    #[serde(flatten)]
    pub def: fabric_core::source::SourceDef,
    /// `active` or `paused`.
    pub state: String,
    pub pause_reason: Option<String>,
    pub paused_at: Option<i64>,
    /// When its last scan ended (epoch ms), and how (`ok`, or what failed).
    pub last_scan_at: Option<i64>,
    pub last_outcome: Option<String>,
    /// When its schedule runs it next (epoch ms); `None` without a schedule or while paused.
    pub next_run_at: Option<i64>,
    /// Files its last scan indexed, and documents it holds now.
    pub files: u64,
    pub documents: u64,
    /// Its jobs in quarantine now.
    pub quarantined: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A queued job past its due time (see [`crate::Store::overdue`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    pub id: JobId,
    pub shard: String,
    pub run_at: i64,
}

/// What another process did, as [`crate::Store::listen`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// Jobs were inserted (or the channel reconnected and some may have been missed).
    Inserted,
    /// This running job was cancelled: whoever runs it stops the attempt.
    Cancelled(JobId),
}

/// What `rescue` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescueReport {
    /// Jobs returned to `pending`.
    pub reset: Vec<JobId>,
    /// Jobs quarantined because the lost attempt was their last.
    pub quarantined: Vec<JobId>,
}

/// A job and its attempt history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub errors: Vec<AttemptError>,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub shard: Option<String>,
    pub source: Option<String>,
    pub kind: Option<String>,
    /// Only jobs updated at or after (epoch ms).
    pub since: Option<i64>,
    /// Only jobs updated before (epoch ms).
    pub until: Option<i64>,
    /// Only jobs whose last error contains this text (case-insensitive for ASCII).
    pub error: Option<String>,
    /// Keyset page: only jobs with an id below this one (the list is newest first).
    pub before: Option<JobId>,
    pub limit: usize,
}

impl JobFilter {
    /// Whether the counts by state tell how many jobs this filter matches: it filters by
    /// nothing but a state (and a page, which a count ignores). `failed` is not one: as a
    /// filter it means the jobs that failed an attempt, whatever their state now.
    pub fn counted_by_state(&self) -> bool {
        self.shard.is_none()
            && self.source.is_none()
            && self.kind.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.error.as_deref().unwrap_or("").is_empty()
            && self.state != Some(JobState::Failed)
    }

    /// How many jobs this filter matches, from the counts by state, when
    /// [`Self::counted_by_state`]; `None` when only the table can tell.
    pub fn count_by_state(&self, counts: &StateCounts) -> Option<u64> {
        self.counted_by_state().then(|| match self.state {
            None => counts.total(),
            Some(s) => counts.get(s),
        })
    }
}

/// A pending job as [`crate::Store::pending_keys`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKey {
    pub id: JobId,
    pub shard: String,
    pub priority: i32,
    /// Attempts made so far.
    pub attempt: u32,
    pub created_at: i64,
}

/// Number of jobs per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub quarantined: u64,
    pub cancelled: u64,
    /// Batch items waiting for their dependencies.
    pub waiting: u64,
    /// Batch items blocked by a failed dependency.
    pub blocked: u64,
}

impl StateCounts {
    /// Adds `n` to the count of `state`.
    pub fn add(&mut self, state: JobState, n: u64) {
        *self.slot(state) += n;
    }

    /// The count of `state`.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Pending => self.pending,
            JobState::Running => self.running,
            JobState::Succeeded => self.succeeded,
            JobState::Failed => self.failed,
            JobState::Quarantined => self.quarantined,
            JobState::Cancelled => self.cancelled,
            JobState::Waiting => self.waiting,
            JobState::Blocked => self.blocked,
        }
    }

    fn slot(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Pending => &mut self.pending,
            JobState::Running => &mut self.running,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Failed => &mut self.failed,
            JobState::Quarantined => &mut self.quarantined,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Waiting => &mut self.waiting,
            JobState::Blocked => &mut self.blocked,
        }
    }

    /// All jobs.
    pub fn total(&self) -> u64 {
        self.pending
            + self.running
            + self.succeeded
            + self.failed
            + self.quarantined
            + self.cancelled
    }
}

/// An operator note on a quarantined job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub at: i64,
    pub note: String,
}

/// A quarantined job: its original payload, classified reason, error and counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: JobId,
    pub kind: String,
    pub shard: String,
    pub source: Option<String>,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub reason: QuarantineReason,
    /// Path-redacted error of the last attempt.
    pub error: String,
    pub failure: String,
    pub attempts: u32,
    pub quarantined_at: i64,
    /// Operator retries so far.
    pub retries: u32,
    pub notes: Vec<Note>,
}

/// Filters for listing quarantine.
#[derive(Debug, Clone, Default)]
pub struct QuarantineFilter {
    pub reason: Option<QuarantineReason>,
    pub since: Option<i64>,
    pub limit: usize,
}

/// Quarantine totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineStats {
    pub total: u64,
    pub by_reason: BTreeMap<String, u64>,
    pub oldest_at: Option<i64>,
    pub newest_at: Option<i64>,
    /// Operator retries over all entries.
    pub retries: u64,
}

/// One audited operator action: who, what, when and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
}

/// What crash recovery found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub at: i64,
    pub jobs_reset_to_pending: u64,
    pub jobs_quarantined: u64,
    pub duration_ms: f64,
    pub wal_checkpointed: bool,
    /// `ok` or the integrity check's findings.
    pub integrity: String,
    pub errors: Vec<String>,
}

/// An operator's (or the daemon's own) change to a node; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub health: Option<fabric_core::NodeHealth>,
    pub draining: Option<bool>,
    /// Marks the node's daemon as stopped at this time (graceful stop).
    pub stopped_at: Option<i64>,
}

/// A named lease (the maintenance leader's is [`LEADER_LEASE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    /// Node id of the holder.
    pub holder: String,
    /// When the current holder first took it (epoch ms).
    pub acquired_at: i64,
    /// When it lapses unless renewed (epoch ms).
    pub expires_at: i64,
}

/// The lease that makes one daemon the maintenance leader.
pub const LEADER_LEASE: &str = "leader";
