//! The one error enum of the engine crate.

use fabric_core::CoreError;
use fabric_store::StoreError;

/// What an engine or Console call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad input from the operator: names the field and the value (exit code 2).
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    /// No such job or record (exit code 2: the operator named something that is not there).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The action is not allowed in the current state (exit code 1).
    #[error("{0}")]
    Conflict(String),
    /// The store or a resource cannot be reached (exit code 1).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else that failed on the way (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl EngineError {
    /// Bad operator input for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// True when the caller gave bad input (CLI exit code 2, HTTP 4xx).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidInput { .. } | EngineError::NotFound { .. }
        )
    }
}

impl From<CoreError> for EngineError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidInput { field, message } => {
                EngineError::InvalidInput { field, message }
            }
            other @ (CoreError::IllegalTransition { .. } | CoreError::StateConflict(_)) => {
                EngineError::Conflict(other.to_string())
            }
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => EngineError::NotFound { what, id },
            StoreError::Invalid(c) => c.into(),
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Backend(m) | StoreError::Schema(m) => EngineError::Failed(m),
        }
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Failed(e.to_string())
    }
}
