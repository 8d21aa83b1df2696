//! The demo's training job (`demo.train`, Esper's Tolaria): each epoch it publishes one
//! telemetry sample (loss, latency_ms, seeds_active) to the bus's telemetry stream, then a
//! closing `{"done": true}`. The figures follow a fixed script, so every run tells the same
//! story: latency over 18 ms in epochs 3–5, a loss spike in epoch 4.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabric_bus::{Bus, Lane};
use fabric_core::quarantine::Failure;
use fabric_core::Job;
use fabric_engine::Handler;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The job kind.
pub const KIND: &str = "demo.train";

/// One epoch's telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub run: String,
    pub epoch: u32,
    pub loss: f64,
    pub latency_ms: f64,
    pub seeds_active: u32,
}

/// The scripted figures of epoch `n` (1-based).
pub fn epoch(run: &str, n: u32) -> Epoch {
    let latency_ms = match n {
        3 => 19.2,
        4 => 21.7,
        5 => 23.4,
        _ => 11.5 + f64::from(n % 3),
    };
    // Loss falls, but jumps in epoch 4 (a blueprint gone bad).
    let loss = if n == 4 {
        0.83
    } else {
        0.92 * 0.8f64.powi(n.saturating_sub(1) as i32)
    };
    Epoch {
        run: run.to_string(),
        epoch: n,
        loss: (loss * 1000.0).round() / 1000.0,
        latency_ms,
        seeds_active: if (3..=4).contains(&n) { 5 } else { 4 },
    }
}

/// The handler: publishes `epochs` samples, `epoch_ms` apart.
pub struct Train {
    pub bus: Arc<dyn Bus>,
}

#[derive(Deserialize)]
struct Payload {
    run: String,
    epochs: u32,
    epoch_ms: u64,
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::msg(e.to_string())
}

#[async_trait]
impl Handler for Train {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        serde_json::from_value::<Payload>(payload.clone())
            .map(|_| ())
            .map_err(|e| format!("payload: {e}"))
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let p: Payload = serde_json::from_value(job.payload.clone()).map_err(failed)?;
        for n in 1..=p.epochs {
            tokio::time::sleep(Duration::from_millis(p.epoch_ms)).await;
            let e = serde_json::to_string(&epoch(&p.run, n)).map_err(failed)?;
            self.bus
                .publish_to(Lane::Telemetry, &e)
                .await
                .map_err(failed)?;
        }
        let done = json!({"run": p.run, "done": true, "epochs": p.epochs}).to_string();
        self.bus
            .publish_to(Lane::Telemetry, &done)
            .await
            .map_err(failed)?;
        Ok(Some(json!({"epochs": p.epochs})))
    }
}
