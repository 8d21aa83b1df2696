//! Fabric's HTTP face: `/healthz`, `/metrics` (Prometheus text) and the JSON API under
//! `/api/v1/` for jobs and quarantine. Every handler calls the Console; mutating calls need a
//! bearer token and are refused when none is configured (fail closed).

mod error;

use std::future::Future;
use std::path::PathBuf;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{JobState, NewJob};
use fabric_engine::console::{Check, Health};
use fabric_engine::{Console, Metrics};
use fabric_store::{JobFilter, QuarantineFilter};
use serde::Deserialize;
use serde_json::{json, Value};

pub use error::ApiError;

/// Largest page a listing returns.
const MAX_LIMIT: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The daemon's Console; mutations act as `api`.
    pub console: Console,
    pub metrics: Metrics,
    /// Bearer token for mutating calls; `None` disables them.
    pub token: Option<String>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// `$FABRIC_HOME`, for the disk check.
    pub home: PathBuf,
}

type Result<T> = std::result::Result<T, ApiError>;

/// The router with every route, the auth layer and the body limit.
pub fn router(state: ApiState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/jobs", get(list_jobs).post(submit))
        .route("/api/v1/jobs/{id}", get(show_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/retry", post(retry))
        .route("/api/v1/quarantine", get(list_quarantine))
        .route("/api/v1/quarantine/stats", get(quarantine_stats))
        .route("/api/v1/quarantine/purge", post(purge))
        .route("/api/v1/quarantine/{id}", get(show_quarantine))
        .route("/api/v1/quarantine/{id}/retry", post(quarantine_retry))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Lets reads through; a mutating call needs the configured bearer token.
async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let Some(token) = &state.token else {
        return ApiError::Forbidden.into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

async fn healthz(State(s): State<ApiState>) -> Response {
    let mut checks = s.console.health_checks(&s.home).await;
    checks.push(Check::new(
        "workers",
        "ok",
        format!(
            "{} of {} worker slots busy ({:.0}%)",
            s.metrics.workers_busy.get(),
            s.metrics.workers_max.get(),
            s.metrics.utilization() * 100.0
        ),
    ));
    checks.push(Check::new("api", "ok", "serving"));
    let health = Health::from_checks(checks);
    let code = if health.status == "error" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(health)).into_response()
}

async fn metrics(State(s): State<ApiState>) -> Result<Response> {
    s.metrics.set_counts(&s.console.counts().await?);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response())
}

async fn status(State(s): State<ApiState>) -> Result<Json<Value>> {
    let queue = s.console.counts().await?;
    Ok(Json(json!({
        "queue": queue,
        "workers": {
            "active": s.metrics.workers_busy.get(),
            "max": s.metrics.workers_max.get(),
            "utilization": s.metrics.utilization(),
        },
        "backend": s.console.store().backend(),
    })))
}

#[derive(Deserialize)]
struct JobsQuery {
    status: Option<String>,
    shard: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

fn limit(l: Option<usize>) -> Result<usize> {
    match l.unwrap_or(50) {
        0 => Err(ApiError::bad("limit", "must be at least 1")),
        n => Ok(n.min(MAX_LIMIT)),
    }
}

fn since(console: &Console, s: Option<&str>) -> Result<Option<i64>> {
    s.map(|s| fabric_core::time::parse_since(s, console.now()).map_err(ApiError::from))
        .transpose()
}

async fn list_jobs(
    State(s): State<ApiState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<fabric_core::Job>>> {
    let filter = JobFilter {
        state: q.status.as_deref().map(JobState::parse).transpose()?,
        shard: q.shard,
        source: q.source,
        kind: q.kind,
        since: since(&s.console, q.since.as_deref())?,
        limit: limit(q.limit)?,
    };
    Ok(Json(s.console.jobs(filter).await?))
}

/// One job, or `{"jobs": [...]}` for many in one write.
#[derive(Deserialize)]
#[serde(untagged)]
enum SubmitBody {
    Many { jobs: Vec<NewJob> },
    One(NewJob),
}

async fn submit(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Response> {
    let body: SubmitBody = serde_json::from_slice(&body).map_err(|e| {
        // Re-parse as one job for serde's precise message (field and position).
        match serde_json::from_slice::<NewJob>(&body) {
            Err(one) => ApiError::bad("body", one.to_string()),
            Ok(_) => ApiError::bad("body", e.to_string()),
        }
    })?;
    let console = s.console.as_actor("api");
    match body {
        SubmitBody::One(job) => {
            let out = console.submit(job).await?;
            let code = if out.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, Json(json!({"id": out.id, "created": out.created}))).into_response())
        }
        SubmitBody::Many { jobs } => {
            if jobs.is_empty() {
                return Err(ApiError::bad("jobs", "must not be empty"));
            }
            let out = console.submit_many(jobs).await?;
            let ids: Vec<i64> = out.iter().map(|o| o.id).collect();
            Ok((StatusCode::CREATED, Json(json!({"ids": ids}))).into_response())
        }
    }
}

fn job_id(raw: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", format!("'{raw}' is not a job id")))
}

async fn show_job(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(s.console.job(job_id(&id)?).await?).into_response())
}

/// Parses an optional JSON body of a POST (an empty body is `{}`).
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad("body", e.to_string()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let b: CancelBody = optional_body(&body)?;
    let reason = b.reason.unwrap_or_default();
    let job = s
        .console
        .as_actor("api")
        .cancel(job_id(&id)?, &reason)
        .await?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: Option<String>,
}

async fn retry(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let b: NoteBody = optional_body(&body)?;
    let job = s
        .console
        .as_actor("api")
        .retry(job_id(&id)?, b.note.as_deref())
        .await?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize)]
struct QuarantineQuery {
    reason: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn list_quarantine(
    State(s): State<ApiState>,
    Query(q): Query<QuarantineQuery>,
) -> Result<Response> {
    let filter = QuarantineFilter {
        reason: q
            .reason
            .as_deref()
            .map(QuarantineReason::parse)
            .transpose()?,
        since: since(&s.console, q.since.as_deref())?,
        limit: limit(q.limit)?,
    };
    Ok(Json(s.console.quarantine(filter).await?).into_response())
}

async fn quarantine_stats(State(s): State<ApiState>) -> Result<Response> {
    Ok(Json(s.console.quarantine_stats().await?).into_response())
}

async fn show_quarantine(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(s.console.quarantine_entry(job_id(&id)?).await?).into_response())
}

async fn quarantine_retry(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let b: NoteBody = optional_body(&body)?;
    let job = s
        .console
        .as_actor("api")
        .quarantine_retry(job_id(&id)?, b.note.as_deref())
        .await?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    older_than_days: Option<u32>,
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn purge(State(s): State<ApiState>, body: axum::body::Bytes) -> Result<Response> {
    let b: PurgeBody = optional_body(&body)?;
    let days = b
        .older_than_days
        .ok_or_else(|| ApiError::bad("older_than_days", "is required"))?;
    let reason = b
        .reason
        .as_deref()
        .map(QuarantineReason::parse)
        .transpose()?;
    let ids = s
        .console
        .as_actor("api")
        .quarantine_purge(days, reason, b.dry_run)
        .await?;
    Ok(Json(json!({"ids": ids, "dry_run": b.dry_run})).into_response())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison_needs_an_exact_match() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
    }
}
