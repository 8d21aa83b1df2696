//! Quarantine reasons and the classification cascade that picks one for a failure.

use serde::{Deserialize, Serialize};

use crate::retry::FailureType;
use crate::CoreError;

/// Why a job was quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    ParseError,
    PermissionDenied,
    ResourceExhausted,
    ConnectorError,
    Timeout,
    InvalidState,
    DependencyFailure,
    RateLimited,
    Unknown,
}

impl QuarantineReason {
    /// Every reason.
    pub const ALL: [QuarantineReason; 9] = [
        QuarantineReason::ParseError,
        QuarantineReason::PermissionDenied,
        QuarantineReason::ResourceExhausted,
        QuarantineReason::ConnectorError,
        QuarantineReason::Timeout,
        QuarantineReason::InvalidState,
        QuarantineReason::DependencyFailure,
        QuarantineReason::RateLimited,
        QuarantineReason::Unknown,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::ParseError => "parse_error",
            QuarantineReason::PermissionDenied => "permission_denied",
            QuarantineReason::ResourceExhausted => "resource_exhausted",
            QuarantineReason::ConnectorError => "connector_error",
            QuarantineReason::Timeout => "timeout",
            QuarantineReason::InvalidState => "invalid_state",
            QuarantineReason::DependencyFailure => "dependency_failure",
            QuarantineReason::RateLimited => "rate_limited",
            QuarantineReason::Unknown => "unknown",
        }
    }

    /// Parses a reason name.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                CoreError::invalid(
                    "reason",
                    format!(
                        "'{s}' is not a quarantine reason (one of {})",
                        Self::ALL.map(|r| r.as_str()).join(", ")
                    ),
                )
            })
    }
}

impl std::fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of an error as a handler reports it, when it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Permission,
    OutOfMemory,
    Timeout,
    Parse,
    Connector,
    InvalidState,
    Dependency,
    /// The handler panicked.
    Panic,
    /// The handler's process was killed by a signal.
    Killed,
    /// Unknown handler kind or unusable payload: retrying cannot help.
    BadInput,
    Other,
}

/// A failed attempt as a handler describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// What went wrong, in words.
    pub message: String,
    /// The error's kind, if known.
    pub kind: Option<ErrorKind>,
    /// An HTTP-like status code, if any.
    pub status: Option<u16>,
    /// Set by a handler that knows retrying cannot help.
    pub permanent: bool,
    /// When the failed service said to retry (an HTTP `Retry-After`), in milliseconds: used
    /// instead of the policy's backoff while attempts remain (see
    /// [`RetryDecision::with_retry_after`](crate::retry::RetryDecision::with_retry_after)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The failure type its reporter declared (an external worker's `failure_type`): wins
    /// over every classification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<FailureType>,
}

impl Failure {
    /// A failure with just a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: None,
            status: None,
            permanent: false,
            retry_after_ms: None,
            declared: None,
        }
    }

    /// The same failure, asking for the next attempt after `delay` (an HTTP `Retry-After`).
    pub fn retry_after(mut self, delay: std::time::Duration) -> Self {
        self.retry_after_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// A failure of a known kind.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind: Some(kind),
            ..Self::msg(message)
        }
    }

    /// Classifies into a quarantine reason: the error's kind first, then the status code,
    /// then words in the message.
    pub fn reason(&self) -> QuarantineReason {
        use QuarantineReason as R;
        match self.kind {
            Some(ErrorKind::Permission) => return R::PermissionDenied,
            Some(ErrorKind::OutOfMemory) => return R::ResourceExhausted,
            Some(ErrorKind::Timeout) => return R::Timeout,
            Some(ErrorKind::Parse) | Some(ErrorKind::BadInput) => return R::ParseError,
            Some(ErrorKind::Connector) => return R::ConnectorError,
            Some(ErrorKind::InvalidState) => return R::InvalidState,
            Some(ErrorKind::Dependency) => return R::DependencyFailure,
            _ => {}
        }
        match self.status {
            Some(429) => return R::RateLimited,
            Some(502..=504) => return R::Timeout,
            Some(401 | 403 | 404) => return R::PermissionDenied,
            _ => {}
        }
        let m = self.message.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if has(&["permission", "access denied", "forbidden", "unauthorized"]) {
            R::PermissionDenied
        } else if has(&["rate limit", "too many requests"]) {
            R::RateLimited
        } else if has(&["timed out", "timeout", "deadline"]) {
            R::Timeout
        } else if has(&[
            "out of memory",
            "no space",
            "disk full",
            "resource",
            "memory",
        ]) {
            R::ResourceExhausted
        } else if has(&[
            "parse",
            "decode",
            "malformed",
            "invalid json",
            "syntax",
            "utf-8",
        ]) {
            R::ParseError
        } else if has(&[
            "connection",
            "connector",
            "refused",
            "unreachable",
            "reset by peer",
        ]) {
            R::ConnectorError
        } else if has(&["dependency", "upstream"]) {
            R::DependencyFailure
        } else if has(&["invalid state", "state"]) {
            R::InvalidState
        } else {
            R::Unknown
        }
    }

    /// The failure type that decides retrying.
    pub fn failure_type(&self) -> FailureType {
        if let Some(t) = self.declared {
            return t;
        }
        if self.permanent {
            return FailureType::Permanent;
        }
        match self.kind {
            Some(
                ErrorKind::Permission
                | ErrorKind::Parse
                | ErrorKind::BadInput
                | ErrorKind::InvalidState,
            ) => return FailureType::Permanent,
            Some(
                ErrorKind::Timeout
                | ErrorKind::Connector
                | ErrorKind::Killed
                | ErrorKind::OutOfMemory
                | ErrorKind::Dependency,
            ) => return FailureType::Transient,
            _ => {}
        }
        match self.status {
            Some(429) => FailureType::RateLimited,
            Some(401 | 403 | 404) => FailureType::Permanent,
            Some(s) if s >= 500 => FailureType::Transient,
            _ => match self.reason() {
                QuarantineReason::RateLimited => FailureType::RateLimited,
                QuarantineReason::Timeout | QuarantineReason::ConnectorError => {
                    FailureType::Transient
                }
                _ => FailureType::Unknown,
            },
        }
    }
}

