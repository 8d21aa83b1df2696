//! Crash recovery at daemon start: reset this node's orphaned `running` jobs to `pending`,
//! checkpoint the WAL, check integrity and store a report.

use std::path::Path;
use std::time::Instant;

use fabric_core::Clock;
use fabric_store::{RecoveryReport, Store};

use crate::EngineError;

/// Recovers after a crash. `crashed` says the `.recovery` marker was found. A report is
/// stored (and returned) when the last run crashed or any job was reset.
pub async fn recover(
    store: &dyn Store,
    clock: &dyn Clock,
    node_id: &str,
    crashed: bool,
) -> Result<Option<RecoveryReport>, EngineError> {
    let t0 = Instant::now();
    let mut errors = Vec::new();
    let now = clock.now_ms();
    let rescued = store.rescue(now, Some(&format!("{node_id}/"))).await?;
    let checkpointed = match store.checkpoint().await {
        Ok(()) => true,
        Err(e) => {
            errors.push(format!("WAL checkpoint: {e}"));
            false
        }
    };
    let integrity = match store.integrity_check().await {
        Ok(lines) => lines.join("; "),
        Err(e) => {
            errors.push(format!("integrity check: {e}"));
            "unknown".into()
        }
    };
    if integrity != "ok" {
        errors.push(format!("integrity check: {integrity}"));
    }
    if !crashed && rescued.reset.is_empty() && rescued.quarantined.is_empty() {
        return Ok(None);
    }
    let report = RecoveryReport {
        at: now,
        jobs_reset_to_pending: rescued.reset.len() as u64,
        jobs_quarantined: rescued.quarantined.len() as u64,
        duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
        wal_checkpointed: checkpointed,
        integrity,
        errors,
    };
    store.put_recovery_report(report.clone()).await?;
    tracing::info!(
        jobs_reset_to_pending = report.jobs_reset_to_pending,
        jobs_quarantined = report.jobs_quarantined,
        duration_ms = report.duration_ms,
        integrity = %report.integrity,
        "recovered after an unclean stop"
    );
    Ok(Some(report))
}

/// True when the marker of a running daemon was left behind (the last run crashed).
pub fn crashed(marker: &Path) -> bool {
    marker.exists()
}
