//! The `bus:` section (issue 14 §7): the message bus's backend, stream names, thresholds and
//! signing, with their defaults and bounds. Reading a secret file is the bus's job, not this
//! module's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigProblem;

/// Which backend carries the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    /// In this process: bounded, no extra process (the default).
    #[default]
    Inproc,
    /// Redis Streams at `url`.
    Redis,
}

/// The names of the streams (before the key prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamNames {
    /// Ordinary traffic; the thresholds apply to this stream only.
    pub normal: String,
    /// Flagged or rerouted traffic; read before `normal`.
    pub emergency: String,
    /// Telemetry samples.
    pub telemetry: String,
    /// Policy decisions.
    pub policy: String,
    /// Entries delivered too often, with their original id, stream, group and count.
    pub dead_letter: String,
}

impl Default for StreamNames {
    fn default() -> Self {
        Self {
            normal: "fabric.normal".into(),
            emergency: "fabric.emergency".into(),
            telemetry: "fabric.telemetry".into(),
            policy: "fabric.policy".into(),
            dead_letter: "fabric.dead_letter".into(),
        }
    }
}

/// The `bus:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `inproc` (default) or `redis`.
    pub backend: BusBackend,
    /// Redis URL (a secret: it may carry a password).
    pub url: String,
    /// Prefix of every key (`<prefix>:<stream name>`).
    pub prefix: String,
    /// Normal's length at or above which a publish is rerouted to emergency.
    pub emergency_threshold: u64,
    /// Normal's length at or above which a publish is dropped.
    pub backpressure_drop_threshold: u64,
    /// Streams are trimmed to about this many entries (never below the slowest group).
    pub max_stream_length: u64,
    /// A pending entry idle this long is reclaimed.
    pub retry_idle_ms: u64,
    /// An entry delivered this many times is dead-lettered instead of delivered again.
    pub retry_max_attempts: u64,
    /// Stream names.
    pub streams: StreamNames,
    /// HMAC-SHA256 signing of every message; off when absent.
    pub signing: Option<SigningConfig>,
    /// Publish job lifecycle events (`job.submitted`, `job.started`, `job.succeeded`,
    /// `job.failed`, `job.quarantined`, `job.cancelled`, `job.requeued`) through the store's
    /// outbox (default false: they cost job throughput and need a consumer; see
    /// docs/runbook.md). Capture is a property of the database: on PostgreSQL set it alike on
    /// every daemon.
    pub events: bool,
    /// How often the leader publishes a telemetry sample (queue depth, throughput, in-flight)
    /// to the telemetry stream, in ms (default 10,000; 0: never; else 100..86,400,000).
    pub telemetry_interval_ms: u64,
    /// Days an unsent outbox row is kept (the bus away that long) before the leader prunes it,
    /// counted in `fabric_outbox_pruned_total` (default 7; 1..3650).
    pub outbox_retention_days: u32,
}

/// A secret string: shown as `***` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `bus.signing`: the secret comes from `FABRIC__BUS__SIGNING__SECRET`, else `secret`, else
/// `secret_file` (never from a flag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// The id of the current key, carried in every message (for rotation).
    pub key_id: String,
    /// The secret itself.
    pub secret: Option<Secret>,
    /// A file holding the secret (trailing newline ignored).
    pub secret_file: Option<PathBuf>,
    /// Retired keys still accepted when verifying: key id → secret file.
    pub retired: BTreeMap<String, PathBuf>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key_id: "k1".into(),
            secret: None,
            secret_file: None,
            retired: BTreeMap::new(),
        }
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            backend: BusBackend::Inproc,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "fabric".into(),
            emergency_threshold: 4000,
            backpressure_drop_threshold: 8000,
            max_stream_length: 100_000,
            retry_idle_ms: 30_000,
            retry_max_attempts: 5,
            streams: StreamNames::default(),
            signing: None,
            events: false,
            telemetry_interval_ms: 10_000,
            outbox_retention_days: 7,
        }
    }
}

