//! Retention in a home through the real binary: `backups.keep` after each backup,
//! `logs.max_bytes` / `logs.keep` in the background daemon's log, `recovery.keep` for the
//! reports it finds at start.

use std::path::Path;

use super::Home;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn db_backup_keeps_the_newest_n_and_a_kept_one_still_restores() {
    let h = Home::new().with("FABRIC__BACKUPS__KEEP", "2");
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    let paths: Vec<String> = (0..3)
        .map(|_| {
            h.json(&["db", "backup"])["path"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let listed = h.json(&["db", "list-backups"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!Path::new(&paths[0]).exists(), "the oldest is deleted");
    assert!(Path::new(&paths[1]).exists() && Path::new(&paths[2]).exists());
    // A file of the operator's own in backups/ is not Fabric's to delete.
    let mine = h.path().join("backups").join("before-upgrade.db");
    std::fs::copy(&paths[1], &mine).unwrap();

    // Restoring the oldest kept backup saves the current store aside (a third backup):
    // the restore must not lose its source to that pruning.
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    h.expect(0, &["db", "restore", &paths[1]]);
    assert_eq!(h.job_count(), 1);
    let kept = names(&h.path().join("backups"));
    assert_eq!(
        kept.len(),
        3,
        "two backups and the operator's file: {kept:?}"
    );
    assert!(kept.contains(&"before-upgrade.db".to_string()));
}

#[test]
fn the_background_daemon_rotates_its_log_and_prunes_old_recovery_reports() {
    let h = Home::new()
        // An empty claim is traced at every poll: a steady trickle of log lines.
        .with("FABRIC_LOG", "fabric_engine=trace,info")
        .with("FABRIC__WORKERS__POLL_INTERVAL_MS", "10")
        .with("FABRIC__LOGS__MAX_BYTES", "4096")
        .with("FABRIC__LOGS__KEEP", "2")
        .with("FABRIC__RECOVERY__KEEP", "2");
    let reports = h.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    for ms in [1, 2, 30, 400] {
        std::fs::write(reports.join(format!("recovery-{ms}.json")), "{}").unwrap();
    }
    std::fs::write(reports.join("k2.json"), "{}").unwrap();

    h.expect(0, &["start"]);
    let logs = h.path().join("logs");
    h.wait_until("the log rotates twice", || {
        logs.join("fabric-local.log.2").exists()
    });
    h.expect(0, &["stop"]);

    assert_eq!(
        names(&reports),
        ["k2.json", "recovery-30.json", "recovery-400.json"]
    );
    let files = names(&logs);
    assert!(
        !files.contains(&"fabric-local.log.3".to_string()),
        "{files:?}"
    );
    for f in [
        "fabric-local.log",
        "fabric-local.log.1",
        "fabric-local.log.2",
        "daemon-local.stderr",
    ] {
        assert!(files.contains(&f.to_string()), "{f} not in {files:?}");
    }
    for f in ["fabric-local.log.1", "fabric-local.log.2"] {
        let len = std::fs::metadata(logs.join(f)).unwrap().len();
        assert!(len <= 4096, "{f} has {len} bytes");
    }
    let current = std::fs::read_to_string(logs.join("fabric-local.log")).unwrap();
    assert!(current.contains("fabric daemon stopped"), "{current}");
    assert!(!current.contains('\u{1b}'), "no colour codes in the file");
}
