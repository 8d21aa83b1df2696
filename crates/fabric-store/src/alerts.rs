//! The durable state of alerting: each alert's evaluation state (so a restarted or new
//! leader continues where the last one stopped, and every alert notified as firing is
//! resolved exactly once), silences, the notification queue with its group flush times, and
//! the history of every delivery attempt. Both backends implement [`AlertStore`] and pass the
//! same conformance suite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertPhase {
    /// Breaching, fewer than `for_count` samples so far.
    Pending,
    /// Breached `for_count` samples in a row and no sample has cleared it since.
    Firing,
}

impl AlertPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "firing" => Ok(Self::Firing),
            other => Err(StoreError::Backend(format!(
                "unknown alert state '{other}'"
            ))),
        }
    }
}

/// One alert (a rule and the labels of the samples it saw), as the evaluator left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Stable id of rule + labels (also PagerDuty's `dedup_key`).
    pub fingerprint: String,
    pub rule: String,
    /// The alert's labels (`alertname`, `severity`, the rule's and the sample's).
    pub labels: BTreeMap<String, String>,
    pub metric: String,
    pub phase: AlertPhase,
    /// Consecutive breaching samples.
    pub breaches: u32,
    /// When the first breaching sample of this run came (pending) or it fired (firing).
    pub since: i64,
    pub last_value: f64,
    pub last_at: i64,
    /// A firing notification was queued and no resolved one since: it is owed one.
    pub notified_firing: bool,
    /// The routes the firing notification went to (the resolved one goes to the same).
    pub notified_routes: Vec<String>,
    pub last_notified_at: Option<i64>,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
    pub ack_comment: Option<String>,
}

/// Whether a notification says an alert fires or is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStatus {
    Firing,
    Resolved,
}

impl NotifyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "firing" => Ok(Self::Firing),
            "resolved" => Ok(Self::Resolved),
            other => Err(StoreError::Backend(format!(
                "unknown notification status '{other}'"
            ))),
        }
    }
}

/// A notification to queue: one alert's firing or resolution, for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub route: String,
    /// Alerts of one route and group key are sent together.
    pub group_key: String,
    pub fingerprint: String,
    pub rule: String,
    pub status: NotifyStatus,
    /// What the receivers are told about the alert (labels, value, since, ...).
    pub alert: serde_json::Value,
    pub created_at: i64,
}

/// Where a queued notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    /// Waiting for its group, its rate limit or its next try.
    Queued,
    /// Claimed by a delivery worker until its lease lapses.
    Sending,
    Delivered,
    /// Given up: a permanent error or every try spent.
    Failed,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "queued" => Ok(Self::Queued),
            "sending" => Ok(Self::Sending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(StoreError::Backend(format!(
                "unknown notification state '{other}'"
            ))),
        }
    }
}

/// A queued (or settled) notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    #[serde(flatten)]
    pub new: NewNotification,
    pub state: QueueState,
    /// Tries so far.
    pub attempts: u32,
    /// Not to be tried before this.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub settled_at: Option<i64>,
}

/// How one try of a group of notifications ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// The receiver took it: the group's flush time becomes `at`.
    Delivered { at: i64 },
    /// Try again at `next_at`.
    Retry { next_at: i64, error: String },
    /// Give up.
    Failed { at: i64, error: String },
}

/// One delivery attempt, for the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeliveryAttempt {
    pub at: i64,
    pub route: String,
    pub group_key: String,
    /// The notifications it carried (none for a test).
    pub notifications: Vec<i64>,
    /// `firing queue_depth_high; resolved retry_high`, or `test`.
    pub summary: String,
    /// Which try of these notifications (1-based).
    pub attempt: u32,
    /// `delivered`, `retry`, `failed` (and `test-ok`, `test-failed`).
    pub outcome: String,
    /// The receiver's answer or the error.
    pub detail: String,
    pub duration_ms: i64,
}

/// A delivery attempt as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub id: i64,
    #[serde(flatten)]
    pub attempt: NewDeliveryAttempt,
}

/// A silence to add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSilence {
    /// Label matchers (`alertname=queue_depth_high`, `severity!=info`); all must match.
    pub matchers: Vec<String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub author: String,
    pub comment: String,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    #[serde(flatten)]
    pub new: NewSilence,
    pub created_at: i64,
}

