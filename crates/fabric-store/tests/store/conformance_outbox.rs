//! Conformance cases of the outbox ([`fabric_store::OutboxStore`]): lifecycle events
//! written with their change, in order, one message per write and lane, only while capture
//! is on; messages appended, peeked, removed and pruned; sequence numbers never reused.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::NewJob;
use fabric_store::outbox::{JobEvent, NewOutboxRow, OutboxLane, OutboxRow, DETAIL_MAX_CHARS};
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

fn ok() -> Outcome {
    Outcome::Succeeded { result: None }
}

/// Every waiting message, oldest first.
async fn all(s: &dyn Store) -> Vec<OutboxRow> {
    s.outbox().outbox_peek(10_000, false).await.unwrap()
}

/// The lifecycle events of `rows` with the lane of their message, in order.
fn events(rows: &[OutboxRow]) -> Vec<(OutboxLane, JobEvent)> {
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.lane != OutboxLane::Telemetry) {
        let list: Vec<JobEvent> = serde_json::from_str(&r.body).unwrap();
        assert_eq!(list.len() as u32, r.events, "{}", r.body);
        out.extend(list.into_iter().map(|e| (r.lane, e)));
    }
    out
}

/// `(event, from, attempt)` of each event of job `id`.
fn of(evs: &[(OutboxLane, JobEvent)], id: i64) -> Vec<(String, Option<String>, u32)> {
    evs.iter()
        .filter(|(_, e)| e.job_id == id)
        .map(|(_, e)| (e.event.clone(), e.from.clone(), e.attempt))
        .collect()
}

fn ev(event: &str, from: Option<&str>, attempt: u32) -> (String, Option<String>, u32) {
    (format!("job.{event}"), from.map(String::from), attempt)
}

pub async fn outbox_captures_each_change_with_its_write_in_order_only_while_on(s: &dyn Store) {
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

    let ids = s
        .submit(vec![NewJob::new("noop"), NewJob::new("work")], T0 + 1)
        .await
        .unwrap();
    let (a, b) = (ids[0].id, ids[1].id);
    let mut keyed = NewJob::new("noop");
    keyed.unique_key = Some("k".into());
    let k = s.submit(vec![keyed.clone()], T0 + 1).await.unwrap()[0].id;
    s.submit(vec![keyed], T0 + 2).await.unwrap(); // a duplicate: no event
    let rows = all(s).await;
    assert_eq!(rows.len(), 2, "one message per write: {rows:?}");
    assert_eq!(rows[0].events, 2);

    // Claims and heartbeats are not captured.
    let jobs = s.claim(claim("w/1", T0 + 3, 60_000)).await.unwrap();
    assert_eq!(jobs.len(), 4);
    s.heartbeat("w/1", vec![(a, 1), (b, 1)], T0 + 90_000)
        .await
        .unwrap();
    assert_eq!(all(s).await.len(), 2);
    let job = |id| jobs.iter().find(|j| j.id == id).unwrap();
    let retry = Outcome::Retry {
        run_at: T0 + 5,
        error: "boom".into(),
        failure: "transient".into(),
    };
    s.complete(vec![
        finish(job(a), T0 + 4, ok()),
        finish(job(b), T0 + 4, retry),
        finish(job(k), T0 + 4, ok()),
    ])
    .await
    .unwrap();
    let jb = s.claim(claim("w/2", T0 + 6, 60_000)).await.unwrap();
    assert_eq!(jb.len(), 1);
    let quarantine = Outcome::Quarantine {
        reason: QuarantineReason::InvalidState,
        error: "é".repeat(2_000),
        failure: "permanent".into(),
    };
    s.complete(vec![finish(&jb[0], T0 + 7, quarantine)])
        .await
        .unwrap();
    s.retry(b, Some("try again"), T0 + 8).await.unwrap();
    s.cancel(b, "not needed", T0 + 9).await.unwrap();
    assert!(s.cancel(b, "twice", T0 + 10).await.is_err());

    let rows = all(s).await;
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    let evs = events(&rows);
    assert_eq!(
        of(&evs, a),
        vec![
            ev("submitted", None, 0),
            ev("succeeded", Some("running"), 1)
        ]
    );
    assert_eq!(
        of(&evs, b),
        vec![
            ev("submitted", None, 0),
            ev("failed", Some("running"), 1),
            ev("quarantined", Some("running"), 2),
            ev("requeued", Some("quarantined"), 2),
            ev("cancelled", Some("pending"), 2),
        ]
    );
    assert_eq!(evs.len(), 2 + 2 + 5, "the job submitted while off has none");
    let find = |name: &str| evs.iter().find(|(_, e)| e.event == name).unwrap().clone();
    assert_eq!(find("job.failed").1.detail.as_deref(), Some("boom"));
    let (lane, quarantined) = find("job.quarantined");
    assert_eq!(lane, OutboxLane::Emergency, "a quarantine is an emergency");
    let cut = quarantined.detail.unwrap();
    assert_eq!(cut.chars().count(), DETAIL_MAX_CHARS);
    assert_eq!(
        find("job.cancelled").1.detail.as_deref(),
        Some("not needed")
    );
    let failed = find("job.failed").1;
    assert_eq!((failed.kind, failed.shard, failed.at), (None, None, T0 + 4));
    let submitted = evs.iter().find(|(_, e)| e.job_id == b).unwrap().1.clone();
    assert_eq!(
        (submitted.kind.as_deref(), submitted.shard.as_deref()),
        (Some("work"), Some("default")),
        "kind and shard come with job.submitted"
    );
    // Absent fields are left out of the JSON.
    assert!(rows.iter().all(|r| !r.body.contains("null")), "{rows:?}");
    assert!(evs
        .iter()
        .all(|(l, e)| (*l == OutboxLane::Emergency) == (e.event == "job.quarantined")));
    let held = o.outbox_peek(100, true).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        of(&events(&held), b),
        vec![ev("quarantined", Some("running"), 2)]
    );
    let stats = o.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.events), (rows.len() as u64, 9));

    // Removed messages are gone; their sequence numbers are never handed out again.
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
    assert_eq!(of(&events(&rows), c), vec![ev("submitted", None, 0)]);
    assert!(rows[0].seq > last, "{} after {last}", rows[0].seq);

    assert!(o.set_event_capture(false).await.unwrap());
    assert!(!o.event_capture().await.unwrap());
    s.submit(vec![NewJob::new("noop")], T0 + 12).await.unwrap();
    assert_eq!(all(s).await.len(), 1, "capture off: nothing new");
}

