//! Drills: samples run through the real evaluator and delivery worker in-process, with what
//! each receiver was sent collected. Grouping waits are zero (a drill shows its effect at
//! once); rate limits, retries and the store are the real ones. With `dry_run` the messages
//! are built and recorded but nothing leaves the process.

use std::sync::Arc;
use std::time::Duration;

use fabric_core::config::AlertsConfig;
use fabric_core::Clock;
use fabric_store::Store;
use tokio::sync::mpsc;

use crate::{AlertEngine, Deliverer, DeliveryOptions, Result, Sample, Sent, Transition};

/// An evaluator and a delivery worker wired to collect what they send.
pub struct Drill {
    engine: AlertEngine,
    deliverer: Deliverer,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sent: mpsc::UnboundedReceiver<Sent>,
}

impl Drill {
    /// A drill on `store` under `config` (its waits set to zero).
    pub fn new(
        store: Arc<dyn Store>,
        config: &AlertsConfig,
        clock: Arc<dyn Clock>,
        dry_run: bool,
    ) -> Self {
        let mut c = config.clone();
        c.group_wait_ms = 0;
        c.group_interval_ms = 0;
        c.repeat_interval_ms = 0;
        let c = Arc::new(c);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut options = DeliveryOptions::new(format!("drill-{}", std::process::id()));
        options.dry_run = dry_run;
        Self {
            engine: AlertEngine::new(store.clone(), c.clone(), clock.clone()),
            deliverer: Deliverer::new(store.clone(), c, clock.clone(), options).with_tap(tx),
            store,
            clock,
            sent: rx,
        }
    }

    /// The evaluator (its rules, [`AlertEngine::active`]).
    pub fn engine(&self) -> &AlertEngine {
        &self.engine
    }

    /// Evaluates `samples` and returns what fired and cleared.
    pub async fn feed(&self, samples: Vec<Sample>) -> Result<Vec<Transition>> {
        self.engine.observe(samples).await
    }

    /// Delivers what is queued until nothing is left or `within` has passed (a rate limit or
    /// a retry may hold some back), and returns every message sent since the last call.
    pub async fn flush(&mut self, within: Duration) -> Result<Vec<Sent>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.deliverer.run_once().await?;
            let left = self
                .store
                .alerts()
                .notification_queue(self.clock.now_ms() + within.as_millis() as i64, 1)
                .await?;
            if left.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut out = Vec::new();
        while let Ok(s) = self.sent.try_recv() {
            out.push(s);
        }
        Ok(out)
    }
}
