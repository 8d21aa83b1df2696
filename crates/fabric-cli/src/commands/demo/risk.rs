//! The demo's risk engine (Esper's Tamiyo): reads the training telemetry from the bus as
//! consumer group `tamiyo`, feeds the alert evaluator, and acts on risk: two epochs in a row
//! over 18 ms turn conservative mode on (`pause_triggered`); a loss that jumps by more than
//! 20 % quarantines the blueprint of that epoch (`bp_quarantine`). Each action is written to
//! the field reports and announced on the policy stream.

use std::sync::Arc;

use fabric_bus::{Bus, Lane};
use fabric_engine::reports::FieldReport;
use fabric_engine::Console;
use serde::Serialize;
use serde_json::json;

use super::train::Epoch;

/// Latency above which an epoch counts as slow (the alert rule's threshold too).
pub const SLOW_MS: f64 = 18.0;
/// Slow epochs in a row that pause training.
const SLOW_EPOCHS_TO_PAUSE: u32 = 2;
/// A loss this much above the previous epoch's quarantines the blueprint.
const LOSS_JUMP: f64 = 1.2;

/// A risk event, as written to the field reports.
#[derive(Debug, Clone, Serialize)]
pub struct RiskEvent {
    pub event: &'static str,
    pub epoch: u32,
    pub detail: serde_json::Value,
}

/// The risk engine's memory between epochs.
pub struct Risk {
    console: Console,
    bus: Arc<dyn Bus>,
    node: String,
    reports_dir: std::path::PathBuf,
    slow_in_a_row: u32,
    paused: bool,
    previous_loss: Option<f64>,
}

impl Risk {
    pub fn new(
        console: Console,
        bus: Arc<dyn Bus>,
        node: String,
        reports_dir: std::path::PathBuf,
    ) -> Self {
        Self {
            console,
            bus,
            node,
            reports_dir,
            slow_in_a_row: 0,
            paused: false,
            previous_loss: None,
        }
    }

    /// Acts on one epoch; returns the risk events it raised.
    pub async fn on_epoch(&mut self, e: &Epoch) -> anyhow::Result<Vec<RiskEvent>> {
        let mut events = Vec::new();
        self.slow_in_a_row = if e.latency_ms > SLOW_MS {
            self.slow_in_a_row + 1
        } else {
            0
        };
        if self.slow_in_a_row >= SLOW_EPOCHS_TO_PAUSE && !self.paused {
            self.paused = true;
            let reason = format!(
                "risk engine: training latency over {SLOW_MS} ms for {} epochs",
                self.slow_in_a_row
            );
            self.console.set_conservative(true, Some(&reason)).await?;
            events.push(RiskEvent {
                event: "pause_triggered",
                epoch: e.epoch,
                detail: json!({"run": e.run, "latency_ms": e.latency_ms, "reason": reason}),
            });
        }
        if let Some(prev) = self.previous_loss {
            if e.loss > prev * LOSS_JUMP {
                let blueprint = format!("bp-{}", e.epoch);
                events.push(RiskEvent {
                    event: "bp_quarantine",
                    epoch: e.epoch,
                    detail: json!({
                        "run": e.run,
                        "blueprint": blueprint,
                        "loss": e.loss,
                        "previous_loss": prev,
                        "risk": (e.loss / prev * 100.0).round() / 100.0,
                    }),
                });
            }
        }
        self.previous_loss = Some(e.loss);
        if events.is_empty() {
            return Ok(events);
        }
        let now = self.console.now();
        let records: Vec<FieldReport> = events
            .iter()
            .map(|ev| FieldReport {
                at: now,
                node: self.node.clone(),
                event: ev.event.to_string(),
                job_id: None,
                attempt: None,
                detail: ev.detail.clone(),
            })
            .collect();
        fabric_engine::reports::append(&self.reports_dir, &records)?;
        for ev in &events {
            let policy = json!({"event": ev.event, "epoch": ev.epoch, "detail": ev.detail});
            self.bus
                .publish_to(Lane::Policy, &policy.to_string())
                .await?;
        }
        Ok(events)
    }
}
