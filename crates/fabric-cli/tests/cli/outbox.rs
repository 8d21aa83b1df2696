//! A daemon publishing lifecycle events to a Redis that dies: `kill -9` of the
//! `redis-server` mid-publish, jobs keep running, the server comes back on the same port,
//! the outbox drains, and a sequence-gap check finds every event, in order per job.
//!
//! The test's Redis runs with `appendonly yes` and `appendfsync always`: whatever it
//! acknowledged is on disk before the reply and comes back on restart, so the stream read at
//! the end holds every event the outbox handed over. (Without persistence the events sent
//! before the kill die with Redis's memory: the outbox keeps a row until the bus has taken
//! it, and not beyond.) A batch whose reply the kill cut off is sent again: duplicates are
//! allowed (at least once), gaps are not.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_bus::{Bus, BusBackend, BusConfig, Lane, RedisBus};
use serde_json::Value;

use super::{free_port, Home};

/// A `redis-server` of the test's own, on `port`, persisting to `dir`.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// `None` (and a note) where `redis-server` is not installed.
    fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let mut s = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "redis-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, and waits for it to be gone.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn bus_config(redis: &RedisServer, prefix: &str) -> BusConfig {
    BusConfig {
        backend: BusBackend::Redis,
        url: redis.url(),
        prefix: prefix.into(),
        emergency_threshold: 1_000_000,
        backpressure_drop_threshold: 2_000_000,
        max_stream_length: 1_000_000,
        ..BusConfig::default()
    }
}

