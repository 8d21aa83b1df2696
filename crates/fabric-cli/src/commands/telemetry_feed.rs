//! The daemon's feed from the bus's telemetry stream into its alert rules: while the daemon
//! leads the fleet, it reads the stream as consumer group `fabric-alerts`, hands every entry
//! shaped like a sample (`{"metric": …, "value": …, "labels"?: {…}}`) to the evaluator, and
//! acknowledges what it read. Other entries (Fabric's own telemetry samples, which the
//! evaluator already takes from the store) are acknowledged and left alone.

use std::sync::Arc;
use std::time::Duration;

use fabric_alerts::{AlertEngine, Sample};
use fabric_bus::{Bus, Lane};
use tokio::task::JoinHandle;

/// The consumer group the feed reads as.
pub const GROUP: &str = "fabric-alerts";

/// Starts the feed; abort the handle to stop it.
pub fn start(
    bus: Arc<dyn Bus>,
    engine: Arc<AlertEngine>,
    consumer: String,
    leader: Arc<dyn Fn() -> bool + Send + Sync>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = false;
        loop {
            if !leader() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if !ready {
                match bus.init(GROUP).await {
                    Ok(()) => ready = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "telemetry feed: bus not ready");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let got = match bus
                .read_lane(
                    Lane::Telemetry,
                    GROUP,
                    &consumer,
                    256,
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
            if got.is_empty() {
                continue;
            }
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
            let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
            if let Err(e) = bus.ack(GROUP, Lane::Telemetry, &ids).await {
                tracing::warn!(error = %e, "telemetry feed: acknowledging failed");
            }
        }
    })
}
