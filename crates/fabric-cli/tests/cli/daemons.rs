//! The daemon's life cycle beyond one daemon per home: `stop --timeout` bounding the daemon's
//! own wait, several daemons (node ids) from one home, and `db restore` around them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Home;

/// A config file for node `id` in the home; returns its path.
fn node_config(h: &Home, id: &str) -> String {
    let p = h.path().join(format!("{id}.yaml"));
    std::fs::write(&p, format!("node:\n  id: {id}\n")).unwrap();
    p.to_str().unwrap().to_string()
}

fn pid_of(h: &Home, config: &str) -> u64 {
    h.json(&["status", "--config", config])["pid"]
        .as_u64()
        .unwrap()
}

fn nodes_running(h: &Home) -> Vec<String> {
    h.json(&["status"])["daemons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["node"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn stop_timeout_bounds_the_daemons_wait_and_returns_running_jobs_to_pending() {
    // The configured wait is long: only the --timeout the CLI passes on can make it short.
    let h = Home::new().with("FABRIC__WORKERS__SHUTDOWN_TIMEOUT_SECONDS", "120");
    h.expect(0, &["start"]);
    let id = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "sleep",
        "--payload",
        "{\"ms\": 60000}",
    ])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("the sleep job runs", || {
        h.json(&["jobs", "show", &id])["state"] == "running"
    });
    let t0 = Instant::now();
    let out = h.expect(0, &["stop", "--timeout", "1"]);
    let took = t0.elapsed();
    assert!(out.contains("fabric stopped"), "{out}");
    // Generous: the point is that it does not wait for the 60 s job or the 120 s default.
    assert!(took < Duration::from_secs(40), "stop took {took:?}");
    let show = h.json(&["jobs", "show", &id]);
    assert_eq!(show["state"], "pending", "{show}");
    assert_eq!(h.json(&["status"])["running"], false);
    // Nothing is left for the next start to recover.
    assert!(!h.path().join("run/local.recovery").exists());
}

#[test]
fn two_nodes_run_from_one_home_and_stop_one_by_one() {
    let h = Home::new();
    let a = node_config(&h, "a");
    let b = node_config(&h, "b");
    let backup = h.path().join("before.db");
    h.expect(0, &["db", "backup", "--to", backup.to_str().unwrap()]);
    h.expect(0, &["start", "--config", &a]);
    h.expect(0, &["start", "--config", &b]);
    assert_eq!(nodes_running(&h), ["a", "b"]);
    let (pa, pb) = (pid_of(&h, &a), pid_of(&h, &b));
    assert_ne!(pa, pb);
    assert!(h.path().join("run/a.recovery").exists());
    assert!(h.path().join("run/b.recovery").exists());

    // The same node id twice is refused, naming the pid that holds it.
    let err = h.stderr(1, &["start", "--config", &a]);
    assert!(err.contains(&format!("pid {pa}")), "{err}");
    let err = h.stderr(1, &["start", "--foreground", "--config", &b]);
    assert!(err.contains(&format!("pid {pb}")), "{err}");

    // Several run: a bare stop names them instead of guessing.
    let err = h.stderr(2, &["stop"]);
    assert!(
        err.contains("node 'a'") && err.contains("node 'b'"),
        "{err}"
    );
    assert!(err.contains("--node"), "{err}");
    // A restore is refused while any daemon of the home runs.
    let err = h.stderr(1, &["db", "restore", backup.to_str().unwrap()]);
    assert!(err.contains(&format!("pid {pa}")), "{err}");

    let out = h.expect(0, &["stop", "--node", "a"]);
    assert!(out.contains(&format!("pid {pa}")), "{out}");
    assert_eq!(nodes_running(&h), ["b"]);
    assert!(!h.path().join("run/a.recovery").exists());
    assert!(h.path().join("run/b.recovery").exists());
    let err = h.stderr(1, &["db", "restore", backup.to_str().unwrap()]);
    assert!(err.contains("node 'b'"), "{err}");

    // b still works, and its status is shown to a command of another node's config.
    let id = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("node b runs the job", || {
        h.json(&["jobs", "show", &id])["state"] == "succeeded"
    });
    let status = h.json(&["status", "--config", &a]);
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["node"], "b", "{status}");

    // One left: a bare stop stops it, as with a single daemon.
    h.expect(0, &["stop"]);
    assert!(nodes_running(&h).is_empty());
    h.expect(0, &["db", "restore", backup.to_str().unwrap()]);
}

