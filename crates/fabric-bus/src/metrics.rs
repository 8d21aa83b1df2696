//! The bus counters every backend keeps in this process, and their snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// `metrics_snapshot()`: counter and gauge names to values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MetricsSnapshot(pub BTreeMap<&'static str, u64>);

impl MetricsSnapshot {
    /// The value of `key` (0 when absent).
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub publish_total: AtomicU64,
    pub publish_rerouted: AtomicU64,
    pub publish_dropped: AtomicU64,
    /// The highest length of normal seen by a publish.
    pub queue_depth_max: AtomicU64,
    pub consumed: AtomicU64,
    pub acked: AtomicU64,
    pub reclaimed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub lost: AtomicU64,
    pub rejected: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    pub fn saw_depth(&self, normal: u64) {
        self.queue_depth_max.fetch_max(normal, Relaxed);
    }

    pub fn snapshot(&self, normal: u64, emergency: u64) -> MetricsSnapshot {
        self.saw_depth(normal);
        let c = |a: &AtomicU64| a.load(Relaxed);
        MetricsSnapshot(BTreeMap::from([
            ("publish_total", c(&self.publish_total)),
            ("publish_rerouted", c(&self.publish_rerouted)),
            ("publish_dropped", c(&self.publish_dropped)),
            ("queue_depth_max", c(&self.queue_depth_max)),
            ("queue_depth_normal", normal),
            ("queue_depth_emergency", emergency),
            ("consumed", c(&self.consumed)),
            ("acked", c(&self.acked)),
            ("reclaimed", c(&self.reclaimed)),
            ("dead_lettered", c(&self.dead_lettered)),
            ("lost", c(&self.lost)),
            ("rejected", c(&self.rejected)),
        ]))
    }
}
