//! Bulk actions by filter: "retry / cancel / purge every job matching this filter", for
//! however many jobs match, run server-side as a job of kind `bulk` whose progress is kept in
//! the store. Submitting is audited once; the same request id submits once (a second click
//! gets the first job back).

use std::sync::Arc;

use async_trait::async_trait;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::{Clock, Job, JobId, JobState, NewJob};
use fabric_store::{JobFilter, Store, StoreError, Submitted};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::console::{Console, Result};
use crate::{EngineError, Handler, Registry};

/// The job kind that runs bulk actions.
pub const KIND: &str = "bulk";

/// Jobs read (and acted on) per step; progress is saved after each.
const PAGE: usize = 1000;

/// Per-job writes in flight at once (SQLite folds them into one group commit).
const IN_FLIGHT: usize = 128;

/// What to do to each matching job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Back to pending, with a fresh set of attempts: quarantined and failed jobs only.
    Retry,
    /// Cancelled (a running attempt is stopped): unfinished jobs only.
    Cancel,
    /// Deleted with their history: finished jobs only.
    Purge,
}

impl BulkAction {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "retry" => Ok(Self::Retry),
            "cancel" => Ok(Self::Cancel),
            "purge" => Ok(Self::Purge),
            other => Err(EngineError::invalid(
                "action",
                format!("unknown bulk action '{other}' (one of retry, cancel, purge)"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Cancel => "cancel",
            Self::Purge => "purge",
        }
    }

    /// Whether a job in `state` is one this action changes.
    fn applies_to(self, state: JobState) -> bool {
        match self {
            Self::Retry => matches!(state, JobState::Quarantined | JobState::Failed),
            Self::Cancel => !state.is_final(),
            Self::Purge => matches!(
                state,
                JobState::Succeeded | JobState::Cancelled | JobState::Quarantined
            ),
        }
    }
}

/// The filter of a bulk action, as stored in its job's payload (a [`JobFilter`] without its
/// page).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Text in the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Updated at or after (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Updated before (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

impl BulkFilter {
    pub fn to_job_filter(&self, before: Option<JobId>, limit: usize) -> JobFilter {
        JobFilter {
            state: self.state,
            shard: self.shard.clone(),
            source: self.source.clone(),
            kind: self.kind.clone(),
            since: self.since,
            until: self.until,
            error: self.error.clone(),
            before,
            limit,
        }
    }

    /// `state=quarantined kind=mail`, for the audit log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        add("state", self.state.map(|s| s.as_str().to_string()));
        add("kind", self.kind.clone());
        add("shard", self.shard.clone());
        add("source", self.source.clone());
        add("error", self.error.as_ref().map(|e| format!("{e:?}")));
        add("since", self.since.map(|t| t.to_string()));
        add("until", self.until.map(|t| t.to_string()));
        if parts.is_empty() {
            "all jobs".into()
        } else {
            parts.join(" ")
        }
    }
}

/// A bulk job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkPayload {
    pub action: BulkAction,
    pub filter: BulkFilter,
    /// Why (kept with each cancelled job).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who asked (the audit log's actor of the submit).
    pub actor: String,
    /// Jobs that matched when it was submitted.
    #[serde(default)]
    pub matched: u64,
}

/// How far a bulk job has got: kept in the store (a setting) after each page while it runs,
/// then as the job's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BulkProgress {
    /// Jobs read so far.
    pub seen: u64,
    /// Jobs changed.
    pub done: u64,
    /// The last id read: a retried attempt goes on below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<JobId>,
}

impl BulkProgress {
    /// Jobs read but not changed: the action does not apply to their state (a running job is
    /// not purged), or they changed meanwhile.
    pub fn skipped(&self) -> u64 {
        self.seen.saturating_sub(self.done)
    }
}

/// A bulk job as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BulkView {
    pub job: Job,
    pub action: BulkAction,
    pub filter: BulkFilter,
    /// Jobs that matched the filter when the action was submitted.
    pub matched: u64,
    pub progress: BulkProgress,
}

fn progress_key(id: JobId) -> String {
    format!("bulk.{id}")
}

