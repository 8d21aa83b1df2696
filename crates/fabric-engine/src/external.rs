//! External workers (Faktory's model): a service in any language claims jobs of the kinds it
//! serves over the API, keeps their leases alive, and completes or fails them. Every call
//! after the claim carries the job's lease token (owner and attempt) and is fenced by it: a
//! worker whose lease was rescued and given to another changes nothing.

use std::time::Duration;

use fabric_core::job::validate_name;
use fabric_core::quarantine::Failure;
use fabric_core::retry::FailureType;
use fabric_core::{Job, JobId, JobState};
use fabric_store::{ClaimRequest, Completion, Outcome};
use serde::Serialize;

use crate::console::Result;
use crate::{Console, EngineError};

/// Node ids of external workers start with this, then the worker's name.
pub const NODE_PREFIX: &str = "ext-";

/// Most jobs one claim returns.
pub const MAX_CLAIM: usize = 1000;
/// Longest lease an external worker may ask for, in seconds.
pub const MAX_LEASE_SECONDS: u64 = 3600;
/// Longest a claim waits for work, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// What a worker asks for.
#[derive(Debug, Clone)]
pub struct ExternalClaim {
    /// The worker's name (a kind-like name: letters, digits, `_`, `-`, `.`).
    pub worker: String,
    /// Kinds it serves (at least one).
    pub kinds: Vec<String>,
    /// Most jobs to take (1..1000).
    pub max: usize,
    /// Lease length (1..3600 s; default the daemon's `workers.lease_seconds`).
    pub lease_seconds: Option<u64>,
    /// How long to wait for work when there is none (0..60 s).
    pub wait_seconds: u64,
}

/// A job leased to an external worker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LeasedJob {
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempt: u32,
    pub max_attempts: u32,
    pub shard: String,
    pub source: Option<String>,
    /// When the lease lapses unless extended (epoch ms).
    pub lease_expires_at: i64,
    /// Goes with every later call about this job.
    pub token: String,
}

/// A lease token: the lease owner and the attempt, `<owner>|<attempt>`.
fn token(owner: &str, attempt: u32) -> String {
    format!("{owner}|{attempt}")
}

fn parse_token(token: &str) -> Result<(&str, u32)> {
    token
        .rsplit_once('|')
        .and_then(|(owner, attempt)| {
            let attempt = attempt.parse().ok()?;
            owner.starts_with("ext/").then_some((owner, attempt))
        })
        .ok_or_else(|| EngineError::invalid("token", "not a lease token of this daemon"))
}

fn lost(id: JobId) -> EngineError {
    EngineError::Conflict(format!(
        "job {id}: the lease of this token is no longer held (expired and rescued, cancelled, \
         or finished); nothing was changed"
    ))
}

