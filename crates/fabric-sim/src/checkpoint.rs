//! Checkpoints (RUNBOOK-MAP.md §B): `{version, timestamp, state: {registry, marketplace,
//! orchestrator, metrics, governance}}`, written atomically (temporary file, fsync, rename)
//! and refused with a clear message when truncated, malformed or of another version.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use fabric_core::{LatencyMatrix, Node, Shard};
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::SimError;

/// The checkpoint format this fabric writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub state: CheckpointState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The nodes.
    pub registry: Vec<Node>,
    pub marketplace: MarketplaceState,
    pub orchestrator: OrchestratorState,
    pub metrics: MetricsState,
    pub governance: GovernanceState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketplaceState {
    pub shards: Vec<Shard>,
    pub latency: LatencyMatrix,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrchestratorState {
    pub scenario: Scenario,
    pub seed: u64,
    pub virtual_ms: i64,
    /// Jobs generated so far.
    pub next_index: u64,
    /// Queued jobs.
    pub pending: Vec<CheckpointJob>,
    /// Jobs on nodes at checkpoint time: queued again on load.
    pub in_flight: Vec<CheckpointJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointJob {
    pub index: u64,
    pub shard: String,
    pub priority: i32,
    pub attempt: u32,
    /// The job's payload when it is not the one its scenario generates for `index` (a run
    /// writes none: every simulated payload follows from the seed and the index, which keeps
    /// a checkpoint of a million queued jobs small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsState {
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub reassigned: u64,
    pub spillovers: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GovernanceState {
    pub tick_interval_ms: u64,
    pub conservative: bool,
    pub shard_pauses: BTreeMap<String, bool>,
    pub spillover_limits: BTreeMap<String, u32>,
    pub latency_budgets: BTreeMap<String, u64>,
}

impl Checkpoint {
    /// A checkpoint of `state`, stamped now.
    pub fn new(state: CheckpointState) -> Self {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            state,
        }
    }
}

/// Writes `cp` to `path` atomically: a temporary file in the same directory, fsynced, then
/// renamed over `path` (and the directory fsynced). A failure leaves `path` as it was.
pub fn save_checkpoint(path: &Path, cp: &Checkpoint) -> Result<(), SimError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| SimError::io(&dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        serde_json::to_writer(&mut w, cp).map_err(std::io::Error::other)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        SimError::io(path, e)
    })
}

/// Reads a checkpoint; never changes the file.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, SimError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SimError::CheckpointMissing {
                path: path.display().to_string(),
            })
        }
        Err(e) => return Err(SimError::io(path, e)),
    };
    let corrupt = |detail: String| SimError::CheckpointCorrupt {
        path: path.display().to_string(),
        detail,
    };
    // A first pass reads only the version (the rest is checked as JSON and skipped), so a
    // checkpoint of a million jobs is never held as a tree of JSON values.
    #[derive(Deserialize)]
    struct Head {
        version: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(&text).map_err(|e| {
        corrupt(if e.is_eof() {
            format!("truncated ({e})")
        } else {
            format!("malformed JSON ({e})")
        })
    })?;
    let version = head.version.as_ref().and_then(serde_json::Value::as_u64);
    match version {
        Some(v) if v == u64::from(CHECKPOINT_VERSION) => {}
        Some(v) => {
            return Err(SimError::CheckpointVersion {
                path: path.display().to_string(),
                found: v,
                expected: CHECKPOINT_VERSION,
            })
        }
        None => return Err(corrupt("no \"version\" field".into())),
    }
    serde_json::from_slice(&text).map_err(|e| corrupt(format!("not a checkpoint: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint::new(CheckpointState {
            registry: crate::fleet::fleet_for(&["earth".into()], 5),
            marketplace: MarketplaceState {
                shards: fabric_core::shard::default_shards(),
                latency: LatencyMatrix::default(),
            },
            orchestrator: OrchestratorState {
                scenario: Scenario::builtin("k2-benchmark").unwrap(),
                seed: 9,
                virtual_ms: 1234,
                next_index: 2,
                pending: vec![CheckpointJob {
                    index: 1,
                    shard: "earth".into(),
                    priority: 3,
                    attempt: 1,
                    payload: Some(serde_json::json!({"index": 1})),
                    created_at: 10,
                }],
                in_flight: vec![],
            },
            metrics: MetricsState::default(),
            governance: GovernanceState::default(),
        })
    }

    #[test]
    fn round_trip_truncation_version_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/checkpoint.json");
        let cp = sample();
        save_checkpoint(&p, &cp).unwrap();
        assert_eq!(load_checkpoint(&p).unwrap(), cp);
        assert_eq!(
            std::fs::read_dir(p.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() / 2]).unwrap();
        let e = load_checkpoint(&p).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut v: serde_json::Value = serde_json::from_slice(&full).unwrap();
        v["version"] = 7.into();
        std::fs::write(&p, v.to_string()).unwrap();
        let e = load_checkpoint(&p).unwrap_err().to_string();
        assert!(e.contains("version 7") && e.contains("version 1"), "{e}");
        assert!(matches!(
            load_checkpoint(&dir.path().join("none.json")),
            Err(SimError::CheckpointMissing { .. })
        ));
    }
}
