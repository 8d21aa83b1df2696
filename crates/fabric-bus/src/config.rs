//! `BusConfig`: the `bus:` keys of the configuration (issue 14 §7), their defaults and their
//! validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{BusError, Lane};

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

impl StreamNames {
    /// The configured name of `lane`.
    pub fn name(&self, lane: Lane) -> &str {
        match lane {
            Lane::Normal => &self.normal,
            Lane::Emergency => &self.emergency,
            Lane::Telemetry => &self.telemetry,
            Lane::Policy => &self.policy,
            Lane::DeadLetter => &self.dead_letter,
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

impl SigningConfig {
    /// The secret: `env` (the environment variable's value) first, then `secret`, then
    /// `secret_file`.
    pub fn resolve_secret(&self, env: Option<String>) -> Result<String, BusError> {
        if let Some(s) = env {
            return Ok(s);
        }
        if let Some(Secret(s)) = &self.secret {
            return Ok(s.clone());
        }
        let Some(path) = &self.secret_file else {
            return Err(bad(
                "bus.signing.secret",
                "signing is on but no secret is set (secret, secret_file or FABRIC__BUS__SIGNING__SECRET)".into(),
            ));
        };
        let s = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "bus.signing.secret_file",
                format!("reading {}: {e}", path.display()),
            )
        })?;
        let s = s.trim_end_matches(['\n', '\r']).to_string();
        if s.is_empty() {
            return Err(bad(
                "bus.signing.secret_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(s)
    }

    fn validate(&self) -> Result<(), BusError> {
        for kid in std::iter::once(&self.key_id).chain(self.retired.keys()) {
            if kid.is_empty() || kid.contains([':', ' ']) {
                return Err(bad(
                    "bus.signing.key_id",
                    format!("{kid:?} must be non-empty without ':' or spaces"),
                ));
            }
        }
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err(bad(
                "bus.signing.secret_file",
                "set either secret or secret_file, not both".into(),
            ));
        }
        if self.secret.as_ref().is_some_and(|s| s.0.is_empty()) {
            return Err(bad("bus.signing.secret", "must not be empty".into()));
        }
        Ok(())
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

fn bad(field: &'static str, reason: String) -> BusError {
    BusError::Config { field, reason }
}

impl BusConfig {
    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<(), BusError> {
        if self.prefix.is_empty() || self.prefix.contains(char::is_whitespace) {
            return Err(bad(
                "bus.prefix",
                format!("{:?} must be non-empty without spaces", self.prefix),
            ));
        }
        if self.emergency_threshold == 0 {
            return Err(bad("bus.emergency_threshold", "must be ≥ 1, got 0".into()));
        }
        if self.backpressure_drop_threshold <= self.emergency_threshold {
            return Err(bad(
                "bus.backpressure_drop_threshold",
                format!(
                    "must be > bus.emergency_threshold ({}), got {}",
                    self.emergency_threshold, self.backpressure_drop_threshold
                ),
            ));
        }
        if self.max_stream_length == 0 {
            return Err(bad("bus.max_stream_length", "must be ≥ 1, got 0".into()));
        }
        if self.retry_idle_ms == 0 {
            return Err(bad("bus.retry_idle_ms", "must be ≥ 1, got 0".into()));
        }
        if self.retry_max_attempts == 0 {
            return Err(bad("bus.retry_max_attempts", "must be ≥ 1, got 0".into()));
        }
        if self.backend == BusBackend::Redis
            && !(self.url.starts_with("redis://") || self.url.starts_with("unix://"))
        {
            return Err(bad(
                "bus.url",
                "must start with redis:// or unix:// (TLS is not built in)".into(),
            ));
        }
        if let Some(signing) = &self.signing {
            signing.validate()?;
        }
        let names = [
            ("bus.streams.normal", &self.streams.normal),
            ("bus.streams.emergency", &self.streams.emergency),
            ("bus.streams.telemetry", &self.streams.telemetry),
            ("bus.streams.policy", &self.streams.policy),
            ("bus.streams.dead_letter", &self.streams.dead_letter),
        ];
        for (i, (field, name)) in names.iter().enumerate() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(bad(
                    field,
                    format!("{name:?} must be non-empty without spaces"),
                ));
            }
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return Err(bad(
                    field,
                    format!("{name:?} is already the name of {other}"),
                ));
            }
        }
        Ok(())
    }
}
