//! Conformance cases of batches ([`fabric_store::BatchStore`]): one write for the whole
//! batch; dependents released by the completion of their last dependency and never before;
//! a failure blocking every dependent, direct or not; retry and cancel; the end of a batch
//! found once, with its callback enqueued once.

use fabric_core::batch::BatchState;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{JobState, NewJob};
use fabric_store::{ClaimRequest, Completion, NewBatch, NewBatchItem, Outcome, Store, StoreError};

const T0: i64 = 1_800_000_000_000;

fn item(key: &str, deps: &[usize]) -> NewBatchItem {
    NewBatchItem {
        key: key.into(),
        job: NewJob::new("noop"),
        depends_on: deps.to_vec(),
    }
}

/// Submits a batch of `items` at `T0`, unnamed and without a callback; returns its id.
async fn submit(s: &dyn Store, items: Vec<NewBatchItem>) -> fabric_core::batch::BatchId {
    s.batches()
        .submit_batch(
            NewBatch {
                name: None,
                items,
                on_complete: None,
            },
            T0,
        )
        .await
        .unwrap()
}

/// Claims every due job and returns them by id.
async fn claim_all(s: &dyn Store, now: i64) -> Vec<fabric_core::Job> {
    s.claim(ClaimRequest {
        owner: "w".into(),
        limit: 100,
        lease_ms: 60_000,
        now,
        ..ClaimRequest::default()
    })
    .await
    .unwrap()
}

/// The completion of claimed `job` at `now` with `outcome`, under its own lease.
fn completion(job: &fabric_core::Job, now: i64, outcome: Outcome) -> Completion {
    Completion {
        id: job.id,
        attempt: job.attempt,
        owner: job.lease_owner.clone().unwrap(),
        started_at: job.started_at.unwrap(),
        finished_at: now,
        outcome,
    }
}

async fn settle(s: &dyn Store, job: &fabric_core::Job, now: i64, outcome: Outcome) {
    let r = s
        .complete(vec![completion(job, now, outcome)])
        .await
        .unwrap();
    assert_eq!(r.applied(), 1);
}

fn keys(jobs: &[fabric_core::Job], detail: &fabric_store::BatchDetail) -> Vec<String> {
    let mut k: Vec<String> = jobs
        .iter()
        .map(|j| {
            detail
                .items
                .iter()
                .find(|i| i.job_id == j.id)
                .unwrap()
                .key
                .clone()
        })
        .collect();
    k.sort();
    k
}

fn quarantine() -> Outcome {
    Outcome::Quarantine {
        reason: QuarantineReason::InvalidState,
        error: "boom".into(),
        failure: "permanent".into(),
    }
}

