//! The crate's errors: [`IngestError`] for a whole scan, [`ExtractError`] for one file, both
//! carrying the quarantine reason a caller records.

use fabric_core::doc::DocType;
use fabric_core::quarantine::{ErrorKind, Failure, QuarantineReason};
use serde::{Deserialize, Serialize};

/// A scan that could not run at all (per-file problems are [`crate::FileError`]s instead).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The source root is missing, not a directory or unreadable.
    #[error("source root unavailable: {message}")]
    RootUnavailable {
        reason: QuarantineReason,
        message: String,
    },
    /// An include or exclude glob does not parse.
    #[error("invalid glob '{glob}': {message}")]
    InvalidGlob { glob: String, message: String },
}

impl IngestError {
    /// The quarantine reason: `connector_error` for a missing root, `parse_error` for a glob.
    pub fn reason(&self) -> QuarantineReason {
        match self {
            IngestError::RootUnavailable { reason, .. } => *reason,
            IngestError::InvalidGlob { .. } => QuarantineReason::ParseError,
        }
    }

    /// The outcome a failed scan of the source at `root` records (`sources show`, `status`,
    /// health): `reason: message`, with the source root and the user's home redacted as in
    /// every other message (a library's error may quote the absolute path).
    pub fn outcome(&self, root: &str) -> String {
        fabric_engine::sources::redact_user_paths(
            &format!("{}: {self}", self.reason()),
            &[root.to_string()],
        )
    }
}

/// Why one file produced no document. Serializable: the extractor child
/// ([`crate::isolate`]) sends it back over its pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    /// Malformed content: binary under a text extension, invalid UTF-8, bad JSON or CSV.
    #[error("parse error: {0}")]
    Parse(String),
    /// Over the size cap.
    #[error("file of {size} bytes exceeds the cap of {cap} bytes")]
    TooLarge { size: u64, cap: u64 },
    /// Reading the file failed.
    #[error("read failed: {message}")]
    Io {
        reason: QuarantineReason,
        message: String,
    },
    /// A format this process does not parse (HTML, mail, PDF: they belong to the isolated
    /// extractor), or a binary file of no known format: route or skip it, it is not malformed.
    #[error("unsupported here: {what}")]
    Unsupported {
        /// The detected type, when known (route it to the extractor for that type).
        doc_type: Option<DocType>,
        what: String,
    },
    /// The isolated extractor overran its wall-clock time on this file (it was killed).
    #[error("extraction timed out after {seconds} s")]
    Timeout { seconds: u64 },
    /// The isolated extractor hit a resource cap on this file: its memory cap (an allocation
    /// failed), its stack, or the output cap; or it was killed by SIGKILL.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// No extractor child could be started or spoken to: not the file's fault, so the job is
    /// retried rather than quarantined.
    #[error("extractor unavailable: {0}")]
    ExtractorUnavailable(String),
}

impl ExtractError {
    /// The quarantine reason for this failure (`Unsupported` counts as `parse_error` when the
    /// caller has nowhere to route it).
    pub fn reason(&self) -> QuarantineReason {
        match self {
            ExtractError::Parse(_) | ExtractError::Unsupported { .. } => {
                QuarantineReason::ParseError
            }
            ExtractError::TooLarge { .. } | ExtractError::ResourceExhausted(_) => {
                QuarantineReason::ResourceExhausted
            }
            ExtractError::Timeout { .. } => QuarantineReason::Timeout,
            ExtractError::Io { reason, .. } => *reason,
            ExtractError::ExtractorUnavailable(_) => QuarantineReason::DependencyFailure,
        }
    }

    /// The failure as the job engine records it: permanent (the file is quarantined) unless
    /// an I/O error is transient or no extractor could run.
    pub fn failure(&self) -> Failure {
        let kind = match self.reason() {
            QuarantineReason::PermissionDenied => ErrorKind::Permission,
            QuarantineReason::ResourceExhausted => ErrorKind::OutOfMemory,
            QuarantineReason::ConnectorError => ErrorKind::Connector,
            QuarantineReason::Timeout => ErrorKind::Timeout,
            QuarantineReason::ParseError => ErrorKind::Parse,
            QuarantineReason::DependencyFailure => ErrorKind::Dependency,
            _ => ErrorKind::Other,
        };
        Failure {
            permanent: !matches!(
                self,
                ExtractError::Io { .. } | ExtractError::ExtractorUnavailable(_)
            ),
            ..Failure::of(kind, self.to_string())
        }
    }

    /// An I/O error, classified.
    pub fn io(e: &std::io::Error) -> Self {
        ExtractError::Io {
            reason: io_reason(e),
            message: e.to_string(),
        }
    }
}

/// Classifies an I/O error: EACCES → `permission_denied`, a missing file → `connector_error`,
/// no space or memory → `resource_exhausted`, timeouts → `timeout`, bad data → `parse_error`;
/// anything else through the message cascade of [`Failure::reason`].
pub fn io_reason(e: &std::io::Error) -> QuarantineReason {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::PermissionDenied => QuarantineReason::PermissionDenied,
        K::NotFound | K::NotADirectory => QuarantineReason::ConnectorError,
        K::OutOfMemory | K::StorageFull | K::FileTooLarge | K::QuotaExceeded => {
            QuarantineReason::ResourceExhausted
        }
        K::TimedOut => QuarantineReason::Timeout,
        K::InvalidData => QuarantineReason::ParseError,
        _ => Failure::msg(e.to_string()).reason(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn io_errors_map_to_reasons() {
        let r = |k| io_reason(&io::Error::from(k));
        assert_eq!(
            r(io::ErrorKind::PermissionDenied),
            QuarantineReason::PermissionDenied
        );
        assert_eq!(r(io::ErrorKind::NotFound), QuarantineReason::ConnectorError);
        assert_eq!(
            r(io::ErrorKind::StorageFull),
            QuarantineReason::ResourceExhausted
        );
        assert_eq!(r(io::ErrorKind::TimedOut), QuarantineReason::Timeout);
    }

    #[test]
    fn extract_errors_carry_reasons_and_failures() {
        let e = ExtractError::TooLarge { size: 2, cap: 1 };
        assert_eq!(e.reason(), QuarantineReason::ResourceExhausted);
        assert_eq!(e.failure().reason(), QuarantineReason::ResourceExhausted);
        assert!(e.failure().permanent);
        let e = ExtractError::Parse("x".into());
        assert_eq!(e.failure().reason(), QuarantineReason::ParseError);
        let e = ExtractError::Timeout { seconds: 30 };
        assert_eq!(e.failure().reason(), QuarantineReason::Timeout);
        assert!(e.failure().permanent);
        let e = ExtractError::ResourceExhausted("out of memory".into());
        assert_eq!(e.failure().reason(), QuarantineReason::ResourceExhausted);
        assert!(e.failure().permanent);
        let e = ExtractError::ExtractorUnavailable("cannot spawn".into());
        assert!(!e.failure().permanent, "not the file's fault: retried");
        let e = ExtractError::io(&io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.failure().reason(), QuarantineReason::PermissionDenied);
    }
}
