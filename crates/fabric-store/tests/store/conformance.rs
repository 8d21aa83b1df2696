//! The store conformance suite: behaviour every `Store` backend must show. Each case takes a
//! fresh, empty store; `conformance_tests!` turns them into one `#[tokio::test]` per case.

use std::sync::Arc;

use fabric_core::quarantine::QuarantineReason;
use fabric_core::{JobState, NewJob, Priority};
use fabric_store::{
    ClaimRequest, Completion, JobFilter, Outcome, QuarantineFilter, Store, StoreError,
};

#[path = "conformance_docs.rs"]
mod docs_cases;
pub use docs_cases::*;
#[path = "conformance_outbox.rs"]
mod outbox_cases;
pub use outbox_cases::*;

#[path = "conformance_claims.rs"]
mod claims_cases;
pub use claims_cases::*;
#[path = "conformance_batches.rs"]
mod batches_cases;
pub use batches_cases::*;

#[path = "conformance_schedules.rs"]
mod schedules_cases;
pub use schedules_cases::*;

#[path = "conformance_alerts.rs"]
mod alerts_cases;
pub use alerts_cases::*;

#[path = "conformance_listing.rs"]
mod listing_cases;
pub use listing_cases::*;

#[path = "conformance_fleet.rs"]
mod fleet_cases;
pub use fleet_cases::*;

#[path = "conformance_sources.rs"]
mod sources_cases;
pub use sources_cases::*;

#[path = "conformance_maintenance.rs"]
mod maintenance_cases;
pub use maintenance_cases::*;

fn ok() -> Outcome {
    Outcome::Succeeded { result: None }
}

const T0: i64 = 1_800_000_000_000;

fn claim_req(owner: &str, limit: usize, now: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        limit,
        lease_ms: 30_000,
        now,
        ..ClaimRequest::default()
    }
}

fn done(job: &fabric_core::Job, owner: &str, outcome: Outcome) -> Completion {
    Completion {
        id: job.id,
        attempt: job.attempt,
        owner: owner.into(),
        started_at: job.started_at.unwrap_or(T0),
        finished_at: T0 + 10,
        outcome,
    }
}

pub async fn submit_assigns_ids_and_unique_keys_are_idempotent(s: &dyn Store) {
    let mut a = NewJob::new("noop");
    a.unique_key = Some("k1".into());
    let first = s
        .submit(vec![a.clone(), NewJob::new("noop")], T0)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|r| r.created));
    assert_ne!(first[0].id, first[1].id);
    let again = s.submit(vec![a], T0 + 1).await.unwrap();
    assert_eq!(again[0].id, first[0].id);
    assert!(!again[0].created);
    assert_eq!(s.counts().await.unwrap().pending, 2);
}

pub async fn claim_takes_highest_priority_then_oldest_and_skips_future(s: &dyn Store) {
    let mut low = NewJob::new("noop");
    low.priority = Priority::LOW;
    let mut high = NewJob::new("noop");
    high.priority = Priority::HIGH;
    let mut later = NewJob::new("noop");
    later.priority = Priority::HIGH;
    later.run_at = Some(T0 + 60_000);
    let ids = s
        .submit(vec![low, NewJob::new("noop"), high, later], T0)
        .await
        .unwrap();
    let got = s.claim(claim_req("w1", 10, T0)).await.unwrap();
    let order: Vec<_> = got.iter().map(|j| j.id).collect();
    assert_eq!(order, vec![ids[2].id, ids[1].id, ids[0].id]);
    for j in &got {
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.attempt, 1);
        assert_eq!(j.lease_owner.as_deref(), Some("w1"));
        assert_eq!(j.lease_expires_at, Some(T0 + 30_000));
    }
    assert!(s.claim(claim_req("w1", 10, T0)).await.unwrap().is_empty());
    let due = s.claim(claim_req("w1", 10, T0 + 60_000)).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, ids[3].id);
}

