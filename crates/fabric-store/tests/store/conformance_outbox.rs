//! Conformance cases of the outbox ([`fabric_store::OutboxStore`]): lifecycle events captured
//! with their change, in order, only while capture is on; rows appended, peeked, removed and
//! pruned; sequence numbers never reused.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::NewJob;
use fabric_store::outbox::{NewOutboxRow, OutboxLane, OutboxRow};
use fabric_store::{ClaimRequest, Completion, Outcome, Store};

const T0: i64 = 1_800_000_000_000;

fn claim(owner: &str, now: i64, lease_ms: i64) -> ClaimRequest {
    ClaimRequest {
        owner: owner.into(),
        limit: 10,
        lease_ms,
        now,
        ..ClaimRequest::default()
    }
}

fn finish(job: &fabric_core::Job, now: i64, outcome: Outcome) -> Completion {
    Completion {
        id: job.id,
        attempt: job.attempt,
        owner: job.lease_owner.clone().unwrap_or_default(),
        started_at: job.started_at.unwrap_or(now),
        finished_at: now,
        outcome,
    }
}

/// Every waiting row, oldest first.
async fn all(s: &dyn Store) -> Vec<OutboxRow> {
    s.outbox().outbox_peek(10_000, false).await.unwrap()
}

/// `(job, event, from, attempt)` of each row.
fn brief(rows: &[OutboxRow]) -> Vec<(i64, String, Option<String>, Option<u32>)> {
    rows.iter()
        .map(|r| {
            (
                r.job_id.unwrap_or(0),
                r.event.clone(),
                r.from.clone(),
                r.attempt,
            )
        })
        .collect()
}

fn ev(
    job: i64,
    event: &str,
    from: Option<&str>,
    attempt: u32,
) -> (i64, String, Option<String>, Option<u32>) {
    (job, event.into(), from.map(String::from), Some(attempt))
}

pub async fn outbox_captures_each_state_change_in_order_only_while_on(s: &dyn Store) {
    let o = s.outbox();
    assert!(
        !o.event_capture().await.unwrap(),
        "capture is off by default"
    );
    s.submit(vec![NewJob::new("noop")], T0).await.unwrap();
    assert!(all(s).await.is_empty(), "nothing is captured while off");

    assert!(o.set_event_capture(true).await.unwrap());
    assert!(!o.set_event_capture(true).await.unwrap(), "already on");
    assert!(o.event_capture().await.unwrap());

    let mut keyed = NewJob::new("noop");
    keyed.unique_key = Some("k".into());
    let ids = s
        .submit(vec![keyed.clone(), NewJob::new("work")], T0 + 1)
        .await
        .unwrap();
    let (a, b) = (ids[0].id, ids[1].id);
    s.submit(vec![keyed], T0 + 2).await.unwrap(); // a duplicate: no event
                                                  // The job submitted while capture was off is claimed too: its later events are captured.
    let jobs = s.claim(claim("w/1", T0 + 3, 60_000)).await.unwrap();
    assert_eq!(jobs.len(), 3);
    let ja = jobs.iter().find(|j| j.id == a).unwrap();
    let jb = jobs.iter().find(|j| j.id == b).unwrap();
    s.heartbeat("w/1", vec![(a, 1), (b, 1)], T0 + 90_000)
        .await
        .unwrap(); // no state change: no event
    let retry = Outcome::Retry {
        run_at: T0 + 5,
        error: "boom".into(),
        failure: "transient".into(),
    };
    s.complete(vec![
        finish(ja, T0 + 4, Outcome::Succeeded { result: None }),
        finish(jb, T0 + 4, retry),
    ])
    .await
    .unwrap();
    let jb = s.claim(claim("w/2", T0 + 6, 60_000)).await.unwrap();
    assert_eq!(jb.len(), 1);
    let quarantine = Outcome::Quarantine {
        reason: QuarantineReason::InvalidState,
        error: "x".repeat(2_000),
        failure: "permanent".into(),
    };
    s.complete(vec![finish(&jb[0], T0 + 7, quarantine)])
        .await
        .unwrap();
    s.retry(b, Some("try again"), T0 + 8).await.unwrap();
    s.cancel(b, "not needed", T0 + 9).await.unwrap();
    assert!(s.cancel(b, "twice", T0 + 10).await.is_err());

    let rows = all(s).await;
    let of = |id: i64| -> Vec<OutboxRow> {
        rows.iter()
            .filter(|r| r.job_id == Some(id))
            .cloned()
            .collect()
    };
    // Per job, in order (across jobs the order is the backend's).
    assert_eq!(
        brief(&of(a)),
        vec![
            ev(a, "job.submitted", None, 0),
            ev(a, "job.started", Some("pending"), 1),
            ev(a, "job.succeeded", Some("running"), 1),
        ]
    );
    assert_eq!(
        brief(&of(b)),
        vec![
            ev(b, "job.submitted", None, 0),
            ev(b, "job.started", Some("pending"), 1),
            ev(b, "job.failed", Some("running"), 1),
            ev(b, "job.started", Some("failed"), 2),
            ev(b, "job.quarantined", Some("running"), 2),
            ev(b, "job.requeued", Some("quarantined"), 2),
            ev(b, "job.cancelled", Some("pending"), 2),
        ]
    );
    let mine: Vec<OutboxRow> = rows
        .iter()
        .filter(|r| r.job_id == Some(a) || r.job_id == Some(b))
        .cloned()
        .collect();
    assert_eq!(rows.len(), mine.len() + 1, "the early job's start");
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    let by_event = |e: &str| mine.iter().find(|r| r.event == e).unwrap().clone();
    assert_eq!(by_event("job.failed").detail.as_deref(), Some("boom"));
    assert_eq!(
        by_event("job.quarantined")
            .detail
            .map(|d| d.chars().count()),
        Some(fabric_store::outbox::DETAIL_MAX_CHARS)
    );
    assert_eq!(
        by_event("job.cancelled").detail.as_deref(),
        Some("not needed")
    );
    let started_b = &of(b)[1];
    assert_eq!(started_b.kind.as_deref(), Some("work"));
    assert_eq!(started_b.shard.as_deref(), Some("default"));
    assert_eq!(by_event("job.succeeded").at, T0 + 4);
    let lanes: Vec<OutboxLane> = mine.iter().map(|r| r.lane).collect();
    assert_eq!(
        lanes
            .iter()
            .filter(|l| **l == OutboxLane::Emergency)
            .count(),
        1,
        "a quarantine goes to the emergency lane, the rest to normal"
    );
    let held = o.outbox_peek(100, true).await.unwrap();
    assert_eq!(
        brief(&held),
        vec![ev(b, "job.quarantined", Some("running"), 2)]
    );

    // Removed rows are gone; their sequence numbers are never handed out again.
    let last = rows.last().unwrap().seq;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(
        o.outbox_remove(seqs.clone()).await.unwrap(),
        rows.len() as u64
    );
    assert_eq!(o.outbox_remove(seqs).await.unwrap(), 0);
    assert_eq!(o.outbox_stats().await.unwrap().pending, 0);
    let c = s.submit(vec![NewJob::new("noop")], T0 + 11).await.unwrap()[0].id;
    let rows = all(s).await;
    assert_eq!(brief(&rows), vec![ev(c, "job.submitted", None, 0)]);
    assert!(rows[0].seq > last, "{} after {last}", rows[0].seq);

    assert!(o.set_event_capture(false).await.unwrap());
    assert!(!o.event_capture().await.unwrap());
    s.submit(vec![NewJob::new("noop")], T0 + 12).await.unwrap();
    assert_eq!(all(s).await.len(), 1, "capture off: nothing new");
}

