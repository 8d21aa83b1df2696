//! The outbox: messages bound for the bus, kept in the store until the bus has taken them.
//!
//! Job lifecycle events are written into it by the write that changes the jobs, in the same
//! transaction: an event is never lost (it commits with its change) and never sent for a
//! change that did not commit. One write (a batch of enqueues, of completions, a cancel, a
//! rescue) makes one message per lane holding all its events, at most
//! [`MAX_EVENTS_PER_MESSAGE`] each: a row per batch, not per job, is what keeps the cost of
//! events small. Capture is a fleet-wide setting in the store ([`CAPTURE_SETTING`]), so it
//! covers every process that writes the store (an operator's `fabric jobs cancel` too).
//! Telemetry samples are appended by the leader. Each message has a global sequence number
//! (`seq`): a job's events are in `seq` order, then in their order within a message.
//!
//! Captured: `job.submitted`, `job.succeeded`, `job.failed` (a retry is scheduled),
//! `job.quarantined` (emergency lane), `job.cancelled`, `job.requeued` (rescued, or retried
//! by an operator). Not captured: the claim (`running`): the most frequent change, whose
//! attempt number every outcome event carries. Both backends implement [`OutboxStore`] and
//! pass the same conformance cases.

use async_trait::async_trait;
use fabric_core::{JobId, JobState};
use serde::Serialize;

use crate::{Result, StoreError};

/// The fleet-wide setting that turns capture on (`"on"`) or off.
pub const CAPTURE_SETTING: &str = "bus.events";

/// Most events in one message (one outbox row).
pub const MAX_EVENTS_PER_MESSAGE: usize = 1_000;

/// Most characters of an error or cancel reason an event carries.
pub const DETAIL_MAX_CHARS: usize = 500;

/// The bus stream an outbox row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxLane {
    /// Lifecycle events; held back in conservative mode.
    Normal,
    /// Quarantines: sent even in conservative mode.
    Emergency,
    /// Telemetry samples.
    Telemetry,
}

impl OutboxLane {
    /// The name stored in the `lane` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Emergency => "emergency",
            Self::Telemetry => "telemetry",
        }
    }

    /// The lane of a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "normal" => Ok(Self::Normal),
            "emergency" => Ok(Self::Emergency),
            "telemetry" => Ok(Self::Telemetry),
            other => Err(StoreError::Backend(format!(
                "unknown outbox lane {other:?}"
            ))),
        }
    }
}

/// One message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Global sequence number: increasing, never reused.
    pub seq: i64,
    pub lane: OutboxLane,
    /// Lifecycle events in `body` (0 for a telemetry sample).
    pub events: u32,
    /// JSON: an array of lifecycle events (see [`JobEvent`]), or a telemetry sample object.
    pub body: String,
    /// When it was written (epoch ms; the latest event's time).
    pub at: i64,
}

/// A message not about jobs (a telemetry sample), for [`OutboxStore::outbox_append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxRow {
    pub lane: OutboxLane,
    /// The message body (a JSON object).
    pub body: String,
    pub at: i64,
}

/// What the outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Messages waiting to be sent.
    pub pending: u64,
    /// Lifecycle events in them.
    pub events: u64,
    /// `at` of the oldest waiting message.
    pub oldest_at: Option<i64>,
}

/// One lifecycle event as stored and published (an element of a message's `events`);
/// absent fields are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct JobEvent {
    /// `job.submitted`, `job.succeeded`, …
    pub event: String,
    pub job_id: JobId,
    /// The job's kind and shard: on `job.submitted` only (later events name the job by id;
    /// looking them up would cost the write that changes the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The attempt number after the change (0 before the first claim).
    pub attempt: u32,
    /// The state before the change (absent for `job.submitted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The error (failed, quarantined) or the cancel reason, cut to [`DETAIL_MAX_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the change happened (epoch ms).
    pub at: i64,
}

