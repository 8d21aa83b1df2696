//! `fabric run` as an operator runs it: the report and checkpoint it writes, exit codes, and
//! bad input refused with exit 2 and nothing written.

use std::process::Command;

use serde_json::Value;

use super::Home;

/// Starts `fabric run ARGS` in `dir` and waits until it has published its pid (its store is
/// open then, and `fabric checkpoint save` may signal it).
fn start_run(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(args)
        .current_dir(dir)
        .env("FABRIC_HOME", dir.join("home"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.join("reports/planetary-fabric/run.pid");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .trim()
        != child.id().to_string()
    {
        assert!(t0.elapsed().as_secs() < 60, "the run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

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
    let mut child = start_run(h.path(), &["run", "--custom", "long.json", "--quiet"]);
    let pid_file = h.path().join("reports/planetary-fabric/run.pid");
    // The operator steers the running scenario (its store, which the run keeps busy, found
    // through its live `run.pid`): conservative mode holds back every job below high
    // priority, so the run cannot finish before the checkpoint is asked for.
    let out = run_in(h.path(), &["conservative", "on", "--reason", "test"]);
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

#[test]
fn checkpoint_save_never_signals_a_pid_that_no_run_holds() {
    let h = Home::new();
    // A pid left in `run.pid` now belongs to an unrelated process, which SIGUSR1 would kill.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let dir = h.path().join("reports/planetary-fabric");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.pid"), other.id().to_string()).unwrap();
    let out = run_in(h.path(), &["checkpoint", "save"]);
    let alive = other.try_wait().unwrap().is_none();
    let _ = other.kill();
    let _ = other.wait();
    assert!(alive, "checkpoint save signalled an unrelated process");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no run is in progress"), "{err}");
}

#[test]
fn a_second_run_on_a_live_checkpoint_directory_is_refused_naming_the_pid() {
    let h = Home::new();
    std::fs::write(
        h.path().join("long.json"),
        r#"{"name": "long", "job_count": 200000, "completion_probability": 1.0, "shards": ["earth"], "duration_seconds": 1}"#,
    )
    .unwrap();
    let mut first = start_run(h.path(), &["run", "--custom", "long.json", "--quiet"]);
    // Held back, so the first run is still going when the second one starts.
    let out = run_in(h.path(), &["conservative", "on"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let db = h.path().join("reports/planetary-fabric/run.db");
    let inode =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&db);
    let out = run_in(h.path(), &["run", "edge-relief", "--jobs", "10", "--quiet"]);
    let live = first.try_wait().unwrap().is_none();
    let _ = first.kill();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(live, "the first run died");
    assert_eq!(inode(&db), before, "the first run's store was replaced");
}

#[test]
fn a_hand_edited_checkpoint_or_bound_is_refused_naming_the_field() {
    let h = Home::new();
    let out = run_in(h.path(), &["run", "edge-relief", "--jobs", "50", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let cp = h.path().join("reports/planetary-fabric/checkpoint.json");
    let good: Value = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    let check = |args: &[&str], needle: &str| {
        let out = run_in(h.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    for (pointer, value, needle) in [
        (
            "/state/orchestrator/scenario/shards",
            serde_json::json!([]),
            "invalid state.orchestrator.scenario.shards",
        ),
        (
            "/state/marketplace/shards",
            serde_json::json!([]),
            "invalid state.marketplace.shards",
        ),
        (
            "/state/orchestrator/virtual_ms",
            serde_json::json!(i64::MAX),
            "invalid state.orchestrator.virtual_ms",
        ),
        (
            "/state/governance/tick_interval_ms",
            serde_json::json!(0),
            "invalid state.governance.tick_interval_ms",
        ),
        (
            "/state/metrics/completed",
            serde_json::json!(-1),
            "invalid state.metrics.completed",
        ),
    ] {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        std::fs::write(&cp, v.to_string()).unwrap();
        check(&["run", "--resume"], needle);
        check(&["checkpoint", "show"], needle);
    }
    check(&["run", "--speed", "0"], "--speed 0");
    check(&["run", "--speed", "NaN"], "--speed NaN");
    check(&["run", "--tick-ms", "18446744073709551615"], "--tick-ms");
    check(&["run", "--duration", "1e300"], "--duration");
    check(&["run", "--jobs", "0"], "--jobs");
    std::fs::write(
        h.path().join("neg.json"),
        r#"{"name": "x", "job_count": -1, "completion_probability": 1, "shards": ["earth"], "duration_seconds": 1}"#,
    )
    .unwrap();
    check(&["run", "--custom", "neg.json"], "job_count");
    std::fs::write(
        h.path().join("long.json"),
        r#"{"name": "x", "job_count": 1, "completion_probability": 1, "shards": ["earth"], "duration_seconds": 1e300}"#,
    )
    .unwrap();
    check(&["run", "--custom", "long.json"], "duration_seconds");
}

#[test]
fn with_speed_a_lever_pulled_mid_run_reaches_the_run() {
    let h = Home::new();
    // Two jobs a virtual second over two shards: luna keeps up unless it is paused.
    std::fs::write(
        h.path().join("watch.json"),
        r#"{"name": "watch", "job_count": 2000, "completion_probability": 1.0, "shards": ["earth", "luna"], "duration_seconds": 1000}"#,
    )
    .unwrap();
    // 20 virtual seconds at twice the wall clock: about 10 s to pull the lever in.
    let run = start_run(
        h.path(),
        &[
            "run",
            "--custom",
            "watch.json",
            "--speed",
            "2",
            "--duration",
            "20",
            "--quiet",
            "--format",
            "json",
        ],
    );
    // The lever as the playbook pulls it: no flags.
    let out = run_in(h.path(), &["shards", "pause", "luna"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("steering the running scenario"),
        "{out:?}"
    );
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["governance"]["shard_pauses"]["luna"], true, "{r}");
    assert!(r["queue_depths"]["luna"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["queue_depths"]["earth"], 0, "{r}");
    // Paced: never faster than the wall clock times the speed (a loaded machine only slows it).
    assert!(r["wall_seconds"].as_f64().unwrap() >= 9.0, "{r}");
}
