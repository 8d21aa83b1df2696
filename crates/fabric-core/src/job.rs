//! Jobs: identity, priority, state and the one table of legal state changes.

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A job's identity: a positive integer assigned by the store in submission order.
pub type JobId = i64;

/// The default shard (queue) of a job submitted without one.
pub const DEFAULT_SHARD: &str = "default";

/// Largest accepted payload, in bytes of JSON (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Where a job is in its lifecycle (ARCHITECTURE.md §Job lifecycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ready, or scheduled for a later `run_at`.
    Pending,
    /// Leased to one worker under an attempt number and a lease deadline.
    Running,
    /// Finished successfully (final).
    Succeeded,
    /// An attempt failed and the job waits for its retry (River's `retryable`): due again
    /// at its `run_at`, claimed from here as from `pending`.
    Failed,
    /// Permanent failure or attempts exhausted; back to pending only by an operator.
    Quarantined,
    /// Cancelled by an operator (final).
    Cancelled,
    /// An item of a batch waiting for the items it depends on to succeed; released to
    /// `pending` by the completion of its last dependency, never claimed before.
    Waiting,
    /// An item of a batch that cannot run because an item it depends on was quarantined or
    /// cancelled (reason `dependency_failure`); `batch retry` unblocks it.
    Blocked,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Quarantined,
        JobState::Cancelled,
        JobState::Waiting,
        JobState::Blocked,
    ];

    /// The lowercase name used in the store, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Quarantined => "quarantined",
            JobState::Cancelled => "cancelled",
            JobState::Waiting => "waiting",
            JobState::Blocked => "blocked",
        }
    }

    /// Parses a state name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let lower = s.to_ascii_lowercase();
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| {
                CoreError::invalid(
                    "status",
                    format!(
                        "'{s}' is not a job state (one of pending, running, succeeded, failed, quarantined, cancelled, waiting, blocked)"
                    ),
                )
            })
    }

    /// True for states no worker will ever move again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Cancelled)
    }

    /// The legal-transition table. Everything not listed is illegal.
    pub fn can_become(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Pending) // retry after backoff, lease rescued, crash recovery
                | (Running, Quarantined)
                | (Running, Cancelled)
                | (Failed, Running) // the retry's claim
                | (Failed, Pending) // operator retry
                | (Failed, Quarantined)
                | (Failed, Cancelled)
                | (Quarantined, Pending) // operator retry only
                | (Quarantined, Cancelled)
                | (Waiting, Pending) // the last dependency succeeded
                | (Waiting, Blocked) // a dependency failed
                | (Waiting, Cancelled)
                | (Blocked, Pending) // batch retry
                | (Blocked, Waiting) // batch retry, dependencies still to run
                | (Blocked, Cancelled)
        )
    }

    /// Checks a transition of job `id`, naming both states when it is illegal.
    pub fn check_transition(self, id: JobId, to: JobState) -> Result<(), CoreError> {
        if self.can_become(to) {
            Ok(())
        } else {
            Err(CoreError::IllegalTransition {
                id,
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Job priority: higher runs first. Named levels are low=1, normal=2, high=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i32);

impl Priority {
    /// low = 1
    pub const LOW: Priority = Priority(1);
    /// normal = 2 (the default)
    pub const NORMAL: Priority = Priority(2);
    /// high = 3
    pub const HIGH: Priority = Priority(3);

    /// Parses `low|normal|high` or an integer 0..=9.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Self::LOW),
            "normal" => Ok(Self::NORMAL),
            "high" => Ok(Self::HIGH),
            other => match other.parse::<i32>() {
                Ok(n) if (0..=9).contains(&n) => Ok(Priority(n)),
                _ => Err(CoreError::invalid(
                    "priority",
                    format!("'{s}' is not a priority (low, normal, high or 0..9)"),
                )),
            },
        }
    }

    /// The name of a named level, else the number.
    pub fn label(self) -> String {
        match self.0 {
            1 => "low".into(),
            2 => "normal".into(),
            3 => "high".into(),
            n => n.to_string(),
        }
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::NORMAL
    }
}

/// A job as submitted, before the store gives it an id. Unknown fields are refused, so a
/// misspelled field is an error rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// Handler kind, e.g. `noop`, `sleep`, `shell`.
    pub kind: String,
    /// Shard (queue) the job runs in.
    #[serde(default = "default_shard")]
    pub shard: String,
    /// Handler input.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// Higher runs first.
    #[serde(default)]
    pub priority: Priority,
    /// Attempts before quarantine (1..100). [`NewJob::POLICY_ATTEMPTS`] (`0`, the default when
    /// JSON omits the field) means the `max_attempts` of the job's retry policy (its source's,
    /// else its kind's, else `retry`), filled in by the Console at submit.
    #[serde(default)]
    pub max_attempts: u32,
    /// Earliest start (epoch ms); `None` = now.
    #[serde(default)]
    pub run_at: Option<i64>,
    /// Idempotency key: a second submit with the same key returns the first job.
    #[serde(default)]
    pub unique_key: Option<String>,
    /// The source that produced the job, if any.
    #[serde(default)]
    pub source: Option<String>,
}

