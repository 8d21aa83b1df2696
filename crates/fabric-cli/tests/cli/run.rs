//! `fabric run` as an operator runs it: the report and checkpoint it writes, exit codes, and
//! bad input refused with exit 2 and nothing written.

use std::process::Command;

use serde_json::Value;

use super::Home;

fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(args)
        .current_dir(dir)
        .env("FABRIC_HOME", dir.join("home"))
        .output()
        .unwrap()
}

#[test]
fn a_run_writes_its_report_and_checkpoint_and_a_duration_cut_says_so() {
    let h = Home::new();
    let out = run_in(
        h.path(),
        &[
            "run",
            "edge-relief",
            "--jobs",
            "200",
            "--quiet",
            "--export",
            "out/r.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("checkpoint: reports/planetary-fabric/checkpoint.json"),
        "{stdout}"
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(h.path().join("out/r.json")).unwrap()).unwrap();
    for key in [
        "dispatched",
        "completed",
        "failed",
        "reassigned",
        "spillovers",
        "queue_depths",
        "metrics",
        "loaded_from_checkpoint",
        "checkpoint",
        "governance",
        "health",
        "wall_seconds",
        "virtual_seconds",
        "throughput_jobs_per_second",
        "latency_ms",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}: {r}");
    }
    assert_eq!(
        r["metrics"]["completed_jobs"].as_u64().unwrap() + r["failed"].as_u64().unwrap(),
        200
    );
    assert!(h
        .path()
        .join("reports/planetary-fabric/checkpoint.json")
        .exists());

    // A virtual duration that ends first: exit 3, and the report lists what is left.
    let out = run_in(
        h.path(),
        &[
            "run",
            "k2-benchmark",
            "--duration",
            "5",
            "--quiet",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["complete"], false);
    assert!(r["remaining"].as_u64().unwrap() > 0);
    // Idle stretches are skipped, but never past the cap.
    assert_eq!(r["virtual_seconds"].as_f64(), Some(5.0), "{r}");
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let h = Home::new();
    let cp = h.path().join("reports/planetary-fabric/checkpoint.json");
    let check = |args: &[&str], needle: &str| {
        let out = run_in(h.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    check(&["run", "moon-landing"], "unknown scenario 'moon-landing'");
    check(
        &["run", "k2-benchmark", "--completion", "1.5"],
        "--completion",
    );
    std::fs::write(
        h.path().join("bad.json"),
        "{\"name\": \"x\", \"job_count\": ",
    )
    .unwrap();
    check(&["run", "--custom", "bad.json"], "bad.json");
    assert!(!cp.exists(), "nothing written on bad input");

    // A checkpoint of another version, or a truncated one, is refused and left as it was.
    std::fs::create_dir_all(cp.parent().unwrap()).unwrap();
    std::fs::write(&cp, r#"{"version": 9, "timestamp": "x", "state": {}}"#).unwrap();
    check(&["run", "--resume"], "version 9");
    std::fs::write(&cp, r#"{"version": 1, "timestamp": "#).unwrap();
    check(&["run", "--resume"], "truncated");
    assert_eq!(
        std::fs::read_to_string(&cp).unwrap(),
        r#"{"version": 1, "timestamp": "#
    );
}

#[test]
fn the_playbook_launcher_forwards_to_fabric_run() {
    let h = Home::new();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bin/planetary-fabric.sh");
    let out = Command::new(&script)
        .args([
            "k2-benchmark",
            "--jobs",
            "100",
            "--quiet",
            "--export",
            "reports/k2.json",
        ])
        .current_dir(h.path())
        .env("FABRIC_BIN", env!("CARGO_BIN_EXE_fabric"))
        .env("FABRIC_HOME", h.path().join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(h.path().join("reports/k2.json").exists());
}

#[test]
fn checkpoint_save_asks_a_running_run_and_show_reads_it() {
    let h = Home::new();
    std::fs::write(
        h.path().join("long.json"),
        r#"{"name": "long", "job_count": 200000, "completion_probability": 1.0, "shards": ["earth", "luna"], "duration_seconds": 1}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(["run", "--custom", "long.json", "--quiet"])
        .current_dir(h.path())
        .env("FABRIC_HOME", h.path().join("home"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = h.path().join("reports/planetary-fabric/run.pid");
    let t0 = std::time::Instant::now();
    while !pid_file.exists() {
        assert!(t0.elapsed().as_secs() < 30, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The operator steers the running scenario through its store (another process writing
    // to the store the run keeps busy): conservative mode holds back every job below high
    // priority, so the run cannot finish before the checkpoint is asked for.
    let out = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(["conservative", "on", "--reason", "test"])
        .current_dir(h.path())
        .env("FABRIC_HOME", h.path().join("home"))
        .env(
            "FABRIC__STORE__PATH",
            h.path().join("reports/planetary-fabric/run.db"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Once the run has seen the lever, its queue stops draining.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = run_in(h.path(), &["checkpoint", "save"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run_in(h.path(), &["checkpoint", "show", "--format", "json"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scenario"], "long");
    assert!(
        v["pending"].as_u64().unwrap() + v["in_flight"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["governance"]["conservative"], true, "{v}");

    // No run in progress: save says so.
    std::fs::remove_file(&pid_file).ok();
    let out = run_in(h.path(), &["checkpoint", "save"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run is in progress"));
}
