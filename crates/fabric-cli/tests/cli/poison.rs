//! The poison set of the text-like formats, through the daemon: invalid UTF-8, a file over
//! the size cap, a file that vanishes between its scan and its ingest, and a real EACCES (the
//! daemon run as `nobody` when the tests run as root, where `chmod 000` denies nothing).
//! Each poison file is quarantined with the reason an operator filters on, the good files
//! next to them are searchable, the daemon stays healthy and under 512 MB of RSS, and no
//! quarantine entry or telemetry shows the source root or the home.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::Home;

/// The daemon's resident set must stay under this (issue 13's ceiling), poison included.
const MAX_RSS_BYTES: u64 = 512 << 20;

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(root.join(rel), bytes).unwrap();
}

/// `(path, reason)` of every quarantined job, sorted.
fn quarantined(h: &Home) -> Vec<(String, String)> {
    let q = h.json(&["quarantine", "list", "--limit", "100"]);
    let mut v: Vec<(String, String)> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&j["payload"]["path"]), s(&j["reason"]))
        })
        .collect();
    v.sort();
    v
}

fn paths(h: &Home, query: &str) -> Vec<String> {
    h.json(&["docs", "search", query])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_string())
        .collect()
}

/// The daemon's VmRSS in bytes, from `/proc/PID/status`.
fn rss_bytes(pid: u64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Samples the RSS of the daemon `pid` every 50 ms until dropped; `peak` is the largest seen.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = rss_bytes(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the peak RSS seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn daemon_pid(h: &Home) -> u64 {
    let status = h.json(&["status"]);
    status["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {status}"))
}

fn wait_idle(h: &Home) {
    h.wait_until("every job final", || {
        let q = &h.json(&["status"])["queue"];
        q["pending"] == 0 && q["running"] == 0
    });
}

#[test]
fn poison_files_are_quarantined_with_their_reasons_and_the_daemon_stays_healthy() {
    // One worker, so that jobs run strictly by priority (see the vanishing file below).
    let h = Home::new().with("FABRIC__WORKERS__MAX_WORKERS", "1");
    // Attempts of the source's ingest jobs: one, so a file gone is quarantined at once
    // rather than after minutes of back-off.
    std::fs::create_dir_all(h.path().join("config")).unwrap();
    write(
        &h.path().join("config"),
        "fabric.yaml",
        "retry_policies:\n  poison:\n    max_attempts: 1\n",
    );
    let tree = h.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    write(&tree, "good.md", "# Cats\n\nThe ocelot prowls at dusk.\n");
    // Invalid UTF-8 in JSON, one byte in 500 (text would be decoded lossily): never decoded.
    let mut json = b"{\"note\": \"".to_vec();
    json.extend(b"words ".repeat(80));
    json.extend(b"caf\xe9\"}\n");
    write(&tree, "bad.json", json);
    // ISO-8859-1 text: a fifth of its bytes invalid UTF-8, so binary to the sniffer.
    write(&tree, "latin1.txt", b"caf\xe9 ".repeat(2000));
    // A clean first 8 KiB (what detection sniffs), then mostly invalid bytes: over the lossy
    // ratio of the decoder.
    let mut tail = b"plain words ".repeat(700);
    tail.extend(std::iter::repeat_n(0xffu8, 20_000));
    write(&tree, "tail.txt", &tail);
    // A few invalid bytes: decoded lossily, searchable.
    let mut lossy = b"The axolotl regrows its limbs. ".repeat(60);
    lossy.extend_from_slice(b"\xff\xfe");
    write(&tree, "lossy.txt", &lossy);
    // Over the 32 MiB cap (a sparse file: the scan hashes its zeros, ingest refuses it on
    // its size before reading).
    let huge = std::fs::File::create(tree.join("huge.txt")).unwrap();
    huge.set_len(33 << 20).unwrap();
    drop(huge);
    write(&tree, "vanishing.txt", "The pangolin was here.\n");
    write(&tree, "zz-after.txt", "The tapir wades on.\n");
    let t = tree.to_str().unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "poison",
            "--type",
            "local_files",
            "--path",
            t,
            "--priority",
            "low",
        ],
    );

    // The file vanishes between scan and ingest, deterministically: before the daemon
    // starts, a high-priority scan and a normal-priority shell job that deletes the file are
    // queued; with one worker the scan runs first and enqueues its (low-priority) ingest
    // jobs, then the deletion runs, then the ingest jobs.
    let scan = h.json(&["sources", "trigger", "poison", "--priority", "high"])["scan_job"]
        .as_i64()
        .unwrap();
    let gone = tree.join("vanishing.txt");
    let payload = serde_json::json!({"cmd": ["/bin/rm", gone.to_str().unwrap()]}).to_string();
    let rm = h.json(&["jobs", "submit", "--kind", "shell", "--payload", &payload])["id"]
        .as_i64()
        .unwrap();
    h.expect(0, &["start"]);
    let rss = RssWatch::start(daemon_pid(&h));
    wait_idle(&h);
    let scan = h.json(&["jobs", "show", &scan.to_string()]);
    assert_eq!(scan["state"], "succeeded", "{scan}");
    assert_eq!(
        scan["result"]["changed"], 8,
        "the scan saw every file: {scan}"
    );
    assert_eq!(
        h.json(&["jobs", "show", &rm.to_string()])["state"],
        "succeeded"
    );
    assert!(!gone.exists());

    let expected = [
        ("bad.json", "parse_error"),
        ("huge.txt", "resource_exhausted"),
        ("latin1.txt", "parse_error"),
        ("tail.txt", "parse_error"),
        ("vanishing.txt", "connector_error"),
    ]
    .map(|(p, r)| (p.to_string(), r.to_string()));
    assert_eq!(quarantined(&h), expected);
    // The good files next to them, the lossy one included, are searchable.
    assert_eq!(paths(&h, "ocelot"), ["good.md"]);
    assert_eq!(paths(&h, "axolotl"), ["lossy.txt"]);
    assert_eq!(paths(&h, "tapir"), ["zz-after.txt"]);
    assert!(paths(&h, "pangolin").is_empty());
    let failures = h.json(&["telemetry", "failures", "--source", "poison"]);
    let mut reasons: Vec<&str> = failures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["connector_error", "parse_error", "resource_exhausted"],
        "{failures}"
    );
    let health = h.expect(0, &["health", "--format", "json"]);
    assert_ne!(
        serde_json::from_str::<Value>(&health).unwrap()["status"],
        "error"
    );

    // A full re-read through `--wait`: the vanished file is now seen gone, the four poison
    // files are quarantined again (exit 1), the three good ones ingested.
    let out = h.run(&[
        "sources", "trigger", "poison", "--wait", "--full", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let full: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            full["scan"]["changed"].as_u64(),
            full["scan"]["vanished"].as_u64(),
            full["ingested"].as_u64(),
            full["quarantined"].as_u64()
        ),
        (Some(7), Some(1), Some(3), Some(4)),
        "{full}"
    );
    let peak = rss.finish();
    assert!(peak > 0, "the daemon's RSS was read");
    assert!(
        peak < MAX_RSS_BYTES,
        "daemon RSS peaked at {} MiB",
        peak >> 20
    );
    h.expect(0, &["health"]);
    h.expect(0, &["stop"]);
}

