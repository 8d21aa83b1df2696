//! The console's pages, one module per section, and what they share: query parsing that
//! names the bad parameter, and the redirect after an action.

pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod batches;
pub(crate) mod bus;
pub(crate) mod docs;
pub(crate) mod jobs;
pub(crate) mod overview;
pub(crate) mod quarantine;
pub(crate) mod schedules;
pub(crate) mod shards;

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::UiError;
use crate::layout;
use crate::UiState;

pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/jobs", get(jobs::list))
        .route("/jobs/bulk", post(jobs::bulk))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/bulk/{id}", get(jobs::bulk_show))
        .route("/quarantine", get(quarantine::list))
        .route("/quarantine/purge", post(quarantine::purge))
        .route("/quarantine/{id}", get(quarantine::show))
        .route("/quarantine/{id}/retry", post(quarantine::retry))
        .route("/shards", get(shards::list))
        .route("/shards/{name}/{lever}", post(shards::lever))
        .route("/nodes/{id}/{action}", post(shards::node))
        .route("/sources", get(docs::sources))
        .route("/sources/{name}/{action}", post(docs::source_action))
        .route("/docs", get(docs::search))
        .route("/docs/{id}", get(docs::show))
        .route("/batches", get(batches::list))
        .route("/batches/{id}", get(batches::show))
        .route("/batches/{id}/{action}", post(batches::action))
        .route("/schedules", get(schedules::list))
        .route("/schedules/{name}/{action}", post(schedules::action))
        .route("/bus", get(bus::page))
        .route("/alerts", get(alerts::page))
        .route("/alerts/silence", post(alerts::silence))
        .route("/alerts/silences/{id}/expire", post(alerts::unsilence))
        .route("/audit", get(audit::page))
}

/// A positive id from a path.
pub(crate) fn id_of(raw: &str, what: &'static str) -> Result<i64, UiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| UiError::invalid("id", format!("'{raw}' is not a {what} id")))
}

/// Back to `to`, with a message for the banner.
pub(crate) fn done(to: &str, msg: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}msg={}", layout::url_encode(msg))).into_response()
}

/// A query parameter's value, blank as absent.
pub(crate) fn opt(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `since`/`until` (`30m`, `24h`, `7d` or RFC 3339) as epoch ms, the error naming `field`.
pub(crate) fn when(field: &str, v: Option<&str>, now: i64) -> Result<Option<i64>, UiError> {
    v.map(|s| {
        fabric_core::time::parse_since(s, now).map_err(|e| match e {
            fabric_core::CoreError::InvalidInput { message, .. } => {
                UiError::invalid(field, message)
            }
            other => UiError::invalid(field, other.to_string()),
        })
    })
    .transpose()
}
