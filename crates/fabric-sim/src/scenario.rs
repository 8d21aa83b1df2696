//! Scenarios: the built-in ones of the playbook (RUNBOOK-MAP.md §B), custom JSON, and the
//! command-line overrides, each validated with the bad field and value named.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SimError;

/// Most jobs one scenario may ask for.
pub const MAX_JOBS: u64 = 10_000_000;

/// A scenario: how many jobs, how likely an attempt succeeds, which shards, over how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub job_count: u64,
    pub completion_probability: f64,
    pub shards: Vec<String>,
    /// Nominal duration: jobs arrive evenly over it (virtual seconds).
    pub duration_seconds: f64,
    /// A node outage half way through.
    #[serde(default)]
    pub node_outage: bool,
    /// An orchestrator kill and resume from a checkpoint.
    #[serde(default)]
    pub orchestrator_kill: bool,
}

/// The custom JSON file's shape (RUNBOOK-MAP.md §B).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Custom {
    name: String,
    #[serde(default)]
    description: String,
    job_count: u64,
    completion_probability: f64,
    shards: Vec<String>,
    duration_seconds: f64,
}

/// Names of the built-in scenarios (the first is the default).
pub const BUILTIN: [&str; 3] = ["edge-relief", "k2-benchmark", "resilience-drill"];

impl Scenario {
    fn make(name: &str, desc: &str, jobs: u64, p: f64, shards: &[&str], secs: f64) -> Self {
        Scenario {
            name: name.into(),
            description: desc.into(),
            job_count: jobs,
            completion_probability: p,
            shards: shards.iter().map(|s| s.to_string()).collect(),
            duration_seconds: secs,
            node_outage: false,
            orchestrator_kill: false,
        }
    }

    /// A built-in scenario by name (`humanitarian-surge` is an alias of `edge-relief`).
    pub fn builtin(name: &str) -> Result<Self, SimError> {
        Ok(match name {
            "edge-relief" | "humanitarian-surge" => Self::make(
                "edge-relief",
                "Humanitarian surge at the edge: relief requests across edge, earth and helios",
                1200,
                0.92,
                &["edge", "earth", "helios"],
                20.0,
            ),
            "k2-benchmark" => Self::make(
                "k2-benchmark",
                "Kardashev-II benchmark: a large balanced load across earth, luna and mars",
                10_000,
                0.985,
                &["earth", "luna", "mars"],
                45.0,
            ),
            "resilience-drill" => {
                let mut s = Self::make(
                    "resilience-drill",
                    "Resilience drill: a node outage half way and an orchestrator kill-and-resume",
                    2400,
                    0.95,
                    &["earth", "luna", "mars", "edge"],
                    25.0,
                );
                s.node_outage = true;
                s.orchestrator_kill = true;
                s
            }
            other => {
                return Err(SimError::UnknownScenario {
                    name: other.into(),
                    known: format!("{} (alias humanitarian-surge)", BUILTIN.join(", ")),
                })
            }
        })
    }

    /// A custom scenario from a JSON file `{name, description, job_count,
    /// completion_probability, shards, duration_seconds}`.
    pub fn from_custom_json(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
        let c: Custom = serde_json::from_str(&text).map_err(|e| {
            SimError::invalid(
                format!("--custom {}", path.display()),
                format!("not a scenario: {e}"),
            )
        })?;
        let s = Scenario {
            name: c.name,
            description: c.description,
            job_count: c.job_count,
            completion_probability: c.completion_probability,
            shards: c.shards,
            duration_seconds: c.duration_seconds,
            node_outage: false,
            orchestrator_kill: false,
        };
        s.validate("")?;
        Ok(s)
    }

    /// Applies `--jobs` and `--completion`.
    pub fn with_overrides(
        mut self,
        jobs: Option<u64>,
        completion: Option<f64>,
    ) -> Result<Self, SimError> {
        if let Some(j) = jobs {
            self.job_count = j;
        }
        if let Some(p) = completion {
            self.completion_probability = p;
        }
        self.validate("--")?;
        Ok(self)
    }

    /// Checks every field; `prefix` is `--` for command-line values.
    pub fn validate(&self, prefix: &str) -> Result<(), SimError> {
        let field = |f: &str| {
            if prefix.is_empty() {
                f.to_string()
            } else {
                format!(
                    "{prefix}{}",
                    match f {
                        "job_count" => "jobs",
                        "completion_probability" => "completion",
                        o => o,
                    }
                )
            }
        };
        if self.job_count == 0 || self.job_count > MAX_JOBS {
            return Err(SimError::invalid(
                field("job_count"),
                format!("{} must be 1..{MAX_JOBS}", self.job_count),
            ));
        }
        let p = self.completion_probability;
        if !(0.0..=1.0).contains(&p) || p.is_nan() {
            return Err(SimError::invalid(
                field("completion_probability"),
                format!("{p} must be within 0..1"),
            ));
        }
        if !(self.duration_seconds > 0.0 && self.duration_seconds.is_finite()) {
            return Err(SimError::invalid(
                field("duration_seconds"),
                format!("{} must be above 0", self.duration_seconds),
            ));
        }
        if self.shards.is_empty() {
            return Err(SimError::invalid(
                field("shards"),
                "at least one shard is needed",
            ));
        }
        for (i, s) in self.shards.iter().enumerate() {
            fabric_core::job::validate_name("shards", s)
                .map_err(|e| SimError::invalid(field("shards"), e.to_string()))?;
            if self.shards[..i].contains(s) {
                return Err(SimError::invalid(
                    field("shards"),
                    format!("'{s}' is listed twice"),
                ));
            }
        }
        fabric_core::job::validate_name("name", &self.name)
            .map_err(|e| SimError::invalid(field("name"), e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_alias_and_unknown() {
        assert_eq!(
            Scenario::builtin("humanitarian-surge").unwrap().name,
            "edge-relief"
        );
        let k2 = Scenario::builtin("k2-benchmark").unwrap();
        assert_eq!((k2.job_count, k2.shards.len()), (10_000, 3));
        assert!(Scenario::builtin("resilience-drill").unwrap().node_outage);
        let e = Scenario::builtin("moon-landing").unwrap_err().to_string();
        assert!(
            e.contains("'moon-landing'") && e.contains("k2-benchmark"),
            "{e}"
        );
    }

    #[test]
    fn overrides_and_custom_files_are_checked() {
        let e = Scenario::builtin("k2-benchmark")
            .unwrap()
            .with_overrides(None, Some(1.5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--completion") && e.contains("1.5"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(&p, r#"{"name":"x","job_count":10,"completion_probability":1,"shards":["earth"],"duration_seconds":5}"#).unwrap();
        assert_eq!(Scenario::from_custom_json(&p).unwrap().job_count, 10);
        std::fs::write(&p, r#"{"name":"x","job_count":10,"completion_probability":1,"shards":["earth"],"duration_seconds":5,"extra":1}"#).unwrap();
        let e = Scenario::from_custom_json(&p).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
        std::fs::write(&p, r#"{"name":"x","job_count":10,"#).unwrap();
        let e = Scenario::from_custom_json(&p).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("line 1"), "{e}");
        std::fs::write(&p, r#"{"name":"x","job_count":10,"completion_probability":1,"shards":["earth","earth"],"duration_seconds":5}"#).unwrap();
        assert!(Scenario::from_custom_json(&p)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }
}
