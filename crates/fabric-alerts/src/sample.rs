//! A telemetry sample, the labels of the alert a rule raises on it, and the alert's stable
//! fingerprint (its identity in the store and PagerDuty's `dedup_key`).

use std::collections::BTreeMap;

use fabric_core::config::AlertRule;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One value of one metric at one moment, with optional labels (`shard`, `seed`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub metric: String,
    pub value: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Epoch ms; 0 means "now" to [`crate::AlertEngine::observe`].
    #[serde(default)]
    pub at_ms: i64,
}

impl Sample {
    /// A sample of `metric` without labels, taken now.
    pub fn new(metric: impl Into<String>, value: f64) -> Self {
        Self {
            metric: metric.into(),
            value,
            labels: BTreeMap::new(),
            at_ms: 0,
        }
    }

    /// The same sample with one more label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// The labels of the alert `rule` raises on a sample with `sample_labels`: the sample's, then
/// the rule's, then `alertname` and `severity` (which nothing overrides).
pub fn alert_labels(
    rule: &AlertRule,
    sample_labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = sample_labels.clone();
    labels.extend(rule.labels.clone());
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels
}

/// A stable id of an alert's labels: 32 hex digits of their SHA-256.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_tell_labels_apart() {
        let a = BTreeMap::from([("alertname".to_string(), "x".to_string())]);
        let mut b = a.clone();
        b.insert("shard".into(), "mars".into());
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 32);
        // The separator keeps `a=bc` and `ab=c` apart.
        let c = BTreeMap::from([("a".to_string(), "bc".to_string())]);
        let d = BTreeMap::from([("ab".to_string(), "c".to_string())]);
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }
}
