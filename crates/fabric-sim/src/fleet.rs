//! The simulated node fleet: the demo fleet of the playbook and a node for any other shard.

use fabric_core::{Node, NodeHealth};

/// Skills jobs ask for and nodes offer.
pub const SKILLS: [&str; 6] = ["gpu", "vision", "logistics", "comms", "medical", "mapping"];

/// The demo fleet of RUNBOOK-MAP.md §B: (id, shard, capacity, specialties).
const DEMO: [(&str, &str, u32, &[&str]); 6] = [
    ("earth-gpu-1", "earth", 6, &["gpu", "vision"]),
    ("earth-gpu-2", "earth", 4, &["gpu", "mapping"]),
    ("luna-labs", "luna", 3, &["medical", "comms"]),
    ("mars-outpost", "mars", 5, &["logistics", "mapping"]),
    ("helios-gpu", "helios", 8, &["gpu", "vision", "comms"]),
    ("edge-drone", "edge", 2, &["logistics", "medical"]),
];

fn node(id: &str, shard: &str, capacity: u32, skills: &[&str], now: i64) -> Node {
    Node {
        id: id.into(),
        shard: shard.into(),
        capacity,
        specialties: skills.iter().map(|s| s.to_string()).collect(),
        health: NodeHealth::Healthy,
        draining: false,
        load: 0,
        heartbeat_at: now,
        started_at: now,
        stopped_at: None,
        host: String::new(),
        pid: 0,
        version: "simulated".into(),
    }
}

/// The demo nodes of `shards`, plus `<shard>-node-1` (capacity 4, every skill) for a shard
/// the demo fleet does not cover.
pub fn fleet_for(shards: &[String], now: i64) -> Vec<Node> {
    let mut out = Vec::new();
    for s in shards {
        let mut any = false;
        for (id, shard, cap, skills) in DEMO {
            if shard == s {
                out.push(node(id, shard, cap, skills, now));
                any = true;
            }
        }
        if !any {
            out.push(node(&format!("{s}-node-1"), s, 4, &SKILLS, now));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_fleet_and_generated_nodes() {
        let f = fleet_for(&["earth".into(), "titan".into()], 0);
        let ids: Vec<&str> = f.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["earth-gpu-1", "earth-gpu-2", "titan-node-1"]);
        assert_eq!(f[0].capacity, 6);
    }
}
