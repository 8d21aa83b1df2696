//! Checkpoints (RUNBOOK-MAP.md §B): `{version, timestamp, state: {registry, marketplace,
//! orchestrator, metrics, governance}}`, written atomically (temporary file, fsync, rename)
//! and refused with a clear message when truncated, malformed, of another version, or
//! holding a value out of bounds (named by its path, e.g. `state.marketplace.shards`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use fabric_core::{LatencyMatrix, Node, Shard};
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::SimError;

/// The checkpoint format this fabric writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Latest virtual time a checkpoint may hold (ms): ten years, ten times the longest scenario.
pub const MAX_VIRTUAL_MS: i64 = 315_360_000_000;
/// Most nodes in a checkpoint's registry.
pub const MAX_NODES: usize = 10_000;
/// Largest capacity of one node.
pub const MAX_NODE_CAPACITY: u32 = 100_000;
/// Longest one-way latency between two shards (ms): a day.
pub const MAX_LATENCY_MS: u64 = 86_400_000;
/// Largest value of a metrics counter (a thousand events per job of the largest scenario).
pub const MAX_COUNTER: u64 = crate::scenario::MAX_JOBS * 1_000;

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
    parse_checkpoint(&text, path)
}

/// Reads a checkpoint from its JSON text; `path` names it in errors.
pub fn parse_checkpoint(text: &[u8], path: &Path) -> Result<Checkpoint, SimError> {
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
    let head: Head = serde_json::from_slice(text).map_err(|e| {
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
    let cp: Checkpoint = match serde_json::from_slice(text) {
        Ok(cp) => cp,
        Err(_) => {
            // Read again, tracking where it failed (only on failure: the path costs time on
            // a checkpoint of a million jobs).
            let de = &mut serde_json::Deserializer::from_slice(text);
            return Err(
                match serde_path_to_error::deserialize::<_, Checkpoint>(de) {
                    Ok(_) => corrupt("not a checkpoint".into()),
                    Err(e) => SimError::CheckpointInvalid {
                        path: path.display().to_string(),
                        field: e.path().to_string(),
                        message: e.into_inner().to_string(),
                    },
                },
            );
        }
    };
    cp.validate()
        .map_err(|(field, message)| SimError::CheckpointInvalid {
            path: path.display().to_string(),
            field,
            message,
        })?;
    Ok(cp)
}

/// `Err((field, message))` unless `ok`.
fn ensure(ok: bool, field: impl FnOnce() -> String, message: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err((field(), message()))
    }
}

/// The field at fault (its JSON path) and why.
type Check = Result<(), (String, String)>;

impl Checkpoint {
    /// Checks every value a run takes from the checkpoint against its bounds, so that a
    /// hand-edited file is refused naming the field instead of upsetting the run (an empty
    /// shard list, a time or counter near the integer limits, a job of an unknown shard).
    pub fn validate(&self) -> Check {
        let st = &self.state;
        let o = &st.orchestrator;
        o.scenario
            .check()
            .map_err(|(f, m)| (format!("state.orchestrator.scenario.{f}"), m))?;
        let shards = &st.marketplace.shards;
        ensure(
            !shards.is_empty() && shards.len() <= crate::scenario::MAX_SHARDS,
            || "state.marketplace.shards".into(),
            || {
                format!(
                    "{} shards listed; 1..{} are needed",
                    shards.len(),
                    crate::scenario::MAX_SHARDS
                )
            },
        )?;
        let mut names = std::collections::BTreeSet::new();
        for (i, sh) in shards.iter().enumerate() {
            let f = || format!("state.marketplace.shards[{i}].name");
            sh.validate().map_err(|e| (f(), e.to_string()))?;
            ensure(names.insert(sh.name.as_str()), f, || {
                format!("'{}' is listed twice", sh.name)
            })?;
        }
        for s in &o.scenario.shards {
            ensure(
                names.contains(s.as_str()),
                || "state.orchestrator.scenario.shards".into(),
                || format!("'{s}' is not the name of any of state.marketplace.shards"),
            )?;
        }
        let lat = &st.marketplace.latency;
        ensure(
            lat.fallback_ms() <= MAX_LATENCY_MS,
            || "state.marketplace.latency.fallback_ms".into(),
            || format!("{} must be at most {MAX_LATENCY_MS}", lat.fallback_ms()),
        )?;
        let all: Vec<&str> = names.iter().copied().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                let ms = lat.get(a, b);
                ensure(
                    ms <= MAX_LATENCY_MS,
                    || "state.marketplace.latency.pairs".into(),
                    || format!("{a} to {b}: {ms} ms must be at most {MAX_LATENCY_MS}"),
                )?;
            }
        }
        self.validate_registry()?;
        let t = |v: i64| (0..=MAX_VIRTUAL_MS).contains(&v);
        ensure(
            t(o.virtual_ms),
            || "state.orchestrator.virtual_ms".into(),
            || format!("{} must be within 0..{MAX_VIRTUAL_MS}", o.virtual_ms),
        )?;
        let jobs = o.scenario.job_count;
        ensure(
            o.next_index <= jobs,
            || "state.orchestrator.next_index".into(),
            || {
                format!(
                    "{} is more than the scenario's job_count {jobs}",
                    o.next_index
                )
            },
        )?;
        let queued = (o.pending.len() as u64).saturating_add(o.in_flight.len() as u64);
        ensure(
            queued <= o.next_index,
            || "state.orchestrator.pending".into(),
            || {
                format!(
                    "{queued} jobs pending or in_flight, more than the next_index {} generated",
                    o.next_index
                )
            },
        )?;
        for (list, jobs_of) in [("pending", &o.pending), ("in_flight", &o.in_flight)] {
            for (i, j) in jobs_of.iter().enumerate() {
                check_job(
                    j,
                    &format!("state.orchestrator.{list}[{i}]"),
                    o.next_index,
                    &names,
                )?;
            }
        }
        let m = &st.metrics;
        for (name, v) in [
            ("dispatched", m.dispatched),
            ("completed", m.completed),
            ("failed", m.failed),
            ("reassigned", m.reassigned),
            ("spillovers", m.spillovers),
        ] {
            ensure(
                v <= MAX_COUNTER,
                || format!("state.metrics.{name}"),
                || format!("{v} must be at most {MAX_COUNTER}"),
            )?;
        }
        ensure(
            m.completed + m.failed <= o.next_index,
            || "state.metrics.completed".into(),
            || {
                format!(
                    "{} completed and {} failed, more than the next_index {} jobs generated",
                    m.completed, m.failed, o.next_index
                )
            },
        )?;
        let tick = st.governance.tick_interval_ms;
        ensure(
            (1..=crate::runner::MAX_TICK_MS).contains(&tick),
            || "state.governance.tick_interval_ms".into(),
            || format!("{tick} must be 1..{}", crate::runner::MAX_TICK_MS),
        )
    }

    fn validate_registry(&self) -> Check {
        let nodes = &self.state.registry;
        ensure(
            nodes.len() <= MAX_NODES,
            || "state.registry".into(),
            || format!("{} nodes; at most {MAX_NODES}", nodes.len()),
        )?;
        let mut ids = std::collections::BTreeSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let f = |k: &str| format!("state.registry[{i}].{k}");
            fabric_core::job::validate_name("id", &n.id).map_err(|e| (f("id"), e.to_string()))?;
            ensure(
                ids.insert(n.id.as_str()),
                || f("id"),
                || format!("'{}' is listed twice", n.id),
            )?;
            fabric_core::job::validate_name("shard", &n.shard)
                .map_err(|e| (f("shard"), e.to_string()))?;
            ensure(
                n.capacity <= MAX_NODE_CAPACITY,
                || f("capacity"),
                || format!("{} must be at most {MAX_NODE_CAPACITY}", n.capacity),
            )?;
            for (k, v) in [
                ("heartbeat_at", Some(n.heartbeat_at)),
                ("started_at", Some(n.started_at)),
                ("stopped_at", n.stopped_at),
            ] {
                let v = v.unwrap_or(0);
                ensure(
                    (0..=MAX_VIRTUAL_MS).contains(&v),
                    || f(k),
                    || format!("{v} must be within 0..{MAX_VIRTUAL_MS}"),
                )?;
            }
        }
        Ok(())
    }
}

