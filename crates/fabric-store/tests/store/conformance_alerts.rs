//! Conformance cases of the alert store ([`fabric_store::AlertStore`]): states saved with
//! their notifications in one step, acknowledgement, silences, claiming and settling the
//! queue (each notification to one claimer), delivery history and pruning.

use std::collections::BTreeMap;

use fabric_store::{
    AlertPhase, AlertState, NewDeliveryAttempt, NewNotification, NewSilence, NotifyStatus,
    QueueState, Settle, Store, StoreError,
};

const T0: i64 = 1_800_000_000_000;

fn state(fp: &str, phase: AlertPhase) -> AlertState {
    AlertState {
        fingerprint: fp.into(),
        rule: "queue_depth_high".into(),
        labels: BTreeMap::from([("alertname".to_string(), "queue_depth_high".to_string())]),
        metric: "queue_depth".into(),
        phase,
        breaches: 2,
        since: T0,
        last_value: 4500.5,
        last_at: T0 + 10,
        notified_firing: phase == AlertPhase::Firing,
        notified_routes: vec!["chat".into()],
        last_notified_at: Some(T0 + 10),
        acked_by: None,
        acked_at: None,
        ack_comment: None,
    }
}

fn note(route: &str, fp: &str, status: NotifyStatus, at: i64) -> NewNotification {
    NewNotification {
        route: route.into(),
        group_key: "alertname=queue_depth_high".into(),
        fingerprint: fp.into(),
        rule: "queue_depth_high".into(),
        status,
        alert: serde_json::json!({"value": 4500.5, "labels": {"shard": "earth"}}),
        created_at: at,
    }
}

fn attempt(route: &str, ids: &[i64], outcome: &str, at: i64) -> NewDeliveryAttempt {
    NewDeliveryAttempt {
        at,
        route: route.into(),
        group_key: "alertname=queue_depth_high".into(),
        notifications: ids.to_vec(),
        summary: "firing queue_depth_high".into(),
        attempt: 1,
        outcome: outcome.into(),
        detail: "HTTP 200".into(),
        duration_ms: 3,
    }
}

