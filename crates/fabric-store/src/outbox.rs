//! The outbox: messages bound for the bus, kept in the store until the bus has taken them.
//!
//! Job lifecycle events enter it from triggers on `jobs`, in the transaction of the state
//! change itself: an event is never lost (it commits with its change) and never sent for a
//! change that did not commit. The triggers exist only while event capture is on
//! ([`OutboxStore::set_event_capture`]); capture is a property of the database, so it covers
//! every process that writes the store (an operator's `fabric jobs cancel` too). Telemetry
//! samples are appended by the leader ([`OutboxStore::outbox_append`]). Rows carry a global
//! sequence number (`seq`): per job, events are in `seq` order. Both backends implement
//! [`OutboxStore`] and pass the same conformance cases.

use async_trait::async_trait;
use fabric_core::JobId;
use serde::Serialize;

use crate::{Result, StoreError};

/// The bus stream an outbox row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxLane {
    /// Ordinary traffic (most lifecycle events); held back in conservative mode.
    Normal,
    /// Sent even in conservative mode (a quarantine).
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
    /// `job.submitted`, `job.started`, `job.succeeded`, `job.failed`, `job.quarantined`,
    /// `job.cancelled`, `job.requeued`, or `telemetry`.
    pub event: String,
    /// The job of a lifecycle event.
    pub job_id: Option<JobId>,
    pub kind: Option<String>,
    pub shard: Option<String>,
    /// The job's attempt number after the change (0 before its first claim).
    pub attempt: Option<u32>,
    /// The job's state before the change (`None` for `job.submitted`).
    pub from: Option<String>,
    /// The error (failed, quarantined) or cancel reason, at most 500 characters; a telemetry
    /// sample's JSON.
    pub detail: Option<String>,
    /// When the change happened (epoch ms).
    pub at: i64,
}

/// A message not about a job (a telemetry sample), for [`OutboxStore::outbox_append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxRow {
    pub lane: OutboxLane,
    pub event: String,
    /// The message body (JSON text).
    pub detail: String,
    pub at: i64,
}

/// What the outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Rows waiting to be sent.
    pub pending: u64,
    /// `at` of the oldest waiting row.
    pub oldest_at: Option<i64>,
}

/// Most characters of an error or cancel reason a lifecycle event carries (the capture
/// triggers cut longer ones).
pub const DETAIL_MAX_CHARS: usize = 500;

/// The outbox. Reached through [`crate::Store::outbox`].
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Turns the capture of job lifecycle events on or off for the whole database (every
    /// process writing it); returns whether that changed anything. Rows already captured
    /// stay until sent or pruned.
    async fn set_event_capture(&self, on: bool) -> Result<bool>;

    /// Whether job lifecycle events are captured.
    async fn event_capture(&self) -> Result<bool>;

    /// Appends rows not about a job (telemetry samples), in order, in one transaction.
    async fn outbox_append(&self, rows: Vec<NewOutboxRow>) -> Result<()>;

    /// The oldest waiting rows in `seq` order, at most `limit`; with `skip_normal`, rows of
    /// the normal lane are left out (held back in conservative mode).
    async fn outbox_peek(&self, limit: usize, skip_normal: bool) -> Result<Vec<OutboxRow>>;

    /// Deletes the rows `seqs` (sent); returns how many there were.
    async fn outbox_remove(&self, seqs: Vec<i64>) -> Result<u64>;

    /// Deletes rows whose `at` is before `before` (never sent: lost to retention); returns
    /// how many.
    async fn outbox_prune(&self, before: i64) -> Result<u64>;

    /// How many rows wait, and the oldest one's time.
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
    #[test]
    fn runs_are_consecutive_numbers() {
        assert_eq!(super::runs(vec![]), vec![]);
        assert_eq!(
            super::runs(vec![7, 3, 4, 5, 9, 10, 4]),
            vec![(3, 5), (7, 7), (9, 10)]
        );
    }
}
