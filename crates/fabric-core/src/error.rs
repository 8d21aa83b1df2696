//! The one error enum of `fabric-core`.

/// Errors of the pure domain layer; each names the bad field or value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    /// Input that does not fit the model (names the field and the value).
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    /// A job state change that the lifecycle table does not allow.
    #[error("illegal transition of job {id}: {from} -> {to}")]
    IllegalTransition {
        id: i64,
        from: &'static str,
        to: &'static str,
    },
    /// An action that the record's current state does not allow (a cancel of a batch that
    /// has ended, say): the message names the record and its state.
    #[error("{0}")]
    StateConflict(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidInput`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }
}
