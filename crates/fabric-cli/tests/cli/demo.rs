//! `fabric demo control-loop`: the control loop runs through the real engine, bus, alert and
//! field-report paths, on the in-process bus and on the test Redis, and leaves a home in which
//! the operator's checks show what happened.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::Home;

/// Runs `fabric ARGS --format json` with `FABRIC_HOME=dir` (the demo's home); exit 0.
fn in_home(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fabric"))
        .args(args)
        .args(["--format", "json"])
        .env("FABRIC_HOME", dir)
        .env("FABRIC__API__ENABLED", "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "fabric {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_run(v: &Value, demo_home: &Path) {
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["job"]["state"], "succeeded", "{v}");
    let epochs = v["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 6);
    // training_latency_high fires on the third slow epoch (5) and clears on the next (6).
    let kinds = |i: usize| -> Vec<String> {
        epochs[i]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{} {}",
                    t["kind"].as_str().unwrap(),
                    t["rule"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(kinds(4), ["fired training_latency_high"], "{v}");
    assert_eq!(kinds(5), ["cleared training_latency_high"], "{v}");
    assert!((0..4).all(|i| kinds(i).is_empty()), "{v}");
    assert_eq!(
        v["risk_events"],
        serde_json::json!(["pause_triggered", "bp_quarantine"])
    );
    assert_eq!(v["conservative"], true);
    // The operator's checks, in the demo's home.
    let reports = in_home(demo_home, &["reports", "tail"]);
    let events: Vec<&str> = reports["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["pause_triggered", "bp_quarantine", "job_succeeded"],
        "{reports}"
    );
    let history = in_home(demo_home, &["alerts", "history"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "firing and resolved: {history}"
    );
    assert_eq!(in_home(demo_home, &["status"])["conservative"], true);
}

#[test]
fn the_control_loop_runs_on_the_in_process_bus() {
    let h = Home::new();
    let dir = h.path().join("demo");
    let v = h.json(&[
        "demo",
        "control-loop",
        "--epoch-ms",
        "20",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(v["bus"], "inproc");
    check_run(&v, &dir);
}

#[test]
fn the_control_loop_runs_on_redis_and_its_streams_stay_for_the_checks() {
    let url =
        std::env::var("FABRIC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let h = Home::new().with("FABRIC__BUS__URL", &url);
    let dir = h.path().join("demo");
    let v = h.json(&[
        "demo",
        "control-loop",
        "--bus",
        "redis",
        "--epoch-ms",
        "20",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let prefix = v["run"].as_str().unwrap().to_string();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap();
    let cleanup = || {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(&keys).query(&mut conn);
    };
    let result = std::panic::catch_unwind(|| {
        assert_eq!(v["bus"], "redis");
        check_run(&v, &dir);
        // The demo home's config names the run's streams: `fabric bus` there sees them.
        let streams = in_home(&dir, &["bus", "streams"]);
        let telemetry = crate::bus::stream(&streams, "telemetry");
        assert_eq!(telemetry["length"], 7, "6 epochs and the end: {streams}");
        assert_eq!(
            telemetry["groups"]["tamiyo"]["pending"], 0,
            "all acknowledged"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_fabric"))
            .args(["bus", "tail", "--stream", "policy"])
            .env("FABRIC_HOME", &dir)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.contains("pause_triggered") && out.contains("bp_quarantine"),
            "{out}"
        );
    });
    cleanup();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