impl Silence {
    /// In force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.new.starts_at <= now && now < self.new.ends_at
    }
}

/// When a group of a route last had a notification delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFlush {
    pub route: String,
    pub group_key: String,
    pub at: i64,
}

/// What the jobs did since a moment: the figures the default alert rules watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSignals {
    /// Jobs waiting to run now (`pending`, and `failed` ones waiting for their retry).
    pub queued: u64,
    /// Jobs that succeeded since.
    pub succeeded: u64,
    /// Jobs quarantined since.
    pub quarantined: u64,
    /// Attempts that failed since (retried or quarantined).
    pub failed_attempts: u64,
    /// Attempts that started since.
    pub started: u64,
    /// Their waits from due (`run_at`) to start, summed (ms).
    pub wait_ms_sum: i64,
    /// The due time of the oldest job due now and not started.
    pub oldest_due_at: Option<i64>,
}

/// Alerting state. Reached through [`crate::Store::alerts`].
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Every alert that is pending or firing, or owed a resolved notification.
    async fn alert_states(&self) -> Result<Vec<AlertState>>;

    /// One evaluation, all or nothing: upserts `states`, deletes the states of `remove`
    /// and queues `notifications` (`next_attempt_at` = `created_at`). Returns the new
    /// notifications' ids.
    async fn save_evaluation(
        &self,
        states: Vec<AlertState>,
        remove: Vec<String>,
        notifications: Vec<NewNotification>,
    ) -> Result<Vec<i64>>;

    /// Acknowledges the alert `fingerprint` (`NotFound` when there is no such alert).
    async fn ack_alert(
        &self,
        fingerprint: &str,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> Result<AlertState>;

    /// Adds a silence.
    async fn add_silence(&self, silence: NewSilence, now: i64) -> Result<Silence>;

    /// Every silence, newest first.
    async fn silences(&self) -> Result<Vec<Silence>>;

    /// Ends silence `id` at `now` (`NotFound` when unknown; one already over is left as is).
    async fn expire_silence(&self, id: i64, now: i64) -> Result<Silence>;

    /// Notifications waiting to be sent (queued, or claimed under a lease that lapsed before
    /// `now`), oldest first, at most `limit`.
    async fn notification_queue(&self, now: i64, limit: usize) -> Result<Vec<Notification>>;

    /// When each group last had a notification delivered.
    async fn group_flushes(&self) -> Result<Vec<GroupFlush>>;

    /// Claims the notifications of `ids` that are still waiting (see
    /// [`AlertStore::notification_queue`]) for `owner` until `lease_until`; returns the ids
    /// claimed. A notification is claimed by one caller at a time.
    async fn claim_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>>;

    /// Settles a try of the notifications of `ids` that `owner` holds, and records
    /// `attempt`, in one transaction. Each one's `attempts` grows by one.
    async fn settle_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        settle: Settle,
        attempt: NewDeliveryAttempt,
    ) -> Result<()>;

    /// Records a delivery attempt of no queued notification (`alerts test`).
    async fn record_delivery(&self, attempt: NewDeliveryAttempt) -> Result<()>;

    /// Delivery attempts at or after `since`, of `route` (all when `None`), newest first.
    async fn deliveries(
        &self,
        since: Option<i64>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>>;

    /// Notifications, newest first, at most `limit`.
    async fn notifications(&self, limit: usize) -> Result<Vec<Notification>>;

    /// What the jobs did at or after `since` (and what waits at `now`).
    async fn job_signals(&self, since: i64, now: i64) -> Result<JobSignals>;

    /// Deletes settled notifications, delivery attempts and silences over before `before`;
    /// returns how many rows.
    async fn prune_alert_history(&self, before: i64) -> Result<u64>;
}

/// A missing alert.
pub(crate) fn alert_not_found(fingerprint: &str) -> StoreError {
    StoreError::NotFound {
        what: "alert",
        id: fingerprint.to_string(),
    }
}

/// A missing silence.
pub(crate) fn silence_not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: "silence",
        id: id.to_string(),
    }
}

/// JSON text of a value the store keeps as text.
pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

/// A value kept as JSON text.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("cannot decode: {e}")))
}
