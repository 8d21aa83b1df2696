//! Conformance cases of the console's job listing: the error-text filter, the time range,
//! keyset pages of a fixed size, and the count of every match ("all N matching").

use fabric_core::quarantine::QuarantineReason;
use fabric_core::{JobState, NewJob};
use fabric_store::{ClaimRequest, Completion, JobFilter, Outcome, StateCounts, Store};

const T0: i64 = 1_800_000_000_000;

fn filter() -> JobFilter {
    JobFilter {
        limit: 100,
        ..JobFilter::default()
    }
}

pub async fn listing_pages_by_keyset_and_filters_by_error_text_and_time(s: &dyn Store) {
    s.submit((0..7).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap();
    // Two attempts fail at T0 + 10 with different errors.
    let jobs = s
        .claim(ClaimRequest {
            owner: "w".into(),
            limit: 2,
            lease_ms: 60_000,
            now: T0,
            ..ClaimRequest::default()
        })
        .await
        .unwrap();
    let errors = ["Connection REFUSED by peer", "disk full"];
    let done: Vec<Completion> = jobs
        .iter()
        .zip(errors)
        .map(|(j, e)| Completion {
            id: j.id,
            owner: "w".into(),
            attempt: j.attempt,
            outcome: Outcome::Retry {
                run_at: T0 + 60_000,
                error: e.into(),
                failure: "transient".into(),
            },
            started_at: T0,
            finished_at: T0 + 10,
        })
        .collect();
    assert_eq!(s.complete(done).await.unwrap().applied(), 2);

    let refused = JobFilter {
        error: Some("connection refused".into()),
        ..filter()
    };
    let hits = s.jobs(refused.clone()).await.unwrap();
    assert_eq!(hits.len(), 1, "the error filter ignores ASCII case");
    assert_eq!(hits[0].id, jobs[0].id);
    assert_eq!(s.count_jobs(refused).await.unwrap(), 1);
    let quoted = JobFilter {
        error: Some("%".into()),
        ..filter()
    };
    assert_eq!(
        s.count_jobs(quoted).await.unwrap(),
        0,
        "% is text, not a pattern"
    );

    // The time range is half-open: updated at or after `since`, before `until`.
    let window = |since, until| JobFilter {
        since: Some(since),
        until: Some(until),
        ..filter()
    };
    assert_eq!(s.count_jobs(window(T0, T0 + 10)).await.unwrap(), 5);
    assert_eq!(s.count_jobs(window(T0 + 10, T0 + 11)).await.unwrap(), 2);

    // Pages of 3, newest first, each below the last id of the one before; the count ignores
    // the page.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .jobs(JobFilter {
                before,
                limit: 3,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        before = page.last().map(|j| j.id);
        seen.extend(page.into_iter().map(|j| j.id));
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, no job twice");
    assert_eq!(seen.len(), 7);
    let paged = JobFilter {
        before: Some(seen[2]),
        limit: 1,
        ..JobFilter::default()
    };
    assert_eq!(s.count_jobs(paged).await.unwrap(), 7);
}

pub async fn purge_jobs_deletes_only_finished_ones(s: &dyn Store) {
    let ids: Vec<i64> = s
        .submit((0..3).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    s.cancel(ids[0], "not needed", T0 + 1).await.unwrap();
    let gone = s.purge_jobs(vec![ids[2], ids[0], 999_999]).await.unwrap();
    assert_eq!(
        gone,
        vec![ids[0]],
        "a pending job and an unknown id are left alone"
    );
    assert!(s.job(ids[0]).await.is_err());
    assert_eq!(s.count_jobs(filter()).await.unwrap(), 2);
}

pub async fn settings_are_put_replaced_and_removed(s: &dyn Store) {
    s.fleet().put_setting("bulk.7", "a").await.unwrap();
    s.fleet().put_setting("bulk.7", "b").await.unwrap();
    assert_eq!(
        s.fleet().setting("bulk.7").await.unwrap().as_deref(),
        Some("b")
    );
    s.fleet().remove_setting("bulk.7").await.unwrap();
    assert_eq!(s.fleet().setting("bulk.7").await.unwrap(), None);
    s.fleet().remove_setting("never-set").await.unwrap();
}

/// The counts by state as the table holds them: every job listed and tallied.
async fn tallied(s: &dyn Store) -> StateCounts {
    let mut counts = StateCounts::default();
    for job in s
        .jobs(JobFilter {
            limit: 10_000,
            ..JobFilter::default()
        })
        .await
        .unwrap()
    {
        counts.add(job.state, 1);
    }
    counts
}

/// `counts()` (and the count of a filter by state alone) follow every kind of write: submit,
/// claim, success, retry, quarantine, cancel, operator retry, rescue, purge and prune.
pub async fn counts_follow_every_write(s: &dyn Store) {
    let check = |step: &'static str| async move {
        let want = tallied(s).await;
        assert_eq!(s.counts().await.unwrap(), want, "counts after {step}");
        for state in JobState::ALL {
            let by_state = JobFilter {
                state: Some(state),
                ..filter()
            };
            if state != JobState::Failed {
                assert_eq!(
                    s.count_jobs(by_state).await.unwrap(),
                    want.get(state),
                    "{state:?} after {step}"
                );
            }
        }
        assert_eq!(
            s.count_jobs(filter()).await.unwrap(),
            want.total(),
            "all after {step}"
        );
    };
    check("nothing").await;
    let ids: Vec<i64> = s
        .submit((0..8).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    check("submit").await;
    let claim = |limit, now, lease_ms| ClaimRequest {
        owner: "w".into(),
        limit,
        lease_ms,
        now,
        ..ClaimRequest::default()
    };
    let jobs = s.claim(claim(4, T0, 60_000)).await.unwrap();
    assert_eq!(jobs.len(), 4);
    check("claim").await;
    let outcomes = [
        super::ok(),
        Outcome::Retry {
            run_at: T0 + 10,
            error: "flaky".into(),
            failure: "transient".into(),
        },
        Outcome::Quarantine {
            reason: QuarantineReason::ParseError,
            error: "bad input".into(),
            failure: "permanent".into(),
        },
    ];
    let done: Vec<Completion> = jobs
        .iter()
        .zip(outcomes)
        .map(|(j, outcome)| Completion {
            id: j.id,
            owner: "w".into(),
            attempt: j.attempt,
            outcome,
            started_at: T0,
            finished_at: T0 + 1,
        })
        .collect();
    assert_eq!(s.complete(done).await.unwrap().applied(), 3);
    check("complete").await;
    s.cancel(ids[7], "not needed", T0 + 2).await.unwrap();
    check("cancel").await;
    s.retry(jobs[2].id, Some("fixed"), T0 + 3).await.unwrap();
    check("retry").await;
    // The fourth claimed job's lease lapses: rescue puts it back.
    s.rescue(T0 + 120_000, None).await.unwrap();
    check("rescue").await;
    let gone = s.purge_jobs(vec![ids[7], jobs[0].id]).await.unwrap();
    assert_eq!(gone.len(), 2);
    check("purge").await;
    s.prune_finished(i64::MAX).await.unwrap();
    check("prune").await;
}
