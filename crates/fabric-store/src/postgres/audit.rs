//! The records of what happened on PostgreSQL: the audit log of operator actions and the stored
//! crash-recovery reports, with their retention.

use super::{backend, PostgresStore};
use crate::{AuditEntry, RecoveryReport, Result};

pub(super) async fn audit(s: &PostgresStore, e: AuditEntry) -> Result<()> {
    let client = s.pool.get().await?;
    client
        .execute(
            "INSERT INTO audit (at, actor, action, target, reason) VALUES ($1, $2, $3, $4, $5)",
            &[&e.at, &e.actor, &e.action, &e.target, &e.reason],
        )
        .await?;
    Ok(())
}

pub(super) async fn audit_log(
    s: &PostgresStore,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    let client = s.pool.get().await?;
    client
        .query(
            "SELECT at, actor, action, target, reason FROM audit
             WHERE $1::bigint IS NULL OR at >= $1 ORDER BY id DESC LIMIT $2",
            &[&since, &(crate::sql_limit(limit))],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                at: r.try_get(0)?,
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                target: r.try_get(3)?,
                reason: r.try_get(4)?,
            })
        })
        .collect()
}

pub(super) async fn prune_audit(s: &PostgresStore, before: i64) -> Result<u64> {
    let client = s.pool.get().await?;
    Ok(client
        .execute("DELETE FROM audit WHERE at < $1", &[&before])
        .await?)
}

pub(super) async fn put_recovery_report(s: &PostgresStore, report: RecoveryReport) -> Result<()> {
    let client = s.pool.get().await?;
    let value = serde_json::to_value(&report).map_err(backend)?;
    client
        .execute(
            "INSERT INTO recovery_reports (at, report) VALUES ($1, $2)",
            &[&report.at, &value],
        )
        .await?;
    Ok(())
}

pub(super) async fn last_recovery_report(s: &PostgresStore) -> Result<Option<RecoveryReport>> {
    let client = s.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT report FROM recovery_reports ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    row.map(|r| {
        let v: serde_json::Value = r.try_get(0)?;
        serde_json::from_value(v).map_err(backend)
    })
    .transpose()
}

pub(super) async fn prune_recovery_reports(s: &PostgresStore, keep: usize) -> Result<u64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let client = s.pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM recovery_reports WHERE id NOT IN
             (SELECT id FROM recovery_reports ORDER BY at DESC, id DESC LIMIT $1)",
            &[&keep],
        )
        .await?)
}
