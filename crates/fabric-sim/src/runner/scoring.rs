//! What a run reports: the final report of RUNBOOK-MAP.md §B and the live scoreboard.

use std::collections::BTreeMap;
use std::path::Path;

use fabric_core::{Clock, Node};

use super::Fabric;
use crate::report::Report;
use crate::scenario::Scenario;

impl Fabric {
    /// The report of §B, plus Fabric's own figures.
    pub fn report(&self, checkpoint: Option<&Path>) -> Report {
        let now = self.clock.now_ms();
        let queue_depths: BTreeMap<String, u64> = self
            .per_shard
            .iter()
            .map(|(k, v)| (k.clone(), v.depth))
            .collect();
        let node_health: BTreeMap<String, String> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    n.effective_health(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
                        .to_string(),
                )
            })
            .collect();
        let stale_nodes: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| {
                n.stopped_at.is_some()
                    || n.is_stale(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
            })
            .map(|n| n.id.clone())
            .collect();
        let wall = self.started.elapsed().as_secs_f64();
        let mut lat = self.latencies.clone();
        let (p50, p99) = crate::report::percentiles(&mut lat);
        crate::report::Report::build(crate::report::ReportInput {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            job_count: self.scenario.job_count,
            dispatched: self.counters.dispatched,
            completed: self.counters.completed,
            failed: self.counters.failed,
            reassigned: self.counters.reassigned,
            spillovers: self.counters.spillovers,
            queue_depths,
            loaded_from_checkpoint: self.loaded_from_checkpoint,
            checkpoint: checkpoint.map(|p| p.display().to_string()),
            governance: self.governance(),
            stale_nodes,
            node_health,
            wall_seconds: wall,
            virtual_seconds: self.virtual_ms() as f64 / 1000.0,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            max_queue_spread: self.max_spread,
            finished_here: self.finished() - self.finished_at_start,
        })
    }

    /// The scenario being run.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Whether this run was loaded from a checkpoint.
    pub fn loaded_from_checkpoint(&self) -> bool {
        self.loaded_from_checkpoint
    }

    /// The scoreboard's view of the run.
    pub fn board(&self) -> crate::scoreboard::Board {
        let now = self.clock.now_ms();
        let rows = self
            .per_shard
            .iter()
            .map(|(name, s)| {
                let nodes: Vec<&Node> = self.nodes.iter().filter(|n| &n.shard == name).collect();
                crate::scoreboard::ShardRow {
                    shard: name.clone(),
                    dispatched: s.dispatched,
                    completed: s.completed,
                    failed: s.failed,
                    reassigned: s.reassigned,
                    spillovers: s.spillovers,
                    queue_depth: s.depth,
                    nodes_healthy: nodes
                        .iter()
                        .filter(|n| {
                            n.effective_health(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
                                .takes_work()
                        })
                        .count(),
                    nodes_total: nodes.len(),
                }
            })
            .collect();
        let wall = self.started.elapsed().as_secs_f64();
        crate::scoreboard::Board {
            rows,
            finished: self.finished(),
            total: self.scenario.job_count,
            virtual_seconds: self.virtual_ms() as f64 / 1000.0,
            throughput: if wall > 0.0 {
                (self.finished() - self.finished_at_start) as f64 / wall
            } else {
                0.0
            },
        }
    }

    /// The busiest live node (ties: lowest id): the one a drill takes down.
    pub(super) fn busiest_node(&self) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.stopped_at.is_none())
            .max_by(|a, b| a.load.cmp(&b.load).then(b.id.cmp(&a.id)))
            .map(|n| n.id.clone())
    }
}
