//! The one scheduler, run by the maintenance leader at every fleet tick on the engine's
//! clock: the schedules of ingestion sources (`scan` jobs) and the cron schedules of
//! `fabric schedules` (their own job kinds). Each due time enqueues its job at most once
//! across the fleet, by the job's unique key.

mod cron;
mod sources;

pub use cron::ScheduleView;

use crate::runtime::Shared;

/// Enqueues what is due at `now`, source schedules first, then cron schedules. Returns the
/// earliest cron due time after `now`, for the leader to wake at (a schedule may fire every
/// second, faster than the fleet ticks).
pub(crate) async fn run_due(shared: &Shared, now: i64) -> Option<i64> {
    sources::run_due(shared, now).await;
    cron::run_due(shared, now).await
}

/// The cron schedules alone, for the leader's wake-up between two ticks.
pub(crate) use cron::run_due as run_cron_due;
