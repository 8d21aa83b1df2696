//! The bus's side of its configuration: the `bus:` types live in `fabric_core::config` (so the
//! config file is checked in one place); here the secret is read (from the environment, the
//! config or a file) and a config is refused with a `BusError` naming the bad key.

use fabric_core::config::{BusConfig, Secret, SigningConfig, StreamNames};

use crate::{BusError, Lane};

/// The configured name of `lane`.
pub(crate) fn stream_name(names: &StreamNames, lane: Lane) -> &str {
    match lane {
        Lane::Normal => &names.normal,
        Lane::Emergency => &names.emergency,
        Lane::Telemetry => &names.telemetry,
        Lane::Policy => &names.policy,
        Lane::DeadLetter => &names.dead_letter,
    }
}

fn bad(field: &str, reason: String) -> BusError {
    BusError::Config {
        field: field.to_string(),
        reason,
    }
}

/// Checks every value of `config`; the error names the first bad key and its value.
pub fn validate(config: &BusConfig) -> Result<(), BusError> {
    match config.problems().into_iter().next() {
        Some(p) => Err(bad(&p.path, p.message)),
        None => Ok(()),
    }
}

/// The signing secret: `env` (the environment variable's value) first, then `secret`, then
/// `secret_file` (trailing newline ignored).
pub fn resolve_secret(config: &SigningConfig, env: Option<String>) -> Result<String, BusError> {
    if let Some(s) = env {
        return Ok(s);
    }
    if let Some(Secret(s)) = &config.secret {
        return Ok(s.clone());
    }
    let Some(path) = &config.secret_file else {
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
