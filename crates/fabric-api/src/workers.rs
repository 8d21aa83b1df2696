//! The API of external workers (`/api/v1/workers/*`): claims with lease tokens (long-polling
//! for work), heartbeats, and completions and failures fenced by the token.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fabric_core::retry::FailureType;
use fabric_engine::external::ExternalClaim;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{parse_json, Acting, ApiError, Body, Result, Shared};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    worker: String,
    kinds: Vec<String>,
    #[serde(default = "one")]
    max: usize,
    #[serde(default)]
    lease_seconds: Option<u64>,
    #[serde(default)]
    wait_seconds: u64,
}

fn one() -> usize {
    1
}

/// `POST /api/v1/workers/claim`: jobs of the worker's kinds, each with its lease token; waits
/// up to `wait_seconds` for work when there is none.
pub(crate) async fn worker_claim(State(s): State<Shared>, Body(body): Body) -> Result<Response> {
    let b: ClaimBody = parse_json(&body)?;
    let jobs = s
        .console
        .external_claim(ExternalClaim {
            worker: b.worker,
            kinds: b.kinds,
            max: b.max,
            lease_seconds: b.lease_seconds,
            wait_seconds: b.wait_seconds,
        })
        .await?;
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    id: i64,
    token: String,
    #[serde(default)]
    lease_seconds: Option<u64>,
}

pub(crate) async fn worker_heartbeat(
    State(s): State<Shared>,
    Body(body): Body,
) -> Result<Response> {
    let b: HeartbeatBody = parse_json(&body)?;
    let until = s
        .console
        .external_heartbeat(b.id, &b.token, b.lease_seconds)
        .await?;
    Ok(Json(json!({"id": b.id, "lease_expires_at": until})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    id: i64,
    token: String,
    #[serde(default)]
    result: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteManyBody {
    jobs: Vec<CompleteBody>,
}

/// `POST /api/v1/workers/complete`: one job (`{id, token, result}`: 409 when its lease is
/// lost), or many in one write (`{"jobs": [...]}`: the ids completed and the ids whose lease
/// was lost).
pub(crate) async fn worker_complete(State(s): State<Shared>, Body(body): Body) -> Result<Response> {
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", e.to_string()))?;
    if value.get("jobs").is_some() {
        let b: CompleteManyBody = parse_json(&body)?;
        let ids: Vec<i64> = b.jobs.iter().map(|j| j.id).collect();
        let done = s
            .console
            .external_complete_many(
                b.jobs
                    .into_iter()
                    .map(|j| (j.id, j.token, j.result))
                    .collect(),
            )
            .await?;
        let lost: Vec<i64> = ids.into_iter().filter(|id| !done.contains(id)).collect();
        return Ok(Json(json!({"completed": done, "lost": lost})).into_response());
    }
    let b: CompleteBody = parse_json(&body)?;
    s.console
        .external_complete(b.id, &b.token, b.result)
        .await?;
    Ok(Json(json!({"id": b.id, "state": "succeeded"})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    id: i64,
    token: String,
    error: String,
    #[serde(default = "transient")]
    failure_type: FailureType,
    #[serde(default)]
    retry_after_seconds: Option<u64>,
}

fn transient() -> FailureType {
    FailureType::Transient
}

pub(crate) async fn worker_fail(Acting(console): Acting, Body(body): Body) -> Result<Response> {
    let b: FailBody = parse_json(&body)?;
    let state = console
        .external_fail(
            b.id,
            &b.token,
            &b.error,
            b.failure_type,
            b.retry_after_seconds.map(std::time::Duration::from_secs),
        )
        .await?;
    Ok(Json(json!({"id": b.id, "state": state})).into_response())
}
