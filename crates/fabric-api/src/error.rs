//! The one error enum of the API crate, and the one place errors become status codes.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fabric_core::CoreError;
use fabric_engine::EngineError;
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or body value is bad (names the field).
    #[error("invalid {field}: {message}")]
    BadRequest { field: String, message: String },
    /// No or wrong bearer token on a mutating call.
    #[error("a valid bearer token is required (Authorization: Bearer <api.token>)")]
    Unauthorized,
    /// Mutating calls are disabled because no token is configured.
    #[error("mutating API calls are disabled: set api.token, api.token_file or api.tokens")]
    Forbidden,
    /// The token is valid but its role does not allow this call.
    #[error("a token of role '{role}' may not make this call")]
    NotAllowed { role: &'static str },
    /// The request body is larger than `api.max_body_bytes`.
    #[error("request body is larger than {limit} bytes (api.max_body_bytes)")]
    TooLarge { limit: usize },
    /// What the Console said.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ApiError {
    /// A bad `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError::Engine(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::NotAllowed { .. } => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Engine(EngineError::InvalidInput { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Engine(EngineError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ApiError::Engine(EngineError::Conflict(_)) => StatusCode::CONFLICT,
            ApiError::Engine(EngineError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Engine(EngineError::Failed(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "api request failed");
        } else if status == StatusCode::UNAUTHORIZED {
            tracing::warn!("api: mutating request without a valid bearer token refused");
        }
        let body = Json(json!({"error": self.to_string()}));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
