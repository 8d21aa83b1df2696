//! The records of what happened on SQLite: the audit log of operator actions and the stored
//! crash-recovery reports, with their retention.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::{AuditEntry, RecoveryReport, Result, StoreError};

pub(super) async fn audit(s: &SqliteStore, e: AuditEntry) -> Result<()> {
    s.inner
        .writer
        .write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit (at, actor, action, target, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![e.at, e.actor, e.action, e.target, e.reason])?;
            Ok(())
        })
        .await
}

pub(super) async fn audit_log(
    s: &SqliteStore,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    s.read(move |conn| {
        let rows = conn
            .prepare_cached(
                "SELECT at, actor, action, target, reason FROM audit
                 WHERE ?1 IS NULL OR at >= ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![since, crate::sql_limit(limit)], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    reason: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    })
    .await
}

pub(super) async fn prune_audit(s: &SqliteStore, before: i64) -> Result<u64> {
    s.inner
        .writer
        .write(move |conn| Ok(conn.execute("DELETE FROM audit WHERE at < ?1", [before])? as u64))
        .await
}

pub(super) async fn put_recovery_report(s: &SqliteStore, report: RecoveryReport) -> Result<()> {
    let text = serde_json::to_string(&report).map_err(|e| StoreError::Backend(e.to_string()))?;
    s.inner
        .writer
        .write(move |conn| {
            conn.execute(
                "INSERT INTO recovery_reports (at, report) VALUES (?1, ?2)",
                params![report.at, text],
            )?;
            Ok(())
        })
        .await
}

pub(super) async fn last_recovery_report(s: &SqliteStore) -> Result<Option<RecoveryReport>> {
    s.read(|conn| {
        let text: Option<String> = conn
            .query_row(
                "SELECT report FROM recovery_reports ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Backend(e.to_string())))
            .transpose()
    })
    .await
}

pub(super) async fn prune_recovery_reports(s: &SqliteStore, keep: usize) -> Result<u64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    s.inner
        .writer
        .write(move |conn| {
            let n = conn.execute(
                "DELETE FROM recovery_reports WHERE id NOT IN
                 (SELECT id FROM recovery_reports ORDER BY at DESC, id DESC LIMIT ?1)",
                [keep],
            )?;
            Ok(n as u64)
        })
        .await
}
