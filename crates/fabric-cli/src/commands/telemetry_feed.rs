//! The daemon's feed from the bus's telemetry stream into its alert rules: while the daemon
//! leads the fleet, it reads the stream as consumer group `fabric-alerts`, hands every entry
//! shaped like a sample (`{"metric": …, "value": …, "labels"?: {…}}`) to the evaluator, and
//! acknowledges what it read. Other entries (Fabric's own telemetry samples, which the
//! evaluator already takes from the store) are acknowledged and left alone. Every
//! `bus.retry_idle_ms` it takes over the entries another consumer of the group read and never
//! acknowledged (a daemon killed mid-read), and the bus moves those delivered
//! `bus.retry_max_attempts` times to dead-letter. The group exists on the telemetry stream
//! only: a group that nobody reads would hold back the trimming of the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_alerts::{AlertEngine, Sample};
use fabric_bus::{Bus, Delivery, Lane};
use tokio::task::JoinHandle;

/// The consumer group the feed reads as.
pub const GROUP: &str = "fabric-alerts";

/// Entries taken or read per call.
const BATCH: usize = 256;

/// Starts the feed as `consumer` (stable across restarts of a node, so that a restarted
/// daemon does not leave a new consumer behind each time); abort the handle to stop it.
pub fn start(
    bus: Arc<dyn Bus>,
    engine: Arc<AlertEngine>,
    consumer: String,
    leader: Arc<dyn Fn() -> bool + Send + Sync>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = false;
        let every = Duration::from_millis(bus.config().retry_idle_ms.max(1_000));
        let mut last_reclaim: Option<Instant> = None;
        loop {
            if !leader() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if !ready {
                match bus.init_lane(Lane::Telemetry, GROUP).await {
                    Ok(()) => ready = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "telemetry feed: bus not ready");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            if last_reclaim.is_none_or(|t| t.elapsed() >= every) {
                last_reclaim = Some(Instant::now());
                match bus.reclaim(Lane::Telemetry, GROUP, &consumer, BATCH).await {
                    Ok(r) => {
                        if r.dead_lettered > 0 || !r.redelivered.is_empty() {
                            tracing::info!(
                                redelivered = r.redelivered.len(),
                                dead_lettered = r.dead_lettered,
                                "telemetry feed: took over entries left unacknowledged"
                            );
                        }
                        if !r.redelivered.is_empty() {
                            // More may wait: take the next batch at once.
                            last_reclaim = None;
                            handle(&*bus, &engine, r.redelivered).await;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "telemetry feed: reclaiming failed"),
                }
            }
            let got = match bus
                .read_lane(
                    Lane::Telemetry,
                    GROUP,
                    &consumer,
                    BATCH,
                    Duration::from_secs(1),
                )
                .await
            {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry feed: reading the bus failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if !got.is_empty() {
                handle(&*bus, &engine, got).await;
            }
        }
    })
}

/// Hands the samples among `got` to the rules, then acknowledges every entry of `got`.
async fn handle(bus: &dyn Bus, engine: &AlertEngine, got: Vec<Delivery>) {
    let samples: Vec<Sample> = got
        .iter()
        .filter_map(|d| serde_json::from_str::<Sample>(&d.payload).ok())
        .filter(|s| s.value.is_finite() && !s.metric.is_empty())
        .collect();
    if !samples.is_empty() {
        if let Err(e) = engine.observe(samples).await {
            tracing::warn!(error = %e, "telemetry feed: evaluation failed");
        }
    }
    let ids: Vec<String> = got.into_iter().map(|d| d.id).collect();
    if let Err(e) = bus.ack(GROUP, Lane::Telemetry, &ids).await {
        tracing::warn!(error = %e, "telemetry feed: acknowledging failed");
    }
}
