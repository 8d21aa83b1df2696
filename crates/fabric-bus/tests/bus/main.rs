//! Bus integration tests: the conformance suite run on the in-process bus and on Redis
//! (`FABRIC_TEST_REDIS_URL`, default redis://127.0.0.1:6379; unreachable Redis fails the
//! Redis tests), plus configuration checks.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fabric_bus::{Bus, BusBackend, BusConfig};

#[macro_use]
mod conformance;
mod config;
mod crash;

/// Opens buses of one backend under a key prefix of its own; a Redis opener deletes every
/// key under its prefix when dropped (SCAN + DEL), whether the test passed or not.
pub struct Opener {
    backend: BusBackend,
    url: String,
    prefix: String,
}

impl Opener {
    pub fn new(backend: BusBackend) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self {
            backend,
            url: std::env::var("FABRIC_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            prefix: format!(
                "fabric-test-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// A bus of this backend with `config`'s thresholds and limits.
    pub async fn open(&self, config: BusConfig) -> Arc<dyn Bus> {
        let config = BusConfig {
            backend: self.backend,
            url: self.url.clone(),
            prefix: self.prefix.clone(),
            ..config
        };
        fabric_bus::open(config)
            .await
            .unwrap_or_else(|e| panic!("opening the {:?} bus at {}: {e}", self.backend, self.url))
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        if self.backend != BusBackend::Redis {
            return;
        }
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let Ok((next, batch)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
            else {
                return;
            };
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
        }
    }
}

mod inproc {
    conformance_tests!(fabric_bus::BusBackend::Inproc);
}

mod redis_streams {
    conformance_tests!(fabric_bus::BusBackend::Redis);

    /// Every key a test wrote is under its prefix, and the opener deletes them.
    #[tokio::test]
    async fn keys_live_under_the_prefix_and_are_deleted_afterwards() {
        let opener = super::Opener::new(fabric_bus::BusBackend::Redis);
        let prefix = opener.prefix.clone();
        let url = opener.url.clone();
        let bus = opener.open(fabric_bus::BusConfig::default()).await;
        bus.init("g").await.unwrap();
        bus.publish(fabric_bus::Message::normal("{}"))
            .await
            .unwrap();
        bus.metrics_snapshot().await.unwrap();
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let keys = |conn: &mut redis::Connection| -> Vec<String> {
            redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query(conn)
                .unwrap()
        };
        let mut found = keys(&mut conn);
        found.sort();
        assert_eq!(
            found,
            [
                format!("{prefix}:counters"),
                format!("{prefix}:fabric.emergency"),
                format!("{prefix}:fabric.normal"),
                format!("{prefix}:fabric.policy"),
                format!("{prefix}:fabric.telemetry"),
            ]
        );
        drop(opener);
        assert!(keys(&mut conn).is_empty());
    }

    /// Counters are the fleet's: what one process published and consumed shows in another's
    /// snapshot (`fabric bus snapshot` runs in a process of its own).
    #[tokio::test]
    async fn counters_are_shared_by_every_process_on_the_prefix() {
        let opener = super::Opener::new(fabric_bus::BusBackend::Redis);
        let config = fabric_bus::BusConfig {
            emergency_threshold: 2,
            backpressure_drop_threshold: 3,
            ..Default::default()
        };
        let a = opener.open(config.clone()).await;
        let b = opener.open(config).await;
        a.init("g").await.unwrap();
        for _ in 0..4 {
            a.publish(fabric_bus::Message::normal("{}")).await.unwrap();
        }
        let got = b
            .read("g", "c", 10, std::time::Duration::ZERO)
            .await
            .unwrap();
        let normal: Vec<String> = got
            .iter()
            .filter(|d| d.lane == fabric_bus::Lane::Normal)
            .map(|d| d.id.clone())
            .collect();
        b.ack("g", fabric_bus::Lane::Normal, &normal).await.unwrap();
        a.metrics_snapshot().await.unwrap();
        let m = b.metrics_snapshot().await.unwrap();
        assert_eq!(
            [
                m.get("publish_total"),
                m.get("publish_rerouted"),
                m.get("publish_dropped"),
                m.get("consumed"),
                m.get("acked"),
                m.get("queue_depth_max"),
            ],
            [4, 2, 0, 4, 2, 2],
            "{m:?}"
        );
        // A second snapshot adds nothing twice.
        a.metrics_snapshot().await.unwrap();
        assert_eq!(b.metrics_snapshot().await.unwrap().get("publish_total"), 4);
    }
}
