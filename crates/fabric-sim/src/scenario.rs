//! Scenarios: the built-in ones of the playbook (RUNBOOK-MAP.md §B), custom JSON, and the
//! command-line overrides, each validated with the bad field and value named.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SimError;

/// Most jobs one scenario may ask for.
pub const MAX_JOBS: u64 = 10_000_000;
/// Longest nominal duration of a scenario, and longest `--duration` (virtual seconds): a
/// year, so that every virtual time of a run fits its millisecond arithmetic with room.
pub const MAX_DURATION_SECONDS: f64 = 31_536_000.0;
/// Most shards one scenario may name.
pub const MAX_SHARDS: usize = 1_000;
/// Longest description (bytes).
pub const MAX_DESCRIPTION: usize = 4_096;
/// Largest custom scenario file read (bytes).
pub const MAX_CUSTOM_BYTES: u64 = 1 << 20;

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
        let flag = format!("--custom {}", path.display());
        let size = std::fs::metadata(path)
            .map_err(|e| SimError::io(path, e))?
            .len();
        if size > MAX_CUSTOM_BYTES {
            return Err(SimError::invalid(
                flag,
                format!("{size} bytes is over the limit of {MAX_CUSTOM_BYTES}"),
            ));
        }
        let text = std::fs::read(path).map_err(|e| SimError::io(path, e))?;
        let s = Self::from_custom_slice(&text).map_err(|(field, message)| {
            SimError::invalid(
                flag.clone(),
                match field {
                    Some(f) => format!("{f}: {message}"),
                    None => message,
                },
            )
        })?;
        Ok(s)
    }

    /// A custom scenario from JSON text; on error, the field at fault (when one is) and why.
    pub fn from_custom_slice(text: &[u8]) -> Result<Self, (Option<String>, String)> {
        let de = &mut serde_json::Deserializer::from_slice(text);
        let c: Custom = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = (path != ".").then_some(path);
            (field, format!("not a scenario: {}", e.into_inner()))
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
        s.check().map_err(|(f, m)| (Some(f.to_string()), m))?;
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

    /// Checks every field; `prefix` is `--` for command-line values (which name the flag).
    pub fn validate(&self, prefix: &str) -> Result<(), SimError> {
        self.check().map_err(|(f, message)| {
            let field = if prefix.is_empty() {
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
            };
            SimError::invalid(field, message)
        })
    }

    /// Checks every field against its bounds: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.job_count == 0 || self.job_count > MAX_JOBS {
            return Err((
                "job_count",
                format!("{} must be 1..{MAX_JOBS}", self.job_count),
            ));
        }
        let p = self.completion_probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(("completion_probability", format!("{p} must be within 0..1")));
        }
        let d = self.duration_seconds;
        if !(d > 0.0 && d <= MAX_DURATION_SECONDS) {
            return Err((
                "duration_seconds",
                format!("{d} must be above 0 and at most {MAX_DURATION_SECONDS}"),
            ));
        }
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return Err((
                "shards",
                format!(
                    "{} shards listed; 1..{MAX_SHARDS} are needed",
                    self.shards.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.shards {
            fabric_core::job::validate_name("shards", s).map_err(|e| ("shards", e.to_string()))?;
            if !seen.insert(s.as_str()) {
                return Err(("shards", format!("'{s}' is listed twice")));
            }
        }
        fabric_core::job::validate_name("name", &self.name).map_err(|e| ("name", e.to_string()))?;
        if self.description.len() > MAX_DESCRIPTION {
            return Err((
                "description",
                format!(
                    "{} bytes is over the limit of {MAX_DESCRIPTION}",
                    self.description.len()
                ),
            ));
        }
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

    const BASE: &str = r#"{"name":"x","description":"d","job_count":10,"completion_probability":1,"shards":["earth"],"duration_seconds":5}"#;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_text_is_refused_without_a_panic(text in ".{0,200}") {
            let _ = Scenario::from_custom_slice(text.as_bytes());
        }

        #[test]
        fn an_odd_value_in_any_field_is_refused_naming_it(
            at in 0..6usize,
            value in crate::checkpoint::tests::odd_value(),
        ) {
            let mut v: serde_json::Value = serde_json::from_str(BASE).unwrap();
            let key = ["name", "description", "job_count", "completion_probability", "shards",
                "duration_seconds"][at];
            v[key] = value.clone();
            if let Err((field, msg)) = Scenario::from_custom_slice(v.to_string().as_bytes()) {
                proptest::prop_assert!(
                    field.as_deref().is_some_and(|f| f.starts_with(key)),
                    "{key} = {value}: {field:?} {msg}"
                );
            }
        }
    }
}
