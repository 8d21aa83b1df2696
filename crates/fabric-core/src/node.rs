//! Nodes of the fleet: a daemon's worker pool (or a simulated node) with its shard, capacity,
//! specialties, health, load and heartbeat, and the rule that makes a silent node offline.

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A node whose heartbeat is older than this is offline (RUNBOOK-MAP.md §B: 30 s).
pub const DEFAULT_NODE_TIMEOUT_MS: i64 = 30_000;

/// A node's health as the marketplace sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    /// Takes work.
    Healthy,
    /// Still takes work, but is known to be impaired.
    Degraded,
    /// Takes no work; the jobs it held are reassigned.
    Offline,
}

impl NodeHealth {
    /// Every health, best first.
    pub const ALL: [NodeHealth; 3] = [
        NodeHealth::Healthy,
        NodeHealth::Degraded,
        NodeHealth::Offline,
    ];

    /// The lowercase name used in the store, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeHealth::Healthy => "healthy",
            NodeHealth::Degraded => "degraded",
            NodeHealth::Offline => "offline",
        }
    }

    /// Parses a health name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let lower = s.to_ascii_lowercase();
        NodeHealth::ALL
            .into_iter()
            .find(|h| h.as_str() == lower)
            .ok_or_else(|| {
                CoreError::invalid(
                    "health",
                    format!("'{s}' is not one of healthy, degraded, offline"),
                )
            })
    }

    /// Whether a node in this health takes new work.
    pub fn takes_work(self) -> bool {
        !matches!(self, NodeHealth::Offline)
    }
}

impl std::fmt::Display for NodeHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique id (`node.id` of a daemon's config).
    pub id: String,
    /// Home shard.
    pub shard: String,
    /// Jobs it runs at once.
    pub capacity: u32,
    /// Skills it offers (matched against `payload.skill`).
    pub specialties: Vec<String>,
    /// Health as last set (by the node, an operator or the leader).
    pub health: NodeHealth,
    /// Draining: finishes what it holds and takes nothing new.
    pub draining: bool,
    /// Jobs it holds now.
    pub load: u32,
    /// Last heartbeat (epoch ms).
    pub heartbeat_at: i64,
    /// When it registered (epoch ms).
    pub started_at: i64,
    /// When its daemon stopped gracefully (None while it runs).
    pub stopped_at: Option<i64>,
    /// Host name and process id of a daemon, empty for simulated nodes.
    pub host: String,
    pub pid: u32,
    /// Software version of the daemon.
    pub version: String,
}

impl Node {
    /// Whether the heartbeat is older than `timeout_ms` at `now`.
    pub fn is_stale(&self, now: i64, timeout_ms: i64) -> bool {
        now.saturating_sub(self.heartbeat_at) > timeout_ms
    }

    /// Health as an operator should see it at `now`: a stopped or stale node is offline
    /// whatever it last reported.
    pub fn effective_health(&self, now: i64, timeout_ms: i64) -> NodeHealth {
        if self.stopped_at.is_some() || self.is_stale(now, timeout_ms) {
            NodeHealth::Offline
        } else {
            self.health
        }
    }

    /// Free slots (0 when offline or draining).
    pub fn free_capacity(&self) -> u32 {
        if !self.health.takes_work() || self.draining {
            0
        } else {
            self.capacity.saturating_sub(self.load)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(health: NodeHealth, load: u32, heartbeat_at: i64) -> Node {
        Node {
            id: "n1".into(),
            shard: "earth".into(),
            capacity: 4,
            specialties: vec![],
            health,
            draining: false,
            load,
            heartbeat_at,
            started_at: 0,
            stopped_at: None,
            host: String::new(),
            pid: 0,
            version: String::new(),
        }
    }

    #[test]
    fn a_silent_node_is_offline_after_the_timeout() {
        let n = node(NodeHealth::Healthy, 0, 1_000);
        assert_eq!(n.effective_health(31_000, 30_000), NodeHealth::Healthy);
        assert_eq!(n.effective_health(31_001, 30_000), NodeHealth::Offline);
        let mut stopped = n.clone();
        stopped.stopped_at = Some(2_000);
        assert_eq!(stopped.effective_health(3_000, 30_000), NodeHealth::Offline);
    }

    #[test]
    fn free_capacity_respects_health_load_and_drain() {
        assert_eq!(node(NodeHealth::Healthy, 1, 0).free_capacity(), 3);
        assert_eq!(node(NodeHealth::Degraded, 4, 0).free_capacity(), 0);
        assert_eq!(node(NodeHealth::Offline, 0, 0).free_capacity(), 0);
        let mut d = node(NodeHealth::Healthy, 0, 0);
        d.draining = true;
        assert_eq!(d.free_capacity(), 0);
    }

    #[test]
    fn health_names_round_trip_and_bad_ones_are_named() {
        for h in NodeHealth::ALL {
            assert_eq!(NodeHealth::parse(h.as_str()).unwrap(), h);
        }
        let e = NodeHealth::parse("sleepy").unwrap_err().to_string();
        assert!(e.contains("'sleepy'"), "{e}");
    }
}
