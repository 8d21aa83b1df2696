//! The one error enum of the alerts crate.

use fabric_store::StoreError;

/// What an alerts call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// Bad input from an operator: the field (or argument) and what is wrong with its value.
    #[error("{field}: {message}")]
    InvalidInput { field: String, message: String },
    /// No such alert, silence or route.
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    /// The store failed or cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AlertsError {
    /// Bad input naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A usage error (exit code 2 in the CLI): bad input or an unknown name.
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::InvalidInput { .. } | Self::NotFound { .. })
            || matches!(self, Self::Store(StoreError::NotFound { .. }))
    }
}