impl Console {
    /// Submits `action` for every job matching `filter` as one `bulk` job. `request` names
    /// this request (a form's one-time id): the same request submits once.
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: BulkFilter,
        reason: Option<String>,
        request: &str,
    ) -> Result<Submitted> {
        if request.is_empty() || request.len() > 128 {
            return Err(EngineError::invalid(
                "request",
                "must be 1 to 128 characters",
            ));
        }
        let matched = self.count_jobs(filter.to_job_filter(None, 0)).await?;
        let payload = BulkPayload {
            action,
            filter: filter.clone(),
            reason: reason.clone(),
            actor: self.actor().to_string(),
            matched,
        };
        let mut job = NewJob::new(KIND);
        job.payload =
            serde_json::to_value(&payload).map_err(|e| EngineError::Failed(e.to_string()))?;
        job.unique_key = Some(format!("bulk:{request}"));
        job.max_attempts = 3;
        let out = self.submit(job).await?;
        if out.created {
            self.audit(
                &format!("jobs.bulk-{}", action.as_str()),
                format!("{} ({matched} matching; job {})", filter.describe(), out.id),
                reason,
            )
            .await?;
        }
        Ok(out)
    }

    /// A bulk job with its progress.
    pub async fn bulk_view(&self, id: JobId) -> Result<BulkView> {
        let job = self.store().job(id).await?.job;
        if job.kind != KIND {
            return Err(EngineError::NotFound {
                what: "bulk job",
                id: id.to_string(),
            });
        }
        let payload: BulkPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| EngineError::Failed(format!("bulk job {id}: {e}")))?;
        // Its result once it has ended, else what its last page saved.
        let progress = match job.result.clone().map(serde_json::from_value) {
            Some(Ok(p)) => p,
            _ => load_progress(&**self.store(), id).await?,
        };
        Ok(BulkView {
            job,
            action: payload.action,
            filter: payload.filter,
            matched: payload.matched,
            progress,
        })
    }
}

async fn save_progress(
    store: &dyn Store,
    id: JobId,
    p: &BulkProgress,
) -> std::result::Result<(), StoreError> {
    let text = serde_json::to_string(p).map_err(|e| StoreError::Backend(e.to_string()))?;
    store.fleet().put_setting(&progress_key(id), &text).await
}

async fn load_progress(
    store: &dyn Store,
    id: JobId,
) -> std::result::Result<BulkProgress, StoreError> {
    Ok(store
        .fleet()
        .setting(&progress_key(id))
        .await?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Runs `bulk` jobs.
pub struct BulkHandler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// Registers the `bulk` kind, acting on `store`.
pub fn register(registry: &mut Registry, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    registry.register(KIND, BulkHandler { store, clock });
}

impl BulkHandler {
    /// Applies `action` to one job; `Ok(false)` when it no longer applies.
    async fn apply(&self, p: &BulkPayload, id: JobId) -> std::result::Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let out = match p.action {
            BulkAction::Retry => self.store.retry(id, None, now).await.map(|_| ()),
            BulkAction::Cancel => {
                let reason = p.reason.clone().unwrap_or_else(|| "bulk cancel".into());
                self.store.cancel(id, &reason, now).await.map(|_| ())
            }
            BulkAction::Purge => unreachable!("purged a page at a time"),
        };
        match out {
            Ok(()) => Ok(true),
            // It moved (finished, was retried) since the page was read.
            Err(StoreError::Invalid(fabric_core::CoreError::IllegalTransition { .. }))
            | Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Handler for BulkHandler {
    fn validate(&self, payload: &Value) -> std::result::Result<(), String> {
        serde_json::from_value::<BulkPayload>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("payload: {e}"))
    }

    async fn run(&self, job: &Job) -> std::result::Result<Option<Value>, Failure> {
        let p: BulkPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| Failure::of(ErrorKind::BadInput, format!("payload: {e}")))?;
        let store_err = |e: StoreError| Failure::msg(format!("bulk {}: {e}", p.action.as_str()));
        // A retried attempt goes on from where the last one saved its progress.
        let mut progress = load_progress(&*self.store, job.id)
            .await
            .map_err(store_err)?;
        loop {
            let page = self
                .store
                .jobs(p.filter.to_job_filter(progress.cursor, PAGE))
                .await
                .map_err(store_err)?;
            let Some(last) = page.last().map(|j| j.id) else {
                break;
            };
            // The bulk job itself, and jobs the action does not apply to, are skipped.
            let ids: Vec<JobId> = page
                .iter()
                .filter(|j| j.id != job.id && p.action.applies_to(j.state))
                .map(|j| j.id)
                .collect();
            let done = match p.action {
                BulkAction::Purge => self.store.purge_jobs(ids).await.map_err(store_err)?.len(),
                _ => {
                    let results: Vec<_> = stream::iter(ids)
                        .map(|id| self.apply(&p, id))
                        .buffer_unordered(IN_FLIGHT)
                        .collect()
                        .await;
                    let mut n = 0;
                    for r in results {
                        n += usize::from(r.map_err(store_err)?);
                    }
                    n
                }
            };
            progress.seen += page.len() as u64;
            progress.done += done as u64;
            progress.cursor = Some(last);
            save_progress(&*self.store, job.id, &progress)
                .await
                .map_err(store_err)?;
            if page.len() < PAGE {
                break;
            }
        }
        // From here on its progress is the job's result.
        self.store
            .fleet()
            .remove_setting(&progress_key(job.id))
            .await
            .map_err(store_err)?;
        Ok(Some(serde_json::to_value(&progress).unwrap_or(Value::Null)))
    }
}
