//! The semantic checks of a typed [`Config`]: every numeric key within sane bounds, names and
//! addresses well formed, cross-key rules; each problem names the key and its value.

use super::{Config, ConfigProblem};

/// Largest `workers.job_timeout_seconds` (and a shell payload's `timeout_s`): 30 days.
pub const MAX_JOB_TIMEOUT_SECONDS: u64 = 30 * 86_400;
/// Largest retention of any kind, in days (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Largest `recovery.keep` and `backups.keep`.
pub const MAX_KEEP: u32 = 1000;
/// Largest `logs.max_bytes` (1 GiB); the smallest is 4 KiB.
pub const MAX_LOG_BYTES: u64 = 1 << 30;
/// Largest `logs.keep`.
pub const MAX_LOG_FILES: u32 = 100;

/// Collects the problems of one config.
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, path: &str, message: String) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message,
        });
    }

    /// `value` must lie in `lo..=hi`.
    fn range<T>(&mut self, path: &str, value: T, lo: T, hi: T)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if value < lo || value > hi {
            self.push(path, format!("{value} is out of range {lo}..{hi}"));
        }
    }
}

/// Every semantic problem of `cfg`.
pub(super) fn problems(cfg: &Config) -> Vec<ConfigProblem> {
    let mut p = Problems(Vec::new());
    match cfg.store.backend.as_str() {
        "sqlite" => {
            if cfg.store.path.trim().is_empty() {
                p.push("store.path", "must name a file".into());
            }
        }
        "postgres" => match cfg.store.url.as_deref().map(str::trim) {
            None | Some("") => p.push(
                "store.url",
                "is required when store.backend is postgres".into(),
            ),
            Some(u)
                if !(u.starts_with("postgres://")
                    || u.starts_with("postgresql://")
                    || super::redact::is_key_values(u)) =>
            {
                p.push(
                    "store.url",
                    format!(
                        "{} is neither a postgres:// URL nor libpq key=value pairs",
                        super::redact::redact_dsn(u)
                    ),
                )
            }
            Some(_) => {}
        },
        other => p.push(
            "store.backend",
            format!("'{other}' is not a backend (sqlite or postgres)"),
        ),
    }
    let schema = &cfg.store.schema;
    if schema.is_empty()
        || schema.len() > 48
        || !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        p.push(
            "store.schema",
            format!("'{schema}' must be 1..48 lowercase letters, digits or '_'"),
        );
    }
    if !matches!(cfg.store.synchronous.as_str(), "normal" | "full") {
        p.push(
            "store.synchronous",
            format!("'{}' must be normal or full", cfg.store.synchronous),
        );
    }

    let api = &cfg.api;
    let mut names = std::collections::HashSet::new();
    for (i, t) in api.tokens.iter().enumerate() {
        let at = |k: &str| format!("api.tokens[{i}].{k}");
        if let Err(crate::CoreError::InvalidInput { message, .. }) =
            crate::job::validate_name("name", &t.name)
        {
            p.push(&at("name"), message);
        } else if !names.insert(t.name.as_str()) {
            p.push(
                &at("name"),
                format!("'{}' is used by another token", t.name),
            );
        }
        match (&t.token, &t.token_file) {
            (Some(_), Some(_)) => p.push(&at("token"), "set token or token_file, not both".into()),
            (None, None) => p.push(&at("token"), "is required (or token_file)".into()),
            (Some(tok), None) if tok.trim().is_empty() => p.push(&at("token"), "is empty".into()),
            (None, Some(f)) if f.trim().is_empty() => p.push(&at("token_file"), "is empty".into()),
            _ => {}
        }
    }
    if api.listen.parse::<std::net::SocketAddr>().is_err() {
        p.push(
            "api.listen",
            format!("'{}' is not an address like 127.0.0.1:9100", api.listen),
        );
    }
    if api.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        p.push(
            "api.token",
            "is empty: set a token (or api.token_file), or remove the key".into(),
        );
    }
    if api
        .token_file
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        p.push(
            "api.token_file",
            "is empty: name the file holding the token, or remove the key".into(),
        );
    }
    p.range("api.max_body_bytes", api.max_body_bytes, 1024, 64 << 20);

    let w = &cfg.workers;
    p.range("workers.max_workers", w.max_workers, 1, 32);
    p.range("workers.lease_seconds", w.lease_seconds, 1, 86_400);
    p.range(
        "workers.poll_interval_ms",
        w.poll_interval_ms,
        10,
        3_600_000,
    );
    p.range(
        "workers.shutdown_timeout_seconds",
        w.shutdown_timeout_seconds,
        0,
        86_400,
    );
    p.range(
        "workers.job_timeout_seconds",
        w.job_timeout_seconds,
        1,
        MAX_JOB_TIMEOUT_SECONDS,
    );
    for (i, name) in w.shell_env_allow.iter().enumerate() {
        if !is_env_name(name) {
            p.push(
                &format!("workers.shell_env_allow[{i}]"),
                format!("'{name}' is not an environment variable name"),
            );
        }
    }
    for (i, kind) in w.external_kinds.iter().enumerate() {
        if let Err(e) = crate::job::validate_name("kind", kind) {
            let crate::CoreError::InvalidInput { message, .. } = e else {
                continue;
            };
            p.push(&format!("workers.external_kinds[{i}]"), message);
        }
    }

    if !cfg.queue.wal_mode {
        p.push(
            "queue.wal_mode",
            "false is not supported: Fabric always uses WAL".into(),
        );
    }
    p.range(
        "queue.retention_days",
        cfg.queue.retention_days,
        1,
        MAX_RETENTION_DAYS,
    );
    p.range(
        "quarantine.retention_days",
        cfg.quarantine.retention_days,
        1,
        MAX_RETENTION_DAYS,
    );
    p.range(
        "telemetry.retention_days",
        cfg.telemetry.retention_days,
        1,
        MAX_RETENTION_DAYS,
    );
    p.range(
        "reports.retention_days",
        cfg.reports.retention_days,
        1,
        MAX_RETENTION_DAYS,
    );
    p.range(
        "security.audit_retention_days",
        cfg.security.audit_retention_days,
        1,
        MAX_RETENTION_DAYS,
    );
    p.range("recovery.keep", cfg.recovery.keep, 1, MAX_KEEP);
    p.range("logs.max_bytes", cfg.logs.max_bytes, 4096, MAX_LOG_BYTES);
    p.range("logs.keep", cfg.logs.keep, 1, MAX_LOG_FILES);
    p.range("backups.keep", cfg.backups.keep, 1, MAX_KEEP);

    for (prefix, pol) in std::iter::once(("retry".to_string(), &cfg.retry)).chain(
        cfg.retry_policies
            .iter()
            .map(|(k, v)| (format!("retry_policies.{k}"), v)),
    ) {
        for (field, msg) in pol.problems() {
            p.push(&format!("{prefix}.{field}"), msg);
        }
    }

    let n = &cfg.node;
    if crate::job::validate_name("node.id", &n.id).is_err() {
        p.push("node.id", format!("'{}' is not a valid node id", n.id));
    }
    if let Some(c) = n.capacity {
        p.range("node.capacity", c, 1, 10_000);
    }
    p.range("node.heartbeat_ms", n.heartbeat_ms, 50, 60_000);
    if n.timeout_ms <= n.heartbeat_ms {
        p.push(
            "node.timeout_ms",
            format!(
                "{} must be longer than node.heartbeat_ms ({})",
                n.timeout_ms, n.heartbeat_ms
            ),
        );
    } else {
        p.range("node.timeout_ms", n.timeout_ms, 0, 3_600_000);
    }
    p.range("node.leader_lease_ms", n.leader_lease_ms, 300, 3_600_000);
    for (path, message) in cfg.alerts.problems() {
        p.push(&path, message);
    }
    p.0.extend(cfg.bus.problems());
    p.0.extend(crate::slo::problems(&cfg.slo));
    p.0
}

/// A name a process environment can hold: non-empty, no `=` and no NUL.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}
