//! `fabric batch`: dependency order, crash and resume, blocked items and retry, cancel, and
//! bad files refused whole. Effects are `record` lines appended to a file, and every claim
//! is made from that file.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::Home;

/// The `record` lines of `log` as (job id, attempt), in file order.
fn lines(log: &Path) -> Vec<(i64, u64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn record(key: &str, log: &Path, ms: u64, deps: &[String]) -> String {
    serde_json::json!({
        "key": key,
        "kind": "record",
        "payload": {"path": log, "ms": ms},
        "depends_on": deps,
    })
    .to_string()
}

fn show(h: &Home, id: &str) -> Value {
    h.json(&["batch", "show", id])
}

/// Items by key.
fn items(batch: &Value) -> HashMap<String, Value> {
    batch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap().to_string(), i.clone()))
        .collect()
}

#[test]
fn a_batch_runs_in_dependency_order_and_resumes_after_kill_9() {
    let h = Home::new().with("FABRIC__WORKERS__MAX_WORKERS", "8");
    let log = h.path().join("effects.log");
    let callback_log = h.path().join("callback.log");
    // 30 chains of 10: item i waits for item i-1 unless it starts a chain.
    let mut text = String::new();
    for i in 0..300 {
        let deps = if i % 10 == 0 {
            vec![]
        } else {
            vec![format!("k{}", i - 1)]
        };
        text.push_str(&record(&format!("k{i}"), &log, 30, &deps));
        text.push('\n');
    }
    let file = h.path().join("batch.jsonl");
    std::fs::write(&file, text).unwrap();
    let payload = serde_json::json!({"path": callback_log}).to_string();
    let out = h.json(&[
        "batch",
        "submit",
        file.to_str().unwrap(),
        "--name",
        "chains",
        "--on-complete",
        "record",
        "--payload",
        &payload,
    ]);
    let id = out["id"].as_i64().unwrap().to_string();
    assert_eq!(out["items"], 300);
    // Written whole before anything runs: no daemon yet.
    let before = show(&h, &id);
    assert_eq!(before["state"], "running");
    assert_eq!(before["counts"]["pending"], 30);
    assert_eq!(before["counts"]["waiting"], 270);

    h.expect(0, &["start"]);
    let pid = h.json(&["status"])["pid"].as_u64().unwrap();
    h.wait_until("some items ran", || lines(&log).len() > 60);
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    h.wait_until("the daemon is gone", || {
        h.json(&["status"])["running"] == false
    });
    let at_kill = lines(&log).len();
    assert!(at_kill < 300, "the kill came after the batch ended");

    h.expect(0, &["start"]);
    h.wait_until("the batch succeeded", || {
        show(&h, &id)["state"] == "succeeded"
    });
    h.wait_until("the callback ran", || lines(&callback_log).len() == 1);
    let b = show(&h, &id);
    h.expect(0, &["stop"]);

    assert_eq!(b["counts"]["succeeded"], 300);
    assert_eq!(b["progress"], 1.0);
    assert_eq!(b["name"], "chains");
    assert_eq!(b["critical_path"]["keys"].as_array().unwrap().len(), 10);
    assert!(b["critical_path"]["duration_ms"].as_i64().unwrap() >= 300);
    let by_key = items(&b);

    // Nothing that succeeded ran again: a job with two lines was rescued mid-attempt (its
    // final attempt is later), and no attempt ran twice.
    let effects = lines(&log);
    let mut runs: HashMap<i64, Vec<(usize, u64)>> = HashMap::new();
    for (pos, (job, attempt)) in effects.iter().enumerate() {
        runs.entry(*job).or_default().push((pos, *attempt));
    }
    for item in by_key.values() {
        let job = item["job_id"].as_i64().unwrap();
        let r = &runs[&job];
        let mut attempts: Vec<u64> = r.iter().map(|(_, a)| *a).collect();
        attempts.dedup();
        assert_eq!(
            attempts.len(),
            r.len(),
            "job {job} ran twice in one attempt"
        );
        if r.len() > 1 {
            assert!(item["attempt"].as_u64().unwrap() > 1, "{item}");
        }
    }
    // Order: an item's first run comes after its dependency's last.
    for item in by_key.values() {
        let job = item["job_id"].as_i64().unwrap();
        for dep in item["depends_on"].as_array().unwrap() {
            let dep_job = by_key[dep.as_str().unwrap()]["job_id"].as_i64().unwrap();
            let dep_last = runs[&dep_job].last().unwrap().0;
            let first = runs[&job].first().unwrap().0;
            assert!(first > dep_last, "{} ran before {dep}", item["key"]);
        }
    }
    // The callback ran once, with the outcome.
    let callback = b["callback_job_id"].as_i64().unwrap();
    assert_eq!(lines(&callback_log)[0].0, callback);
    let job = h.json(&["jobs", "show", &callback.to_string()]);
    assert_eq!(job["payload"]["batch"]["state"], "succeeded");
    assert_eq!(job["payload"]["batch"]["counts"]["succeeded"], 300);
}

