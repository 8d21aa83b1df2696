//! Typed configuration: YAML with defaults, `FABRIC__SECTION__KEY` environment overrides, and
//! validation that names the YAML path and the bad value of every problem. Loading lives in
//! `load`, the bounds of every key in `validate`, the masking of secrets in `redact`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

mod alerts;
mod alerts_validate;
mod bus;
mod load;
mod redact;
mod validate;

pub use alerts::{
    fmt_number, redact_route_url, AlertRule, AlertsConfig, Comparator, InhibitRule, RateLimit,
    RateLimits, RouteConfig, RouteType, RuleConfig, Severity, SmtpTls, DEFAULT_RULES, LOG_ROUTE,
    PAGERDUTY_URL,
};
pub use bus::{BusBackend, BusConfig, Secret, SigningConfig, StreamNames};

pub use redact::is_secret_key;
pub use redact::{redact_conn_string, redact_url, MASK};
pub use validate::{
    is_env_name, MAX_JOB_TIMEOUT_SECONDS, MAX_KEEP, MAX_LOG_BYTES, MAX_LOG_FILES,
    MAX_RETENTION_DAYS,
};

/// Keys that earlier versions accepted and that never did anything: naming one is an error
/// that says so, rather than a silent no-op.
pub const REMOVED_KEYS: [(&str, &str); 2] = [
    (
        "queue.checkpoint_interval",
        "was removed: it never had an effect (the store checkpoints its WAL itself); delete it",
    ),
    (
        "workers.hardware_cap_enabled",
        "was removed: it never had an effect (workers.max_workers is always 1..32); delete it",
    ),
];

/// Environment variables a `shell` job inherits from the daemon by default
/// (`workers.shell_env_allow`); everything else, the daemon's secrets included, is withheld.
pub const DEFAULT_SHELL_ENV_ALLOW: [&str; 7] =
    ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR"];

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub workers: WorkersConfig,
    pub queue: QueueConfig,
    /// Default retry policy for jobs with no more specific one.
    pub retry: RetryPolicy,
    /// Retry policies by source name or job kind. Each starts from its `preset:`
    /// (`local_files`, `mail`, `repositories`); without one, a policy named like a preset starts
    /// from that preset, any other from `local_files`.
    pub retry_policies: BTreeMap<String, RetryPolicy>,
    pub quarantine: RetentionConfig,
    pub telemetry: TelemetryConfig,
    pub reports: ReportsConfig,
    pub security: SecurityConfig,
    pub recovery: RecoveryConfig,
    pub logs: LogsConfig,
    pub backups: BackupsConfig,
    pub node: NodeConfig,
    /// Alert rules, routes, silencing and delivery (see [`AlertsConfig`]).
    pub alerts: AlertsConfig,
    /// The message bus (issue 14 §7).
    pub bus: BusConfig,
    /// Service-level objectives by name (default: `job_success` and `job_latency`); a file
    /// that names `slo:` replaces the defaults.
    pub slo: BTreeMap<String, crate::slo::SloConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            store: Default::default(),
            api: Default::default(),
            workers: Default::default(),
            queue: Default::default(),
            retry: Default::default(),
            retry_policies: Default::default(),
            quarantine: Default::default(),
            telemetry: Default::default(),
            reports: Default::default(),
            security: Default::default(),
            recovery: Default::default(),
            logs: Default::default(),
            backups: Default::default(),
            node: Default::default(),
            bus: Default::default(),
            alerts: Default::default(),
            slo: crate::slo::default_slos(),
        }
    }
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
    /// Named tokens with roles (secrets); `token` above is an admin token too.
    pub tokens: Vec<ApiToken>,
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// Reads only (reads need no token; a `read` token may not change anything).
    Read,
    /// The external-worker calls (`/api/v1/workers/…`) only.
    Worker,
}

/// One named API token: `{name, token | token_file, role}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who uses it (recorded as the actor of what it does).
    pub name: String,
    /// The secret itself.
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the secret.
    #[serde(default)]
    pub token_file: Option<String>,
    pub role: TokenRole,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9100".into(),
            token: None,
            token_file: None,
            max_body_bytes: 2 << 20,
            tokens: Vec::new(),
        }
    }
}