pub async fn claim_respects_limit_and_shards(s: &dyn Store) {
    let mut jobs = Vec::new();
    for i in 0..10 {
        let mut j = NewJob::new("noop");
        j.shard = if i % 2 == 0 {
            "earth".into()
        } else {
            "mars".into()
        };
        jobs.push(j);
    }
    s.submit(jobs, T0).await.unwrap();
    let mut req = claim_req("w", 3, T0);
    req.shards = vec!["mars".into()];
    let got = s.claim(req.clone()).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|j| j.shard == "mars"));
    req.limit = 100;
    assert_eq!(s.claim(req).await.unwrap().len(), 2);
    assert_eq!(s.counts().await.unwrap().pending, 5);
}

/// Claims of one shard at a time (a scheduler's per-shard dispatch), mixed with reads,
/// completions, retries, a rescue and claims across shards: every call sees every claim made
/// before it (a write-behind store holds such claims in memory until they are written).
pub async fn one_shard_claims_mix_with_every_other_call(s: &dyn Store) {
    let mut jobs = Vec::new();
    for i in 0..8 {
        let mut j = NewJob::new("noop");
        j.shard = if i < 6 { "earth" } else { "mars" }.into();
        j.priority = Priority(i % 3);
        jobs.push(j);
    }
    s.submit(jobs, T0).await.unwrap();
    let earth = |owner: &str, limit, now| {
        let mut r = claim_req(owner, limit, now);
        r.shards = vec!["earth".into()];
        r
    };
    let a = s.claim(earth("w", 2, T0)).await.unwrap();
    let b = s.claim(earth("w", 2, T0)).await.unwrap();
    assert_eq!((a.len(), b.len()), (2, 2));
    let mut ids: Vec<_> = a.iter().chain(&b).map(|j| j.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "no job handed out twice");
    for j in a.iter().chain(&b) {
        assert_eq!(j.state, JobState::Running);
        assert_eq!((j.attempt, j.lease_owner.as_deref()), (1, Some("w")));
        assert_eq!(j.started_at, Some(T0));
    }
    assert!(a[0].priority >= a[1].priority && a[1].priority >= b[0].priority);
    // Reads see the claims.
    let seen = s.job(a[0].id).await.unwrap().job;
    assert_eq!(
        (seen.state, seen.attempt, seen.lease_owner.as_deref()),
        (JobState::Running, 1, Some("w"))
    );
    let c = s.counts().await.unwrap();
    assert_eq!((c.running, c.pending), (4, 4));
    // One succeeds, one is retried, one is completed by a stranger (late).
    let retry = Outcome::Retry {
        run_at: T0 + 1,
        error: "boom".into(),
        failure: "error".into(),
    };
    let report = s
        .complete(vec![
            done(&a[0], "w", ok()),
            done(&a[1], "w", retry),
            done(&b[0], "stranger", ok()),
        ])
        .await
        .unwrap();
    assert_eq!((report.applied(), report.late), (2, 1));
    let first = s.job(a[0].id).await.unwrap().job;
    assert_eq!((first.state, first.attempt), (JobState::Succeeded, 1));
    assert_eq!(first.started_at, Some(T0));
    assert_eq!(first.lease_owner, None);
    let retried = s.job(a[1].id).await.unwrap();
    // A failed attempt waiting for its retry is `failed`, counted as such and listed by
    // `--status failed`, until it is claimed again.
    assert_eq!(retried.job.state, JobState::Failed);
    assert_eq!(retried.job.last_error.as_deref(), Some("boom"));
    assert_eq!(retried.errors.len(), 1);
    assert_eq!(s.counts().await.unwrap().failed, 1);
    let listed = s
        .jobs(JobFilter {
            state: Some(JobState::Failed),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [a[1].id]);
    // A page size beyond `i64` (`--limit 18446744073709551615`) is every match: not an
    // SQL error, not a negative LIMIT.
    let huge = s
        .jobs(JobFilter {
            state: Some(JobState::Failed),
            limit: usize::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(huge.iter().map(|j| j.id).collect::<Vec<_>>(), [a[1].id]);
    let later = s
        .jobs(JobFilter {
            state: Some(JobState::Failed),
            since: Some(T0 + 3_600_000),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(later.is_empty(), "failed before the window: {later:?}");
    // Queued per shard: pending and failed alike (two never claimed and a[1], which waits
    // for its retry, on earth; both of mars).
    let depths = s.queue_depths().await.unwrap();
    assert_eq!(
        depths.into_iter().collect::<Vec<_>>(),
        [("earth".into(), 3), ("mars".into(), 2)]
    );
    // Overdue work: any queued job due before the cut-off, in the shards asked for.
    let late = s.overdue(T0 + 10, &[], &[], &[]).await.unwrap().unwrap();
    assert!(late.run_at < T0 + 10);
    let mars = s
        .overdue(T0 + 10, &["mars".into()], &[], &[])
        .await
        .unwrap();
    assert_eq!(mars.map(|o| o.shard).as_deref(), Some("mars"));
    let none = s
        .overdue(T0 + 10, &[], &["earth".into(), "mars".into()], &[])
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(s.overdue(T0 - 1, &[], &[], &[]).await.unwrap(), None);
    // Jobs of the kinds external workers serve are theirs to claim, not a dispatcher's.
    let kind = s.job(late.id).await.unwrap().job.kind;
    if let Some(o) = s
        .overdue(T0 + 10, &[], &[], std::slice::from_ref(&kind))
        .await
        .unwrap()
    {
        assert_ne!(s.job(o.id).await.unwrap().job.kind, kind, "{o:?}");
    }
    // The retry is due again: the next claim takes it, as attempt 2, with the other two.
    let c2 = s.claim(earth("w", 10, T0 + 2)).await.unwrap();
    assert_eq!(c2.len(), 3);
    let again = c2.iter().find(|j| j.id == a[1].id).unwrap();
    assert_eq!(again.attempt, 2);
    // A claim across shards sees what the shard claims took: only mars is left.
    let rest = s.claim(claim_req("v", 10, T0 + 2)).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|j| j.shard == "mars"));
    // A rescue of owner w's jobs resets every claim it holds (the stranger's completion
    // left b[0] with it); their completions are late.
    let rescued = s.rescue(T0 + 3, Some("w")).await.unwrap();
    assert_eq!(rescued.reset.len(), 5, "{rescued:?}");
    let late = s.complete(vec![done(again, "w", ok())]).await.unwrap();
    assert_eq!((late.applied(), late.late), (0, 1));
    let c = s.counts().await.unwrap();
    assert_eq!((c.pending, c.running, c.succeeded), (5, 2, 1));
}

pub async fn concurrent_claims_never_hand_out_a_job_twice(s: Arc<dyn Store>) {
    s.submit((0..500).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.claim(claim_req(&format!("w{w}"), 7, T0)).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 500);
    assert_eq!(all.len(), 500);
}

pub async fn concurrent_submitters_all_land(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..25 {
                ids.push(s.submit(vec![NewJob::new("noop")], T0).await.unwrap()[0].id);
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 500);
    assert_eq!(s.counts().await.unwrap().pending, 500);
}

pub async fn completion_is_fenced_by_owner_and_attempt(s: &dyn Store) {
    s.submit(vec![NewJob::new("noop")], T0).await.unwrap();
    let job = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    // Wrong owner and wrong attempt are both late and change nothing.
    let mut wrong_owner = done(&job, "w2", ok());
    wrong_owner.owner = "w2".into();
    let mut wrong_attempt = done(&job, "w1", ok());
    wrong_attempt.attempt += 1;
    let r = s.complete(vec![wrong_owner, wrong_attempt]).await.unwrap();
    assert_eq!((r.applied(), r.late), (0, 2));
    assert_eq!(s.job(job.id).await.unwrap().job.state, JobState::Running);
    let with_result = Outcome::Succeeded {
        result: Some(serde_json::json!({"exit_code": 0})),
    };
    let r = s
        .complete(vec![done(&job, "w1", with_result)])
        .await
        .unwrap();
    assert_eq!((r.applied(), r.late), (1, 0));
    let d = s.job(job.id).await.unwrap();
    assert_eq!(d.job.state, JobState::Succeeded);
    assert_eq!(d.job.finished_at, Some(T0 + 10));
    assert!(d.job.lease_owner.is_none());
    assert_eq!(d.job.result, Some(serde_json::json!({"exit_code": 0})));
    // A second completion of the same attempt is late too.
    let r = s.complete(vec![done(&job, "w1", ok())]).await.unwrap();
    assert_eq!(r.late, 1);
}

pub async fn rescued_attempt_cannot_complete_the_new_one(s: &dyn Store) {
    s.submit(vec![NewJob::new("noop")], T0).await.unwrap();
    let first = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    // Not yet expired: nothing to rescue.
    assert!(s.rescue(T0 + 1_000, None).await.unwrap().reset.is_empty());
    let rescued = s.rescue(T0 + 31_000, None).await.unwrap();
    assert_eq!(rescued.reset, vec![first.id]);
    let second = s
        .claim(claim_req("w2", 1, T0 + 31_000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.attempt, 2);
    let r = s.complete(vec![done(&first, "w1", ok())]).await.unwrap();
    assert_eq!(r.late, 1);
    assert_eq!(
        s.job(first.id).await.unwrap().job.lease_owner.as_deref(),
        Some("w2")
    );
    let r = s.complete(vec![done(&second, "w2", ok())]).await.unwrap();
    assert_eq!(r.applied(), 1);
}

pub async fn heartbeat_keeps_a_lease_alive(s: &dyn Store) {
    s.submit(vec![NewJob::new("sleep")], T0).await.unwrap();
    let job = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    assert_eq!(
        s.heartbeat("w1", vec![(job.id, 1)], T0 + 90_000)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    // Another owner does not hold it: the job is reported lost to that owner.
    assert_eq!(
        s.heartbeat("w9", vec![(job.id, 1)], T0 + 90_000)
            .await
            .unwrap(),
        vec![job.id]
    );
    assert!(s.rescue(T0 + 60_000, None).await.unwrap().reset.is_empty());
    assert_eq!(
        s.rescue(T0 + 90_001, None).await.unwrap().reset,
        vec![job.id]
    );
}

pub async fn recovery_resets_running_jobs_of_an_owner(s: &dyn Store) {
    s.submit((0..5).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap();
    s.claim(claim_req("node-a/1", 3, T0)).await.unwrap();
    s.claim(claim_req("node-b/1", 2, T0)).await.unwrap();
    let r = s.rescue(T0 + 1, Some("node-a/")).await.unwrap();
    assert_eq!(r.reset.len(), 3);
    let c = s.counts().await.unwrap();
    assert_eq!((c.pending, c.running), (3, 2));
}

pub async fn lost_last_attempt_is_quarantined(s: &dyn Store) {
    let mut j = NewJob::new("noop");
    j.max_attempts = 1;
    s.submit(vec![j], T0).await.unwrap();
    let job = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    let r = s.rescue(T0 + 60_000, None).await.unwrap();
    assert_eq!(r.quarantined, vec![job.id]);
    assert!(r.reset.is_empty());
    let q = s.quarantine_entry(job.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::Timeout);
}

pub async fn failed_attempt_is_rescheduled_with_its_error_kept(s: &dyn Store) {
    s.submit(vec![NewJob::new("noop")], T0).await.unwrap();
    let job = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    let out = Outcome::Retry {
        run_at: T0 + 5_000,
        error: "connection refused".into(),
        failure: "transient".into(),
    };
    assert_eq!(
        s.complete(vec![done(&job, "w1", out)])
            .await
            .unwrap()
            .applied(),
        1
    );
    let d = s.job(job.id).await.unwrap();
    assert_eq!(d.job.state, JobState::Failed);
    assert_eq!(d.job.run_at, T0 + 5_000);
    assert_eq!(d.job.last_error.as_deref(), Some("connection refused"));
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].attempt, 1);
    assert_eq!(d.errors[0].failure, "transient");
    assert!(s
        .claim(claim_req("w1", 1, T0 + 4_999))
        .await
        .unwrap()
        .is_empty());
    let again = s.claim(claim_req("w1", 1, T0 + 5_000)).await.unwrap();
    assert_eq!(again[0].attempt, 2);
}

pub async fn quarantine_keeps_payload_and_retry_brings_it_back(s: &dyn Store) {
    let job_in = NewJob::new("shell").payload(serde_json::json!({"cmd": ["false"]}));
    s.submit(vec![job_in], T0).await.unwrap();
    let job = s.claim(claim_req("w1", 1, T0)).await.unwrap().remove(0);
    let out = Outcome::Quarantine {
        reason: QuarantineReason::PermissionDenied,
        error: "permission denied: <home>/x".into(),
        failure: "permanent".into(),
    };
    s.complete(vec![done(&job, "w1", out)]).await.unwrap();
    let q = s
        .quarantine(QuarantineFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].payload, serde_json::json!({"cmd": ["false"]}));
    let all = QuarantineFilter {
        limit: usize::MAX,
        ..Default::default()
    };
    assert_eq!(s.quarantine(all).await.unwrap().len(), 1);
    assert_eq!(q[0].reason, QuarantineReason::PermissionDenied);
    assert_eq!(q[0].attempts, 1);
    let stats = s.quarantine_stats().await.unwrap();
    assert_eq!(stats.total, 1);
    assert_eq!(stats.by_reason.get("permission_denied"), Some(&1));
    let only_timeouts = QuarantineFilter {
        reason: Some(QuarantineReason::Timeout),
        limit: 10,
        ..Default::default()
    };
    assert!(s.quarantine(only_timeouts).await.unwrap().is_empty());

    let back = s
        .retry(job.id, Some("fixed the permissions"), T0 + 100)
        .await
        .unwrap();
    assert_eq!(back.state, JobState::Pending);
    assert_eq!(back.attempt, 1, "attempt numbers never repeat");
    assert_eq!(back.max_attempts, 1 + 3, "a fresh set of attempts");
    let e = s.quarantine_entry(job.id).await.unwrap();
    assert_eq!(e.retries, 1);
    assert_eq!(e.notes[0].note, "fixed the permissions");
    assert!(s
        .quarantine(QuarantineFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty());
    let again = s
        .claim(claim_req("w1", 1, T0 + 100))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(again.attempt, 2);
    s.complete(vec![done(&again, "w1", ok())]).await.unwrap();
    assert_eq!(s.job(job.id).await.unwrap().job.state, JobState::Succeeded);
}

pub async fn illegal_moves_are_errors_and_change_nothing(s: &dyn Store) {
    let ids = s
        .submit(vec![NewJob::new("noop"), NewJob::new("noop")], T0)
        .await
        .unwrap();
    let c = s.cancel(ids[0].id, "not needed", T0 + 1).await.unwrap();
    assert_eq!(c.state, JobState::Cancelled);
    assert_eq!(c.cancel_reason.as_deref(), Some("not needed"));
    let again = s.cancel(ids[0].id, "twice", T0 + 2).await.unwrap_err();
    assert!(matches!(again, StoreError::Invalid(_)), "{again:?}");
    let pending_retry = s.retry(ids[1].id, None, T0).await.unwrap_err();
    assert!(
        matches!(pending_retry, StoreError::Invalid(_)),
        "{pending_retry:?}"
    );
    assert_eq!(s.job(ids[1].id).await.unwrap().job.state, JobState::Pending);
    // A running job cannot be operator-retried: its worker still holds the lease.
    let running = s.claim(claim_req("w", 1, T0)).await.unwrap().remove(0);
    let err = s.retry(running.id, None, T0).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let still = s.job(running.id).await.unwrap().job;
    assert_eq!((still.state, still.attempt), (JobState::Running, 1));
    let missing = s.cancel(999_999, "x", T0).await.unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    assert!(matches!(
        s.job(999_999).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn listing_filters_and_counts(s: &dyn Store) {
    let mut a = NewJob::new("sleep");
    a.shard = "mars".into();
    a.source = Some("mail".into());
    s.submit(vec![a, NewJob::new("noop"), NewJob::new("noop")], T0)
        .await
        .unwrap();
    let job = s.claim(claim_req("w", 1, T0)).await.unwrap().remove(0);
    s.complete(vec![done(&job, "w", ok())]).await.unwrap();
    let all = s
        .jobs(JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[0].id > all[1].id, "newest first");
    let mars = s
        .jobs(JobFilter {
            shard: Some("mars".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mars.len(), 1);
    let mail = s
        .jobs(JobFilter {
            source: Some("mail".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mail.len(), 1);
    let succeeded = s
        .jobs(JobFilter {
            state: Some(JobState::Succeeded),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    let recent = s
        .jobs(JobFilter {
            since: Some(T0 + 5),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        recent.len(),
        1,
        "only the completed job was updated after T0+5"
    );
    assert_eq!(
        s.jobs(JobFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        2
    );
    // The pending queue without payloads, oldest first, page by page.
    let pending: Vec<i64> = all.iter().rev().skip(1).map(|j| j.id).collect();
    let first = s.pending_keys(0, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, pending[0]);
    assert_eq!((first[0].shard.as_str(), first[0].attempt), ("default", 0));
    let rest = s.pending_keys(first[0].id, 10).await.unwrap();
    assert_eq!(rest.iter().map(|k| k.id).collect::<Vec<_>>(), &pending[1..]);
    assert!(s.pending_keys(pending[1], 10).await.unwrap().is_empty());
    let c = s.counts().await.unwrap();
    assert_eq!((c.pending, c.succeeded, c.total()), (2, 1, 3));
}

/// SLO and alert counts: finished jobs over several windows in one call.
pub async fn finished_jobs_are_counted_over_windows(s: &dyn Store) {
    s.submit(vec![NewJob::new("noop"); 4], T0).await.unwrap();
    let jobs = s.claim(claim_req("w", 4, T0)).await.unwrap();
    let at = |j: &fabric_core::Job, finished_at: i64, outcome: Outcome| Completion {
        finished_at,
        ..done(j, "w", outcome)
    };
    let quarantined = Outcome::Quarantine {
        reason: QuarantineReason::PermissionDenied,
        error: "denied".into(),
        failure: "permanent".into(),
    };
    s.complete(vec![
        at(&jobs[0], T0 + 10, ok()),
        at(&jobs[1], T0 + 5_000, ok()),
        at(&jobs[2], T0 + 100, quarantined),
    ])
    .await
    .unwrap();
    let w = s
        .finished_windows(&[T0, T0 + 50], &[100, 10_000])
        .await
        .unwrap();
    let got: Vec<(i64, u64, u64, Vec<u64>)> = w
        .into_iter()
        .map(|w| (w.since, w.succeeded, w.quarantined, w.slow))
        .collect();
    assert_eq!(
        got,
        [(T0, 2, 1, vec![1, 0]), (T0 + 50, 1, 1, vec![1, 0])],
        "the running job counts nowhere"
    );
    assert!(s.finished_windows(&[], &[1]).await.unwrap().is_empty());
    let none = s.finished_windows(&[T0 + 10_000], &[]).await.unwrap();
    assert_eq!((none[0].succeeded, none[0].quarantined), (0, 0));
}

/// One `#[tokio::test]` per conformance case for the backend that `$make` opens. `$make`
/// is an async fn returning `Some((Arc<dyn Store>, guard))`, the guard cleaning up when
/// dropped, or `None` when the backend is not available here (the case says so and passes).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@ref $make,
            submit_assigns_ids_and_unique_keys_are_idempotent,
            finished_jobs_are_counted_over_windows,
            claim_takes_highest_priority_then_oldest_and_skips_future,
            claim_respects_limit_and_shards,
            one_shard_claims_mix_with_every_other_call,
            completion_is_fenced_by_owner_and_attempt,
            rescued_attempt_cannot_complete_the_new_one,
            heartbeat_keeps_a_lease_alive,
            recovery_resets_running_jobs_of_an_owner,
            lost_last_attempt_is_quarantined,
            failed_attempt_is_rescheduled_with_its_error_kept,
            quarantine_keeps_payload_and_retry_brings_it_back,
            illegal_moves_are_errors_and_change_nothing,
            listing_filters_and_counts,
            listing_pages_by_keyset_and_filters_by_error_text_and_time,
            purge_jobs_deletes_only_finished_ones,
            counts_follow_every_write,
            settings_are_put_replaced_and_removed,
            purge_removes_only_old_quarantine_and_dry_run_nothing,
            audit_and_recovery_reports_round_trip,
            retention_prunes_old_audit_and_all_but_the_newest_recovery_reports,
            integrity_prune_and_maintenance,
            nodes_register_heartbeat_and_keep_operator_flags,
            shards_settings_and_claim_levers,
            leader_lease_is_exclusive_until_it_lapses,
            sources_keep_their_definition_and_state,
            telemetry_sums_per_source_and_outcome_and_prunes,
            docs_search_ranks_and_marks_matched_words,
            docs_put_replaces_by_source_and_path_and_skips_an_unchanged_hash,
            docs_put_many_stores_all_in_order_and_skips_unchanged,
            docs_removal_removes_hits,
            docs_filters_by_source_and_tag,
            docs_hostile_queries_are_not_errors,
            docs_show_links_out_and_in,
            docs_stats_and_integrity,
            docs_compaction_merges_segments_until_the_index_is_compact,
            docs_an_unfiltered_search_ranks_the_newest_window_a_filtered_one_all,
            alerts_states_and_notifications_are_saved_together,
            alerts_ack_records_who_and_unknown_is_not_found,
            alerts_silences_add_list_and_expire,
            alerts_queue_claims_once_and_settles,
            alerts_history_filters_and_prunes,
            alerts_job_signals_count_what_the_jobs_did,
            outbox_captures_each_change_with_its_write_in_order_only_while_on,
            outbox_writes_big_batches_in_messages_of_at_most_a_thousand,
            outbox_captures_rescues_and_nothing_of_a_refused_change,
            outbox_appends_prunes_and_counts,
            claim_filters_by_kind,
            batches_release_dependents_only_when_all_their_dependencies_succeeded,
            batches_block_dependents_of_a_failure_and_retry_unblocks_them,
            batches_cancel_every_unfinished_item_and_refuse_an_ended_batch,
            batches_of_thousands_submit_in_one_write,
            batches_store_items_in_run_order_and_show_them_in_file_order,
            batches_release_a_dependent_whose_dependencies_succeed_in_one_write,
            schedules_are_added_once_listed_paused_resumed_and_removed,
            schedules_fire_one_job_per_due_time_and_move_forward,
            schedules_with_overlap_skip_skip_while_the_previous_run_is_going,
            schedules_trigger_enqueues_a_run_now
        );
        $crate::conformance_tests!(@arc $make,
            concurrent_claims_never_hand_out_a_job_twice,
            concurrent_submitters_all_land,
            concurrent_lease_takers_get_one_winner,
            schedules_concurrent_leaders_fire_a_due_time_once
        );
    };
    (@ref $make:path, $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                $crate::conformance::$case(&*store).await;
            }
        )*
    };
    (@arc $make:path, $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $make().await else {
                    return;
                };
                $crate::conformance::$case(store).await;
            }
        )*
    };
}
