//! Retention of the files a daemon leaves in its home: crash-recovery reports in `reports/`
//! (`recovery.keep`) and backups in `backups/` (`backups.keep`). Each daemon prunes its own
//! home; what lives in the store is pruned by the maintenance leader (`fleet`).
//!
//! Only files named the way Fabric names them are counted and deleted
//! (`recovery-<ms>.json`, `queue-<UTC stamp>.db`): anything an operator puts there stays.

use std::path::{Path, PathBuf};

use fabric_core::config::Config;

use crate::FabricHome;

/// The time in the name of a recovery report, `recovery-<ms>.json`.
fn recovery_report_key(name: &str) -> Option<String> {
    let ms: u64 = name
        .strip_prefix("recovery-")?
        .strip_suffix(".json")?
        .parse()
        .ok()?;
    // Zero-padded so that names compare like their times.
    Some(format!("{ms:020}"))
}

/// The stamp in the name of a backup, `queue-<%Y%m%dT%H%M%S%.3fZ>.db`: sorts like its time.
fn backup_key(name: &str) -> Option<String> {
    let stamp = name.strip_prefix("queue-")?.strip_suffix(".db")?;
    (stamp.len() >= 16 && stamp.ends_with('Z')).then(|| stamp.to_string())
}

/// Deletes all but the newest `keep` files of `dir` that `key` recognises (newest = greatest
/// key); returns the deleted paths. A missing directory holds nothing.
fn keep_newest(
    dir: &Path,
    keep: usize,
    key: fn(&str) -> Option<String>,
) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ours = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(k) = entry.file_name().to_str().and_then(key) {
            ours.push((k, entry.path()));
        }
    }
    ours.sort_by(|a, b| b.0.cmp(&a.0));
    let mut deleted = Vec::new();
    for (_, path) in ours.into_iter().skip(keep) {
        match std::fs::remove_file(&path) {
            Ok(()) => deleted.push(path),
            // Another daemon of this home pruned it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Keeps the newest `keep` recovery reports `recovery-<ms>.json` of `reports`.
pub fn prune_recovery_reports(reports: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    keep_newest(reports, keep, recovery_report_key)
}

/// Keeps the newest `keep` backups `queue-<stamp>.db` of `backups`.
pub fn prune_backups(backups: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    keep_newest(backups, keep, backup_key)
}

/// Applies `recovery.keep` to `reports/` and `backups.keep` to `backups/` of `home`; a
/// failure is logged, never fatal (it is retried at the next occasion).
pub fn prune_home(home: &FabricHome, config: &Config) {
    let reports = prune_recovery_reports(&home.reports(), config.recovery.keep as usize);
    log_outcome("recovery reports", &home.reports(), reports);
    let backups = prune_backups(&home.backups(), config.backups.keep as usize);
    log_outcome("backups", &home.backups(), backups);
}

/// Logs what a pruning of `dir` did.
pub fn log_outcome(what: &'static str, dir: &Path, r: std::io::Result<Vec<PathBuf>>) {
    match r {
        Ok(deleted) if deleted.is_empty() => {}
        Ok(deleted) => {
            tracing::info!(pruned = deleted.len(), what, dir = %dir.display(), "retention: pruned")
        }
        Err(e) => {
            tracing::warn!(error = %e, what, dir = %dir.display(), "retention: pruning failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_the_newest_recovery_reports_by_time_not_by_name_length() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "recovery-900.json",
            "recovery-1000.json",
            "recovery-2000.json",
        ] {
            touch(d.path(), n);
        }
        touch(d.path(), "recovery-notes.txt");
        std::fs::create_dir(d.path().join("planetary-fabric")).unwrap();
        let deleted = prune_recovery_reports(d.path(), 2).unwrap();
        assert_eq!(deleted, vec![d.path().join("recovery-900.json")]);
        assert_eq!(
            names(d.path()),
            [
                "planetary-fabric",
                "recovery-1000.json",
                "recovery-2000.json",
                "recovery-notes.txt"
            ]
        );
    }

    #[test]
    fn keeps_the_newest_backups_and_leaves_other_files() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "queue-20240101T000000.000Z.db",
            "queue-20250101T000000.000Z.db",
            "queue-20230101T000000.000Z.db",
            "mine.db",
        ] {
            touch(d.path(), n);
        }
        assert_eq!(prune_backups(d.path(), 1).unwrap().len(), 2);
        assert_eq!(
            names(d.path()),
            ["mine.db", "queue-20250101T000000.000Z.db"]
        );
        assert!(prune_backups(&d.path().join("absent"), 1)
            .unwrap()
            .is_empty());
    }
}
