//! Alerts with real parts: a SQLite store in a temporary directory, receivers that are real
//! HTTP servers and an SMTP sink on ports of their own, and the virtual clock (so grouping
//! waits, rate limits and `Retry-After` are checked without sleeping).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod delivery;
mod lifecycle;
mod receivers;

use std::path::PathBuf;
use std::sync::Arc;

use fabric_alerts::{AlertEngine, AlertsConsole, Deliverer, DeliveryOptions, Sample, Transition};
use fabric_core::config::Config;
use fabric_core::VirtualClock;
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};

/// Where the virtual clock starts.
pub const T0: i64 = 1_800_000_000_000;

/// A store, a config, an evaluator and a delivery worker on the virtual clock.
pub struct H {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub clock: Arc<VirtualClock>,
    pub config: Arc<Config>,
    pub engine: AlertEngine,
    pub deliverer: Deliverer,
}

impl H {
    /// A harness on a new store under the `alerts:` section `yaml` (indented by two spaces
    /// under `alerts:` by the caller's text).
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, yaml, T0)
    }

    fn open(dir: tempfile::TempDir, yaml: &str, now: i64) -> Self {
        let config = Arc::new(Config::from_yaml(yaml, [("", ""); 0]).unwrap());
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(dir.path().join("queue.db"), SqliteOptions::default()).unwrap(),
        );
        let clock = Arc::new(VirtualClock::new(now));
        let alerts = Arc::new(config.alerts.clone());
        let deliverer = Deliverer::new(
            store.clone(),
            alerts.clone(),
            clock.clone(),
            DeliveryOptions::new("test-worker"),
        );
        let engine = AlertEngine::new(store.clone(), alerts, clock.clone());
        Self {
            dir,
            store,
            clock,
            config,
            engine,
            deliverer,
        }
    }

    /// Everything dropped and opened again on the same store file, as a daemon restart
    /// does; the clock goes on from where it was.
    pub fn restart(self, yaml: &str) -> Self {
        let now = fabric_core::Clock::now_ms(&*self.clock);
        let dir = self.dir;
        drop((self.engine, self.deliverer, self.store));
        Self::open(dir, yaml, now)
    }

    #[allow(dead_code)]
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("queue.db")
    }

    /// One sample of `metric` per value, a second apart.
    pub async fn feed(&self, metric: &str, values: &[f64]) -> Vec<Transition> {
        let mut out = Vec::new();
        for v in values {
            self.clock.advance(1_000);
            out.extend(
                self.engine
                    .observe(vec![Sample::new(metric, *v)])
                    .await
                    .unwrap(),
            );
        }
        out
    }

    /// One delivery round; how many groups it tried.
    pub async fn deliver(&self) -> usize {
        self.deliverer.run_once().await.unwrap()
    }

    pub fn console(&self) -> AlertsConsole {
        AlertsConsole::new(
            self.store.clone(),
            self.config.clone(),
            self.clock.clone(),
            "cli:test",
        )
    }

    /// Notifications still waiting.
    pub async fn queued(&self) -> usize {
        self.store
            .alerts()
            .notification_queue(i64::MAX, 1000)
            .await
            .unwrap()
            .len()
    }
}

/// An `alerts:` config with no default rules, no grouping waits, and `body` (YAML lines
/// indented by two spaces) added.
pub fn config(body: &str) -> String {
    format!("alerts:\n  default_rules: false\n  group_wait_ms: 0\n  group_interval_ms: 0\n{body}")
}
