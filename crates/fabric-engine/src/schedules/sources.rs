//! Source schedules: a source whose schedule is due gets a `scan` job, exactly once per due
//! time across the fleet (the job's unique key is the source and the due time, so a leader
//! that overlaps another, or retries after a crash, enqueues nothing twice). A paused source
//! is not scheduled.

use fabric_core::source::Schedule;
use fabric_core::NewJob;

use crate::runtime::Shared;
use crate::sources::SCAN_KIND;

/// Enqueues the scans that are due at `now` and moves each schedule on; sets the first due
/// time of a schedule that has none, and clears it while a source is paused.
pub(crate) async fn run_due(shared: &Shared, now: i64) {
    let store = &shared.store;
    let sources = match store.sources().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "schedules: cannot read sources");
            return;
        }
    };
    for s in sources {
        let name = &s.def.name;
        let schedule = match s.def.schedule.as_deref().map(Schedule::parse) {
            None => continue,
            Some(Ok(schedule)) => schedule,
            Some(Err(e)) => {
                tracing::warn!(source = %name, error = %e, "schedules: skipped");
                continue;
            }
        };
        let next = if s.state == "paused" {
            None
        } else {
            match s.next_run_at {
                Some(due) if due <= now => {
                    let mut job = NewJob::new(SCAN_KIND);
                    job.payload = serde_json::json!({"source": name, "full": false});
                    job.source = Some(name.clone());
                    job.priority = s.def.priority;
                    job.unique_key = Some(format!("{SCAN_KIND}:{name}:{due}"));
                    match store.submit(vec![job], now).await {
                        Ok(out) if out.first().is_some_and(|o| o.created) => {
                            tracing::info!(source = %name, due, "scheduled scan enqueued");
                            crate::runtime::work_due(shared);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(source = %name, error = %e, "schedules: enqueue failed");
                            continue;
                        }
                    }
                    schedule.next_after(now)
                }
                Some(due) => Some(due),
                None => schedule.next_after(now),
            }
        };
        if next != s.next_run_at {
            if let Err(e) = store.set_source_next_run(name, next).await {
                tracing::warn!(source = %name, error = %e, "schedules: cannot set the next run");
            }
        }
    }
}
