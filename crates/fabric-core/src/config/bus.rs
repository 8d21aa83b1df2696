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
        if self.backpressure_drop_threshold <= self.emergency_threshold {
            bad(
                "bus.backpressure_drop_threshold",
                format!(
                    "must be > bus.emergency_threshold ({}), got {}",
                    self.emergency_threshold, self.backpressure_drop_threshold
                ),
            );
        }
        for (path, v) in [
            ("bus.max_stream_length", self.max_stream_length),
            ("bus.retry_idle_ms", self.retry_idle_ms),
            ("bus.retry_max_attempts", self.retry_max_attempts),
        ] {
            if v == 0 {
                bad(path, "must be ≥ 1, got 0".into());
            }
        }
        if self.backend == BusBackend::Redis
            && !(self.url.starts_with("redis://") || self.url.starts_with("unix://"))
        {
            bad(
                "bus.url",
                format!(
                    "{} must start with redis:// or unix:// (TLS is not built in)",
                    super::redact_conn_string(&self.url)
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