impl Console {
    /// Leases up to `max` jobs of the worker's kinds; with none due, waits up to
    /// `wait_seconds` for an enqueue.
    pub async fn external_claim(&self, req: ExternalClaim) -> Result<Vec<LeasedJob>> {
        validate_name("worker", &req.worker)?;
        if req.kinds.is_empty() {
            return Err(EngineError::invalid("kinds", "name at least one kind"));
        }
        for (i, k) in req.kinds.iter().enumerate() {
            validate_name("kind", k)
                .map_err(|e| EngineError::invalid(format!("kinds[{i}]"), e.to_string()))?;
        }
        if req.max == 0 || req.max > MAX_CLAIM {
            return Err(EngineError::invalid(
                "max",
                format!("{} is out of range 1..{MAX_CLAIM}", req.max),
            ));
        }
        let lease_ms = self.lease_ms(req.lease_seconds)?;
        if req.wait_seconds > MAX_WAIT_SECONDS {
            return Err(EngineError::invalid(
                "wait_seconds",
                format!("{} is out of range 0..{MAX_WAIT_SECONDS}", req.wait_seconds),
            ));
        }
        // One owner per claim: a rescued lease never matches a later claim's token.
        let owner = format!("ext/{}/{:016x}", req.worker, rand::random::<u64>());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(req.wait_seconds);
        let poll = Duration::from_millis(self.config().workers.poll_interval_ms.max(10));
        loop {
            // Armed before the claim, so an enqueue racing with it is not missed.
            let woken = self.waiter();
            let jobs = self
                .store()
                .claim(ClaimRequest {
                    owner: owner.clone(),
                    kinds: req.kinds.clone(),
                    limit: req.max,
                    lease_ms,
                    now: self.now(),
                    ..ClaimRequest::default()
                })
                .await?;
            let now = tokio::time::Instant::now();
            if !jobs.is_empty() || now >= deadline {
                self.seen(&req, jobs.len()).await?;
                return Ok(jobs.into_iter().map(|j| leased(&owner, j)).collect());
            }
            let nap = (deadline - now).min(poll);
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// A lease of `seconds` (default `workers.lease_seconds`), checked, in ms.
    fn lease_ms(&self, seconds: Option<u64>) -> Result<i64> {
        let secs = seconds.unwrap_or(self.config().workers.lease_seconds);
        if secs == 0 || secs > MAX_LEASE_SECONDS {
            return Err(EngineError::invalid(
                "lease_seconds",
                format!("{secs} is out of range 1..{MAX_LEASE_SECONDS}"),
            ));
        }
        Ok((secs * 1000) as i64)
    }

    /// Records the worker as a node (`ext-<worker>`, shard `external`, its kinds as
    /// specialties), so `nodes list` and `status` show it and when it was last seen.
    async fn seen(&self, req: &ExternalClaim, load: usize) -> Result<()> {
        let now = self.now();
        self.store()
            .fleet()
            .register_node(fabric_core::Node {
                id: format!("{NODE_PREFIX}{}", req.worker),
                shard: "external".into(),
                capacity: req.max as u32,
                specialties: req.kinds.clone(),
                health: fabric_core::NodeHealth::Healthy,
                draining: false,
                load: load as u32,
                heartbeat_at: now,
                started_at: now,
                stopped_at: None,
                host: String::new(),
                pid: 0,
                version: "external worker".into(),
            })
            .await?;
        Ok(())
    }

    /// External workers seen (the nodes [`Console::external_claim`] records), by name.
    pub async fn external_workers(&self) -> Result<Vec<crate::console::NodeView>> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.node.id.starts_with(NODE_PREFIX) && n.node.shard == "external")
            .collect())
    }

    /// Extends the lease of job `id` by `lease_seconds` (default the daemon's); returns the
    /// new deadline. A token whose lease is lost is a conflict.
    pub async fn external_heartbeat(
        &self,
        id: JobId,
        token: &str,
        lease_seconds: Option<u64>,
    ) -> Result<i64> {
        let (owner, attempt) = parse_token(token)?;
        let until = self.now() + self.lease_ms(lease_seconds)?;
        let gone = self
            .store()
            .heartbeat(owner, vec![(id, attempt)], until)
            .await?;
        if gone.contains(&id) {
            return Err(lost(id));
        }
        Ok(until)
    }

    /// Completes job `id` with `result`: one fenced write, no read first (the store's fence
    /// on owner and attempt is the check).
    pub async fn external_complete(
        &self,
        id: JobId,
        token: &str,
        result: Option<serde_json::Value>,
    ) -> Result<()> {
        let done = self
            .external_complete_many(vec![(id, token.to_string(), result)])
            .await?;
        if done.is_empty() {
            return Err(lost(id));
        }
        Ok(())
    }

    /// Completes many jobs in one write; returns the ids whose completion applied (the
    /// others' leases were lost: nothing changed for them).
    pub async fn external_complete_many(
        &self,
        jobs: Vec<(JobId, String, Option<serde_json::Value>)>,
    ) -> Result<Vec<JobId>> {
        if jobs.len() > MAX_CLAIM {
            return Err(EngineError::invalid(
                "jobs",
                format!(
                    "{} completions in one call; at most {MAX_CLAIM}",
                    jobs.len()
                ),
            ));
        }
        let now = self.now();
        let mut batch = Vec::with_capacity(jobs.len());
        for (i, (id, token, result)) in jobs.into_iter().enumerate() {
            let (owner, attempt) = parse_token(&token).map_err(|e| match e {
                EngineError::InvalidInput { message, .. } => {
                    EngineError::invalid(format!("jobs[{i}].token"), message)
                }
                other => other,
            })?;
            batch.push(Completion {
                id,
                attempt,
                owner: owner.to_string(),
                // Kept only with a failed attempt's error; a success does not write it.
                started_at: now,
                finished_at: now,
                outcome: Outcome::Succeeded { result },
            });
        }
        let report = self.store().complete(batch).await?;
        if report.released > 0 {
            self.work_due();
        }
        self.finished_externally(report.applied_ids.len() as u64, 0, 0);
        Ok(report.applied_ids)
    }

    /// Fails the attempt of job `id`: the retry policy decides between a retry (`failed`)
    /// and quarantine, as for a built-in handler's failure of `failure_type`.
    pub async fn external_fail(
        &self,
        id: JobId,
        token: &str,
        error: &str,
        failure_type: FailureType,
        retry_after: Option<Duration>,
    ) -> Result<JobState> {
        let (owner, attempt) = parse_token(token)?;
        // The policy needs the job (kind, source, attempts); the write below is fenced anyway.
        let job = self.store().job(id).await?.job;
        if job.state != JobState::Running
            || job.attempt != attempt
            || job.lease_owner.as_deref() != Some(owner)
        {
            return Err(lost(id));
        }
        let mut failure = Failure::msg(error);
        failure.declared = Some(failure_type);
        if let Some(after) = retry_after {
            failure = failure.retry_after(after);
        }
        let now = self.now();
        // Redacted as the daemon's own workers redact (paths under $HOME among them).
        let home = std::env::var("HOME").ok();
        let outcome =
            crate::runtime::decide_with(self.config(), home.as_deref(), &job, &failure, now);
        let state = match outcome {
            Outcome::Quarantine { .. } => JobState::Quarantined,
            _ => JobState::Failed,
        };
        let report = self
            .store()
            .complete(vec![Completion {
                id,
                attempt,
                owner: owner.to_string(),
                started_at: job.started_at.unwrap_or(now),
                finished_at: now,
                outcome,
            }])
            .await?;
        if report.applied() == 0 {
            return Err(lost(id));
        }
        let quarantined = u64::from(state == JobState::Quarantined);
        self.finished_externally(0, 1, quarantined);
        Ok(state)
    }
}

fn leased(owner: &str, j: Job) -> LeasedJob {
    LeasedJob {
        token: token(owner, j.attempt),
        id: j.id,
        kind: j.kind,
        payload: j.payload,
        attempt: j.attempt,
        max_attempts: j.max_attempts,
        shard: j.shard,
        source: j.source,
        lease_expires_at: j.lease_expires_at.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let t = token("ext/py-1/00000000000000ff", 3);
        assert_eq!(parse_token(&t).unwrap(), ("ext/py-1/00000000000000ff", 3));
        assert!(parse_token("node-1/42|3").is_err(), "not an external lease");
        assert!(parse_token("ext/py-1/ab|x").is_err());
        assert!(parse_token("").is_err());
    }
}