pub async fn outbox_writes_big_batches_in_messages_of_at_most_a_thousand(s: &dyn Store) {
    s.outbox().set_event_capture(true).await.unwrap();
    let ids = s
        .submit(vec![NewJob::new("noop"); 1_500], T0)
        .await
        .unwrap();
    let rows = all(s).await;
    let sizes: Vec<u32> = rows.iter().map(|r| r.events).collect();
    assert_eq!(sizes, [1_000, 500]);
    let evs = events(&rows);
    let got: Vec<i64> = evs.iter().map(|(_, e)| e.job_id).collect();
    let want: Vec<i64> = ids.iter().map(|s| s.id).collect();
    assert_eq!(got, want, "in order");
}

pub async fn outbox_captures_rescues_and_nothing_of_a_refused_change(s: &dyn Store) {
    s.outbox().set_event_capture(true).await.unwrap();
    let mut last = NewJob::new("noop");
    last.max_attempts = 1;
    let ids = s.submit(vec![NewJob::new("noop"), last], T0).await.unwrap();
    s.claim(claim("w/1", T0, 1_000)).await.unwrap();
    let before = events(&all(s).await).len();
    // A refused change writes nothing: an operator retry of a running job.
    assert!(s.retry(ids[0].id, None, T0 + 1).await.is_err());
    assert_eq!(events(&all(s).await).len(), before);
    let report = s.rescue(T0 + 5_000, None).await.unwrap();
    assert_eq!((report.reset.len(), report.quarantined.len()), (1, 1));
    let evs = events(&all(s).await);
    assert_eq!(
        of(&evs, ids[0].id),
        vec![ev("submitted", None, 0), ev("requeued", Some("running"), 1)]
    );
    assert_eq!(
        of(&evs, ids[1].id),
        vec![
            ev("submitted", None, 0),
            ev("quarantined", Some("running"), 1)
        ]
    );
}

pub async fn outbox_appends_prunes_and_counts(s: &dyn Store) {
    let o = s.outbox();
    let sample = |at: i64| NewOutboxRow {
        lane: OutboxLane::Telemetry,
        body: format!("{{\"queue_depth\":{at}}}"),
        at,
    };
    o.outbox_append(vec![sample(T0), sample(T0 + 10), sample(T0 + 20)])
        .await
        .unwrap();
    let stats = o.outbox_stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.events, stats.oldest_at),
        (3, 0, Some(T0))
    );
    let rows = all(s).await;
    assert_eq!(rows[1].lane, OutboxLane::Telemetry);
    assert_eq!(rows[1].body, "{\"queue_depth\":1800000000010}");
    assert_eq!(rows[1].events, 0);
    assert_eq!(o.outbox_peek(2, true).await.unwrap().len(), 2, "limit");
    assert_eq!(o.outbox_prune(T0 + 15).await.unwrap(), 2);
    let stats = o.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_at), (1, Some(T0 + 20)));
    assert_eq!(o.outbox_prune(T0).await.unwrap(), 0);
}
