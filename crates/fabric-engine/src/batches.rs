//! Batches as operators use them (RUNBOOK-MAP.md §C): submit a file of items with
//! dependencies in one durable write, show one with its progress and critical path, list,
//! retry, cancel; and the leader's step that ends finished batches and enqueues their
//! callbacks.

use fabric_core::batch::{critical_path, parse_batch, parse_batch_items, BatchId, BatchState};
use fabric_core::NewJob;
use fabric_store::{
    BatchDetail, BatchItemRecord, BatchRecord, BatchRetried, NewBatch, NewBatchItem,
};
use serde::Serialize;

use crate::console::Result;
use crate::runtime::Shared;
use crate::{Console, EngineError};

/// The reason a blocked item gives.
pub const DEPENDENCY_FAILURE: &str = "dependency_failure";

/// What `batch submit` wrote.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchSubmitted {
    pub id: BatchId,
    /// Items written.
    pub items: usize,
    /// Dependency edges written.
    pub dependencies: usize,
}

/// One item as `batch show` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchItemView {
    #[serde(flatten)]
    pub item: BatchItemRecord,
    /// Why a blocked item cannot run (`dependency_failure`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The chain of dependencies whose run times add up to the longest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CriticalPath {
    /// Sum of the run times along it (ms; an item still running counts until now).
    pub duration_ms: i64,
    /// Keys along it, first to last.
    pub keys: Vec<String>,
}

/// A batch as `batch show` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchView {
    #[serde(flatten)]
    pub batch: BatchRecord,
    /// Items done for the batch (succeeded, quarantined, cancelled, blocked) of all, 0..1.
    pub progress: f64,
    pub critical_path: CriticalPath,
    pub items: Vec<BatchItemView>,
}

impl BatchView {
    fn of(detail: BatchDetail, now: i64) -> Self {
        let BatchDetail { batch, items } = detail;
        let index: std::collections::HashMap<&str, usize> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.key.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = items
            .iter()
            .map(|it| {
                it.depends_on
                    .iter()
                    .filter_map(|k| index.get(k.as_str()).copied())
                    .collect()
            })
            .collect();
        let durations: Vec<i64> = items
            .iter()
            .map(|it| match (it.started_at, it.finished_at) {
                (Some(s), Some(f)) => f - s,
                (Some(s), None) if it.state == fabric_core::JobState::Running => now - s,
                _ => 0,
            })
            .collect();
        let (duration_ms, path) = critical_path(&durations, &deps);
        let keys = path.into_iter().map(|i| items[i].key.clone()).collect();
        let progress = if batch.items == 0 {
            1.0
        } else {
            batch.done() as f64 / batch.items as f64
        };
        Self {
            progress,
            critical_path: CriticalPath { duration_ms, keys },
            items: items
                .into_iter()
                .map(|item| BatchItemView {
                    reason: (item.state == fabric_core::JobState::Blocked)
                        .then_some(DEPENDENCY_FAILURE),
                    item,
                })
                .collect(),
            batch,
        }
    }
}

/// A batch's items as given: a JSON-lines file (errors name the line) or a JSON list (the
/// API's `items`; errors name the index).
#[derive(Debug, Clone)]
pub enum BatchInput<'a> {
    Lines(&'a str),
    Items(Vec<serde_json::Value>),
}

/// The callback a batch runs when it ends: a kind and an object payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OnComplete {
    pub kind: String,
    pub payload: serde_json::Value,
}

