//! `fabric alerts`: a daemon evaluates the rules and delivers the firing and the resolved
//! notification to a real receiver; list, rules, history, silences, acknowledgements and
//! test notifications from the command line, with their errors and audit entries; route
//! secrets never shown.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::Home;

/// An HTTP receiver on a port of its own, in a thread: records each body, answers 200.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let b = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        b.lock().unwrap().push(v);
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Self { url, bodies }
    }

    fn statuses(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn write_config(h: &Home, text: &str) {
    let dir = h.path().join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fabric.yaml"), text).unwrap();
}

#[test]
fn the_daemon_fires_and_resolves_through_a_real_receiver() {
    let rx = Receiver::start();
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen);
    write_config(
        &h,
        &format!(
            "alerts:
  interval_ms: 200
  group_wait_ms: 0
  group_interval_ms: 0
  routes:
    hook: {{type: webhook, url: \"{}\", secret: hook-secret-1}}
  rules:
    - {{name: queue_depth_high, metric: queue_depth, comparator: \">\", threshold: 2, for_count: 2, routes: [hook]}}
",
            rx.url
        ),
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = h.expect(0, &["jobs", "submit", "--kind", "noop", "--run-at", "1h"]);
        ids.push(out.trim().to_string());
    }
    h.expect(0, &["start"]);
    h.wait_within("the firing notification", Duration::from_secs(60), || {
        rx.statuses() == ["firing"]
    });
    let list = h.json(&["alerts", "list"]);
    let qd = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "queue_depth_high")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(qd["phase"], "firing", "{qd}");
    assert_eq!(qd["routes"], serde_json::json!(["hook"]));
    assert_eq!(qd["last_value"], 3.0);
    let rules = h.json(&["alerts", "rules"]);
    let rule = |name: &str| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(rule("queue_depth_high")["origin"], "config");
    assert_eq!(rule("queue_depth_high")["firing"], 1);
    assert_eq!(
        rule("training_latency_high")["condition"],
        "training_latency_ms > 18 for 3 samples"
    );
    assert_eq!(
        rule("training_latency_high")["routes"],
        serde_json::json!(["log"])
    );
    // /metrics/summary shows the firing alert.
    let summary: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("http://{listen}/metrics/summary"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let active = &summary["alerts"]["queue_depth_high"];
    assert_eq!(active["metric"], "queue_depth", "{summary}");
    assert_eq!(active["value"], 3.0, "{summary}");
    assert_eq!(active["routes"], serde_json::json!(["hook"]), "{summary}");
    assert_eq!(active["since"], qd["since"], "{summary}");
    let metrics = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("http://{listen}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics
            .lines()
            .any(|l| l == "fabric_alerts_firing{alert=\"queue_depth_high\"} 1"),
        "{metrics}"
    );
    let fp = qd["fingerprint"].as_str().unwrap().to_string();
    let acked = h.json(&["alerts", "ack", &fp[..8], "--comment", "draining"]);
    assert_eq!(acked[0]["ack_comment"], "draining");
    let table = h.expect(0, &["alerts", "list"]);
    assert!(table.contains("acked by cli:"), "{table}");

    for id in &ids {
        h.expect(0, &["jobs", "cancel", id, "--reason", "drill over"]);
    }
    h.wait_within("the resolved notification", Duration::from_secs(60), || {
        rx.statuses() == ["firing", "resolved"]
    });
    let history = h.json(&["alerts", "history", "--route", "hook"]);
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "delivered"], "{history}");
    h.expect(0, &["stop"]);
    // Exactly one resolved, also after the daemon is gone.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.statuses(), ["firing", "resolved"]);
    let audit = h.json(&["audit", "list"]);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "alerts.ack" && e["reason"] == "draining"),
        "{audit}"
    );
}

