//! A consumer process killed with -9 while it holds pending entries: every entry is
//! delivered again after `retry_idle_ms`, and moved to dead-letter once delivered
//! `retry_max_attempts` times. The consumer is this test binary run again as a child (the
//! `child_consumer` test, armed by an environment variable), reading from the test Redis.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use fabric_bus::{BusBackend, BusConfig, Lane, Message};

const CHILD_ENV: &str = "FABRIC_BUS_TEST_CHILD_PREFIX";

fn config(url: &str, prefix: &str) -> BusConfig {
    BusConfig {
        backend: BusBackend::Redis,
        url: url.into(),
        prefix: prefix.into(),
        retry_idle_ms: 300,
        retry_max_attempts: 3,
        ..BusConfig::default()
    }
}

/// In the child: reads every entry of group `g` as consumer `doomed`, never acknowledges,
/// prints how many it holds, and waits to be killed.
#[tokio::test]
async fn child_consumer() {
    let Ok(prefix) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let url = std::env::var("FABRIC_TEST_REDIS_URL").unwrap();
    let bus = fabric_bus::open(config(&url, &prefix)).await.unwrap();
    let got = bus.read("g", "doomed", 1000, Duration::ZERO).await.unwrap();
    println!("holding {}", got.len());
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_with_9_has_its_entries_redelivered_then_dead_lettered() {
    let opener = crate::Opener::new(BusBackend::Redis);
    let url = opener.url.clone();
    let prefix = opener.prefix.clone();
    let bus = opener.open(config(&url, &prefix)).await;
    bus.init("g").await.unwrap();
    let mut sent = Vec::new();
    for i in 0..50 {
        let out = bus
            .publish(Message::normal(format!("{{\"n\":{i}}}")))
            .await
            .unwrap();
        sent.push(out.id().unwrap().to_string());
    }

    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::child_consumer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &prefix)
            .env("FABRIC_TEST_REDIS_URL", &url)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The harness prints `test crash::child_consumer ... ` before the child's own line.
    let mut line = String::new();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    while !line.contains("holding ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    assert!(line.trim_end().ends_with("holding 50"), "{line}");
    drop(child);
    let s = &bus.streams().await.unwrap()[0];
    assert_eq!(
        s.groups["g"].pending, 50,
        "the dead consumer's entries stay pending"
    );

    // Ids compared as sets (sorted as text on both sides).
    sent.sort();
    // Nothing is reclaimed before the entries have been idle retry_idle_ms.
    let early = bus
        .reclaim(Lane::Normal, "g", "rescuer", 1000)
        .await
        .unwrap();
    assert!(early.redelivered.is_empty(), "{early:?}");

    // Delivered again after the idle time: every one of them, once more each round, until
    // the third delivery, after which they are dead letters.
    let mut redelivered = Vec::new();
    for round in 2..=3u64 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = bus
            .reclaim(Lane::Normal, "g", "rescuer", 1000)
            .await
            .unwrap();
        let mut ids: Vec<String> = r.redelivered.iter().map(|d| d.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, sent, "round {round}");
        assert!(r.redelivered.iter().all(|d| d.deliveries == round));
        redelivered.push(r.redelivered.len());
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = bus
        .reclaim(Lane::Normal, "g", "rescuer", 1000)
        .await
        .unwrap();
    assert!(last.redelivered.is_empty());
    assert_eq!(last.dead_lettered, 50);
    let letters = bus.dead_letters(1000).await.unwrap();
    let mut originals: Vec<String> = letters.iter().map(|l| l.original_id.clone()).collect();
    originals.sort();
    assert_eq!(originals, sent);
    assert!(letters.iter().all(|l| l.group == "g" && l.deliveries == 3));
    assert_eq!(bus.streams().await.unwrap()[0].groups["g"].pending, 0);
}

/// A child process, killed with -9 (and reaped) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
