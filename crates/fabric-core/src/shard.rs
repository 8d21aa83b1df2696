//! Shards of the planetary layer: their owner levers (pause, spillover limit, latency budget)
//! and the one-way latency between them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::validate_name;
use crate::CoreError;

/// The shards of a fleet configured without any (RUNBOOK-MAP.md §B).
pub const DEFAULT_SHARDS: [&str; 5] = ["earth", "luna", "mars", "helios", "edge"];

/// Queue depth above which a shard with no free local node spills work to other shards.
pub const DEFAULT_SPILLOVER_LIMIT: u32 = 10;

/// A shard's latency budget when none is set: the top of the scenarios' job budgets (200..5000).
pub const DEFAULT_LATENCY_BUDGET_MS: u64 = 5_000;

/// One shard as governed by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Unique name (`validate_name` rules).
    pub name: String,
    /// A paused shard dispatches nothing, locally or by spillover.
    #[serde(default)]
    pub paused: bool,
    /// Spill only when the queue is deeper than this (default 10).
    #[serde(default = "default_spillover_limit")]
    pub spillover_limit: u32,
    /// Cap on the one-way latency of a spill from this shard, also the budget of a job that
    /// carries none (default 5000 ms).
    #[serde(default = "default_latency_budget")]
    pub latency_budget_ms: u64,
}

fn default_spillover_limit() -> u32 {
    DEFAULT_SPILLOVER_LIMIT
}
fn default_latency_budget() -> u64 {
    DEFAULT_LATENCY_BUDGET_MS
}

impl Shard {
    /// An unpaused shard with the default limit and budget; refuses a bad name.
    pub fn new(name: impl Into<String>) -> Result<Self, CoreError> {
        let shard = Self {
            name: name.into(),
            paused: false,
            spillover_limit: DEFAULT_SPILLOVER_LIMIT,
            latency_budget_ms: DEFAULT_LATENCY_BUDGET_MS,
        };
        shard.validate()?;
        Ok(shard)
    }

    /// Checks the name (for shards read from config or a checkpoint).
    pub fn validate(&self) -> Result<(), CoreError> {
        validate_name("shard", &self.name)
    }

    /// The budget a job of this shard routes under: its own, capped by the shard's.
    pub fn effective_budget_ms(&self, job_budget_ms: Option<u64>) -> u64 {
        job_budget_ms.map_or(self.latency_budget_ms, |b| b.min(self.latency_budget_ms))
    }
}

/// [`DEFAULT_SHARDS`] with default levers.
pub fn default_shards() -> Vec<Shard> {
    DEFAULT_SHARDS
        .iter()
        .map(|n| Shard {
            name: (*n).to_string(),
            paused: false,
            spillover_limit: DEFAULT_SPILLOVER_LIMIT,
            latency_budget_ms: DEFAULT_LATENCY_BUDGET_MS,
        })
        .collect()
}

/// Latency of a pair no one configured: long enough that tight-budget jobs stay home, short
/// enough that custom terrestrial shards can still share work.
pub const DEFAULT_FALLBACK_LATENCY_MS: u64 = 1_000;

/// Default one-way light-time between the default shards, in ms. Luna ≈ 1.3 light-seconds;
/// Mars at its mean distance ≈ 12.5 light-minutes (3..22); helios is a solar relay, so ≈ 1 AU
/// (8.3 light-minutes) from earth and luna and ≈ 1.52 AU (12.7 light-minutes) from Mars; edge is a
/// terrestrial site 50 ms from earth and inherits earth's distances plus those 50 ms.
pub const DEFAULT_LATENCIES_MS: [(&str, &str, u64); 10] = [
    ("earth", "luna", 1_300),
    ("earth", "mars", 750_000),
    ("earth", "helios", 499_000),
    ("earth", "edge", 50),
    ("luna", "mars", 750_000),
    ("luna", "helios", 499_000),
    ("luna", "edge", 1_350),
    ("mars", "helios", 760_000),
    ("mars", "edge", 750_050),
    ("helios", "edge", 499_050),
];

/// Symmetric one-way latency between shards in ms: 0 within a shard, a set or default value for
/// a known pair, `fallback_ms` otherwise.
///
/// Serialized as `{"fallback_ms": 1000, "pairs": [{"a": "earth", "b": "luna", "ms": 1300}, ..]}`
/// with every pair listed; on reading, listed pairs override [`DEFAULT_LATENCIES_MS`], and both
/// fields may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LatencyWire", into = "LatencyWire")]
pub struct LatencyMatrix {
    /// Keyed by the pair in name order, so (a, b) and (b, a) are one entry.
    pairs: BTreeMap<(String, String), u64>,
    fallback_ms: u64,
}