#[test]
fn a_failed_item_blocks_its_dependents_until_batch_retry() {
    let h = Home::new();
    let log = h.path().join("effects.log");
    let flag = h.path().join("flag");
    let gate = serde_json::json!({
        "key": "b",
        "kind": "shell",
        "payload": {"cmd": ["test", "-f", flag]},
        "depends_on": ["a"],
        "max_attempts": 1,
    });
    let text = [
        record("a", &log, 0, &[]),
        gate.to_string(),
        record("c", &log, 0, &["b".into()]),
        record("d", &log, 0, &["c".into()]),
        record("e", &log, 0, &[]),
    ]
    .join("\n");
    let file = h.path().join("batch.jsonl");
    std::fs::write(&file, text).unwrap();
    let id = h.json(&["batch", "submit", file.to_str().unwrap()])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.expect(0, &["start"]);
    h.wait_until("the batch failed", || show(&h, &id)["state"] == "failed");
    let b = show(&h, &id);
    let it = items(&b);
    assert_eq!(it["a"]["state"], "succeeded");
    assert_eq!(it["b"]["state"], "quarantined");
    assert_eq!(it["e"]["state"], "succeeded");
    for k in ["c", "d"] {
        assert_eq!(it[k]["state"], "blocked", "{b}");
        assert_eq!(it[k]["reason"], "dependency_failure");
    }
    assert_eq!(lines(&log).len(), 2, "only a and e ran");
    let listed = h.json(&["batch", "list", "--state", "failed"]);
    assert_eq!(listed[0]["id"].as_i64().unwrap().to_string(), id);

    std::fs::write(&flag, "").unwrap();
    let retried = h.json(&["batch", "retry", &id]);
    assert_eq!(retried["requeued"], 1);
    assert_eq!(retried["unblocked"], 2);
    h.wait_until("the batch succeeded", || {
        show(&h, &id)["state"] == "succeeded"
    });
    h.expect(0, &["stop"]);
    let it = items(&show(&h, &id));
    let effects = lines(&log);
    assert_eq!(effects.len(), 4, "c and d ran once each after the retry");
    let pos = |k: &str| {
        let job = it[k]["job_id"].as_i64().unwrap();
        effects.iter().position(|(j, _)| *j == job).unwrap()
    };
    assert!(pos("c") < pos("d"));
}

#[test]
fn cancelling_a_batch_stops_its_running_item_and_cancels_the_rest() {
    let h = Home::new();
    let text = [
        serde_json::json!({"key": "long", "kind": "sleep", "payload": {"ms": 60000}}).to_string(),
        serde_json::json!({"key": "after", "kind": "noop", "depends_on": ["long"]}).to_string(),
    ]
    .join("\n");
    let file = h.path().join("batch.jsonl");
    std::fs::write(&file, text).unwrap();
    let id = h.json(&["batch", "submit", file.to_str().unwrap()])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.expect(0, &["start"]);
    h.wait_until("the long item runs", || {
        items(&show(&h, &id))["long"]["state"] == "running"
    });
    h.stderr(2, &["batch", "cancel", &id, "--reason", " "]);
    let out = h.json(&["batch", "cancel", &id, "--reason", "wrong input"]);
    assert_eq!(out["cancelled"], 2);
    let b = show(&h, &id);
    assert_eq!(b["state"], "cancelled");
    assert_eq!(b["cancel_reason"], "wrong input");
    h.wait_until("no worker is busy", || {
        h.json(&["status"])["workers"]["active"] == 0
    });
    let it = items(&show(&h, &id));
    assert_eq!(it["long"]["state"], "cancelled");
    assert_eq!(it["after"]["state"], "cancelled");
    // An ended batch is neither cancelled nor (being cancelled) retried again: a state
    // change the batch's state does not allow exits 1, as for a job.
    assert!(h
        .stderr(1, &["batch", "cancel", &id, "--reason", "again"])
        .contains("has ended"));
    assert!(h
        .stderr(1, &["batch", "retry", &id])
        .contains("was cancelled"));
    h.expect(0, &["stop"]);
}

#[test]
fn a_bad_batch_file_exits_2_naming_the_line_and_writes_nothing() {
    let h = Home::new();
    let file = h.path().join("bad.jsonl");
    let cases: &[(&str, &str)] = &[
        (
            "{\"key\":\"a\",\"kind\":\"noop\",\"depends_on\":[\"b\"]}\n{\"key\":\"b\",\"kind\":\"noop\",\"depends_on\":[\"a\"]}",
            "line 1: dependency cycle: 'a' -> 'b' -> 'a'",
        ),
        (
            "{\"key\":\"a\",\"kind\":\"noop\"}\n{\"key\":\"b\",\"kind\":\"noop\",\"depends_on\":[\"zz\"]}",
            "line 2: key 'b' depends on unknown key 'zz'",
        ),
        (
            "{\"key\":\"a\",\"kind\":\"noop\"}\n\n{\"key\":\"a\",\"kind\":\"noop\"}",
            "line 3: duplicate key 'a' (first on line 1)",
        ),
        (
            "{\"key\":\"a\",\"kind\":\"nope\"}",
            "line 1: key 'a': invalid kind: unknown handler kind 'nope'",
        ),
        (
            "{\"key\":\"a\",\"kind\":\"noop\"}\n{\"key\":\"b\",\"kind\":\"record\",\"payload\":{}}",
            "line 2: key 'b': invalid payload: payload.path must be a file path",
        ),
        ("{\"key\":\"a\",\"kind\":\"noop\"}\n{oops", "line 2: not a batch item"),
    ];
    for (text, want) in cases {
        std::fs::write(&file, text).unwrap();
        let err = h.stderr(2, &["batch", "submit", file.to_str().unwrap()]);
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    std::fs::write(&file, "{\"key\":\"a\",\"kind\":\"noop\"}").unwrap();
    let err = h.stderr(
        2,
        &[
            "batch",
            "submit",
            file.to_str().unwrap(),
            "--on-complete",
            "record",
            "--payload",
            "{}",
        ],
    );
    assert!(err.contains("on_complete.payload"), "{err}");
    assert_eq!(h.json(&["batch", "list"]), serde_json::json!([]));
    assert_eq!(h.job_count(), 0);
    assert!(h
        .stderr(2, &["batch", "show", "99"])
        .contains("batch 99 not found"));
}
