//! `deploy/`: the Grafana dashboard plots only recording rules; promtool accepts the
//! Prometheus config and rules and passes the rules' unit tests; a real Prometheus scrapes a
//! real daemon and answers `fabric_` queries. The Prometheus tests need Debian's `prometheus`
//! package (`.ci/run` installs it and sets FABRIC_REQUIRE_PROMETHEUS=1, so CI never skips).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, Home};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Whether `tool` is installed; without it a test is skipped, unless CI requires it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("FABRIC_REQUIRE_PROMETHEUS").is_none(),
            "{tool} is required (FABRIC_REQUIRE_PROMETHEUS is set) but not installed"
        );
        eprintln!("skipped: {tool} is not installed (apt-get install prometheus)");
    }
    found
}

fn records() -> Vec<String> {
    let text = std::fs::read_to_string(deploy().join("prometheus/recording.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push(rule["record"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn every_dashboard_query_is_a_recording_rule() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("grafana/fabric.json")).unwrap(),
    )
    .unwrap();
    let records = records();
    let mut titles = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        titles.push(panel["title"].as_str().unwrap().to_string());
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let name = expr.split('{').next().unwrap();
            assert!(
                records.iter().any(|r| r == name),
                "panel {:?} plots {expr:?}, which recording.yml does not record",
                panel["title"]
            );
        }
    }
    for wanted in [
        "Queue depth",
        "Throughput",
        "Latency (due → start)",
        "Failures",
        "Bus lanes",
        "Alerts firing",
        "SLO burn rate",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "no {wanted} panel in {titles:?}"
        );
    }
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_their_tests_pass() {
    if !have("promtool") {
        return;
    }
    let dir = deploy().join("prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "recording.yml", "rules.yml"],
        vec!["test", "rules", "rules_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Kills the Prometheus it holds when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(http: &reqwest::Client, base: &str, q: &str) -> Value {
    http.get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_answers_fabric_queries() {
    if !have("prometheus") {
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen);
    h.expect(0, &["start"]);
    for _ in 0..3 {
        h.json(&["jobs", "submit", "--kind", "noop"]);
    }
    h.wait_until("the jobs succeed", || {
        h.json(&["status"])["queue"]["succeeded"] == 3
    });

    // The deploy config, pointed at this daemon, scraping and evaluating every second.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy().join("prometheus/prometheus.yml")).unwrap();
    let text = text
        .replace("127.0.0.1:9100", &listen)
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    for f in ["recording.yml", "rules.yml"] {
        std::fs::copy(deploy().join("prometheus").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("prometheus.yml"), text).unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{web}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let t0 = Instant::now();
        let logs =
            || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        // The target is up.
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "target never up:\n{}",
                logs()
            );
            let up = match http.get(format!("{base}/api/v1/targets")).send().await {
                Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let health = up["data"]["activeTargets"][0]["health"].clone();
            if health == "up" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The daemon exports its bus (in-process here) for the dashboard's bus panels.
        let text = http
            .get(format!("http://{listen}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            "fabric_bus_queue_depth{lane=\"normal\"} ",
            "fabric_bus_messages_total{event=\"published\"} ",
        ] {
            assert!(text.contains(line), "no {line} in {text}");
        }
        // A fabric_ query and a recording rule return this daemon's figures.
        loop {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "no data:\n{}",
                logs()
            );
            let done = query(&http, &base, "fabric_jobs{state=\"succeeded\"}").await;
            let rec = query(
                &http,
                &base,
                "fabric:jobs_by_state:store{state=\"succeeded\"}",
            )
            .await;
            let value = |v: &Value| {
                v["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            };
            if value(&done).as_deref() == Some("3") && value(&rec).as_deref() == Some("3") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}