/// Checks one queued job of a checkpoint.
fn check_job(
    j: &CheckpointJob,
    at: &str,
    generated: u64,
    shards: &std::collections::BTreeSet<&str>,
) -> Check {
    let f = |k: &str| format!("{at}.{k}");
    ensure(
        j.index < generated,
        || f("index"),
        || format!("{} is not below next_index {generated}", j.index),
    )?;
    ensure(
        shards.contains(j.shard.as_str()),
        || f("shard"),
        || {
            format!(
                "'{}' is not the name of any of state.marketplace.shards",
                j.shard
            )
        },
    )?;
    ensure(
        (0..=9).contains(&j.priority),
        || f("priority"),
        || format!("{} must be 0..9", j.priority),
    )?;
    ensure(
        j.attempt <= crate::runner::MAX_ATTEMPTS,
        || f("attempt"),
        || {
            format!(
                "{} must be at most {}",
                j.attempt,
                crate::runner::MAX_ATTEMPTS
            )
        },
    )?;
    if let Some(p) = &j.payload {
        let size = serde_json::to_vec(p).map_or(usize::MAX, |v| v.len());
        ensure(
            size <= fabric_core::job::MAX_PAYLOAD_BYTES,
            || f("payload"),
            || {
                format!(
                    "{size} bytes is over the limit of {}",
                    fabric_core::job::MAX_PAYLOAD_BYTES
                )
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
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
            governance: GovernanceState {
                tick_interval_ms: 100,
                ..GovernanceState::default()
            },
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

    /// Values a hand edit may leave in a field: empty, zero, negative, huge, not numbers.
    pub(crate) fn odd_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::json;
        prop_oneof![
            Just(json!([])),
            Just(json!({})),
            Just(json!(null)),
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(1e308)),
            Just(json!(-1e308)),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!("NaN")),
            Just(json!("inf")),
            Just(json!("")),
            Just(json!([""])),
            Just(json!([{}])),
            Just(json!([0, -1])),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,70}".prop_map(|s| json!(s)),
            proptest::collection::vec(".{0,8}", 0..4).prop_map(|v| json!(v)),
        ]
    }

    /// The fields of a checkpoint an operator could edit, as JSON pointers.
    const FIELDS: [&str; 27] = [
        "/version",
        "/timestamp",
        "/state",
        "/state/registry",
        "/state/registry/0/id",
        "/state/registry/0/capacity",
        "/state/registry/0/heartbeat_at",
        "/state/marketplace/shards",
        "/state/marketplace/shards/0/name",
        "/state/marketplace/latency",
        "/state/marketplace/latency/fallback_ms",
        "/state/orchestrator/scenario/job_count",
        "/state/orchestrator/scenario/completion_probability",
        "/state/orchestrator/scenario/shards",
        "/state/orchestrator/scenario/duration_seconds",
        "/state/orchestrator/virtual_ms",
        "/state/orchestrator/next_index",
        "/state/orchestrator/seed",
        "/state/orchestrator/pending",
        "/state/orchestrator/pending/0/index",
        "/state/orchestrator/pending/0/shard",
        "/state/orchestrator/pending/0/priority",
        "/state/orchestrator/pending/0/attempt",
        "/state/orchestrator/in_flight",
        "/state/metrics/completed",
        "/state/metrics/failed",
        "/state/governance/tick_interval_ms",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_text_is_refused_without_a_panic(text in ".{0,200}") {
            proptest::prop_assert!(parse_checkpoint(text.as_bytes(), Path::new("cp.json")).is_err());
        }

        #[test]
        fn an_odd_value_in_any_field_is_refused_naming_it(
            at in 0..FIELDS.len(),
            value in odd_value(),
        ) {
            let mut cp = serde_json::to_value(sample()).unwrap();
            let pointer = FIELDS[at];
            *cp.pointer_mut(pointer).unwrap() = value.clone();
            let text = serde_json::to_vec(&cp).unwrap();
            let parsed = parse_checkpoint(&text, Path::new("cp.json"));
            if let Ok(cp) = &parsed {
                // What passes is safe to generate jobs from.
                let o = &cp.state.orchestrator;
                crate::gen::job_spec(o.seed, o.next_index, &o.scenario);
            }
            if let Err(e) = parsed {
                let key = pointer.rsplit('/').find(|k| k.parse::<usize>().is_err()).unwrap();
                let msg = e.to_string();
                proptest::prop_assert!(
                    msg.contains(key) && e.is_usage(),
                    "{pointer} = {value}: {msg}"
                );
            }
        }
    }

    #[test]
    fn an_empty_shard_list_is_refused_naming_it() {
        let mut cp = serde_json::to_value(sample()).unwrap();
        cp["state"]["orchestrator"]["scenario"]["shards"] = serde_json::json!([]);
        let e = parse_checkpoint(cp.to_string().as_bytes(), Path::new("cp.json")).unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid state.orchestrator.scenario.shards"),
            "{e}"
        );
        let mut cp = serde_json::to_value(sample()).unwrap();
        cp["state"]["orchestrator"]["virtual_ms"] = serde_json::json!(-5);
        let e = parse_checkpoint(cp.to_string().as_bytes(), Path::new("cp.json")).unwrap_err();
        assert!(
            e.to_string().contains("state.orchestrator.virtual_ms"),
            "{e}"
        );
    }
}