pub async fn alerts_states_and_notifications_are_saved_together(s: &dyn Store) {
    let a = s.alerts();
    assert!(a.alert_states().await.unwrap().is_empty());
    let ids = a
        .save_evaluation(
            vec![
                state("f1", AlertPhase::Firing),
                state("f2", AlertPhase::Pending),
            ],
            vec![],
            vec![
                note("chat", "f1", NotifyStatus::Firing, T0 + 10),
                note("pager", "f1", NotifyStatus::Firing, T0 + 10),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
    let states = a.alert_states().await.unwrap();
    assert_eq!(
        states,
        vec![
            state("f1", AlertPhase::Firing),
            state("f2", AlertPhase::Pending)
        ]
    );
    let queue = a.notification_queue(T0 + 10, 10).await.unwrap();
    assert_eq!(queue.len(), 2);
    assert_eq!(queue[0].id, ids[0]);
    assert_eq!(
        queue[0].new,
        note("chat", "f1", NotifyStatus::Firing, T0 + 10)
    );
    assert_eq!(
        (queue[0].state, queue[0].attempts, queue[0].next_attempt_at),
        (QueueState::Queued, 0, T0 + 10)
    );
    // An update and a removal in the next evaluation.
    let mut cleared = state("f1", AlertPhase::Firing);
    cleared.notified_firing = false;
    cleared.breaches = 0;
    a.save_evaluation(
        vec![cleared.clone()],
        vec!["f2".into()],
        vec![note("chat", "f1", NotifyStatus::Resolved, T0 + 20)],
    )
    .await
    .unwrap();
    assert_eq!(a.alert_states().await.unwrap(), vec![cleared]);
    let newest = a.notifications(1).await.unwrap();
    assert_eq!(newest[0].new.status, NotifyStatus::Resolved);
    assert_eq!(a.notifications(10).await.unwrap().len(), 3);
}

pub async fn alerts_ack_records_who_and_unknown_is_not_found(s: &dyn Store) {
    let a = s.alerts();
    a.save_evaluation(vec![state("f1", AlertPhase::Firing)], vec![], vec![])
        .await
        .unwrap();
    let acked = a
        .ack_alert("f1", "cli:ada", Some("looking"), T0 + 5)
        .await
        .unwrap();
    assert_eq!(acked.acked_by.as_deref(), Some("cli:ada"));
    assert_eq!(
        (acked.acked_at, acked.ack_comment.as_deref()),
        (Some(T0 + 5), Some("looking"))
    );
    assert_eq!(a.alert_states().await.unwrap(), vec![acked]);
    let err = a.ack_alert("nope", "x", None, T0).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn alerts_silences_add_list_and_expire(s: &dyn Store) {
    let a = s.alerts();
    let new = NewSilence {
        matchers: vec!["alertname=queue_depth_high".into(), "shard!=mars".into()],
        starts_at: T0,
        ends_at: T0 + 7_200_000,
        author: "ada".into(),
        comment: "maintenance".into(),
    };
    let first = a.add_silence(new.clone(), T0).await.unwrap();
    assert_eq!((first.new.clone(), first.created_at), (new.clone(), T0));
    assert!(first.active(T0 + 1) && !first.active(T0 + 7_200_000));
    let second = a.add_silence(new.clone(), T0 + 1).await.unwrap();
    assert!(second.id > first.id);
    let all = a.silences().await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    let ended = a.expire_silence(first.id, T0 + 60).await.unwrap();
    assert_eq!(ended.new.ends_at, T0 + 60);
    assert!(!ended.active(T0 + 61));
    // Expiring again leaves the earlier end.
    let again = a.expire_silence(first.id, T0 + 90).await.unwrap();
    assert_eq!(again.new.ends_at, T0 + 60);
    let err = a.expire_silence(9_999, T0).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

pub async fn alerts_queue_claims_once_and_settles(s: &dyn Store) {
    let a = s.alerts();
    let ids = a
        .save_evaluation(
            vec![],
            vec![],
            vec![
                note("chat", "f1", NotifyStatus::Firing, T0),
                note("chat", "f2", NotifyStatus::Firing, T0),
                note("mail", "f1", NotifyStatus::Firing, T0),
            ],
        )
        .await
        .unwrap();
    let got = a
        .claim_notifications(ids[..2].to_vec(), "w1", T0, T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(got, ids[..2]);
    // Claimed: neither waiting nor claimable by another worker until the lease lapses.
    assert!(a
        .claim_notifications(ids.clone(), "w2", T0 + 1, T0 + 1_000)
        .await
        .unwrap()
        .eq(&[ids[2]]));
    assert!(a.notification_queue(T0 + 2, 10).await.unwrap().is_empty());
    // w1 delivers the first; settling by someone else changes nothing.
    a.settle_notifications(
        vec![ids[0]],
        "w2",
        Settle::Delivered { at: T0 + 3 },
        attempt("chat", &[ids[0]], "delivered", T0 + 3),
    )
    .await
    .unwrap();
    a.settle_notifications(
        vec![ids[0]],
        "w1",
        Settle::Delivered { at: T0 + 5 },
        attempt("chat", &[ids[0]], "delivered", T0 + 5),
    )
    .await
    .unwrap();
    a.settle_notifications(
        vec![ids[1]],
        "w1",
        Settle::Retry {
            next_at: T0 + 500,
            error: "HTTP 429".into(),
        },
        attempt("chat", &[ids[1]], "retry", T0 + 5),
    )
    .await
    .unwrap();
    a.settle_notifications(
        vec![ids[2]],
        "w2",
        Settle::Failed {
            at: T0 + 6,
            error: "HTTP 400".into(),
        },
        attempt("mail", &[ids[2]], "failed", T0 + 6),
    )
    .await
    .unwrap();
    let all = a.notifications(10).await.unwrap();
    let of = |id: i64| all.iter().find(|n| n.id == id).unwrap().clone();
    let first = of(ids[0]);
    assert_eq!(
        (first.state, first.attempts, first.settled_at),
        (QueueState::Delivered, 1, Some(T0 + 5))
    );
    let second = of(ids[1]);
    assert_eq!(
        (second.state, second.attempts, second.next_attempt_at),
        (QueueState::Queued, 1, T0 + 500)
    );
    assert_eq!(second.last_error.as_deref(), Some("HTTP 429"));
    assert_eq!(of(ids[2]).state, QueueState::Failed);
    let queue = a.notification_queue(T0 + 10, 10).await.unwrap();
    assert_eq!(queue.iter().map(|n| n.id).collect::<Vec<_>>(), [ids[1]]);
    let flushes = a.group_flushes().await.unwrap();
    assert_eq!(flushes.len(), 1);
    assert_eq!((flushes[0].route.as_str(), flushes[0].at), ("chat", T0 + 5));
    // A lapsed lease makes a claimed notification claimable again.
    a.claim_notifications(vec![ids[1]], "w1", T0 + 600, T0 + 700)
        .await
        .unwrap();
    assert!(a.notification_queue(T0 + 650, 10).await.unwrap().is_empty());
    assert_eq!(a.notification_queue(T0 + 701, 10).await.unwrap().len(), 1);
    assert_eq!(
        a.claim_notifications(vec![ids[1]], "w2", T0 + 701, T0 + 800)
            .await
            .unwrap(),
        [ids[1]]
    );
}

pub async fn alerts_history_filters_and_prunes(s: &dyn Store) {
    let a = s.alerts();
    a.record_delivery(attempt("chat", &[], "test-ok", T0))
        .await
        .unwrap();
    a.record_delivery(attempt("mail", &[], "test-failed", T0 + 10))
        .await
        .unwrap();
    let all = a.deliveries(None, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].attempt, attempt("mail", &[], "test-failed", T0 + 10));
    assert_eq!(a.deliveries(None, Some("chat"), 10).await.unwrap().len(), 1);
    assert_eq!(a.deliveries(Some(T0 + 5), None, 10).await.unwrap().len(), 1);
    assert_eq!(a.deliveries(None, None, 1).await.unwrap().len(), 1);
    let ids = a
        .save_evaluation(
            vec![],
            vec![],
            vec![
                note("chat", "f1", NotifyStatus::Firing, T0),
                note("chat", "f2", NotifyStatus::Firing, T0),
            ],
        )
        .await
        .unwrap();
    a.claim_notifications(vec![ids[0]], "w", T0, T0 + 100)
        .await
        .unwrap();
    a.settle_notifications(
        vec![ids[0]],
        "w",
        Settle::Delivered { at: T0 + 1 },
        attempt("chat", &[ids[0]], "delivered", T0 + 1),
    )
    .await
    .unwrap();
    a.add_silence(
        NewSilence {
            matchers: vec!["alertname=x".into()],
            starts_at: T0,
            ends_at: T0 + 2,
            author: "ada".into(),
            comment: String::new(),
        },
        T0,
    )
    .await
    .unwrap();
    // Delivered notification, three attempts and the ended silence go; the queued one stays.
    assert_eq!(a.prune_alert_history(T0 + 100).await.unwrap(), 5);
    let left = a.notifications(10).await.unwrap();
    assert_eq!(left.iter().map(|n| n.id).collect::<Vec<_>>(), [ids[1]]);
    assert!(a.silences().await.unwrap().is_empty());
    assert!(a.deliveries(None, None, 10).await.unwrap().is_empty());
}

pub async fn alerts_job_signals_count_what_the_jobs_did(s: &dyn Store) {
    use fabric_core::NewJob;
    use fabric_store::{ClaimRequest, Completion, Outcome};
    let a = s.alerts();
    assert_eq!(
        a.job_signals(T0, T0).await.unwrap(),
        fabric_store::JobSignals::default()
    );
    let mut job = NewJob::new("noop");
    job.run_at = Some(T0);
    let later = {
        let mut j = NewJob::new("noop");
        j.run_at = Some(T0 + 1_000_000);
        j
    };
    s.submit(vec![job.clone(), job.clone(), job, later], T0)
        .await
        .unwrap();
    let claimed = s
        .claim(ClaimRequest {
            owner: "w".into(),
            limit: 2,
            lease_ms: 60_000,
            now: T0 + 100,
            ..ClaimRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let done = |i: usize, outcome: Outcome| Completion {
        id: claimed[i].id,
        attempt: 1,
        owner: "w".into(),
        started_at: T0 + 100,
        outcome,
        finished_at: T0 + 200,
    };
    s.complete(vec![
        done(0, Outcome::Succeeded { result: None }),
        done(
            1,
            Outcome::Quarantine {
                reason: fabric_core::quarantine::QuarantineReason::InvalidState,
                error: "bad".into(),
                failure: "permanent".into(),
            },
        ),
    ])
    .await
    .unwrap();
    let got = a.job_signals(T0 + 50, T0 + 300).await.unwrap();
    assert_eq!(got.queued, 2, "{got:?}");
    assert_eq!(got.succeeded, 1, "{got:?}");
    assert_eq!(got.quarantined, 1, "{got:?}");
    assert_eq!(got.started, 2, "{got:?}");
    assert_eq!(got.wait_ms_sum, 200, "{got:?}");
    assert_eq!(got.oldest_due_at, Some(T0), "{got:?}");
    let later = a.job_signals(T0 + 250, T0 + 300).await.unwrap();
    assert_eq!(
        (later.succeeded, later.started, later.quarantined),
        (0, 0, 0)
    );
}
