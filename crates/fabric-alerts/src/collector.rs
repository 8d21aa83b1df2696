//! The samples of Fabric's own metrics that the default rules watch, read from the store each
//! evaluation interval:
//!
//! - `queue_depth`: jobs waiting to run (pending, and failed ones waiting for their retry);
//! - `job_latency_ms`: the mean wait from due to start of the jobs that started in the
//!   interval, or, when none started while jobs are due, how long the oldest due job has
//!   waited so far (a stuck queue shows as rising latency, not as none);
//! - `quarantined`: jobs quarantined in the interval;
//! - `retries`: failed attempts in the interval that were retried (failed attempts less
//!   quarantined jobs);
//! - `throughput_per_s`: jobs succeeded per second in the interval;
//! - `throughput_ratio`: that throughput against its baseline, the mean throughput of the
//!   last 30 intervals in which jobs waited; 1 when no job waits (demand met), 0 when jobs
//!   wait and none succeeds with no baseline yet.

use std::collections::VecDeque;
use std::sync::Arc;

use fabric_store::Store;
use tokio::sync::Mutex;

use crate::{Result, Sample};

/// Intervals in the throughput baseline.
const BASELINE: usize = 30;

/// Reads the samples; keeps the throughput baseline between calls.
pub struct Collector {
    store: Arc<dyn Store>,
    baseline: Mutex<VecDeque<f64>>,
}

impl Collector {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            baseline: Mutex::new(VecDeque::new()),
        }
    }

    /// The samples of the interval of `interval_ms` ending at `now`.
    pub async fn collect(&self, now: i64, interval_ms: u64) -> Result<Vec<Sample>> {
        let interval = interval_ms.max(1) as i64;
        let since = now - interval;
        let s = self.store.alerts().job_signals(since, now).await?;
        let latency = if s.started > 0 {
            s.wait_ms_sum as f64 / s.started as f64
        } else {
            s.oldest_due_at.map_or(0.0, |t| (now - t).max(0) as f64)
        };
        let throughput = s.succeeded as f64 * 1000.0 / interval as f64;
        let ratio = {
            let mut base = self.baseline.lock().await;
            let mean = (!base.is_empty()).then(|| base.iter().sum::<f64>() / base.len() as f64);
            let ratio = match (s.queued, mean) {
                (0, _) => 1.0,
                (_, Some(m)) if m > 0.0 => throughput / m,
                (_, _) if throughput > 0.0 => 1.0,
                _ => 0.0,
            };
            if s.queued > 0 {
                base.push_back(throughput);
                if base.len() > BASELINE {
                    base.pop_front();
                }
            }
            ratio
        };
        let at = |metric: &str, value: f64| Sample {
            at_ms: now,
            ..Sample::new(metric, value)
        };
        Ok(vec![
            at("queue_depth", s.queued as f64),
            at("job_latency_ms", latency),
            at("quarantined", s.quarantined as f64),
            at(
                "retries",
                s.failed_attempts.saturating_sub(s.quarantined) as f64,
            ),
            at("throughput_per_s", throughput),
            at("throughput_ratio", ratio),
        ])
    }
}
