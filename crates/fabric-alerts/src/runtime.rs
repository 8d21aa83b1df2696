//! Alerting inside a daemon: while the daemon leads the fleet, every `alerts.interval_ms`
//! the collector's samples go through the evaluator, and the delivery worker drains the
//! notification queue (the leader only, so that each receiver's rate limit holds for the
//! whole fleet and, with the queue's claims, nothing is sent twice). Once an hour the
//! leader prunes the delivery history past `alerts.history_retention_days`.

use std::sync::Arc;
use std::time::Duration;

use fabric_core::config::AlertsConfig;
use fabric_core::Clock;
use fabric_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{AlertEngine, Collector, Deliverer, DeliveryOptions};

/// How often the leader prunes old delivery history.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Whether this process leads the fleet now.
pub type IsLeader = Arc<dyn Fn() -> bool + Send + Sync>;

/// The evaluation loop and the delivery worker of one daemon.
pub struct AlertsRuntime {
    engine: Arc<AlertEngine>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl AlertsRuntime {
    /// Starts both tasks; `owner` names this process in the queue's claims.
    pub fn start(
        store: Arc<dyn Store>,
        config: Arc<AlertsConfig>,
        clock: Arc<dyn Clock>,
        owner: String,
        leader: IsLeader,
    ) -> Self {
        let deliverer = Arc::new(Deliverer::new(
            store.clone(),
            config.clone(),
            clock.clone(),
            DeliveryOptions::new(owner),
        ));
        let engine = Arc::new(
            AlertEngine::new(store.clone(), config.clone(), clock.clone())
                .with_wake(deliverer.waker()),
        );
        let (stop, stopped) = watch::channel(false);
        let until_stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let delivery = {
            let leader = leader.clone();
            tokio::spawn(deliverer.run(move || leader(), until_stop(stopped.clone())))
        };
        let evaluation = tokio::spawn(evaluate(
            engine.clone(),
            Collector::new(store.clone()),
            store,
            config,
            clock,
            leader,
            until_stop(stopped),
        ));
        Self {
            engine,
            stop,
            tasks: vec![delivery, evaluation],
        }
    }

    /// The evaluator: feed it external samples ([`AlertEngine::observe`]; on the leader
    /// only, as two evaluators of one store would both notify) and read the active alerts
    /// ([`AlertEngine::active`]).
    ///
    /// A bus telemetry message `{"metric": "training_latency_ms", "value": 21.5}` deserializes
    /// into a [`crate::Sample`] as it is (labels and `at_ms` are optional).
    pub fn engine(&self) -> Arc<AlertEngine> {
        self.engine.clone()
    }

    /// Stops both tasks (a send under way finishes first, within its route's timeout).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn evaluate(
    engine: Arc<AlertEngine>,
    collector: Collector,
    store: Arc<dyn Store>,
    config: Arc<AlertsConfig>,
    clock: Arc<dyn Clock>,
    leader: IsLeader,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let period = Duration::from_millis(config.interval_ms.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if !leader() {
            continue;
        }
        let now = clock.now_ms();
        let samples = match collector.collect(now, config.interval_ms).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "alert samples could not be read");
                Vec::new()
            }
        };
        if let Err(e) = engine.observe(samples).await {
            tracing::warn!(error = %e, "alert evaluation failed");
        }
        if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned = Some(tokio::time::Instant::now());
            let before = now - i64::from(config.history_retention_days) * 86_400_000;
            match store.alerts().prune_alert_history(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "alert history pruned"),
                Err(e) => tracing::warn!(error = %e, "alert history pruning failed"),
            }
        }
    }
}