pub async fn batches_release_dependents_only_when_all_their_dependencies_succeeded(s: &dyn Store) {
    // a, b -> c (needs both) -> d; e alone.
    let mut callback = NewJob::new("noop");
    callback.payload = serde_json::json!({"note": "done"});
    let id = s
        .batches()
        .submit_batch(
            NewBatch {
                name: Some("diamond".into()),
                items: vec![
                    item("a", &[]),
                    item("b", &[]),
                    item("c", &[0, 1]),
                    item("d", &[2]),
                    item("e", &[]),
                ],
                on_complete: Some(callback),
            },
            T0,
        )
        .await
        .unwrap();
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.batch.state, BatchState::Running);
    assert_eq!(d.batch.items, 5);
    assert_eq!((d.batch.counts.pending, d.batch.counts.waiting), (3, 2));
    assert_eq!(
        d.items[2].depends_on,
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(s.counts().await.unwrap().waiting, 2);

    let first = claim_all(s, T0 + 1).await;
    assert_eq!(keys(&first, &d), vec!["a", "b", "e"]);
    let by = |k: &str| {
        first
            .iter()
            .find(|j| d.items.iter().any(|i| i.key == k && i.job_id == j.id))
            .unwrap()
            .clone()
    };
    settle(s, &by("a"), T0 + 2, Outcome::Succeeded { result: None }).await;
    assert!(claim_all(s, T0 + 3).await.is_empty(), "c still waits for b");
    settle(s, &by("b"), T0 + 4, Outcome::Succeeded { result: None }).await;
    let second = claim_all(s, T0 + 5).await;
    assert_eq!(keys(&second, &d), vec!["c"]);
    assert!(s.batches().finish_batches(T0 + 5).await.unwrap().is_empty());
    settle(s, &second[0], T0 + 6, Outcome::Succeeded { result: None }).await;
    settle(s, &by("e"), T0 + 6, Outcome::Succeeded { result: None }).await;
    let third = claim_all(s, T0 + 7).await;
    assert_eq!(keys(&third, &d), vec!["d"]);
    settle(s, &third[0], T0 + 8, Outcome::Succeeded { result: None }).await;

    let ended = s.batches().finish_batches(T0 + 9).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].state, BatchState::Succeeded);
    let cb = ended[0].callback_job_id.unwrap();
    // Once: a second look (another leader) ends nothing and enqueues nothing.
    assert!(s
        .batches()
        .finish_batches(T0 + 10)
        .await
        .unwrap()
        .is_empty());
    let job = s.job(cb).await.unwrap().job;
    assert_eq!(job.payload["note"], "done");
    assert_eq!(job.payload["batch"]["state"], "succeeded");
    assert_eq!(job.payload["batch"]["counts"]["succeeded"], 5);
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.batch.state, BatchState::Succeeded);
    assert_eq!(d.batch.callback_job_id, Some(cb));
    assert!(d.batch.finished_at.is_some());
    let listed = s
        .batches()
        .list_batches(Some(BatchState::Succeeded), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(s
        .batches()
        .list_batches(Some(BatchState::Running), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn batches_block_dependents_of_a_failure_and_retry_unblocks_them(s: &dyn Store) {
    // a -> b -> c; a -> d; e alone.
    let id = submit(
        s,
        vec![
            item("a", &[]),
            item("b", &[0]),
            item("c", &[1]),
            item("d", &[0]),
            item("e", &[]),
        ],
    )
    .await;
    let d = s.batches().batch(id).await.unwrap();
    let jobs = claim_all(s, T0 + 1).await;
    assert_eq!(keys(&jobs, &d), vec!["a", "e"]);
    let a = jobs.iter().find(|j| j.id == d.items[0].job_id).unwrap();
    let e = jobs.iter().find(|j| j.id == d.items[4].job_id).unwrap();
    settle(s, a, T0 + 2, quarantine()).await;
    settle(s, e, T0 + 2, Outcome::Succeeded { result: None }).await;
    let d = s.batches().batch(id).await.unwrap();
    let states: Vec<JobState> = d.items.iter().map(|i| i.state).collect();
    use JobState::*;
    assert_eq!(
        states,
        vec![Quarantined, Blocked, Blocked, Blocked, Succeeded]
    );
    assert!(d.items[2]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("dependency_failure"));
    let ended = s.batches().finish_batches(T0 + 3).await.unwrap();
    assert_eq!(ended[0].state, BatchState::Failed);
    assert_eq!(ended[0].callback_job_id, None);

    let r = s.batches().retry_batch(id, T0 + 4).await.unwrap();
    assert_eq!((r.requeued, r.unblocked, r.still_blocked), (1, 3, 0));
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.batch.state, BatchState::Running);
    assert_eq!(d.batch.retries, 1);
    let states: Vec<JobState> = d.items.iter().map(|i| i.state).collect();
    assert_eq!(states, vec![Pending, Waiting, Waiting, Waiting, Succeeded]);
    let again = claim_all(s, T0 + 5).await;
    assert_eq!(keys(&again, &d), vec!["a"]);
    assert_eq!(again[0].attempt, 2, "attempt numbers never repeat");
    settle(s, &again[0], T0 + 6, Outcome::Succeeded { result: None }).await;
    let next = claim_all(s, T0 + 7).await;
    assert_eq!(keys(&next, &d), vec!["b", "d"]);

    // Cancelling an item blocks what depends on it; a cancelled item is final, so retry
    // leaves its dependents blocked.
    let b = next.iter().find(|j| j.id == d.items[1].job_id).unwrap();
    s.cancel(b.id, "operator", T0 + 8).await.unwrap();
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.items[2].state, Blocked);
    let r = s.batches().retry_batch(id, T0 + 9).await.unwrap();
    assert_eq!((r.requeued, r.unblocked, r.still_blocked), (0, 0, 1));
}

pub async fn batches_cancel_every_unfinished_item_and_refuse_an_ended_batch(s: &dyn Store) {
    let mut callback = NewJob::new("noop");
    callback.payload = serde_json::json!({});
    let id = s
        .batches()
        .submit_batch(
            NewBatch {
                name: None,
                items: vec![item("a", &[]), item("b", &[0]), item("c", &[])],
                on_complete: Some(callback),
            },
            T0,
        )
        .await
        .unwrap();
    let d = s.batches().batch(id).await.unwrap();
    let jobs = claim_all(s, T0 + 1).await;
    let c = jobs.iter().find(|j| j.id == d.items[2].job_id).unwrap();
    settle(s, c, T0 + 2, Outcome::Succeeded { result: None }).await;
    let out = s
        .batches()
        .cancel_batch(id, "wrong input", T0 + 3)
        .await
        .unwrap();
    assert_eq!(out.cancelled, 2);
    assert_eq!(out.running, vec![d.items[0].job_id]);
    let cb = s.job(out.callback_job_id.unwrap()).await.unwrap().job;
    assert_eq!(cb.payload["batch"]["state"], "cancelled");
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.batch.state, BatchState::Cancelled);
    assert_eq!(d.batch.cancel_reason.as_deref(), Some("wrong input"));
    let states: Vec<JobState> = d.items.iter().map(|i| i.state).collect();
    assert_eq!(
        states,
        vec![
            JobState::Cancelled,
            JobState::Cancelled,
            JobState::Succeeded
        ]
    );
    // The rescued attempt's completion is fenced out.
    let late = s
        .complete(vec![Completion {
            id: jobs[0].id,
            attempt: jobs[0].attempt,
            owner: "w".into(),
            started_at: T0 + 1,
            finished_at: T0 + 4,
            outcome: Outcome::Succeeded { result: None },
        }])
        .await
        .unwrap();
    assert_eq!(late.applied(), 0);
    assert!(matches!(
        s.batches().cancel_batch(id, "again", T0 + 5).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.batches().retry_batch(id, T0 + 5).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(s.batches().finish_batches(T0 + 6).await.unwrap().is_empty());
    assert!(matches!(
        s.batches().batch(id + 100).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn batches_of_thousands_submit_in_one_write(s: &dyn Store) {
    // A chain every 10 items, past the backends' chunk sizes.
    let items: Vec<NewBatchItem> = (0..25_000)
        .map(|i| {
            let deps: Vec<usize> = if i % 10 == 0 { vec![] } else { vec![i - 1] };
            item(&format!("k{i}"), &deps)
        })
        .collect();
    let id = submit(s, items).await;
    let d = s.batches().batch(id).await.unwrap();
    assert_eq!(d.items.len(), 25_000);
    assert_eq!(d.batch.counts.pending, 2_500);
    assert_eq!(d.batch.counts.waiting, 22_500);
    assert_eq!(d.items[24_999].depends_on, vec!["k24998".to_string()]);
}

pub async fn batches_store_items_in_run_order_and_show_them_in_file_order(s: &dyn Store) {
    // File order: two chains interleaved and given dependents first (x1 -> r1 means x1
    // waits for r1): x1, r1, x2, r2, y1 (waits for x1 and x2).
    let id = submit(
        s,
        vec![
            item("x1", &[1]),
            item("r1", &[]),
            item("x2", &[3]),
            item("r2", &[]),
            item("y1", &[0, 2]),
        ],
    )
    .await;
    let d = s.batches().batch(id).await.unwrap();
    let shown: Vec<&str> = d.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        shown,
        vec!["x1", "r1", "x2", "r2", "y1"],
        "shown in file order"
    );
    assert_eq!(
        d.items[4].depends_on,
        vec!["x1".to_string(), "x2".to_string()]
    );
    // Stored (ids given) in run order: what becomes ready together is stored together.
    let id_of = |k: &str| d.items.iter().find(|i| i.key == k).unwrap().job_id;
    let ids: Vec<i64> = ["r1", "r2", "x1", "x2", "y1"]
        .iter()
        .map(|k| id_of(k))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids follow the run order");
    // And it runs as the dependencies say.
    let first = claim_all(s, T0 + 1).await;
    assert_eq!(keys(&first, &d), vec!["r1", "r2"]);
    // A cycle has no run order: refused, nothing written (callers validate first).
    let before = s.batches().list_batches(None, 100).await.unwrap().len();
    let cyclic = NewBatch {
        name: None,
        items: vec![item("a", &[1]), item("b", &[0]), item("c", &[])],
        on_complete: None,
    };
    let err = s.batches().submit_batch(cyclic, T0 + 2).await.unwrap_err();
    assert!(err.to_string().contains("dependency cycle"), "{err}");
    assert_eq!(
        s.batches().list_batches(None, 100).await.unwrap().len(),
        before
    );
}

pub async fn batches_release_a_dependent_whose_dependencies_succeed_in_one_write(s: &dyn Store) {
    // a, b -> c -> d; x -> y. a, b and x succeed in one write of completions: c (waiting for
    // both) and y (for x alone) become pending; then c's success releases d.
    let id = submit(
        s,
        vec![
            item("a", &[]),
            item("b", &[]),
            item("c", &[0, 1]),
            item("d", &[2]),
            item("x", &[]),
            item("y", &[4]),
        ],
    )
    .await;
    let d = s.batches().batch(id).await.unwrap();
    let first = claim_all(s, T0 + 1).await;
    assert_eq!(keys(&first, &d), vec!["a", "b", "x"]);
    let done = |jobs: &[fabric_core::Job], now: i64| -> Vec<Completion> {
        let ok = || Outcome::Succeeded { result: None };
        jobs.iter().map(|j| completion(j, now, ok())).collect()
    };
    let r = s.complete(done(&first, T0 + 2)).await.unwrap();
    assert_eq!((r.applied(), r.released), (3, 2));
    let second = claim_all(s, T0 + 3).await;
    assert_eq!(keys(&second, &d), vec!["c", "y"]);
    let r = s.complete(done(&second, T0 + 4)).await.unwrap();
    assert_eq!(r.released, 1);
    let third = claim_all(s, T0 + 5).await;
    assert_eq!(keys(&third, &d), vec!["d"]);
    s.complete(done(&third, T0 + 6)).await.unwrap();
    let b = s.batches().batch(id).await.unwrap().batch;
    assert_eq!(b.counts.succeeded, 6);
}
