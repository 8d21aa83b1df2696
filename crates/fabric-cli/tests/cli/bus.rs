//! `fabric bus …` against the local Redis, as an operator runs it: every command on a key
//! prefix of the test's own, deleted afterwards.

use super::Home;

/// The stream of `lane` in the JSON of `fabric bus streams`.
pub(crate) fn stream<'a>(streams: &'a serde_json::Value, lane: &str) -> &'a serde_json::Value {
    streams
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["lane"] == lane)
        .unwrap_or_else(|| panic!("no {lane} stream in {streams}"))
}

/// A home whose bus is the test Redis under a fresh prefix; the prefix's keys are deleted
/// when dropped.
struct BusHome {
    home: Home,
    url: String,
    prefix: String,
}

impl BusHome {
    fn new(emergency: u64, drop: u64) -> Self {
        let url = std::env::var("FABRIC_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!("fabric-cli-test-{}-{nanos}", std::process::id());
        let home = Home::new()
            .with("FABRIC__BUS__BACKEND", "redis")
            .with("FABRIC__BUS__URL", &url)
            .with("FABRIC__BUS__PREFIX", &prefix)
            .with("FABRIC__BUS__EMERGENCY_THRESHOLD", &emergency.to_string())
            .with(
                "FABRIC__BUS__BACKPRESSURE_DROP_THRESHOLD",
                &drop.to_string(),
            )
            .with("FABRIC__BUS__RETRY_IDLE_MS", "50")
            .with("FABRIC__BUS__RETRY_MAX_ATTEMPTS", "1");
        Self { home, url, prefix }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// A consumer `consumer` of `group` reads every new entry of stream `name` (e.g.
    /// `fabric.normal`) and dies before acknowledging any.
    fn read_and_die(&self, name: &str, group: &str, consumer: &str) {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(10)
            .arg("STREAMS")
            .arg(format!("{}:{name}", self.prefix))
            .arg(">")
            .query(&mut self.conn())
            .unwrap();
    }
}

impl Drop for BusHome {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

#[test]
fn publish_reroutes_and_the_snapshot_and_streams_show_it() {
    let b = BusHome::new(2, 100);
    let h = &b.home;
    let init = h.json(&["bus", "init"]);
    assert_eq!(init["group"], "fabric");
    let mut outcomes = Vec::new();
    for i in 0..3 {
        let p = format!("{{\"n\":{i}}}");
        let v = h.json(&["bus", "publish", "--stream", "normal", "--payload", &p]);
        outcomes.push(format!(
            "{}/{}",
            v["outcome"].as_str().unwrap(),
            v["stream"].as_str().unwrap()
        ));
    }
    assert_eq!(
        outcomes,
        ["normal/normal", "normal/normal", "rerouted/emergency"],
        "outcome/the stream it is stored on"
    );
    let v = h.json(&[
        "bus",
        "publish",
        "--stream",
        "normal",
        "--payload",
        "{}",
        "--emergency",
    ]);
    assert_eq!(v["outcome"], "emergency");
    assert_eq!(v["stream"], "emergency", "the stream it is stored on: {v}");
    let v = h.json(&[
        "bus",
        "publish",
        "--stream",
        "telemetry",
        "--payload",
        "{\"metric\":\"m\"}",
    ]);
    assert_eq!(
        (v["stream"].as_str(), v["outcome"].as_str()),
        (Some("telemetry"), Some("appended"))
    );

    // Counters are the bus's, whichever process published (telemetry counts too).
    let snap = h.json(&["bus", "snapshot"]);
    for (key, want) in [
        ("publish_total", 5),
        ("publish_rerouted", 1),
        ("publish_dropped", 0),
        ("queue_depth_normal", 2),
        ("queue_depth_emergency", 2),
        ("queue_depth_max", 2),
    ] {
        assert_eq!(snap[key], want, "{key} in {snap}");
    }
    let streams = h.json(&["bus", "streams"]);
    let normal = stream(&streams, "normal");
    assert_eq!(normal["length"], 2);
    assert_eq!(normal["groups"]["fabric"]["lag"], 2);
    assert_eq!(normal["groups"]["fabric"]["pending"], 0);

    // Tail reads without consuming.
    let out = h.expect(0, &["bus", "tail", "--format", "json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["payload"]["n"], 0);
    let out = h.expect(0, &["bus", "tail", "--group", "fabric", "--limit", "1"]);
    assert!(
        out.contains("{\"n\":0}") && !out.contains("{\"n\":1}"),
        "{out}"
    );
    let audit = h.expect(0, &["audit", "list"]);
    assert!(
        audit.contains("bus.publish") && audit.contains("bus.init"),
        "{audit}"
    );
}

#[test]
fn a_dropped_publish_exits_1_and_says_why() {
    let b = BusHome::new(100, 101);
    let mut conn = b.conn();
    for _ in 0..101 {
        let _: String = redis::cmd("XADD")
            .arg(format!("{}:fabric.normal", b.prefix))
            .arg("*")
            .arg("p")
            .arg("{}")
            .query(&mut conn)
            .unwrap();
    }
    let out = b.home.expect(1, &["bus", "publish", "--payload", "{}"]);
    assert!(
        out.contains("dropped") && out.contains("backpressure_drop_threshold (101)"),
        "{out}"
    );
    let snap = b.home.json(&["bus", "snapshot"]);
    assert_eq!(snap["publish_dropped"], 1, "{snap}");
}

#[test]
fn dead_letters_are_listed_replayed_and_purged() {
    let b = BusHome::new(100, 200);
    let h = &b.home;
    h.json(&["bus", "init", "--group", "workers"]);
    h.json(&["bus", "publish", "--payload", "{\"job\":1}"]);
    h.json(&["bus", "publish", "--payload", "{\"job\":2}"]);
    // A consumer takes both and dies; after the idle time they are dead-lettered
    // (retry_max_attempts 1).
    b.read_and_die("fabric.normal", "workers", "dead");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = fabric_core::config::BusConfig {
            backend: fabric_core::config::BusBackend::Redis,
            url: b.url.clone(),
            prefix: b.prefix.clone(),
            retry_idle_ms: 50,
            retry_max_attempts: 1,
            ..Default::default()
        };
        let bus = fabric_bus::open(config).await.unwrap();
        let r = bus
            .reclaim(fabric_bus::Lane::Normal, "workers", "rescuer", 10)
            .await
            .unwrap();
        assert_eq!(r.dead_lettered, 2);
    });
    let list = h.json(&["bus", "dead-letters", "list"]);
    let letters = list.as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["group"], "workers");
    assert_eq!(letters[0]["stream"], "normal", "{list}");
    assert!(
        letters[0]["payload"].is_object(),
        "the payload as JSON: {list}"
    );
    let first = letters[0]["id"].as_str().unwrap().to_string();
    let replayed = h.json(&["bus", "dead-letters", "replay", &first]);
    assert_eq!(replayed[0]["outcome"], "normal");
    let err = h.stderr(2, &["bus", "dead-letters", "replay", "0-1"]);
    assert!(err.contains("no dead letter \"0-1\""), "{err}");
    let err = h.stderr(2, &["bus", "dead-letters", "purge"]);
    assert!(err.contains("--all"), "{err}");
    let purged = h.json(&["bus", "dead-letters", "purge", "--all"]);
    assert_eq!(purged["purged"], 1);
    assert_eq!(
        h.json(&["bus", "dead-letters", "list"]),
        serde_json::json!([])
    );
}

#[test]
fn bad_input_is_named_and_the_inproc_bus_is_explained() {
    let h = Home::new();
    let err = h.stderr(2, &["bus", "snapshot"]);
    assert!(err.contains("bus.backend is inproc"), "{err}");
    let b = BusHome::new(10, 20);
    let err = b.home.stderr(2, &["bus", "publish", "--payload", "{nope"]);
    assert!(err.contains("--payload is not JSON"), "{err}");
    let err = b.home.stderr(
        2,
        &[
            "bus",
            "publish",
            "--stream",
            "dead_letter",
            "--payload",
            "{}",
        ],
    );
    assert!(err.contains("dead_letter"), "{err}");
    let err = b.home.stderr(2, &["bus", "tail", "--stream", "bogus"]);
    assert!(err.contains("\"bogus\" is not a stream"), "{err}");
    let err = b.home.stderr(2, &["bus", "tail", "--group", "nobody"]);
    assert!(err.contains("no consumer group \"nobody\""), "{err}");
    let err = b.home.stderr(2, &["bus", "tail", "--limit", "0"]);
    assert!(err.contains("--limit 0"), "{err}");
}

/// Samples published on the bus's telemetry stream reach the daemon's alert rules:
/// `training_latency_high` fires after three over 18 ms. Entries that a consumer of the
/// daemon's group read and never acknowledged (a daemon killed mid-read) are taken over, and
/// those delivered `retry_max_attempts` times (1 here) go to dead-letter. The daemon's group
/// lives on the telemetry stream alone.
#[test]
fn telemetry_samples_on_the_bus_feed_the_daemons_alert_rules() {
    let b = BusHome::new(4000, 8000);
    let h = &b.home;
    let sample = |metric: &str, v: i32| {
        let payload = format!("{{\"metric\":\"{metric}\",\"value\":{v}}}");
        h.json(&[
            "bus",
            "publish",
            "--stream",
            "telemetry",
            "--payload",
            &payload,
        ]);
    };
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(format!("{}:fabric.telemetry", b.prefix))
        .arg("fabric-alerts")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut b.conn())
        .unwrap();
    for v in [1, 2] {
        sample("ghost", v);
    }
    // A consumer that reads both and dies before acknowledging them.
    b.read_and_die("fabric.telemetry", "fabric-alerts", "ghost");
    h.expect(0, &["start"]);
    h.wait_within(
        "the ghost's entries are dead-lettered",
        std::time::Duration::from_secs(30),
        || {
            h.json(&["bus", "dead-letters", "list"])
                .as_array()
                .unwrap()
                .len()
                == 2
        },
    );
    // The daemon's counts reach the shared counters although it has published and
    // acknowledged nothing yet: its reader flushes them.
    h.wait_within(
        "the snapshot counts them",
        // A reader flushes at most a second after it counted (the daemon's own samples,
        // published every 10 s, flushed them before).
        std::time::Duration::from_secs(6),
        || h.json(&["bus", "snapshot"])["dead_lettered"] == 2,
    );
    for v in [25, 26, 27] {
        sample("training_latency_ms", v);
    }
    // Fabric's own samples share the stream and are left to the store's collector.
    h.json(&[
        "bus",
        "publish",
        "--stream",
        "telemetry",
        "--payload",
        "{\"queue_depth\":1}",
    ]);
    h.wait_within(
        "training_latency_high fires",
        std::time::Duration::from_secs(60),
        || {
            h.json(&["alerts", "list"])
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["rule"] == "training_latency_high" && a["phase"] == "firing")
        },
    );
    let streams = h.json(&["bus", "streams"]);
    let telemetry = stream(&streams, "telemetry");
    assert_eq!(
        telemetry["groups"]["fabric-alerts"]["pending"], 0,
        "{streams}"
    );
    for lane in ["normal", "emergency", "policy"] {
        assert!(
            stream(&streams, lane)["groups"]
                .get("fabric-alerts")
                .is_none(),
            "no fabric-alerts group on {lane}: {streams}"
        );
    }
    h.expect(0, &["stop"]);
}