/// Messages, and lifecycle events in them, waiting in the outbox of the home's store.
fn outbox(h: &Home) -> (i64, i64) {
    let conn = rusqlite::Connection::open(h.path().join("queue.db")).unwrap();
    conn.query_row(
        "SELECT count(*), coalesce(sum(events), 0) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// Submits `n` jobs that sleep 10 ms each.
fn submit(h: &Home, n: usize, name: &str) {
    let file = h.path().join(name);
    std::fs::write(
        &file,
        "{\"kind\": \"sleep\", \"payload\": {\"ms\": 10}}\n".repeat(n),
    )
    .unwrap();
    assert_eq!(
        h.json(&["jobs", "submit", "--file", file.to_str().unwrap()])["count"],
        n
    );
}

fn succeeded(h: &Home) -> u64 {
    h.json(&["status"])["queue"]["succeeded"].as_u64().unwrap()
}

/// Every message of the emergency, normal and telemetry streams, each stream in order.
fn read_all(bus: &dyn Bus, rt: &tokio::runtime::Runtime) -> Vec<(Lane, Value)> {
    rt.block_on(async {
        bus.init("check").await.unwrap();
        let mut out = Vec::new();
        for lane in [Lane::Emergency, Lane::Normal, Lane::Telemetry] {
            loop {
                let got = bus
                    .read_lane(lane, "check", "c", 5_000, Duration::ZERO)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                out.extend(
                    got.into_iter()
                        .map(|d| (d.lane, serde_json::from_str(&d.payload).unwrap())),
                );
            }
        }
        out
    })
}

#[test]
fn redis_killed_mid_publish_loses_no_event_and_the_outbox_drains_in_order() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let prefix = format!("fabric-test-outbox-{}-{}", std::process::id(), redis.port);
    let h = Home::new()
        .with("FABRIC__BUS__BACKEND", "redis")
        .with("FABRIC__BUS__URL", &redis.url())
        .with("FABRIC__BUS__PREFIX", &prefix)
        .with("FABRIC__BUS__EVENTS", "true")
        .with("FABRIC__BUS__EMERGENCY_THRESHOLD", "1000000")
        .with("FABRIC__BUS__BACKPRESSURE_DROP_THRESHOLD", "2000000")
        .with("FABRIC__BUS__MAX_STREAM_LENGTH", "1000000")
        .with("FABRIC__BUS__TELEMETRY_INTERVAL_MS", "300")
        .with("FABRIC__WORKERS__MAX_WORKERS", "8");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(
        rt.block_on(RedisBus::connect(bus_config(&redis, &prefix)))
            .unwrap(),
    );
    let normal_len = || -> u64 {
        rt.block_on(bus.streams())
            .map(|s| {
                s.iter()
                    .filter(|s| s.lane == Lane::Normal)
                    .map(|s| s.length)
                    .sum()
            })
            .unwrap_or(0)
    };

    h.expect(0, &["start"]);
    submit(&h, 1500, "first.jsonl");
    // Mid-publish: some events are on the bus, jobs are still running.
    h.wait_until("the first events reached Redis", || normal_len() >= 5);
    assert!(succeeded(&h) < 1500, "the kill must land while jobs run");
    redis.kill9();

    // The daemon keeps running jobs, old and new; their events wait in the outbox.
    submit(&h, 500, "second.jsonl");
    h.wait_until("every job succeeded with Redis down", || {
        succeeded(&h) == 2000
    });
    assert_eq!(h.json(&["status"])["running"], true);
    let waiting = outbox(&h).1;
    assert!(waiting >= 500 * 2, "events of the outage wait: {waiting}");

    redis.spawn();
    h.wait_until("the outbox drained", || outbox(&h).0 == 0);
    h.expect(0, &["stop"]);

    // A fresh connection: the first one broke with the server.
    let bus: Arc<dyn Bus> = Arc::new(
        rt.block_on(RedisBus::connect(bus_config(&redis, &prefix)))
            .unwrap(),
    );
    let messages = read_all(&*bus, &rt);
    // The sequence-gap check: every message from seq 1 to the last arrived (some perhaps
    // twice: at least once).
    let mut first_seen: BTreeMap<i64, (Lane, Value)> = BTreeMap::new();
    let mut order: Vec<i64> = Vec::new();
    for (lane, m) in &messages {
        let seq = m["seq"].as_i64().unwrap();
        if let std::collections::btree_map::Entry::Vacant(v) = first_seen.entry(seq) {
            v.insert((*lane, m.clone()));
            order.push(seq);
        }
    }
    let last = *first_seen.keys().last().unwrap();
    let missing: Vec<i64> = (1..=last).filter(|s| !first_seen.contains_key(s)).collect();
    assert!(missing.is_empty(), "lost messages: {missing:?}");
    // Per job, in the order sent, each job's full life.
    let mut per_job: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    let mut telemetry = 0;
    for seq in &order {
        let (lane, m) = &first_seen[seq];
        if *lane == Lane::Telemetry {
            assert_eq!(m["type"], "telemetry");
            telemetry += 1;
            continue;
        }
        assert_eq!(m["type"], "job_events");
        for e in m["events"].as_array().unwrap() {
            let job = e["job_id"].as_i64().unwrap();
            let mine = per_job.entry(job).or_default();
            if let Some((prev, _)) = mine.last() {
                assert!(prev < seq, "job {job}: message {seq} arrived after {prev}");
            }
            mine.push((*seq, e["event"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(per_job.len(), 2000);
    for (job, events) in &per_job {
        let names: Vec<&str> = events.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["job.submitted", "job.succeeded"], "job {job}");
    }
    assert!(telemetry > 0, "samples were published too");
    eprintln!(
        "{} messages ({telemetry} telemetry), {waiting} events waited for Redis, {} messages \
         sent twice",
        first_seen.len(),
        messages.len() - first_seen.len()
    );
}

#[test]
fn bench_events_compares_throughput_with_events_and_without() {
    let h = Home::new();
    let report = h.json(&["bench", "--events", "--jobs", "300", "--workers", "4"]);
    assert_eq!(report["N"], 300);
    // Every job's three events reached the bus (the run fails otherwise); no timing asserted.
    assert!(report["on"]["events"].as_u64().unwrap() >= 600, "{report}");
    assert_eq!(report["off"]["events"], 0, "{report}");
    assert!(report["drain_ratio"].as_f64().unwrap() > 0.0, "{report}");
}