fn default_shard() -> String {
    DEFAULT_SHARD.to_string()
}
fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}
fn default_max_attempts() -> u32 {
    3
}

impl NewJob {
    /// `max_attempts` that asks for the retry policy's value at submit.
    pub const POLICY_ATTEMPTS: u32 = 0;

    /// Refuses a submitted job's JSON (an API body, a line of `jobs submit --file`) that
    /// gives `max_attempts` as 0: an omitted field takes the retry policy's value, but an
    /// explicit 0 is out of range, as on the command line.
    pub fn check_submitted(value: &serde_json::Value) -> Result<(), CoreError> {
        if value
            .get("max_attempts")
            .and_then(serde_json::Value::as_u64)
            == Some(0)
        {
            return Err(CoreError::invalid(
                "max_attempts",
                "0 is out of range 1..100 (omit it to take the retry policy's)",
            ));
        }
        Ok(())
    }

    /// A job of `kind` with an empty payload and defaults elsewhere (3 attempts; set
    /// `max_attempts` to [`NewJob::POLICY_ATTEMPTS`] to take the retry policy's).
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            shard: default_shard(),
            payload: empty_object(),
            priority: Priority::NORMAL,
            max_attempts: default_max_attempts(),
            run_at: None,
            unique_key: None,
            source: None,
        }
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Checks the fields a store cannot check: kind and shard names, attempts, payload size.
    pub fn validate(&self) -> Result<(), CoreError> {
        validate_name("kind", &self.kind)?;
        validate_name("shard", &self.shard)?;
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(CoreError::invalid(
                "max_attempts",
                format!("{} is out of range 1..100", self.max_attempts),
            ));
        }
        if let Some(t) = self.run_at {
            // What `--run-at` accepts: a time the clock can print; beyond it, arithmetic on
            // the schedule (latency, waits, backoff) would leave `i64`.
            if chrono::DateTime::from_timestamp_millis(t).is_none() {
                return Err(CoreError::invalid(
                    "run_at",
                    format!("{t} is not a time (epoch milliseconds within ±262,000 years)"),
                ));
            }
        }
        if let Some(k) = &self.unique_key {
            if k.is_empty() || k.len() > 256 {
                return Err(CoreError::invalid("unique_key", "must be 1..256 bytes"));
            }
        }
        let size = self.payload.to_string().len();
        if size > MAX_PAYLOAD_BYTES {
            return Err(CoreError::invalid(
                "payload",
                format!("{size} bytes is over the limit of {MAX_PAYLOAD_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

/// Checks an identifier (kind, shard, source, node): 1..64 of `[A-Za-z0-9_.-]`.
pub fn validate_name(field: &str, value: &str) -> Result<(), CoreError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(
            field,
            format!("'{value}' must be 1..64 characters of letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// One failed attempt, as kept in a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Path-redacted error text.
    pub error: String,
    /// Failure type (transient, rate_limited, permanent, unknown, timeout, panic, ...).
    pub failure: String,
    /// When the attempt started (epoch ms).
    pub started_at: i64,
    /// When it ended (epoch ms).
    pub finished_at: i64,
}

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub shard: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    pub state: JobState,
    /// Attempts started so far (the running attempt included).
    pub attempt: u32,
    pub max_attempts: u32,
    /// Earliest start (epoch ms).
    pub run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub unique_key: Option<String>,
    pub source: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Last error (path-redacted), if any attempt failed.
    pub last_error: Option<String>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<String>,
    /// What the handler returned on success (e.g. a command's exit code and output tail).
    pub result: Option<serde_json::Value>,
    /// The batch the job is an item of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_allows_the_lifecycle_and_nothing_else() {
        use JobState::*;
        assert!(Pending.can_become(Running));
        assert!(Running.can_become(Succeeded));
        assert!(Running.can_become(Pending));
        assert!(Quarantined.can_become(Pending));
        assert!(!Succeeded.can_become(Pending));
        assert!(!Succeeded.can_become(Running));
        assert!(!Cancelled.can_become(Pending));
        assert!(!Pending.can_become(Succeeded));
        assert!(!Quarantined.can_become(Running));
        let err = Succeeded.check_transition(7, Cancelled).unwrap_err();
        assert_eq!(
            err.to_string(),
            "illegal transition of job 7: succeeded -> cancelled"
        );
    }

    #[test]
    fn states_and_priorities_parse() {
        assert_eq!(JobState::parse("RUNNING"), Ok(JobState::Running));
        assert!(JobState::parse("done")
            .unwrap_err()
            .to_string()
            .contains("'done'"));
        assert_eq!(Priority::parse("high"), Ok(Priority::HIGH));
        assert_eq!(Priority::parse("5"), Ok(Priority(5)));
        assert!(Priority::parse("urgent").is_err());
        assert!(Priority::HIGH > Priority::LOW);
    }

    #[test]
    fn new_job_validation_names_the_field() {
        assert!(NewJob::new("noop").validate().is_ok());
        let mut j = NewJob::new("no op");
        assert!(j.validate().unwrap_err().to_string().contains("kind"));
        j = NewJob::new("noop");
        assert!(NewJob::check_submitted(&serde_json::json!({"kind": "noop"})).is_ok());
        assert!(NewJob::check_submitted(&serde_json::json!({"max_attempts": 2})).is_ok());
        let e = NewJob::check_submitted(&serde_json::json!({"max_attempts": 0})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid max_attempts: 0 is out of range"),
            "{e}"
        );
        j.max_attempts = 0;
        assert!(j
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
        j = NewJob::new("noop").payload(serde_json::json!({"x": "a".repeat(MAX_PAYLOAD_BYTES)}));
        assert!(j.validate().unwrap_err().to_string().contains("payload"));
    }

    #[test]
    fn run_at_far_past_or_future_is_refused_naming_the_field() {
        for t in [
            i64::MAX,
            i64::MIN,
            8_300_000_000_000_000,
            -8_400_000_000_000_000,
        ] {
            let mut j = NewJob::new("noop");
            j.run_at = Some(t);
            let e = j.validate().unwrap_err().to_string();
            assert!(
                e.starts_with("invalid run_at:") && e.contains(&t.to_string()),
                "{e}"
            );
        }
        for t in [0, -1, 1_700_000_000_000, 253_402_300_799_999] {
            let mut j = NewJob::new("noop");
            j.run_at = Some(t);
            assert!(j.validate().is_ok(), "{t}");
        }
    }
}