/// Replaces the user's home and configured roots in `text` with placeholders.
pub fn redact_paths(text: &str, home: Option<&str>, roots: &[String]) -> String {
    let mut out = text.to_string();
    for root in roots.iter().filter(|r| r.len() > 1) {
        out = out.replace(root.as_str(), "<root>");
    }
    if let Some(h) = home.filter(|h| h.len() > 1) {
        out = out.replace(h, "~");
    }
    out
}

/// [`redact_paths`] applied to every string in `v`.
pub fn redact_json(v: &mut serde_json::Value, home: Option<&str>, roots: &[String]) {
    use serde_json::Value;
    match v {
        Value::String(s) => *s = redact_paths(s, home, roots),
        Value::Array(a) => a.iter_mut().for_each(|v| redact_json(v, home, roots)),
        Value::Object(m) => m.values_mut().for_each(|v| redact_json(v, home, roots)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_redaction_reaches_nested_strings_only() {
        let mut v = serde_json::json!({"root": "/srv/notes", "files": [{"path": "/home/ada/x"}],
                                       "n": 3});
        redact_json(&mut v, Some("/home/ada"), &["/srv/notes".to_string()]);
        assert_eq!(
            v,
            serde_json::json!({"root": "<root>", "files": [{"path": "~/x"}], "n": 3})
        );
    }

    #[test]
    fn cascade_prefers_kind_then_status_then_text() {
        let mut f = Failure::msg("connection refused");
        assert_eq!(f.reason(), QuarantineReason::ConnectorError);
        f.status = Some(429);
        assert_eq!(f.reason(), QuarantineReason::RateLimited);
        f.kind = Some(ErrorKind::Permission);
        assert_eq!(f.reason(), QuarantineReason::PermissionDenied);
        assert_eq!(
            Failure {
                status: Some(503),
                ..Failure::msg("x")
            }
            .reason(),
            QuarantineReason::Timeout
        );
        assert_eq!(
            Failure {
                status: Some(404),
                ..Failure::msg("x")
            }
            .reason(),
            QuarantineReason::PermissionDenied
        );
        assert_eq!(
            Failure::msg("could not parse header").reason(),
            QuarantineReason::ParseError
        );
        assert_eq!(Failure::msg("boom").reason(), QuarantineReason::Unknown);
    }

    #[test]
    fn failure_types() {
        assert_eq!(
            Failure {
                status: Some(429),
                ..Failure::msg("x")
            }
            .failure_type(),
            FailureType::RateLimited
        );
        assert_eq!(
            Failure::of(ErrorKind::Permission, "x").failure_type(),
            FailureType::Permanent
        );
        assert_eq!(
            Failure::of(ErrorKind::Timeout, "x").failure_type(),
            FailureType::Transient
        );
        assert_eq!(Failure::msg("boom").failure_type(), FailureType::Unknown);
        let later = Failure::msg("x").retry_after(std::time::Duration::from_secs(7));
        assert_eq!(later.retry_after_ms, Some(7_000));
        assert_eq!(Failure::msg("x").retry_after_ms, None);
        // Stored failures from before the field still read.
        let old: Failure =
            serde_json::from_str(r#"{"message":"m","kind":null,"status":null,"permanent":false}"#)
                .unwrap();
        assert_eq!(old, Failure::msg("m"));
        assert_eq!(
            Failure {
                permanent: true,
                ..Failure::msg("x")
            }
            .failure_type(),
            FailureType::Permanent
        );
    }

    #[test]
    fn redaction_hides_home_and_roots() {
        let s = redact_paths(
            "open /home/ann/docs/a.txt and /srv/data/x",
            Some("/home/ann"),
            &["/srv/data".into()],
        );
        assert_eq!(s, "open ~/docs/a.txt and <root>/x");
        assert!(QuarantineReason::parse("nope")
            .unwrap_err()
            .to_string()
            .contains("parse_error"));
    }
}
