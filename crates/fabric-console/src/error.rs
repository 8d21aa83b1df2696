//! The console's one error type, shown to the operator as a page whose status code comes
//! from exactly one `match`.

use axum::extract::OriginalUri;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fabric_engine::EngineError;
use maud::html;

/// Why a page or an action failed.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Not signed in (tokens are configured).
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but this token's role may not do it.
    #[error("{0}")]
    Forbidden(String),
    /// A POST without the page's CSRF token.
    #[error("refused: the form's CSRF token is missing or wrong (reload the page and try again)")]
    Csrf,
    /// A bad form field or query parameter, named.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// A page or action reached with the wrong method (an action URL typed in the browser).
    #[error("{method} {path} is not a page: it is an action, taken with its form's button")]
    MethodNotAllowed { method: String, path: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl UiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Engine(e) => match e {
                EngineError::NotFound { .. } => StatusCode::NOT_FOUND,
                EngineError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
                EngineError::Conflict(_) => StatusCode::CONFLICT,
                EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                EngineError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = html! {
            (maud::DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Fabric: " (status.as_u16()) }
                    link rel="stylesheet" href="/ui/assets/app.css";
                }
                body {
                    main.narrow {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p.error-message data-status=(status.as_u16()) { (self.to_string()) }
                        p { a href="/ui" { "Back to the overview" } " · " a href="/ui/login" { "Sign in" } }
                    }
                }
            }
        };
        (status, body).into_response()
    }
}

/// The path as the browser asked for it (`/ui/…`: the nested router sees it without `/ui`).
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    OriginalUri(uri): OriginalUri,
) -> UiError {
    UiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}

pub(crate) async fn not_found(OriginalUri(uri): OriginalUri) -> UiError {
    UiError::NotFound {
        what: "page",
        id: uri.path().to_string(),
    }
}