/// Makes the store file at `path` look as schema version 3 wrote it (0004 only dropped the
/// per-shard pending index).
fn downgrade_to_v3(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TABLE sources; DROP TABLE telemetry; DROP TABLE outbox;
         DROP TABLE alert_states; DROP TABLE alert_silences; DROP TABLE alert_notifications;
         DROP TABLE alert_groups; DROP TABLE alert_deliveries;
         DROP TABLE doc_fts; DROP TABLE doc_links; DROP TABLE doc_chunks; DROP TABLE doc_tags;
         DROP TABLE documents;
         DROP TABLE job_deps; DROP TABLE batches; DROP INDEX jobs_batch; DROP TABLE schedules;
         DROP INDEX jobs_quarantined; DROP INDEX jobs_cancelled; DROP INDEX jobs_errors;
         ALTER TABLE jobs DROP COLUMN batch_id; ALTER TABLE jobs DROP COLUMN batch_key;
         ALTER TABLE jobs DROP COLUMN deps_remaining; ALTER TABLE jobs DROP COLUMN batch_pos;
         CREATE INDEX jobs_shard_ready ON jobs (shard, priority DESC, id) WHERE state = 'pending';
         PRAGMA user_version = 3;
         PRAGMA journal_mode = DELETE;",
    )
    .unwrap();
    drop(conn);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

#[test]
fn restore_migrates_an_older_backup_and_leaves_the_backup_untouched() {
    let h = Home::new();
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    let old = h.path().join("old.db");
    h.expect(0, &["db", "backup", "--to", old.to_str().unwrap()]);
    downgrade_to_v3(&old);
    let bytes = std::fs::read(&old).unwrap();
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    assert_eq!(h.job_count(), 3);

    let out = h.json(&["db", "restore", old.to_str().unwrap()]);
    // Validation read it without writing: same bytes, no journal files beside it.
    assert!(std::fs::read(&old).unwrap() == bytes, "the backup changed");
    for suffix in ["-wal", "-shm"] {
        assert!(!with_suffix(&old, suffix).exists(), "{suffix} created");
    }
    assert_eq!(out["schema_from"], 3, "{out}");
    // This binary's version (each new migration raises it).
    assert!(out["schema_to"].as_u64().unwrap() > 3, "{out}");
    assert_eq!(out["jobs"], 2, "{out}");
    assert_eq!(h.job_count(), 2);
    assert_eq!(h.json(&["db", "check"])["ok"], true);
    assert_eq!(h.json(&["db", "migrate"])["applied"], 0);
    let audit = h.json(&["audit", "list"]);
    let restore = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "db.restore")
        .unwrap()
        .clone();
    // To whatever this binary's version is (each new migration raises it).
    let reason = restore["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("migrated from schema 3 to "),
        "{restore}"
    );
}

#[test]
fn a_corrupt_backup_is_refused_and_the_live_store_is_untouched() {
    let h = Home::new();
    let file = h.path().join("jobs.jsonl");
    std::fs::write(&file, "{\"kind\": \"noop\"}\n".repeat(200)).unwrap();
    h.expect(0, &["jobs", "submit", "--file", file.to_str().unwrap()]);
    let bad = h.path().join("bad.db");
    h.expect(0, &["db", "backup", "--to", bad.to_str().unwrap()]);
    // Keep page 1 (the schema) and scribble over the pages after it.
    let mut bytes = std::fs::read(&bad).unwrap();
    assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[2 * 4096..] {
        *b = 0xA5;
    }
    std::fs::write(&bad, &bytes).unwrap();
    // Damaged in the schema page itself: SQLite cannot even read the table list.
    let torn = h.path().join("torn.db");
    h.expect(0, &["db", "backup", "--to", torn.to_str().unwrap()]);
    let mut bytes = std::fs::read(&torn).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    std::fs::write(&torn, &bytes).unwrap();
    let junk = h.path().join("junk.db");
    std::fs::write(
        &junk,
        "this is not a database, just text that is long enough",
    )
    .unwrap();

    let live = h.path().join("queue.db");
    let before = std::fs::read(&live).unwrap();
    let backups = h.json(&["db", "list-backups"]);
    // A damaged backup fails its integrity check (exit 1); a file that is no store, exit 2.
    for (file, code) in [(&bad, 1), (&torn, 1), (&junk, 2)] {
        let out = h.run(&["db", "restore", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{}: {err}", file.display());
        if code == 1 {
            assert!(err.contains("fails its integrity check"), "{err}");
        }
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        assert!(
            std::fs::read(&live).unwrap() == before,
            "the live store changed"
        );
    }
    assert_eq!(
        h.json(&["db", "list-backups"]),
        backups,
        "nothing saved aside"
    );
    assert_eq!(h.job_count(), 200);
    assert_eq!(h.json(&["db", "check"])["ok"], Value::Bool(true));
}

#[test]
fn conservative_mode_shows_on_the_metrics_endpoint() {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen);
    h.expect(0, &["start"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gauge = || {
        let text = rt.block_on(async {
            reqwest::get(format!("http://{listen}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        text.lines()
            .find_map(|l| l.strip_prefix("fabric_conservative_mode "))
            .map(str::to_string)
    };
    h.wait_until("the gauge reads 0", || gauge().as_deref() == Some("0"));
    h.expect(0, &["conservative", "on", "--reason", "drill"]);
    h.wait_until("the gauge reads 1", || gauge().as_deref() == Some("1"));
    h.expect(0, &["conservative", "off"]);
    h.wait_until("the gauge reads 0 again", || {
        gauge().as_deref() == Some("0")
    });
    h.expect(0, &["stop"]);
}