impl Console {
    /// Checks the batch and writes it in one durable transaction; nothing is written when
    /// any item is bad (the error names its line or index).
    pub async fn submit_batch(
        &self,
        input: BatchInput<'_>,
        name: Option<String>,
        on_complete: Option<OnComplete>,
    ) -> Result<BatchSubmitted> {
        if let Some(n) = &name {
            if n.trim().is_empty() || n.len() > 200 {
                return Err(EngineError::invalid("name", "must be 1..200 bytes"));
            }
        }
        let check = |job: &NewJob| self.validate(job).map_err(|e| e.to_string());
        let plan = match input {
            BatchInput::Lines(text) => parse_batch(text, check)?,
            BatchInput::Items(items) => parse_batch_items(items, check)?,
        };
        let on_complete = on_complete.map(|c| self.callback(c)).transpose()?;
        let dependencies = plan.edges();
        let items: Vec<NewBatchItem> = plan
            .items
            .into_iter()
            .map(|item| NewBatchItem {
                key: item.key,
                job: self.with_policy_attempts(item.job),
                depends_on: item.depends_on,
            })
            .collect();
        let n = items.len();
        let id = self
            .store()
            .batches()
            .submit_batch(
                NewBatch {
                    name,
                    items,
                    on_complete,
                },
                self.now(),
            )
            .await?;
        self.submitted(n as u64);
        self.audit(
            "batch.submit",
            format!("batch {id}"),
            Some(format!("{n} items, {dependencies} dependencies")),
        )
        .await?;
        Ok(BatchSubmitted {
            id,
            items: n,
            dependencies,
        })
    }

    /// The callback job of `c`, checked as its handler will see it (with a `batch` key).
    fn callback(&self, c: OnComplete) -> Result<NewJob> {
        if !c.payload.is_object() {
            return Err(EngineError::invalid(
                "payload",
                format!(
                    "the callback's payload must be a JSON object, got {}",
                    c.payload
                ),
            ));
        }
        let job = self.with_policy_attempts(NewJob::new(c.kind).payload(c.payload));
        let mut probe = job.clone();
        if let Some(obj) = probe.payload.as_object_mut() {
            obj.insert(
                "batch".into(),
                serde_json::json!({"id": 1, "name": null, "state": "succeeded", "counts": {}}),
            );
        }
        self.validate(&probe).map_err(|e| match e {
            EngineError::InvalidInput { field, message } => {
                EngineError::invalid(format!("on_complete.{field}"), message)
            }
            other => other,
        })?;
        Ok(job)
    }

    /// One batch with its items, progress and critical path.
    pub async fn batch(&self, id: BatchId) -> Result<BatchView> {
        let detail = self.store().batches().batch(id).await?;
        Ok(BatchView::of(detail, self.now()))
    }

    /// Batches, newest first, optionally of one state.
    pub async fn batches(
        &self,
        state: Option<BatchState>,
        limit: usize,
    ) -> Result<Vec<BatchRecord>> {
        Ok(self.store().batches().list_batches(state, limit).await?)
    }

    /// Runs the failed items of batch `id` again and unblocks their dependents.
    pub async fn retry_batch(&self, id: BatchId) -> Result<BatchRetried> {
        let out = self.store().batches().retry_batch(id, self.now()).await?;
        if out.requeued + out.unblocked > 0 {
            self.work_due();
        }
        self.audit(
            "batch.retry",
            format!("batch {id}"),
            Some(format!(
                "{} requeued, {} unblocked, {} still blocked",
                out.requeued, out.unblocked, out.still_blocked
            )),
        )
        .await?;
        Ok(out)
    }

    /// Cancels batch `id`: every item not finished, running ones stopped at once.
    pub async fn cancel_batch(
        &self,
        id: BatchId,
        reason: &str,
    ) -> Result<fabric_store::BatchCancelled> {
        if reason.trim().is_empty() {
            return Err(EngineError::invalid("reason", "a reason is required"));
        }
        let out = self
            .store()
            .batches()
            .cancel_batch(id, reason, self.now())
            .await?;
        for job in &out.running {
            self.stop_attempt(*job);
        }
        if out.callback_job_id.is_some() {
            self.submitted(1);
        }
        self.audit("batch.cancel", format!("batch {id}"), Some(reason.into()))
            .await?;
        Ok(out)
    }
}

/// The leader's step: ends the batches none of whose items can still run and enqueues their
/// callbacks (once each, whichever leader gets there).
pub(crate) async fn finish_due(shared: &Shared, now: i64) {
    match shared.store.batches().finish_batches(now).await {
        Ok(done) => {
            for b in &done {
                tracing::info!(batch = b.id, state = %b.state, callback = ?b.callback_job_id, "batch ended");
            }
            if done.iter().any(|b| b.callback_job_id.is_some()) {
                crate::runtime::work_due(shared);
            }
        }
        Err(e) => tracing::warn!(error = %e, "batches: cannot end finished batches"),
    }
}
