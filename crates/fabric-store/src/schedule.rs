//! Cron schedules in the store: the [`ScheduleStore`] trait and its records. A schedule's
//! next due time is the one value firing moves, forward only, in the transaction that
//! enqueues its jobs; each job's unique key is the schedule's name and its due time, so two
//! leaders that fire the same due time enqueue one job (and the second moves nothing).

use async_trait::async_trait;
use fabric_core::cron_schedule::{job_key, Overlap, ScheduleDef};
use fabric_core::{JobId, NewJob};
use serde::{Deserialize, Serialize};

use crate::{Result, Submitted};

/// A schedule as `schedules add` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// The definition, validated by the caller.
    pub def: ScheduleDef,
    /// Attempts of its jobs (the retry policy's, resolved when the schedule is added).
    pub max_attempts: u32,
    /// Its first due time (`None`: the expression never matches).
    pub next_due: Option<i64>,
}

/// A schedule with what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    #[serde(flatten)]
    pub def: ScheduleDef,
    /// Attempts of its jobs.
    pub max_attempts: u32,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub paused_at: Option<i64>,
    /// The next due time (epoch ms); moves forward only.
    pub next_due: Option<i64>,
    /// The last due time that enqueued a job.
    pub last_due: Option<i64>,
    /// When the leader last enqueued one of its jobs.
    pub last_fired_at: Option<i64>,
    /// Its most recent job (a due time's or a trigger's).
    pub last_job_id: Option<JobId>,
    /// Jobs it enqueued (due times and triggers).
    pub runs: u64,
    /// Due times that enqueued nothing: missed ([`fabric_core::cron_schedule::CatchUp`]) or
    /// skipped while the previous run had not finished ([`Overlap::Skip`]).
    pub skipped: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One step of firing, computed by the leader from a record it read.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFiring {
    pub name: String,
    /// The next due time the leader read: the step applies only while it is still stored
    /// (another leader that got there first already moved it).
    pub expected_next_due: i64,
    /// Due times to enqueue a job for, in order.
    pub due: Vec<i64>,
    /// Due times passed over without a job.
    pub missed: u64,
    /// The next due time after this step.
    pub next_due: Option<i64>,
}

/// What a firing step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleFired {
    /// False when the schedule was gone, paused, or already moved on by another leader:
    /// nothing was written.
    pub applied: bool,
    /// `(due time, job)` of each job enqueued.
    pub jobs: Vec<(i64, JobId)>,
    /// Due times skipped (missed, or overlapping a run still going).
    pub skipped: u64,
}

/// Cron schedules: definitions, pause, and firing.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Adds a schedule; `false` (nothing written) when one of that name exists.
    async fn put_schedule(&self, schedule: NewSchedule, now: i64) -> Result<bool>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>>;

    /// One schedule (`NotFound` when unknown).
    async fn schedule(&self, name: &str) -> Result<ScheduleRecord>;

    /// Pauses (`pause`: the reason) or resumes (`None`) a schedule; a resume stores
    /// `next_due`, a pause keeps the stored one. `NotFound` when unknown.
    async fn set_schedule_paused(
        &self,
        name: &str,
        pause: Option<String>,
        next_due: Option<i64>,
        now: i64,
    ) -> Result<ScheduleRecord>;

    /// Removes a schedule (its jobs stay). `NotFound` when unknown.
    async fn remove_schedule(&self, name: &str) -> Result<()>;

    /// In one transaction: enqueues a job per due time of `firing` (unique key
    /// `schedule:<name>:<due>`; with overlap `skip`, a due time whose previous job is still
    /// pending, failed or running is skipped instead), moves the next due time on, and
    /// records the last due time, job and counts. Applies only while the schedule is there,
    /// not paused, and still at `expected_next_due`.
    async fn fire_schedule(&self, firing: ScheduleFiring, now: i64) -> Result<ScheduleFired>;

    /// Enqueues a run of the schedule now, whatever its overlap policy (unique key
    /// `schedule:<name>:manual:<now>`), and records it as its last job. `NotFound` when
    /// unknown.
    async fn trigger_schedule(&self, name: &str, now: i64) -> Result<Submitted>;
}

/// The job a schedule enqueues, with unique key `key`.
pub(crate) fn job_of(rec: &ScheduleRecord, key: String) -> NewJob {
    let mut job = NewJob::new(rec.def.kind.clone()).payload(rec.def.payload.clone());
    job.priority = rec.def.priority.unwrap_or_default();
    job.max_attempts = rec.max_attempts;
    job.unique_key = Some(key);
    job
}

/// The job of due time `due`.
pub(crate) fn due_job(rec: &ScheduleRecord, due: i64) -> NewJob {
    job_of(rec, job_key(&rec.def.name, due))
}

/// Whether a due time is skipped because the schedule's previous job (in `state`, if it
/// still exists) has not finished.
pub(crate) fn overlaps(overlap: Overlap, state: Option<&str>) -> bool {
    overlap == Overlap::Skip && matches!(state, Some("pending" | "failed" | "running"))
}
