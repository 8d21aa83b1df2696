//! Batches in the store: the [`BatchStore`] trait and its records. A batch's items are jobs
//! (with a batch id and a key); the dependencies between them are released by the
//! completions themselves, in the transaction that succeeds an item, so nothing polls per
//! item. Items are stored in run order (`NewBatch::storage_order`) and listed in file order
//! (`batch_pos`). The end of a batch is found by the maintenance leader, once per open batch.

use async_trait::async_trait;
use fabric_core::batch::{BatchId, BatchState};
use fabric_core::{JobId, JobState, NewJob};
use serde::{Deserialize, Serialize};

use crate::{Result, StateCounts};

/// A batch as submitted: its items in file order, each with the indices of the items it
/// depends on, and the optional job to run when it ends.
#[derive(Debug, Clone, Default)]
pub struct NewBatch {
    /// A name for operators, if given.
    pub name: Option<String>,
    /// The items (their jobs fully resolved: attempts set, payload checked).
    pub items: Vec<NewBatchItem>,
    /// The callback job; its payload (an object) gets a `batch` key with the outcome.
    pub on_complete: Option<NewJob>,
}

impl NewBatch {
    /// The positions of the items in the order they are stored
    /// ([`fabric_core::batch::run_order`]): every item, each after what it depends on.
    pub(crate) fn storage_order(&self) -> Result<Vec<usize>> {
        let deps: Vec<&[usize]> = self.items.iter().map(|i| i.depends_on.as_slice()).collect();
        let order = fabric_core::batch::run_order(&deps);
        if order.len() != self.items.len() {
            return Err(crate::StoreError::Backend(format!(
                "batch of {} items: {} are on a dependency cycle",
                self.items.len(),
                self.items.len() - order.len()
            )));
        }
        Ok(order)
    }
}

/// One item of a [`NewBatch`].
#[derive(Debug, Clone)]
pub struct NewBatchItem {
    /// Unique within the batch.
    pub key: String,
    /// The job the item runs.
    pub job: NewJob,
    /// Indices (into [`NewBatch::items`]) of the items that must succeed first.
    pub depends_on: Vec<usize>,
}

/// A batch with the number of its items in each state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: BatchId,
    pub name: Option<String>,
    pub state: BatchState,
    /// Number of items.
    pub items: u64,
    /// Items per state.
    pub counts: StateCounts,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The kind of the callback job, if one was asked for.
    pub on_complete: Option<String>,
    /// The callback job, once the batch has ended and enqueued it.
    pub callback_job_id: Option<JobId>,
    pub cancel_reason: Option<String>,
    /// How many times `batch retry` reopened it.
    pub retries: u32,
}

impl BatchRecord {
    /// Items that are done for the batch (succeeded, quarantined, cancelled or blocked), of
    /// all of them.
    pub fn done(&self) -> u64 {
        let c = &self.counts;
        c.succeeded + c.quarantined + c.cancelled + c.blocked
    }
}

/// One item of a batch as `batch show` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItemRecord {
    pub key: String,
    pub job_id: JobId,
    pub kind: String,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
    /// Keys of the items it depends on.
    pub depends_on: Vec<String>,
}

/// A batch with its items, in submission order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDetail {
    pub batch: BatchRecord,
    pub items: Vec<BatchItemRecord>,
}

/// A batch the leader found ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedBatch {
    pub id: BatchId,
    pub state: BatchState,
    /// The callback job it enqueued, if it has one.
    pub callback_job_id: Option<JobId>,
}

/// What `batch retry` changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRetried {
    /// Quarantined items sent back to run.
    pub requeued: u64,
    /// Blocked items unblocked (to `pending` or `waiting`).
    pub unblocked: u64,
    /// Items left blocked (they depend on a cancelled item).
    pub still_blocked: u64,
}

/// What `batch cancel` changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchCancelled {
    /// Items cancelled.
    pub cancelled: u64,
    /// Of those, the ones that were running: their attempts are to be stopped.
    pub running: Vec<JobId>,
    /// The callback job enqueued, if the batch has one.
    pub callback_job_id: Option<JobId>,
}

/// Batches: submission in one durable write, listing, retry, cancel, and their end.
#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Writes the batch and every item in one transaction (nothing runs before it commits):
    /// items without dependencies are `pending`, the others `waiting`.
    async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchId>;

    /// One batch with its items (`NotFound` when unknown).
    async fn batch(&self, id: BatchId) -> Result<BatchDetail>;

    /// Batches, newest first, optionally of one state.
    async fn list_batches(
        &self,
        state: Option<BatchState>,
        limit: usize,
    ) -> Result<Vec<BatchRecord>>;

    /// Runs the quarantined items of batch `id` again and unblocks the blocked ones whose
    /// dependencies can still succeed ([`fabric_core::batch::retry_states`]); reopens a
    /// failed batch. A cancelled batch is refused.
    async fn retry_batch(&self, id: BatchId, now: i64) -> Result<BatchRetried>;

    /// Cancels every item of batch `id` that has not finished, and the batch, and enqueues
    /// its callback; an ended batch is refused.
    async fn cancel_batch(&self, id: BatchId, reason: &str, now: i64) -> Result<BatchCancelled>;

    /// Ends every open batch none of whose items can still run: `succeeded` when all
    /// succeeded, else `failed`; enqueues each one's callback in the same transaction, with
    /// a unique key, so it is enqueued once however many leaders look.
    async fn finish_batches(&self, now: i64) -> Result<Vec<FinishedBatch>>;
}

/// The callback job of batch `id` ended in `state` with `counts`: `base` (kind, attempts,
/// payload) with the batch's outcome under the payload's `batch` key, unique per batch and
/// ending (`generation`: how many times the batch was reopened).
pub(crate) fn callback_job(
    mut base: NewJob,
    id: BatchId,
    name: Option<&str>,
    state: BatchState,
    counts: &StateCounts,
    generation: i64,
) -> NewJob {
    let outcome = serde_json::json!({
        "id": id,
        "name": name,
        "state": state.as_str(),
        "counts": counts,
    });
    match base.payload.as_object_mut() {
        Some(obj) => {
            obj.insert("batch".into(), outcome);
        }
        None => base.payload = serde_json::json!({ "batch": outcome }),
    }
    base.unique_key = Some(format!("batch:{id}:{generation}:complete"));
    base
}

/// The state a batch ends in, from its item counts.
pub(crate) fn ended_state(counts: &StateCounts) -> BatchState {
    if counts.quarantined + counts.cancelled + counts.blocked == 0 {
        BatchState::Succeeded
    } else {
        BatchState::Failed
    }
}
