//! Kinds served by external workers (`workers.external_kinds`): accepted at submit without a
//! built-in handler, never claimed by the daemon's own workers; an undeclared unknown kind
//! stays bad input.

use crate::Home;

#[test]
fn a_declared_external_kind_waits_for_an_external_worker() {
    let h = Home::new().with("FABRIC__WORKERS__EXTERNAL_KINDS", "[ocr]");
    let ext = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "ocr",
        "--payload",
        r#"{"page": 3}"#,
    ])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let err = h.stderr(2, &["jobs", "submit", "--kind", "transcode"]);
    assert!(err.contains("unknown handler kind 'transcode'"), "{err}");
    assert!(err.contains("workers.external_kinds"), "{err}");
    h.expect(0, &["start"]);
    let noop = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("the later built-in job ran", || {
        h.json(&["jobs", "show", &noop])["state"] == "succeeded"
    });
    // Submitted first, yet untouched by the daemon's workers.
    let job = h.json(&["jobs", "show", &ext]);
    assert_eq!(job["state"], "pending", "{job}");
    assert_eq!(job["attempt"], 0);
    // A due job the dispatcher may not claim does not keep it busy: the idle daemon spends
    // little CPU (it spun at a whole core, claiming nothing, before), and its `workers`
    // check does not call that job a stalled dispatcher.
    let pid = h.json(&["status"])["pid"].as_u64().unwrap();
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent < 50,
        "an idle daemon used {spent} CPU ticks of 200 in 2 s"
    );
    let check = h.json(&["health", "check", "workers"]);
    assert!(check.to_string().contains("\"ok\""), "{check}");
    h.expect(0, &["stop"]);
}

/// User plus system CPU time of process `pid`, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the
    // 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_external_kind_must_be_a_kind_name() {
    let h = Home::new().with("FABRIC__WORKERS__EXTERNAL_KINDS", "[\"no good\"]");
    let err = h.stderr(2, &["config", "validate"]);
    assert!(err.contains("workers.external_kinds[0]"), "{err}");
}

/// `examples/python_worker.py` against this daemon as worker `name`.
fn python_worker(h: &Home, url: &str, name: &str) -> std::process::Child {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python_worker.py");
    std::process::Command::new("python3")
        .arg(script)
        .args(["--url", url, "--worker", name, "--kinds", "pyrecord"])
        .args(["--lease-seconds", "2", "--wait-seconds", "5"])
        .env("FABRIC_TOKEN", "s3cret")
        .current_dir(h.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs")
}

#[test]
fn a_python_worker_killed_mid_job_loses_the_job_to_another_worker() {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let url = format!("http://{listen}");
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen)
        .with("FABRIC__API__TOKEN", "s3cret")
        .with("FABRIC__WORKERS__LEASE_SECONDS", "3")
        .with("FABRIC__WORKERS__EXTERNAL_KINDS", "[pyrecord]");
    let log = h.path().join("effects.log");
    // The Python worker's `pyrecord` writes a line at the start and one at the end.
    let payload = serde_json::json!({"path": log, "ms": 4000}).to_string();
    let id = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "pyrecord",
        "--payload",
        &payload,
    ])["id"]
        .as_i64()
        .unwrap();
    h.expect(0, &["start"]);
    let mut a = python_worker(&h, &url, "py-a");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    h.wait_until("worker a started the job", || lines().contains("start"));
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let mut b = python_worker(&h, &url, "py-b");
    h.wait_until("the job succeeded", || {
        h.json(&["jobs", "show", &id.to_string()])["state"] == "succeeded"
    });
    b.kill().unwrap();
    b.wait().unwrap();
    // The daemon counts what external workers finish as it counts its own workers' jobs.
    let metrics = http_get(&format!("{url}/metrics"));
    assert!(
        metrics
            .lines()
            .any(|l| l == "fabric_jobs_completed_total 1"),
        "{metrics}"
    );
    // Both workers were seen, as nodes of their own with the kinds they serve.
    let nodes = h.json(&["nodes", "list"]);
    let ext = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "ext-py-b")
        .unwrap_or_else(|| panic!("no ext-py-b in {nodes}"));
    assert_eq!(ext["specialties"], serde_json::json!(["pyrecord"]));
    assert_eq!(ext["shard"], "external");
    assert_eq!(ext["load"], 0, "its job is done: {ext}");
    let status = h.json(&["status"]);
    let mut seen: Vec<&str> = status["external_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker"].as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["py-a", "py-b"], "{status}");
    h.expect(0, &["stop"]);
    let job = h.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(job["attempt"], 2, "rescued once: {job}");
    assert_eq!(job["result"]["worker"], "py-b");
    let text = lines();
    assert!(text.contains(&format!("start {id} 1 py-a")), "{text}");
    assert!(text.contains(&format!("{id} 2 py-b\n")), "{text}");
    assert!(
        !text.contains(&format!("\n{id} 1 py-a")),
        "a never finished: {text}"
    );
}

/// The body of `GET url` with the test's token (Python's standard library as the client).
fn http_get(url: &str) -> String {
    let script = format!(
        "import urllib.request\n\
         req = urllib.request.Request('{url}', headers={{'Authorization': 'Bearer s3cret'}})\n\
         print(urllib.request.urlopen(req, timeout=10).read().decode())\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_waiting_claim_is_woken_by_an_enqueue() {
    // With an hour-long poll, only the enqueue's wake-up can end the claim's 30 s wait; the
    // client gives up after 15 s, so without the wake-up it gets nothing.
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen)
        .with("FABRIC__API__TOKEN", "s3cret")
        .with("FABRIC__WORKERS__POLL_INTERVAL_MS", "3600000")
        .with("FABRIC__WORKERS__EXTERNAL_KINDS", "[ocr]");
    h.expect(0, &["start"]);
    let claim = format!(
        "import json, urllib.request\n\
         req = urllib.request.Request('http://{listen}/api/v1/workers/claim',\n\
             data=json.dumps({{'worker': 'w', 'kinds': ['ocr'], 'wait_seconds': 30}}).encode(),\n\
             headers={{'Authorization': 'Bearer s3cret', 'Content-Type': 'application/json'}})\n\
         print(urllib.request.urlopen(req, timeout=15).read().decode())\n"
    );
    let waiter = std::process::Command::new("python3")
        .args(["-c", &claim])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the claim find nothing and start waiting.
    std::thread::sleep(std::time::Duration::from_millis(1_000));
    let id = h.json(&["jobs", "submit", "--kind", "ocr"])["id"].clone();
    let out = waiter.wait_with_output().unwrap();
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["jobs"][0]["id"], id, "{got}");
    h.expect(0, &["stop"]);
}
