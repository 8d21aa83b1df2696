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
pub use redact::{redact_conn_string, redact_dsn, redact_url, MASK};
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

    /// The retry policy of a job: its source's, else its kind's, else `retry`.
    pub fn retry_policy_of(&self, source: Option<&str>, kind: &str) -> &RetryPolicy {
        source
            .and_then(|s| self.retry_policies.get(s))
            .or_else(|| self.retry_policies.get(kind))
            .unwrap_or(&self.retry)
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
        assert_eq!(e[0].path, "workers.max_wrkers");
        assert!(e[0].message.contains("unknown key"), "{}", e[0].message);
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

    #[test]
    fn every_problem_is_listed_at_once_with_path_and_value() {
        let y = "workers:\n  max_workers: lots\n  max_wrkers: 4\n  lease_seconds: 0\n\
                 queue:\n  checkpoint_interval: 1000\n  retention_days: -1\n\
                 store:\n  backend: oracle\nretry:\n  strategy: sometimes\n\
                 retry_policies:\n  mail:\n    max_attempts: many\n    colour: red\n\
                 node:\n  specialties: [gpu, [x]]\nextra: 1\n";
        let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let has = |path: &str, word: &str| {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{path}: ")) && l.contains(word)),
                "no {path} with {word} in {lines:#?}"
            )
        };
        has("workers.max_workers", "lots");
        has("workers.max_wrkers", "unknown key (value 4)");
        has("workers.lease_seconds", "0 is out of range 1..86400");
        has("queue.checkpoint_interval", "was removed");
        has("queue.retention_days", "-1");
        has("store.backend", "oracle");
        has("retry.strategy", "sometimes");
        has("retry_policies.mail.max_attempts", "many");
        has("retry_policies.mail.colour", "red");
        has("node.specialties[1]", "sequence");
        has("extra", "unknown key");
        assert_eq!(lines.len(), 11, "{lines:#?}");
    }

    #[test]
    fn removed_keys_say_so() {
        let e = Config::from_yaml("workers:\n  hardware_cap_enabled: true\n", NO_ENV).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "workers.hardware_cap_enabled");
        assert!(e[0].message.contains("was removed"), "{}", e[0].message);
    }

    #[test]
    fn an_empty_token_is_invalid() {
        let e = Config::from_yaml("api:\n  token: ''\n", NO_ENV).unwrap_err();
        assert_eq!(e[0].path, "api.token");
        let e = Config::from_yaml("", [("FABRIC__API__TOKEN", "'  '")]).unwrap_err();
        assert_eq!(e[0].path, "api.token");
    }

    #[test]
    fn every_numeric_key_has_an_upper_bound_naming_key_and_value() {
        let y = "api:\n  max_body_bytes: 99999999999\nworkers:\n  job_timeout_seconds: 18446744073709551615\n\
                 \x20 poll_interval_ms: 9999999\n  shutdown_timeout_seconds: 9999999\n\
                 queue:\n  retention_days: 4000000000\nquarantine:\n  retention_days: 0\n\
                 telemetry:\n  retention_days: 99999\nnode:\n  capacity: 99999999\n\
                 \x20 heartbeat_ms: 99999999\n  timeout_ms: 999999999\n  leader_lease_ms: 999999999\n\
                 retry:\n  base_delay_seconds: 1e12\n  backoff_multiplier: 1000\n  transient_max_attempts: 0\n";
        let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for key in [
            "api.max_body_bytes",
            "workers.job_timeout_seconds",
            "workers.poll_interval_ms",
            "workers.shutdown_timeout_seconds",
            "queue.retention_days",
            "quarantine.retention_days",
            "telemetry.retention_days",
            "node.capacity",
            "node.heartbeat_ms",
            "node.timeout_ms",
            "node.leader_lease_ms",
            "retry.base_delay_seconds",
            "retry.backoff_multiplier",
            "retry.transient_max_attempts",
        ] {
            assert!(paths.contains(&key), "{key} not in {errs:#?}");
        }
        let e = errs
            .iter()
            .find(|e| e.path == "workers.job_timeout_seconds")
            .unwrap();
        assert!(e.message.contains("18446744073709551615"), "{e}");
    }

    #[test]
    fn presets_are_selectable_and_partial_policies_start_from_them() {
        let y = "retry_policies:\n  imap:\n    preset: mail\n    max_attempts: 6\n\
                 \x20 mail:\n    base_delay_seconds: 60\n  repositories: {}\n  files:\n    max_attempts: 2\n";
        let c = Config::from_yaml(y, NO_ENV).unwrap();
        let imap = &c.retry_policies["imap"];
        assert_eq!(imap.preset, crate::retry::RetryPreset::Mail);
        assert_eq!(imap.max_attempts, 6);
        assert_eq!(imap.transient_max_attempts, Some(7));
        assert_eq!(imap.max_delay_seconds, 1800.0);
        let mail = &c.retry_policies["mail"];
        assert_eq!((mail.max_attempts, mail.base_delay_seconds), (5, 60.0));
        assert_eq!(mail.rate_limit_delay_seconds, 600.0);
        assert_eq!(
            c.retry_policies["repositories"],
            RetryPolicy::repositories()
        );
        assert_eq!(c.retry_policies["files"].max_delay_seconds, 300.0);
        let e = Config::from_yaml("retry:\n  preset: email\n", NO_ENV).unwrap_err();
        assert_eq!(e[0].path, "retry.preset");
        assert!(e[0].message.contains("email"), "{}", e[0].message);
    }

    #[test]
    fn a_job_takes_its_sources_policy_else_its_kinds_else_retry() {
        let y = "retry_policies:\n  mail:\n    max_attempts: 6\n  shell:\n    max_attempts: 4\n";
        let c = Config::from_yaml(y, NO_ENV).unwrap();
        assert_eq!(c.retry_policy_of(Some("mail"), "shell").max_attempts, 6);
        assert_eq!(c.retry_policy_of(Some("other"), "shell").max_attempts, 4);
        assert_eq!(c.retry_policy_of(None, "noop").max_attempts, 3);
    }

    #[test]
    fn show_lists_the_new_keys() {
        let shown = serde_yaml_ng::to_string(&Config::default().display_value()).unwrap();
        assert!(shown.contains("shell_env_allow"), "{shown}");
        assert!(shown.contains("preset: local_files"), "{shown}");
        assert!(!shown.contains("checkpoint_interval"), "{shown}");
        for key in [
            "audit_retention_days: 365",
            "recovery:\n  keep: 20",
            "logs:\n  max_bytes: 10485760\n  keep: 5",
            "backups:\n  keep: 10",
        ] {
            assert!(shown.contains(key), "{key} not in {shown}");
        }
    }

    #[test]
    fn retention_keys_are_bounded_naming_key_and_value() {
        let y = "security:\n  audit_retention_days: 0\nrecovery:\n  keep: 1001\n\
                 logs:\n  max_bytes: 100\n  keep: 0\nbackups:\n  keep: 0\n";
        let errs = Config::from_yaml(y, NO_ENV).unwrap_err();
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for line in [
            "security.audit_retention_days: 0 is out of range 1..3650",
            "recovery.keep: 1001 is out of range 1..1000",
            "logs.max_bytes: 100 is out of range 4096..1073741824",
            "logs.keep: 0 is out of range 1..100",
            "backups.keep: 0 is out of range 1..1000",
        ] {
            assert!(lines.iter().any(|l| l == line), "{line} not in {lines:#?}");
        }
        assert_eq!(lines.len(), 5, "{lines:#?}");
        let c = Config::from_yaml(
            "logs:\n  keep: 3\n",
            [
                ("FABRIC__LOGS__MAX_BYTES", "4096"),
                ("FABRIC__BACKUPS__KEEP", "2"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.logs.max_bytes, c.logs.keep, c.backups.keep),
            (4096, 3, 2)
        );
    }

    /// Found by `cargo fuzz run config_yaml`: an empty key was reported with an empty path.
    #[test]
    fn an_empty_or_blank_key_is_named_quoted() {
        let problems = Config::from_yaml(
            "'': 1
workers:
  ' ': 2
",
            NO_ENV,
        )
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["''", "workers.' '"], "{problems:?}");
    }

    #[test]
    fn the_issues_bus_section_parses_and_is_checked() {
        let y =
            "bus:\n  backend: redis\n  url: \"redis://:pw@127.0.0.1:6379\"\n  prefix: \"fabric\"\n\
                 \x20 emergency_threshold: 4000\n  backpressure_drop_threshold: 8000\n\
                 \x20 max_stream_length: 100000\n  retry_idle_ms: 30000\n  retry_max_attempts: 5\n\
                 \x20 signing: {secret_file: /path}\n";
        let c = Config::from_yaml(y, NO_ENV).unwrap();
        assert_eq!(c.bus.backend, BusBackend::Redis);
        assert_eq!(c.bus.emergency_threshold, 4000);
        let file = c.bus.signing.as_ref().and_then(|s| s.secret_file.clone());
        assert_eq!(file, Some("/path".into()));
        let shown = serde_yaml_ng::to_string(&c.display_value()).unwrap();
        assert!(!shown.contains(":pw@"), "{shown}");

        let c = Config::from_yaml(y, [("FABRIC__BUS__SIGNING__SECRET", "s3")]).unwrap();
        let s = c.bus.signing.unwrap();
        assert_eq!((s.secret, s.secret_file), (Some(Secret("s3".into())), None));

        // A drop threshold at or below the emergency threshold is valid (a full normal drops
        // before it would reroute: the original's "drop threshold 5" case); zero is not.
        let c = Config::from_yaml(
            "bus:\n  emergency_threshold: 4000\n  backpressure_drop_threshold: 5\n",
            NO_ENV,
        )
        .unwrap();
        assert_eq!(c.bus.backpressure_drop_threshold, 5);
        let e = Config::from_yaml(
            "bus:\n  emergency_threshold: 10\n  backpressure_drop_threshold: 0\n  retry_idle_ms: 0\n",
            NO_ENV,
        )
        .unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("bus.backpressure_drop_threshold: ") && l.contains('0')),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("bus.retry_idle_ms: ")),
            "{lines:?}"
        );
        let e = Config::from_yaml("bus:\n  backend: kafka\n", NO_ENV).unwrap_err();
        assert!(
            e[0].path == "bus.backend" && e[0].message.contains("kafka"),
            "{e:?}"
        );
    }

    #[test]
    fn slos_default_replace_and_are_checked() {
        let c = Config::from_yaml("", NO_ENV).unwrap();
        assert_eq!(
            c.slo.keys().collect::<Vec<_>>(),
            ["job_latency", "job_success"]
        );
        let y = "slo:\n  api_ok:\n    indicator: success\n    objective: 0.999\n    window: 30d\n";
        let c = Config::from_yaml(y, NO_ENV).unwrap();
        assert_eq!(c.slo.keys().collect::<Vec<_>>(), ["api_ok"]);
        assert_eq!(c.slo["api_ok"].window_ms(), 30 * 86_400_000);
        let y = "slo:\n  fast:\n    indicator: latency\n    objective: 95\n    colour: red\n";
        let e = Config::from_yaml(y, NO_ENV).unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("slo.fast.colour: unknown key")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("slo.fast.objective: 95")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("slo.fast.threshold_ms: is required")),
            "{lines:?}"
        );
    }

    proptest::proptest! {
        /// Arbitrary text, and arbitrary YAML shaped like a config, give a config or problems
        /// that each name a path, never a panic.
        #[test]
        fn arbitrary_yaml_never_panics(text in "\\PC{0,200}") {
            if let Err(problems) = Config::from_yaml(&text, NO_ENV) {
                proptest::prop_assert!(!problems.is_empty());
                for p in problems {
                    proptest::prop_assert!(!p.path.is_empty());
                }
            }
        }

        #[test]
        fn arbitrary_values_of_known_keys_never_panic(
            section in proptest::sample::select(vec!["workers", "api", "store", "queue", "node", "retry", "retry_policies", "quarantine", "security"]),
            key in proptest::sample::select(vec!["max_workers", "token", "url", "retention_days", "capacity", "max_attempts", "mail", "preset", "backoff_multiplier", "timeout_ms", "redact_roots", "x"]),
            value in proptest::sample::select(vec!["-1", "0", "1e308", "18446744073709551616", "~", "[]", "{a: 1}", "''", "nan", ".inf", "true", "mail", "!tag 3"]),
        ) {
            let y = format!("{section}:\n  {key}: {value}\n");
            let env = [(format!("FABRIC__{}__{}", section.to_uppercase(), key.to_uppercase()), value.to_string())];
            for r in [Config::from_yaml(&y, NO_ENV), Config::from_yaml("", env)] {
                if let Err(problems) = r {
                    for p in problems {
                        proptest::prop_assert!(!p.path.is_empty() && !p.message.is_empty());
                    }
                }
            }
        }
    }
}
