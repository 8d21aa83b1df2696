//! Cron schedules (`fabric schedules add|list|show|pause|resume|remove|trigger`): the
//! Console's operator actions, validated against the handler registry and audited, and the
//! leader's step that fires what is due on the engine's clock ([`due_now`] decides, the
//! store enqueues and moves the next due time forward in one transaction).

use fabric_core::cron_schedule::{due_now, CronSpec, ScheduleDef, PREVIEW};
use fabric_core::NewJob;
use fabric_store::{NewSchedule, ScheduleFiring, ScheduleRecord, Submitted};
use serde::Serialize;

use crate::console::Result;
use crate::runtime::Shared;
use crate::{Console, EngineError};

/// A schedule as `schedules list|show` prints it: the record and its next due times.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScheduleView {
    #[serde(flatten)]
    pub schedule: ScheduleRecord,
    /// The next [`PREVIEW`] due times (epoch ms), from the stored next due time on.
    pub upcoming: Vec<i64>,
}

impl ScheduleView {
    fn of(schedule: ScheduleRecord) -> Self {
        let upcoming = match (schedule.def.spec(), schedule.next_due) {
            (Ok(spec), Some(next)) => {
                let mut v = vec![next];
                v.extend(spec.upcoming(next, PREVIEW - 1));
                v
            }
            _ => Vec::new(),
        };
        Self { schedule, upcoming }
    }
}

/// The job a schedule enqueues, as the handler registry checks it.
fn job_of(def: &ScheduleDef) -> NewJob {
    let mut job = NewJob::new(def.kind.clone()).payload(def.payload.clone());
    job.priority = def.priority.unwrap_or_default();
    job.max_attempts = NewJob::POLICY_ATTEMPTS;
    job
}

impl Console {
    /// Adds a cron schedule: every field checked (the error names it: `cron`, `timezone`,
    /// `kind`, `payload`, ...), its job checked against its handler; refused when the name is
    /// taken. Its first due time is the first after now.
    pub async fn add_schedule(&self, def: ScheduleDef) -> Result<ScheduleView> {
        let spec = def.validate()?;
        let next_due = spec.next_after(self.now());
        if next_due.is_none() {
            return Err(EngineError::invalid(
                "cron",
                format!(
                    "'{}' never fires (no such date: the 31st of February, say)",
                    def.cron
                ),
            ));
        }
        let job = job_of(&def);
        self.validate(&job)?;
        let max_attempts = self.with_policy_attempts(job).max_attempts;
        let name = def.name.clone();
        let target = format!(
            "{name} ({} in {}, kind {})",
            def.cron, def.timezone, def.kind
        );
        let added = self
            .store()
            .schedules()
            .put_schedule(
                NewSchedule {
                    next_due,
                    def,
                    max_attempts,
                },
                self.now(),
            )
            .await?;
        if !added {
            return Err(EngineError::Conflict(format!(
                "schedule '{name}' exists; remove it first (`fabric schedules remove {name}`)"
            )));
        }
        self.audit("schedules.add", target, None).await?;
        self.schedule(&name).await
    }

    /// Every cron schedule, by name, with its next due times.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>> {
        let all = self.store().schedules().schedules().await?;
        Ok(all.into_iter().map(ScheduleView::of).collect())
    }

    /// One cron schedule (`NotFound` when unknown).
    pub async fn schedule(&self, name: &str) -> Result<ScheduleView> {
        Ok(ScheduleView::of(
            self.store().schedules().schedule(name).await?,
        ))
    }

    /// Pauses a schedule: no due time fires until it is resumed (those that pass meanwhile
    /// are not caught up).
    pub async fn pause_schedule(&self, name: &str, reason: Option<String>) -> Result<ScheduleView> {
        let reason = reason.unwrap_or_else(|| "paused by an operator".into());
        let rec = self
            .store()
            .schedules()
            .set_schedule_paused(name, Some(reason.clone()), None, self.now())
            .await?;
        self.audit("schedules.pause", name.to_string(), Some(reason))
            .await?;
        Ok(ScheduleView::of(rec))
    }

    /// Resumes a schedule from now: its next due time is the first after now (and after the
    /// last one it fired, should the clock have gone back).
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleView> {
        let st = self.store().schedules();
        let rec = st.schedule(name).await?;
        let spec: CronSpec = rec.def.spec()?;
        let from = self.now().max(rec.last_due.unwrap_or(i64::MIN));
        let rec = st
            .set_schedule_paused(name, None, spec.next_after(from), self.now())
            .await?;
        self.audit("schedules.resume", name.to_string(), None)
            .await?;
        Ok(ScheduleView::of(rec))
    }

    /// Removes a schedule; the jobs it enqueued stay.
    pub async fn remove_schedule(&self, name: &str) -> Result<()> {
        self.store().schedules().remove_schedule(name).await?;
        self.audit("schedules.remove", name.to_string(), None).await
    }

    /// Enqueues a run of the schedule now (unique key `schedule:<name>:manual:<now>`),
    /// whatever its overlap policy and even while it is paused.
    pub async fn trigger_schedule(&self, name: &str) -> Result<Submitted> {
        let out = self
            .store()
            .schedules()
            .trigger_schedule(name, self.now())
            .await?;
        if out.created {
            self.submitted(1);
        }
        self.audit(
            "schedules.trigger",
            name.to_string(),
            Some(format!("job {}", out.id)),
        )
        .await?;
        Ok(out)
    }
}

/// The leader's step: for each schedule not paused whose next due time has come, what
/// [`due_now`] says to fire, written by the store only if no other leader moved the
/// schedule first. Returns the earliest due time after `now` of the schedules it read (not
/// paused), so that the leader can wake for it instead of at its next tick.
pub(crate) async fn run_due(shared: &Shared, now: i64) -> Option<i64> {
    let store = shared.store.schedules();
    let all = match store.schedules().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "schedules: cannot read cron schedules");
            return None;
        }
    };
    let mut earliest: Option<i64> = None;
    let mut upcoming = |due: Option<i64>| {
        if let Some(d) = due.filter(|d| *d > now) {
            earliest = Some(earliest.map_or(d, |e| e.min(d)));
        }
    };
    for rec in all {
        let name = rec.def.name.clone();
        if rec.paused {
            continue;
        }
        let Some(next) = rec.next_due.filter(|n| *n <= now) else {
            upcoming(rec.next_due);
            continue;
        };
        let spec = match rec.def.spec() {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(schedule = %name, error = %e, "schedules: skipped");
                continue;
            }
        };
        let Some(due) = due_now(&spec, rec.def.catch_up, next, now) else {
            continue;
        };
        let firing = ScheduleFiring {
            name: name.clone(),
            expected_next_due: next,
            due: due.fire,
            missed: due.missed,
            next_due: due.next_due,
        };
        match store.fire_schedule(firing, now).await {
            Ok(out) if out.applied => {
                upcoming(due.next_due);
                if !out.jobs.is_empty() {
                    shared.metrics.enqueued.inc_by(out.jobs.len() as u64);
                    crate::runtime::work_due(shared);
                }
                for (due, job) in &out.jobs {
                    tracing::info!(schedule = %name, due, job, "scheduled run enqueued");
                }
                if out.skipped > 0 {
                    tracing::info!(schedule = %name, skipped = out.skipped, "schedule: due times skipped");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(schedule = %name, error = %e, "schedules: firing failed"),
        }
    }
    earliest
}