/// The worker pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Concurrent jobs (default min(cores, 8); 1..32).
    pub max_workers: u32,
    /// Lease length in seconds; a job whose lease expires is rescued (default 30).
    pub lease_seconds: u64,
    /// Fallback poll when no wake-up arrives, in milliseconds (default 250).
    pub poll_interval_ms: u64,
    /// How long a graceful stop waits for in-flight jobs, in seconds (default 30).
    pub shutdown_timeout_seconds: u64,
    /// Default handler timeout in seconds when the payload gives none (default 3600).
    pub job_timeout_seconds: u64,
    /// Variables of the daemon's environment a `shell` job sees (default
    /// [`DEFAULT_SHELL_ENV_ALLOW`]); its payload's `env` adds more. Nothing else is passed.
    pub shell_env_allow: Vec<String>,
    /// Job kinds served by external workers over the API (no built-in handler): jobs of
    /// these kinds are accepted at submit and wait for an external worker; the daemon's own
    /// workers never claim them.
    pub external_kinds: Vec<String>,
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
            lease_seconds: 30,
            poll_interval_ms: 250,
            shutdown_timeout_seconds: 30,
            job_timeout_seconds: 3600,
            shell_env_allow: DEFAULT_SHELL_ENV_ALLOW.map(String::from).to_vec(),
            external_kinds: Vec::new(),
        }
    }
}

/// Queue storage tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// WAL journal (always on; `false` is refused).
    pub wal_mode: bool,
    /// Days to keep succeeded and cancelled jobs (default 7).
    pub retention_days: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            wal_mode: true,
            retention_days: 7,
        }
    }
}

/// Quarantine retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days to keep quarantined jobs (default 30; 1..3650).
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
    /// Days to keep telemetry samples (default 90; 1..3650), once telemetry is recorded.
    pub retention_days: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// Field reports: the daemon's append-only log of job outcomes and risk events under
/// `$FABRIC_HOME/reports/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Write field reports (default true).
    pub enabled: bool,
    /// Days of reports to keep (default 30; 1..3650): older day files are deleted.
    pub retention_days: u32,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: 30,
        }
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
    /// Days to keep audit entries; the maintenance leader deletes older ones (default 365;
    /// 1..3650).
    pub audit_retention_days: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            audit_logging: true,
            path_redaction: true,
            redact_roots: Vec::new(),
            audit_retention_days: 365,
        }
    }
}

/// Crash-recovery reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Newest recovery reports kept, in the store (by the leader) and as
    /// `reports/recovery-<ms>.json` (by each daemon in its home) (default 20; 1..1000).
    pub keep: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self { keep: 20 }
    }
}

/// The daemon's log file, `logs/fabric.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// Size at which `fabric.log` is rotated to `fabric.log.1` (default 10 MiB;
    /// 4096..1 GiB).
    pub max_bytes: u64,
    /// Rotated files kept, `fabric.log.1` (newest) .. `fabric.log.N` (default 5; 1..100).
    pub keep: u32,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

/// Backups written into `backups/` (`db backup` without `--to`, the copy `db restore`
/// saves aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupsConfig {
    /// Newest backups kept in `backups/`; older ones are deleted after each backup
    /// (default 10; 1..1000).
    pub keep: u32,
}

impl Default for BackupsConfig {
    fn default() -> Self {
        Self { keep: 10 }
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

impl Config {
    /// Parses YAML text, applies `FABRIC__SECTION__KEY` overrides from `env`, and validates.
    /// Returns every problem found at once (syntax, unknown or removed keys, wrong types,
    /// out-of-range values), each naming its path and value.
    pub fn from_yaml<I, K, V>(text: &str, env: I) -> Result<Config, Vec<ConfigProblem>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        load::from_yaml(text, env)
    }

    /// Every semantic problem of an already-typed config (bounds and cross-key rules).
    pub fn problems(&self) -> Vec<ConfigProblem> {
        validate::problems(self)
    }

    /// The retry policy for a source or kind name.
    pub fn retry_policy_for(&self, name: Option<&str>) -> &RetryPolicy {
        name.and_then(|n| self.retry_policies.get(n))
            .unwrap_or(&self.retry)
    }

    /// The policy a source's `--retry-policy NAME` names: the one of `retry_policies`, else
    /// the preset of that name (`mail` works without a `retry_policies.mail`); `None` when
    /// it names neither.
    pub fn named_policy(&self, name: &str) -> Option<RetryPolicy> {
        self.retry_policies
            .get(name)
            .cloned()
            .or_else(|| crate::retry::RetryPreset::named(name).map(|p| p.policy()))
    }

    /// The retry policy of a job: its source's, else its kind's, else `retry`.
    pub fn retry_policy_of(&self, source: Option<&str>, kind: &str) -> &RetryPolicy {
        source
            .and_then(|s| self.retry_policies.get(s))
            .or_else(|| self.retry_policies.get(kind))
            .unwrap_or(&self.retry)
    }
}

#[cfg(test)]
mod tests;
