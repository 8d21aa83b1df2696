//! Typed configuration: YAML with defaults, `FABRIC__SECTION__KEY` environment overrides, and
//! validation that names the YAML path and the bad value of every problem.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub workers: WorkersConfig,
    pub queue: QueueConfig,
    /// Default retry policy for jobs with no more specific one.
    pub retry: RetryPolicy,
    /// Retry policies by source name or job kind (`local_files`, `mail`, `repositories` preset).
    pub retry_policies: BTreeMap<String, RetryPolicy>,
    pub quarantine: RetentionConfig,
    pub telemetry: TelemetryConfig,
    pub security: SecurityConfig,
    pub node: NodeConfig,
}

/// Which store and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (default, embedded) or `postgres`.
    pub backend: String,
    /// SQLite file; relative paths are under `$FABRIC_HOME` (default `queue.db`).
    pub path: String,
    /// PostgreSQL URL (secret: never printed).
    pub url: Option<String>,
    /// PostgreSQL schema holding Fabric's tables (default `fabric`); daemons that share one
    /// schema form one fleet.
    pub schema: String,
    /// SQLite `synchronous`: `normal` (default: durable across process crashes) or `full`
    /// (also across power loss, slower).
    pub synchronous: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: "sqlite".into(),
            path: "queue.db".into(),
            url: None,
            schema: "fabric".into(),
            synchronous: "normal".into(),
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Whether the daemon serves HTTP (default true).
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9100`).
    pub listen: String,
    /// Bearer token for mutating calls (secret). With neither token nor token_file, mutating
    /// calls are refused.
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<String>,
    /// Largest accepted request body in bytes (default 2 MiB).
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9100".into(),
            token: None,
            token_file: None,
            max_body_bytes: 2 << 20,
        }
    }
}

/// The worker pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Concurrent jobs (default min(cores, 8); 1..32).
    pub max_workers: u32,
    /// Accepted for compatibility with the original runbook; Fabric always caps at 32.
    pub hardware_cap_enabled: bool,
    /// Lease length in seconds; a job whose lease expires is rescued (default 30).
    pub lease_seconds: u64,
    /// Fallback poll when no wake-up arrives, in milliseconds (default 250).
    pub poll_interval_ms: u64,
    /// How long a graceful stop waits for in-flight jobs, in seconds (default 30).
    pub shutdown_timeout_seconds: u64,
    /// Default handler timeout in seconds when the payload gives none (default 3600).
    pub job_timeout_seconds: u64,
}

/// min(cores, 8).
pub fn default_max_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
        .min(8)
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            max_workers: default_max_workers(),
            hardware_cap_enabled: true,
            lease_seconds: 30,
            poll_interval_ms: 250,
            shutdown_timeout_seconds: 30,
            job_timeout_seconds: 3600,
        }
    }
}

/// Queue storage tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// WAL journal (always on; `false` is refused).
    pub wal_mode: bool,
    /// WAL auto-checkpoint in pages (default 1000).
    pub checkpoint_interval: u32,
    /// Days to keep succeeded and cancelled jobs (default 7).
    pub retention_days: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            wal_mode: true,
            checkpoint_interval: 1000,
            retention_days: 7,
        }
    }
}

/// A retention period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days to keep (default 30).
    pub retention_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { retention_days: 30 }
    }
}

/// Telemetry retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Days to keep (default 90).
    pub retention_days: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// Security switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Record every operator action (default true).
    pub audit_logging: bool,
    /// Replace home and roots in errors, logs and telemetry (default true).
    pub path_redaction: bool,
    /// Extra roots to redact.
    pub redact_roots: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            audit_logging: true,
            path_redaction: true,
            redact_roots: Vec::new(),
        }
    }
}

/// This daemon as a node of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node id (default: `local`).
    pub id: String,
    /// Shards this node works (default: all).
    pub shards: Vec<String>,
    /// The node's home shard (default `earth`).
    pub shard: String,
    /// Capacity reported to the marketplace (default: max_workers).
    pub capacity: Option<u32>,
    /// Specialties (skills) of the node.
    pub specialties: Vec<String>,
    /// How often the node heartbeats (ms, default 2000).
    pub heartbeat_ms: u64,
    /// A node silent for longer is offline and its jobs are reassigned (ms, default 30000).
    pub timeout_ms: u64,
    /// Length of the maintenance leader's lease (ms, default 10000); a dead leader is
    /// replaced within two lease periods.
    pub leader_lease_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: "local".into(),
            shards: Vec::new(),
            shard: "earth".into(),
            capacity: None,
            specialties: Vec::new(),
            heartbeat_ms: 2_000,
            timeout_ms: 30_000,
            leader_lease_ms: 10_000,
        }
    }
}

/// One configuration problem: the YAML path and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// Dotted path in the file, e.g. `workers.max_workers`.
    pub path: String,
    /// What is wrong, quoting the bad value.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Masks a secret for display.
pub const MASK: &str = "********";

impl Config {
    /// Parses YAML text, applies `FABRIC__SECTION__KEY` overrides from `env`, and validates.
    /// Returns every problem found, each naming its path.
    pub fn from_yaml<I, K, V>(text: &str, env: I) -> Result<Config, Vec<ConfigProblem>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut doc: serde_yaml_ng::Value = if text.trim().is_empty() {
            serde_yaml_ng::Value::Mapping(Default::default())
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| {
                vec![ConfigProblem {
                    path: e
                        .location()
                        .map(|l| format!("line {} column {}", l.line(), l.column()))
                        .unwrap_or_else(|| "(file)".into()),
                    message: format!("not valid YAML: {e}"),
                }]
            })?
        };
        if doc.is_null() {
            doc = serde_yaml_ng::Value::Mapping(Default::default());
        }
        apply_env(&mut doc, env)?;
        let cfg: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            vec![ConfigProblem {
                path: if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }]
        })?;
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    /// Every semantic problem of an already-typed config.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut p = |path: &str, message: String| {
            out.push(ConfigProblem {
                path: path.into(),
                message,
            })
        };
        match self.store.backend.as_str() {
            "sqlite" => {
                if self.store.path.trim().is_empty() {
                    p("store.path", "must name a file".into());
                }
            }
            "postgres" => {
                if self
                    .store
                    .url
                    .as_deref()
                    .is_none_or(|u| u.trim().is_empty())
                {
                    p(
                        "store.url",
                        "is required when store.backend is postgres".into(),
                    );
                }
            }
            other => p(
                "store.backend",
                format!("'{other}' is not a backend (sqlite or postgres)"),
            ),
        }
        let schema = &self.store.schema;
        if schema.is_empty()
            || schema.len() > 48
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            p(
                "store.schema",
                format!("'{schema}' must be 1..48 lowercase letters, digits or '_'"),
            );
        }
        if !matches!(self.store.synchronous.as_str(), "normal" | "full") {
            p(
                "store.synchronous",
                format!("'{}' must be normal or full", self.store.synchronous),
            );
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            p(
                "api.listen",
                format!(
                    "'{}' is not an address like 127.0.0.1:9100",
                    self.api.listen
                ),
            );
        }
        if self.api.max_body_bytes < 1024 {
            p(
                "api.max_body_bytes",
                format!("{} is below 1024", self.api.max_body_bytes),
            );
        }
        if !(1..=32).contains(&self.workers.max_workers) {
            p(
                "workers.max_workers",
                format!("{} is out of range 1..32", self.workers.max_workers),
            );
        }
        if self.workers.lease_seconds < 1 {
            p("workers.lease_seconds", "0 must be at least 1".into());
        }
        if self.workers.poll_interval_ms < 10 {
            p(
                "workers.poll_interval_ms",
                format!("{} is below 10", self.workers.poll_interval_ms),
            );
        }
        if !self.queue.wal_mode {
            p(
                "queue.wal_mode",
                "false is not supported: Fabric always uses WAL".into(),
            );
        }
        for (prefix, pol) in std::iter::once(("retry".to_string(), &self.retry)).chain(
            self.retry_policies
                .iter()
                .map(|(k, v)| (format!("retry_policies.{k}"), v)),
        ) {
            for (field, msg) in pol.problems() {
                p(&format!("{prefix}.{field}"), msg);
            }
        }
        if crate::job::validate_name("node.id", &self.node.id).is_err() {
            p(
                "node.id",
                format!("'{}' is not a valid node id", self.node.id),
            );
        }
        if self.node.capacity == Some(0) {
            p("node.capacity", "0 must be at least 1".into());
        }
        let n = &self.node;
        if n.heartbeat_ms < 50 {
            p(
                "node.heartbeat_ms",
                format!("{} must be at least 50", n.heartbeat_ms),
            );
        }
        if n.timeout_ms <= n.heartbeat_ms {
            p(
                "node.timeout_ms",
                format!(
                    "{} must be longer than node.heartbeat_ms ({})",
                    n.timeout_ms, n.heartbeat_ms
                ),
            );
        }
        if n.leader_lease_ms < 300 {
            p(
                "node.leader_lease_ms",
                format!("{} must be at least 300", n.leader_lease_ms),
            );
        }
        out
    }

    /// The retry policy for a source or kind name.
    pub fn retry_policy_for(&self, name: Option<&str>) -> &RetryPolicy {
        name.and_then(|n| self.retry_policies.get(n))
            .unwrap_or(&self.retry)
    }

    /// A copy with every secret masked, for display.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if let Some(url) = &c.store.url {
            c.store.url = Some(redact_url(url));
        }
        if c.api.token.is_some() {
            c.api.token = Some(MASK.into());
        }
        c
    }
}

/// Replaces the password of a URL like `postgres://user:pw@host/db` with a mask.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}://{}:{}{}",
            &url[..scheme_end],
            &userinfo[..colon],
            MASK,
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// Applies `FABRIC__SECTION__KEY=value` overrides; values are read as YAML scalars.
fn apply_env<I, K, V>(doc: &mut serde_yaml_ng::Value, env: I) -> Result<(), Vec<ConfigProblem>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    use serde_yaml_ng::Value;
    let mut problems = Vec::new();
    for (k, v) in env {
        let Some(rest) = k.as_ref().strip_prefix("FABRIC__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            problems.push(ConfigProblem {
                path: k.as_ref().into(),
                message: "empty section or key in environment override".into(),
            });
            continue;
        }
        let value: Value = serde_yaml_ng::from_str(v.as_ref())
            .unwrap_or_else(|_| Value::String(v.as_ref().to_string()));
        let mut cur = &mut *doc;
        for (i, part) in parts.iter().enumerate() {
            let Value::Mapping(map) = cur else {
                problems.push(ConfigProblem {
                    path: parts[..i].join("."),
                    message: format!("is not a section, so {} cannot set it", k.as_ref()),
                });
                break;
            };
            let key = Value::String(part.clone());
            if i + 1 == parts.len() {
                map.insert(key, value.clone());
                break;
            }
            cur = map
                .entry(key)
                .or_insert_with(|| Value::Mapping(Default::default()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_yaml("", NO_ENV).unwrap();
        assert_eq!(c.store.backend, "sqlite");
        assert_eq!(c.api.listen, "127.0.0.1:9100");
        assert_eq!(c.quarantine.retention_days, 30);
        assert_eq!(c.telemetry.retention_days, 90);
        assert!(c.security.audit_logging);
        assert!((1..=8).contains(&c.workers.max_workers));
    }

    #[test]
    fn every_problem_names_path_and_value() {
        let y = "workers:\n  max_workers: 99\nstore:\n  backend: oracle\napi:\n  listen: nowhere\n";
        let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.starts_with("workers.max_workers: 99")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("store.backend: 'oracle'")));
        assert!(lines.iter().any(|l| l.starts_with("api.listen: 'nowhere'")));
    }

    #[test]
    fn type_errors_and_unknown_keys_name_the_path() {
        let e = Config::from_yaml("workers:\n  max_workers: lots\n", NO_ENV).unwrap_err();
        assert_eq!(e[0].path, "workers.max_workers");
        assert!(e[0].message.contains("lots"), "{}", e[0].message);
        let e = Config::from_yaml("workers:\n  max_wrkers: 4\n", NO_ENV).unwrap_err();
        assert!(e[0].message.contains("max_wrkers"), "{}", e[0].message);
        let e = Config::from_yaml("workers: [1\n", NO_ENV).unwrap_err();
        assert!(e[0].message.contains("not valid YAML"));
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let c = Config::from_yaml(
            "workers:\n  max_workers: 4\n",
            [
                ("FABRIC__WORKERS__MAX_WORKERS", "6"),
                ("FABRIC__API__TOKEN", "s3cret"),
                ("HOME", "/x"),
            ],
        )
        .unwrap();
        assert_eq!(c.workers.max_workers, 6);
        assert_eq!(c.api.token.as_deref(), Some("s3cret"));
        assert_eq!(c.redacted().api.token.as_deref(), Some(MASK));
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://fab:pw@db:5432/x"),
            "postgres://fab:********@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        let c = Config::from_yaml(
            "store:\n  backend: postgres\n  url: postgres://a:b@h/d\n",
            NO_ENV,
        )
        .unwrap();
        assert!(!format!("{:?}", c.redacted()).contains(":b@"));
    }

    #[test]
    fn per_source_policies_are_validated_and_found() {
        let y = "retry_policies:\n  mail:\n    max_attempts: 5\n    jitter: 2\n";
        let e = Config::from_yaml(y, NO_ENV).unwrap_err();
        assert_eq!(e[0].path, "retry_policies.mail.jitter");
        let c =
            Config::from_yaml("retry_policies:\n  mail:\n    max_attempts: 5\n", NO_ENV).unwrap();
        assert_eq!(c.retry_policy_for(Some("mail")).max_attempts, 5);
        assert_eq!(c.retry_policy_for(Some("other")).max_attempts, 3);
    }
}