/// [`JobEvent`] borrowed, for encoding in the write that makes it.
#[derive(Serialize)]
pub(crate) struct JobEventRef<'a> {
    pub event: &'a str,
    pub job_id: JobId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<&'a str>,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    pub at: i64,
}

/// The event name of a change to `to` from `from` (`None`: an insert); `None` for a change
/// that is not captured (a claim).
pub fn event_name(from: Option<JobState>, to: JobState) -> Option<&'static str> {
    Some(match (from, to) {
        (None, _) => "job.submitted",
        (Some(_), JobState::Pending) => "job.requeued",
        (Some(_), JobState::Running) => return None,
        (Some(_), JobState::Succeeded) => "job.succeeded",
        (Some(_), JobState::Failed) => "job.failed",
        (Some(_), JobState::Quarantined) => "job.quarantined",
        (Some(_), JobState::Cancelled) => "job.cancelled",
        (Some(_), JobState::Waiting) => "job.waiting",
        (Some(_), JobState::Blocked) => "job.blocked",
    })
}

/// The lane of a change to `to`.
pub fn lane_of(to: JobState) -> OutboxLane {
    if to == JobState::Quarantined {
        OutboxLane::Emergency
    } else {
        OutboxLane::Normal
    }
}

/// `detail` cut to [`DETAIL_MAX_CHARS`] characters.
pub(crate) fn cut(detail: &str) -> &str {
    match detail.char_indices().nth(DETAIL_MAX_CHARS) {
        Some((i, _)) => &detail[..i],
        None => detail,
    }
}

/// The outbox. Reached through [`crate::Store::outbox`].
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Turns the capture of job lifecycle events on or off for every process writing this
    /// store; returns whether that changed anything. Messages already written stay until
    /// sent or pruned.
    async fn set_event_capture(&self, on: bool) -> Result<bool>;

    /// Whether job lifecycle events are captured.
    async fn event_capture(&self) -> Result<bool>;

    /// Appends messages not about jobs (telemetry samples), in order, in one transaction.
    async fn outbox_append(&self, rows: Vec<NewOutboxRow>) -> Result<()>;

    /// The oldest waiting messages in `seq` order, at most `limit`; with `skip_normal`,
    /// those of the normal lane are left out (held back in conservative mode).
    async fn outbox_peek(&self, limit: usize, skip_normal: bool) -> Result<Vec<OutboxRow>>;

    /// Deletes the messages `seqs` (sent); returns how many there were.
    async fn outbox_remove(&self, seqs: Vec<i64>) -> Result<u64>;

    /// Deletes messages written before `before` (never sent: lost to retention); returns
    /// how many.
    async fn outbox_prune(&self, before: i64) -> Result<u64>;

    /// How many messages (and events) wait, and the oldest one's time.
    async fn outbox_stats(&self) -> Result<OutboxStats>;
}

/// `seqs` as runs of consecutive numbers `(first, last)`, in ascending order.
pub(crate) fn runs(mut seqs: Vec<i64>) -> Vec<(i64, i64)> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some((_, last)) if s == *last + 1 => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_consecutive_numbers() {
        assert_eq!(runs(vec![]), vec![]);
        assert_eq!(
            runs(vec![7, 3, 4, 5, 9, 10, 4]),
            vec![(3, 5), (7, 7), (9, 10)]
        );
    }

    #[test]
    fn claims_are_not_captured_and_quarantines_are_emergencies() {
        use JobState::*;
        assert_eq!(event_name(None, Pending), Some("job.submitted"));
        assert_eq!(event_name(Some(Pending), Running), None);
        assert_eq!(event_name(Some(Running), Pending), Some("job.requeued"));
        assert_eq!(event_name(Some(Running), Failed), Some("job.failed"));
        assert_eq!(lane_of(Quarantined), OutboxLane::Emergency);
        assert_eq!(lane_of(Cancelled), OutboxLane::Normal);
        assert_eq!(cut(&"é".repeat(600)).chars().count(), DETAIL_MAX_CHARS);
        assert_eq!(cut("short"), "short");
    }
}
