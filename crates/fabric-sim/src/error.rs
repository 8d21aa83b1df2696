//! The one error enum of the scenario crate.

use std::path::Path;

/// What a run can fail with; the CLI maps [`SimError::is_usage`] to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No built-in scenario of that name.
    #[error("unknown scenario '{name}' (known: {known})")]
    UnknownScenario { name: String, known: String },
    /// Bad input: names the field and the value.
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    /// No checkpoint at that path.
    #[error("no checkpoint at {path}")]
    CheckpointMissing { path: String },
    /// A checkpoint that cannot be read (truncated, malformed).
    #[error("checkpoint {path} is unusable: {detail}")]
    CheckpointCorrupt { path: String, detail: String },
    /// A checkpoint written by another version of the format.
    #[error("checkpoint {path} is version {found}; this fabric reads version {expected}")]
    CheckpointVersion {
        path: String,
        found: u64,
        expected: u32,
    },
    /// A checkpoint holding a value out of bounds: `field` is its JSON path.
    #[error("checkpoint {path}: invalid {field}: {message}")]
    CheckpointInvalid {
        path: String,
        field: String,
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The store or the runtime failed during the run.
    #[error("run failed: {0}")]
    Runtime(String),
}

impl SimError {
    /// Bad input for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SimError::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True for bad input from the operator (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, SimError::Io { .. } | SimError::Runtime(_))
    }
}