#[test]
fn silences_acks_and_tests_validate_name_the_bad_value_and_are_audited() {
    let h = Home::new();
    write_config(
        &h,
        "alerts:
  routes:
    dead: {type: slack, url: \"http://127.0.0.1:1/services/T0/B0/slack-secret-2\", timeout_ms: 2000}
    pager: {type: pagerduty, routing_key: pd-secret-3}
",
    );
    let s = h.json(&[
        "alerts",
        "silence",
        "--rule",
        "queue_depth_high",
        "--matcher",
        "shard!=mars",
        "--duration",
        "2h",
        "--comment",
        "maintenance",
    ]);
    assert_eq!(
        s["matchers"],
        serde_json::json!(["shard!=mars", "alertname=queue_depth_high"])
    );
    assert!(s["author"].as_str().unwrap().starts_with("cli:"));
    let id = s["id"].to_string();
    assert_eq!(h.json(&["alerts", "silence"]).as_array().unwrap().len(), 1);
    h.expect(0, &["alerts", "unsilence", &id]);
    assert!(h
        .json(&["alerts", "silence"])
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        h.json(&["alerts", "silence", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (args, want) in [
        (
            vec!["alerts", "silence", "--matcher", "nolabel"],
            "--matcher: 'nolabel' is not a matcher",
        ),
        (
            vec!["alerts", "silence", "--rule", "x", "--duration", "5x"],
            "--duration: '5x' has unknown unit 'x'",
        ),
        (
            vec!["alerts", "silence", "--rule", "x", "--duration", "10s"],
            "--duration: 10000 ms is out of range 1m..90d",
        ),
        (
            vec!["alerts", "unsilence", "999"],
            "silence '999' not found",
        ),
        (
            vec!["alerts", "unsilence", "abc"],
            "invalid silence id 'abc'",
        ),
        (
            vec!["alerts", "ack", "nope"],
            "firing alert 'nope' not found",
        ),
        (
            vec!["alerts", "test", "nope"],
            "ROUTE: 'nope' is not a route (configured: dead, pager, log)",
        ),
        (
            vec!["alerts", "history", "--limit", "0"],
            "--limit 0 is out of range",
        ),
    ] {
        let err = h.stderr(2, &args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let ok = h.json(&["alerts", "test", "log"]);
    assert_eq!(ok["outcome"], "delivered");
    let out = h.run(&["alerts", "test", "dead", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let failed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["detail"], "cannot connect");
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(!shown.contains("slack-secret"), "{shown}");
    let history = h.json(&["alerts", "history"]);
    assert_eq!(history[0]["outcome"], "test-failed");
    assert_eq!(history[1]["outcome"], "test-ok");
    let actions: Vec<String> = h
        .json(&["audit", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["alerts.silence", "alerts.unsilence", "alerts.test"] {
        assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
    }
    let config = h.expect(0, &["config", "show"]);
    for secret in ["slack-secret-2", "pd-secret-3"] {
        assert!(!config.contains(secret), "{secret} shown:\n{config}");
    }
}

/// `fabric drill`: the default queue_depth_high rule fires and clears through the configured
/// Slack route, the receiver gets both messages, and nothing lands in the home's store.
#[test]
fn a_drill_fires_and_clears_through_the_real_route() {
    let rx = Receiver::start();
    let h = Home::new();
    write_config(
        &h,
        &format!(
            "alerts:\n  routes:\n    chat: {{type: slack, url: \"{}\"}}\n",
            rx.url
        ),
    );
    let out = h.expect(0, &["drill", "queue-depth"]);
    assert!(out.contains("FIRED queue_depth_high → chat"), "{out}");
    assert!(out.contains("CLEARED queue_depth_high → chat"), "{out}");
    assert!(out.contains("drill passed"), "{out}");
    let texts: Vec<String> = rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].starts_with("[FIRING:1] queue_depth_high"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("[RESOLVED:1] queue_depth_high") || texts[1].contains("RESOLVED"),
        "{texts:?}"
    );

    // PagerDuty's routing key is a secret: the drill shows the body it sends, key masked.
    write_config(
        &h,
        &format!(
            "alerts:\n  routes:\n    chat: {{type: slack, url: \"{}\"}}\n    pager: {{type: pagerduty, routing_key: pd-secret-9}}\n",
            rx.url
        ),
    );
    let v = h.json(&["drill", "latency", "--dry-run"]);
    assert!(!v.to_string().contains("pd-secret-9"), "{v}");
    assert!(
        v.to_string().contains("\"routing_key\":\"********\""),
        "the PagerDuty body is shown, key masked: {v}"
    );
    assert_eq!(
        (
            v["fired"].as_bool(),
            v["cleared"].as_bool(),
            v["ok"].as_bool()
        ),
        (Some(true), Some(true), Some(true)),
        "{v}"
    );
    assert_eq!(v["rules"], serde_json::json!(["job_latency_high"]));
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        4,
        "three breaching samples and a clearing one: {v}"
    );
    assert_eq!(
        rx.bodies.lock().unwrap().len(),
        2,
        "a dry run sends nothing"
    );
    // The drill used a scratch store: the home's alerts saw nothing.
    assert_eq!(h.json(&["alerts", "history"]), serde_json::json!([]));

    // A route that refuses: the drill says so and exits 1.
    write_config(&h, "alerts:\n  delivery_max_attempts: 1\n  routes:\n    chat: {type: slack, url: \"http://127.0.0.1:9/nothing\"}\n");
    let out = h.expect(1, &["drill", "retry"]);
    assert!(out.contains("drill FAILED"), "{out}");
    write_config(&h, "alerts:\n  disabled_rules: [quarantine_spike]\n");
    let err = h.stderr(2, &["drill", "quarantine"]);
    assert!(err.contains("no alert rule watches quarantined"), "{err}");
}