/// Whether this process runs as root (where file modes deny nothing).
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs every `fabric` command of `h` as `nobody`, and hands the home to that user; copies
/// the binary into the home when `nobody` cannot run it where cargo built it.
fn as_nobody(mut h: Home) -> Home {
    let setpriv = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
    ]
    .map(String::from)
    .to_vec();
    let (uid, gid) = (
        nix::unistd::User::from_name("nobody").unwrap().unwrap().uid,
        nix::unistd::Group::from_name("nogroup")
            .unwrap()
            .unwrap()
            .gid,
    );
    std::os::unix::fs::chown(h.path(), Some(uid.as_raw()), Some(gid.as_raw())).unwrap();
    let can_run = std::process::Command::new(&setpriv[0])
        .args(&setpriv[1..])
        .arg(&h.bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run {
        let copy = h.path().join("fabric-bin");
        std::fs::copy(&h.bin, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        h.bin = copy;
    }
    h.wrap = setpriv;
    h
}

#[test]
fn a_real_eacces_is_quarantined_as_permission_denied_with_paths_redacted() {
    let h = Home::new();
    // The daemon's home is the test's home: what it redacts as `~`.
    let home = h.path().to_str().unwrap().to_string();
    let h = h.with("HOME", &home);
    let h = if is_root() { as_nobody(h) } else { h };
    let tree = h.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&tree, "open.md", "The capybara naps by the river.\n");
    write(&tree, "secret.txt", "The okapi hides here.\n");
    for f in ["open.md", "secret.txt"] {
        std::fs::set_permissions(tree.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(
        tree.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // The user the daemon runs as really is denied (no faking: the kernel says so).
    let mut cat = std::process::Command::new(h.wrap.first().map_or("cat", |p| p.as_str()));
    if !h.wrap.is_empty() {
        cat.args(&h.wrap[1..]).arg("cat");
    }
    let denied = cat.arg(tree.join("secret.txt")).output().unwrap();
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "the test's daemon user can read a mode 000 file: {denied:?}"
    );

    let t = tree.to_str().unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "locked",
            "--type",
            "local_files",
            "--path",
            t,
        ],
    );
    h.expect(0, &["start"]);
    let out = h.run(&["sources", "trigger", "locked", "--wait", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["ingested"].as_u64(),
            summary["quarantined"].as_u64(),
            summary["scan"]["unreadable"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{summary}"
    );
    assert_eq!(
        quarantined(&h),
        [("secret.txt".to_string(), "permission_denied".to_string())]
    );
    assert_eq!(paths(&h, "capybara"), ["open.md"]);
    assert!(paths(&h, "okapi").is_empty());
    // Telemetry says what became of it: quarantined at once, not failed and retried.
    let failures = h.json(&["telemetry", "failures", "--source", "locked"]);
    assert_eq!(failures[0]["outcome"], "quarantined", "{failures}");

    // Neither the source root nor the home shows in what an operator reads.
    let list = h.expect(0, &["quarantine", "list", "--format", "json"]);
    let entry = &serde_json::from_str::<Value>(&list).unwrap()[0];
    assert!(
        entry["error"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{entry}"
    );
    let id = entry["id"].to_string();
    for args in [
        vec!["quarantine", "list", "--format", "json"],
        vec!["quarantine", "list"],
        vec!["quarantine", "show", &id, "--format", "json"],
        vec!["quarantine", "show", &id],
        vec!["telemetry", "failures", "--format", "json"],
        vec!["telemetry", "failures"],
    ] {
        let out = h.expect(0, &args);
        assert!(
            !out.contains(t) && !out.contains(&home),
            "{args:?} shows a path: {out}"
        );
    }
    let health = h.expect(0, &["health", "--format", "json"]);
    assert_ne!(
        serde_json::from_str::<Value>(&health).unwrap()["status"],
        "error"
    );

    // A source root that is gone: the scan fails as connector_error, `--wait` exits 1
    // saying so, and no message shows the root (redacted like every source root).
    std::fs::rename(&tree, h.path().join("elsewhere")).unwrap();
    let out = h.run(&["sources", "trigger", "locked", "--wait", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["source"].as_str(), summary["scan_state"].as_str()),
        (Some("locked"), Some("failed")),
        "{summary}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("source root unavailable") && !stderr.contains(&home),
        "{stderr}"
    );
    let outcome = h.json(&["sources", "show", "locked"])["last_outcome"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        outcome.starts_with("connector_error: source root unavailable") && !outcome.contains(&home),
        "{outcome}"
    );
    h.expect(0, &["stop"]);
}