impl BusConfig {
    /// Every problem of the `bus:` section, each naming its key (`bus.…`) and value.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |path: &str, message: String| {
            out.push(ConfigProblem {
                path: path.into(),
                message,
            })
        };
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            bad(
                "bus.prefix",
                format!("{:?} must be non-empty without spaces", self.prefix),
            );
        }
        if self.emergency_threshold == 0 {
            bad("bus.emergency_threshold", "must be ≥ 1, got 0".into());
        }
        for (path, v) in [
            ("bus.max_stream_length", self.max_stream_length),
            (
                "bus.backpressure_drop_threshold",
                self.backpressure_drop_threshold,
            ),
            ("bus.retry_idle_ms", self.retry_idle_ms),
            ("bus.retry_max_attempts", self.retry_max_attempts),
        ] {
            if v == 0 {
                bad(path, "must be ≥ 1, got 0".into());
            }
        }
        if self.telemetry_interval_ms != 0
            && !(100..=86_400_000).contains(&self.telemetry_interval_ms)
        {
            bad(
                "bus.telemetry_interval_ms",
                format!(
                    "{} is out of range 100..86400000 (0: no samples)",
                    self.telemetry_interval_ms
                ),
            );
        }
        if !(1..=3650).contains(&self.outbox_retention_days) {
            bad(
                "bus.outbox_retention_days",
                format!("{} is out of range 1..3650", self.outbox_retention_days),
            );
        }
        if self.backend == BusBackend::Redis
            && !(self.url.starts_with("redis://") || self.url.starts_with("unix://"))
        {
            bad(
                "bus.url",
                format!(
                    "{} must start with redis:// or unix:// (TLS is not built in)",
                    super::redact::redact_dsn(&self.url)
                ),
            );
        }
        if let Some(s) = &self.signing {
            for kid in std::iter::once(&s.key_id).chain(s.retired.keys()) {
                if kid.is_empty() || kid.contains([':', ' ']) {
                    bad(
                        "bus.signing.key_id",
                        format!("{kid:?} must be non-empty without ':' or spaces"),
                    );
                }
            }
            if s.secret.is_some() && s.secret_file.is_some() {
                bad(
                    "bus.signing.secret_file",
                    "set either secret or secret_file, not both".into(),
                );
            }
            if s.secret.as_ref().is_some_and(|s| s.0.is_empty()) {
                bad("bus.signing.secret", "must not be empty".into());
            }
        }
        let names = [
            ("bus.streams.normal", &self.streams.normal),
            ("bus.streams.emergency", &self.streams.emergency),
            ("bus.streams.telemetry", &self.streams.telemetry),
            ("bus.streams.policy", &self.streams.policy),
            ("bus.streams.dead_letter", &self.streams.dead_letter),
        ];
        for (i, (path, name)) in names.iter().enumerate() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                bad(path, format!("{name:?} must be non-empty without spaces"));
            } else if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                bad(path, format!("{name:?} is already the name of {other}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const NO_ENV: [(&str, &str); 0] = [];

    #[test]
    fn lifecycle_events_are_off_by_default_and_switched_by_file_or_env() {
        let c = Config::from_yaml("", NO_ENV).unwrap();
        assert!(!c.bus.events);
        assert_eq!(c.bus.telemetry_interval_ms, 10_000);
        assert_eq!(c.bus.outbox_retention_days, 7);
        let c = Config::from_yaml("bus:\n  events: true\n", NO_ENV).unwrap();
        assert!(c.bus.events);
        let c = Config::from_yaml("", [("FABRIC__BUS__EVENTS", "true")]).unwrap();
        assert!(c.bus.events);
        let c = Config::from_yaml("bus:\n  telemetry_interval_ms: 0\n", NO_ENV).unwrap();
        assert_eq!(c.bus.telemetry_interval_ms, 0, "0 turns samples off");
    }

    #[test]
    fn outbox_keys_out_of_range_are_named_with_their_value() {
        let e = Config::from_yaml(
            "bus:\n  telemetry_interval_ms: 5\n  outbox_retention_days: 0\n  events: maybe\n",
            NO_ENV,
        )
        .unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("bus.events") && l.contains("maybe")),
            "{lines:?}"
        );
        let e = Config::from_yaml(
            "bus:\n  telemetry_interval_ms: 5\n  outbox_retention_days: 0\n",
            NO_ENV,
        )
        .unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("bus.telemetry_interval_ms: 5 ")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("bus.outbox_retention_days: 0 ")),
            "{lines:?}"
        );
    }
}