impl Default for LatencyMatrix {
    fn default() -> Self {
        let pairs = DEFAULT_LATENCIES_MS
            .iter()
            .map(|(a, b, ms)| (key(a, b), *ms))
            .collect();
        Self {
            pairs,
            fallback_ms: DEFAULT_FALLBACK_LATENCY_MS,
        }
    }
}

fn key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl LatencyMatrix {
    /// One-way latency from `a` to `b` (equal to `b` to `a`).
    pub fn get(&self, a: &str, b: &str) -> u64 {
        if a == b {
            return 0;
        }
        self.pairs
            .get(&key(a, b))
            .copied()
            .unwrap_or(self.fallback_ms)
    }

    /// Sets the latency of a pair, both ways; refuses bad names and a shard paired with itself.
    pub fn set(&mut self, a: &str, b: &str, ms: u64) -> Result<(), CoreError> {
        validate_name("shard", a)?;
        validate_name("shard", b)?;
        if a == b {
            return Err(CoreError::invalid(
                "latency",
                format!("'{a}' to itself is always 0 ms"),
            ));
        }
        self.pairs.insert(key(a, b), ms);
        Ok(())
    }

    /// The latency of pairs no one set.
    pub fn fallback_ms(&self) -> u64 {
        self.fallback_ms
    }

    /// Sets the latency of pairs no one set.
    pub fn set_fallback_ms(&mut self, ms: u64) {
        self.fallback_ms = ms;
    }
}

/// One pair of the serialized matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyEntry {
    a: String,
    b: String,
    ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyWire {
    #[serde(default = "default_fallback")]
    fallback_ms: u64,
    #[serde(default)]
    pairs: Vec<LatencyEntry>,
}

fn default_fallback() -> u64 {
    DEFAULT_FALLBACK_LATENCY_MS
}

impl TryFrom<LatencyWire> for LatencyMatrix {
    type Error = CoreError;
    fn try_from(w: LatencyWire) -> Result<Self, CoreError> {
        let mut m = LatencyMatrix {
            fallback_ms: w.fallback_ms,
            ..LatencyMatrix::default()
        };
        for e in w.pairs {
            m.set(&e.a, &e.b, e.ms)?;
        }
        Ok(m)
    }
}

impl From<LatencyMatrix> for LatencyWire {
    fn from(m: LatencyMatrix) -> Self {
        let pairs = m
            .pairs
            .into_iter()
            .map(|((a, b), ms)| LatencyEntry { a, b, ms })
            .collect();
        Self {
            fallback_ms: m.fallback_ms,
            pairs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_default_and_refuse_bad_names() {
        let s = Shard::new("earth").unwrap();
        assert!(!s.paused);
        assert_eq!(s.spillover_limit, 10);
        assert_eq!(default_shards().len(), 5);
        let e = Shard::new("deep space").unwrap_err().to_string();
        assert!(e.contains("shard") && e.contains("'deep space'"), "{e}");
        let s: Shard = serde_json::from_str(r#"{"name":"mars"}"#).unwrap();
        assert_eq!(s, Shard::new("mars").unwrap());
        assert!(serde_json::from_str::<Shard>(r#"{"name":"mars","pause":true}"#).is_err());
    }

    #[test]
    fn budget_is_the_jobs_capped_by_the_shards() {
        let s = Shard::new("earth").unwrap();
        assert_eq!(s.effective_budget_ms(None), 5_000);
        assert_eq!(s.effective_budget_ms(Some(200)), 200);
        assert_eq!(s.effective_budget_ms(Some(9_000)), 5_000);
    }

    #[test]
    fn latency_is_symmetric_zero_at_home_and_overridable() {
        let mut m = LatencyMatrix::default();
        assert_eq!(m.get("earth", "luna"), 1_300);
        assert_eq!(m.get("luna", "earth"), 1_300);
        assert_eq!(m.get("mars", "mars"), 0);
        assert_eq!(m.get("earth", "atlantis"), DEFAULT_FALLBACK_LATENCY_MS);
        m.set("luna", "earth", 1_280).unwrap();
        assert_eq!(m.get("earth", "luna"), 1_280);
        assert!(m.set("earth", "earth", 5).is_err());
        assert!(m.set("earth", "bad name", 5).is_err());
    }

    #[test]
    fn latency_round_trips_and_reads_overrides_on_defaults() {
        let mut m = LatencyMatrix::default();
        m.set("edge", "ceres", 42).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<LatencyMatrix>(&json).unwrap(), m);
        let m: LatencyMatrix =
            serde_json::from_str(r#"{"pairs":[{"a":"mars","b":"earth","ms":180000}]}"#).unwrap();
        assert_eq!(m.get("earth", "mars"), 180_000);
        assert_eq!(m.get("earth", "luna"), 1_300);
        let bad = r#"{"pairs":[{"a":"mars","b":"mars","ms":1}]}"#;
        assert!(serde_json::from_str::<LatencyMatrix>(bad).is_err());
    }
}
