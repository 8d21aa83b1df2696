//! Conformance cases of upkeep: quarantine purges, the audit log and recovery reports with
//! their retention, integrity checks and maintenance.

use fabric_core::quarantine::QuarantineReason;
use fabric_core::NewJob;
use fabric_store::{AuditEntry, Outcome, RecoveryReport, Store, StoreError};

use super::{claim_req, done, ok, T0};

pub async fn purge_removes_only_old_quarantine_and_dry_run_nothing(s: &dyn Store) {
    s.submit((0..3).map(|_| NewJob::new("noop")).collect(), T0)
        .await
        .unwrap();
    let jobs = s.claim(claim_req("w", 3, T0)).await.unwrap();
    for (i, j) in jobs.iter().enumerate() {
        let mut c = done(
            j,
            "w",
            Outcome::Quarantine {
                reason: if i == 0 {
                    QuarantineReason::Timeout
                } else {
                    QuarantineReason::Unknown
                },
                error: "boom".into(),
                failure: "unknown".into(),
            },
        );
        c.finished_at = T0 + (i as i64) * 1_000;
        s.complete(vec![c]).await.unwrap();
    }
    let dry = s.purge_quarantine(T0 + 1_500, None, true).await.unwrap();
    assert_eq!(dry.len(), 2);
    assert_eq!(s.quarantine_stats().await.unwrap().total, 3);
    let only_unknown = s
        .purge_quarantine(T0 + 1_500, Some(QuarantineReason::Unknown), false)
        .await
        .unwrap();
    assert_eq!(only_unknown, vec![jobs[1].id]);
    assert_eq!(s.quarantine_stats().await.unwrap().total, 2);
    assert!(matches!(
        s.job(jobs[1].id).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn audit_and_recovery_reports_round_trip(s: &dyn Store) {
    for i in 0..3 {
        s.audit(AuditEntry {
            at: T0 + i,
            actor: "alice".into(),
            action: "jobs.cancel".into(),
            target: format!("job {i}"),
            reason: Some("test".into()),
        })
        .await
        .unwrap();
    }
    let log = s.audit_log(Some(T0 + 1), 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].target, "job 2");
    assert!(s.last_recovery_report().await.unwrap().is_none());
    let r = RecoveryReport {
        at: T0,
        jobs_reset_to_pending: 7,
        jobs_quarantined: 0,
        duration_ms: 1.5,
        wal_checkpointed: true,
        integrity: "ok".into(),
        errors: vec![],
    };
    s.put_recovery_report(r.clone()).await.unwrap();
    assert_eq!(s.last_recovery_report().await.unwrap(), Some(r));
}

pub async fn retention_prunes_old_audit_and_all_but_the_newest_recovery_reports(s: &dyn Store) {
    for i in 0..4 {
        s.audit(AuditEntry {
            at: T0 + i * 1_000,
            actor: "alice".into(),
            action: "jobs.cancel".into(),
            target: format!("job {i}"),
            reason: None,
        })
        .await
        .unwrap();
    }
    assert_eq!(s.prune_audit(T0).await.unwrap(), 0);
    assert_eq!(s.prune_audit(T0 + 2_000).await.unwrap(), 2);
    let left: Vec<String> = s
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert_eq!(left, vec!["job 3", "job 2"]);

    let report = |at: i64| RecoveryReport {
        at,
        jobs_reset_to_pending: at as u64,
        jobs_quarantined: 0,
        duration_ms: 1.0,
        wal_checkpointed: true,
        integrity: "ok".into(),
        errors: vec![],
    };
    // Inserted out of time order: the newest by time are kept.
    for at in [T0 + 3, T0 + 1, T0 + 4, T0 + 2] {
        s.put_recovery_report(report(at)).await.unwrap();
    }
    assert_eq!(s.prune_recovery_reports(10).await.unwrap(), 0);
    assert_eq!(s.prune_recovery_reports(2).await.unwrap(), 2);
    assert_eq!(s.prune_recovery_reports(2).await.unwrap(), 0);
    assert_eq!(
        s.last_recovery_report().await.unwrap().map(|r| r.at),
        Some(T0 + 4)
    );
    assert_eq!(s.prune_recovery_reports(1).await.unwrap(), 1);
    assert_eq!(
        s.last_recovery_report().await.unwrap().map(|r| r.at),
        Some(T0 + 4)
    );
    assert_eq!(s.prune_recovery_reports(0).await.unwrap(), 1);
    assert_eq!(s.last_recovery_report().await.unwrap(), None);
}

pub async fn integrity_prune_and_maintenance(s: &dyn Store) {
    assert_eq!(s.integrity_check().await.unwrap(), vec!["ok".to_string()]);
    s.submit(vec![NewJob::new("noop"), NewJob::new("noop")], T0)
        .await
        .unwrap();
    let j = s.claim(claim_req("w", 1, T0)).await.unwrap().remove(0);
    s.complete(vec![done(&j, "w", ok())]).await.unwrap();
    assert_eq!(s.succeeded_since(T0 + 10).await.unwrap(), 1);
    assert_eq!(s.succeeded_since(T0 + 11).await.unwrap(), 0);
    assert_eq!(s.prune_finished(T0 + 5).await.unwrap(), 0);
    assert_eq!(s.prune_finished(T0 + 11).await.unwrap(), 1);
    assert_eq!(s.counts().await.unwrap().total(), 1);
    s.checkpoint().await.unwrap();
    s.vacuum().await.unwrap();
    assert_eq!(s.next_run_at(T0 - 1).await.unwrap(), Some(T0));
    // What was due at a claim and still waits is not a dispatcher's to wait for.
    assert_eq!(s.next_run_at(T0).await.unwrap(), None);
}