pub async fn outbox_captures_rescues_and_nothing_of_a_refused_change(s: &dyn Store) {
    s.outbox().set_event_capture(true).await.unwrap();
    let mut last = NewJob::new("noop");
    last.max_attempts = 1;
    let ids = s.submit(vec![NewJob::new("noop"), last], T0).await.unwrap();
    s.claim(claim("w/1", T0, 1_000)).await.unwrap();
    let before = all(s).await.len();
    // A refused change writes nothing: an operator retry of a running job.
    assert!(s.retry(ids[0].id, None, T0 + 1).await.is_err());
    assert_eq!(all(s).await.len(), before);
    let report = s.rescue(T0 + 5_000, None).await.unwrap();
    assert_eq!((report.reset.len(), report.quarantined.len()), (1, 1));
    let rows = all(s).await;
    let tail: Vec<(i64, String, Option<String>, Option<u32>)> = brief(&rows[before..])
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        tail,
        vec![
            ev(ids[0].id, "job.requeued", Some("running"), 1),
            ev(ids[1].id, "job.quarantined", Some("running"), 1),
        ]
    );
}

pub async fn outbox_appends_prunes_and_counts(s: &dyn Store) {
    let o = s.outbox();
    let sample = |at: i64| NewOutboxRow {
        lane: OutboxLane::Telemetry,
        event: "telemetry".into(),
        detail: format!("{{\"queue_depth\":{at}}}"),
        at,
    };
    o.outbox_append(vec![sample(T0), sample(T0 + 10), sample(T0 + 20)])
        .await
        .unwrap();
    let stats = o.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_at), (3, Some(T0)));
    let rows = all(s).await;
    assert_eq!(rows[1].lane, OutboxLane::Telemetry);
    assert_eq!(
        rows[1].detail.as_deref(),
        Some("{\"queue_depth\":1800000000010}")
    );
    assert_eq!((rows[1].job_id, rows[1].attempt), (None, None));
    assert_eq!(o.outbox_peek(2, true).await.unwrap().len(), 2, "limit");
    assert_eq!(o.outbox_prune(T0 + 15).await.unwrap(), 2);
    let stats = o.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_at), (1, Some(T0 + 20)));
    assert_eq!(o.outbox_prune(T0).await.unwrap(), 0);
}
