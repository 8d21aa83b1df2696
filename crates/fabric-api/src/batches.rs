//! The batches API (`/api/v1/batches`): submit a batch with its dependencies, list, show,
//! retry and cancel.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fabric_engine::batches::{BatchInput, OnComplete};
use fabric_engine::EngineError;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    limit, optional_body, parse_json, positive_id, Acting, ApiQuery, Body, CancelBody, Result,
    Shared,
};

/// `POST /api/v1/batches`: `{"items": [...], "name"?, "on_complete"?: {"kind", "payload"?}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    items: Vec<Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    on_complete: Option<OnCompleteBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnCompleteBody {
    kind: String,
    #[serde(default)]
    payload: Option<Value>,
}

pub(crate) async fn submit_batch(Acting(console): Acting, Body(body): Body) -> Result<Response> {
    let b: BatchBody = parse_json(&body)?;
    let on_complete = b.on_complete.map(|c| OnComplete {
        kind: c.kind,
        payload: c.payload.unwrap_or_else(|| json!({})),
    });
    let out = console
        .submit_batch(BatchInput::Items(b.items), b.name, on_complete)
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn batch_id(raw: &str) -> Result<i64> {
    positive_id(raw, "batch")
}

pub(crate) async fn show_batch(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(Json(s.console.batch(batch_id(&id)?).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list_batches(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<BatchListQuery>,
) -> Result<Response> {
    let state = q
        .state
        .as_deref()
        .map(fabric_core::batch::BatchState::parse)
        .transpose()
        .map_err(EngineError::from)?;
    Ok(Json(s.console.batches(state, limit(q.limit)?).await?).into_response())
}

pub(crate) async fn retry_batch(
    Acting(console): Acting,
    Path(id): Path<String>,
) -> Result<Response> {
    let out = console.retry_batch(batch_id(&id)?).await?;
    Ok(Json(out).into_response())
}

pub(crate) async fn cancel_batch(
    Acting(console): Acting,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let b: CancelBody = optional_body(&body)?;
    let out = console
        .cancel_batch(batch_id(&id)?, &b.reason.unwrap_or_default())
        .await?;
    Ok(Json(out).into_response())
}
