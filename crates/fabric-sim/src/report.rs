//! The run report of RUNBOOK-MAP.md §B (`--export`): every key of the original plus Fabric's
//! own (wall and virtual time, throughput, latency, what is left).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::GovernanceState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub dispatched_jobs: u64,
    pub completed_jobs: u64,
    pub failed_jobs: u64,
    pub reassigned_jobs: u64,
    pub spillovers: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Governance {
    /// Virtual tick in seconds.
    pub tick_interval: f64,
    pub shard_pauses: BTreeMap<String, bool>,
    pub spillover_limits: BTreeMap<String, u32>,
    pub latency_budgets: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub stale_nodes: Vec<String>,
    pub node_health: BTreeMap<String, String>,
    pub queue_depths: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub reassigned: u64,
    pub spillovers: u64,
    pub queue_depths: BTreeMap<String, u64>,
    pub metrics: Metrics,
    pub loaded_from_checkpoint: bool,
    pub checkpoint: Option<String>,
    pub governance: Governance,
    pub health: Health,
    pub wall_seconds: f64,
    /// Wall seconds the final checkpoint took: the queue read from the store, written to a
    /// temporary file, fsynced and renamed (0 when the run wrote none).
    #[serde(default)]
    pub checkpoint_seconds: f64,
    pub virtual_seconds: f64,
    pub throughput_jobs_per_second: f64,
    /// Virtual milliseconds from a job's arrival to its completion.
    pub latency_ms: Latency,
    pub scenario: String,
    pub seed: u64,
    pub job_count: u64,
    /// Jobs not final when the run ended (0 when complete).
    pub remaining: u64,
    /// Largest difference between two shards' queue depths seen during the run.
    pub max_queue_spread: u64,
    pub complete: bool,
}

/// What [`Report::build`] needs.
pub struct ReportInput {
    pub scenario: String,
    pub seed: u64,
    pub job_count: u64,
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub reassigned: u64,
    pub spillovers: u64,
    pub queue_depths: BTreeMap<String, u64>,
    pub loaded_from_checkpoint: bool,
    pub checkpoint: Option<String>,
    pub governance: GovernanceState,
    pub stale_nodes: Vec<String>,
    pub node_health: BTreeMap<String, String>,
    pub wall_seconds: f64,
    pub virtual_seconds: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub max_queue_spread: u64,
    /// Jobs that became final in this process (a resumed run counts only its own).
    pub finished_here: u64,
}

impl Report {
    /// Assembles the report.
    pub fn build(i: ReportInput) -> Self {
        let done = i.completed + i.failed;
        let remaining = i.job_count.saturating_sub(done);
        Report {
            dispatched: i.dispatched,
            completed: i.completed,
            failed: i.failed,
            reassigned: i.reassigned,
            spillovers: i.spillovers,
            queue_depths: i.queue_depths.clone(),
            metrics: Metrics {
                dispatched_jobs: i.dispatched,
                completed_jobs: i.completed,
                failed_jobs: i.failed,
                reassigned_jobs: i.reassigned,
                spillovers: i.spillovers,
            },
            loaded_from_checkpoint: i.loaded_from_checkpoint,
            checkpoint: i.checkpoint,
            governance: Governance {
                tick_interval: i.governance.tick_interval_ms as f64 / 1000.0,
                shard_pauses: i.governance.shard_pauses,
                spillover_limits: i.governance.spillover_limits,
                latency_budgets: i.governance.latency_budgets,
            },
            health: Health {
                stale_nodes: i.stale_nodes,
                node_health: i.node_health,
                queue_depths: i.queue_depths,
            },
            wall_seconds: i.wall_seconds,
            checkpoint_seconds: 0.0,
            virtual_seconds: i.virtual_seconds,
            throughput_jobs_per_second: if i.wall_seconds > 0.0 {
                i.finished_here as f64 / i.wall_seconds
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: i.latency_p50_ms,
                p99: i.latency_p99_ms,
            },
            scenario: i.scenario,
            seed: i.seed,
            job_count: i.job_count,
            remaining,
            max_queue_spread: i.max_queue_spread,
            complete: remaining == 0,
        }
    }

    /// A few lines for the end of a run.
    pub fn summary(&self) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.job_count.max(1) as f64;
        let mut s = format!(
            "{}: {} jobs, {} completed ({:.1}%), {} failed ({:.1}%), {} reassigned, {} spillovers\n\
             virtual {:.1} s in {:.2} s of wall time ({:.0} jobs/s; checkpoint {:.2} s); \
             latency p50 {:.0} ms, p99 {:.0} ms",
            self.scenario,
            self.job_count,
            self.completed,
            pct(self.completed),
            self.failed,
            pct(self.failed),
            self.reassigned,
            self.spillovers,
            self.virtual_seconds,
            self.wall_seconds,
            self.throughput_jobs_per_second,
            self.checkpoint_seconds,
            self.latency_ms.p50,
            self.latency_ms.p99,
        );
        if !self.complete {
            s.push_str(&format!(
                "\nINCOMPLETE: {} jobs not final when the virtual duration ended (queues: {})",
                self.remaining,
                self.queue_depths
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// p50 and p99 of `samples` (sorted in place; 0 when empty).
pub fn percentiles(samples: &mut [u32]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        f64::from(samples[i])
    };
    (at(0.50), at(0.99))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_set() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut v), (50.0, 99.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0));
    }
}
