//! Fabric's HTTP face: `/healthz`, `/metrics` (Prometheus text) and the JSON API under
//! `/api/v1/` for jobs, quarantine and documents here, batches and external workers in their
//! own modules. Every handler calls the Console; mutating calls need a bearer token and are
//! refused when none is configured (fail closed).

mod batches;
mod error;
mod workers;

use std::error::Error as _;
use std::future::Future;
use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fabric_core::config::TokenRole;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::{CoreError, JobState, NewJob};
use fabric_engine::access::{bearer, role_name};
use fabric_engine::console::{Check, Health};
use fabric_engine::{Console, EngineError, Metrics};
use fabric_store::{JobFilter, QuarantineFilter};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use batches::{cancel_batch, list_batches, retry_batch, show_batch, submit_batch};
use workers::{worker_claim, worker_complete, worker_fail, worker_heartbeat};

pub use error::ApiError;
pub use fabric_engine::access::{Access, Credential, Principal};

/// Largest page a listing returns.
const MAX_LIMIT: usize = 1000;

/// Page size of a listing without `limit`.
const DEFAULT_LIMIT: usize = 50;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The daemon's Console; mutations act as `api`.
    pub console: Console,
    /// The daemon's metrics: read for `/metrics`, `/healthz` and status.
    pub metrics: Metrics,
    /// The bearer tokens (`api.token`, `api.tokens`); with none, mutating calls are refused.
    pub access: Access,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// `$FABRIC_HOME`, for the disk check.
    pub home: PathBuf,
    /// The config file the next start loads, and whether `--config` named it (the `config`
    /// check reads it from disk).
    pub config_file: PathBuf,
    pub config_named: bool,
    /// The address the API listens on; [`serve`] sets it (the `api` check probes it).
    pub listen: Option<String>,
    /// The active alerts for `/metrics/summary`, as `{name: {metric, value, routes, since}}`,
    /// from whoever evaluates them (none: `{}`).
    pub alerts: Option<AlertsView>,
    /// The daemon's bus: its depths and counters are exported on `/metrics`.
    pub bus: Option<std::sync::Arc<dyn fabric_bus::Bus>>,
}

/// Reads the active alerts (see [`ApiState::alerts`]).
pub type AlertsView = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn Future<Output = std::result::Result<Value, EngineError>> + Send>,
        > + Send
        + Sync,
>;

type Result<T> = std::result::Result<T, ApiError>;

/// The state every handler gets: one [`ApiState`] behind an `Arc`, so that a request clones a
/// pointer, not the Console, metrics and tokens.
type Shared = std::sync::Arc<ApiState>;

/// The router with every route, the auth layer and the body limit. Reads (`GET`, `HEAD`) are
/// open; every other method needs the bearer token, and is refused when none is configured.
pub fn router(state: ApiState) -> Router {
    let state: Shared = std::sync::Arc::new(state);
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/ping", get(ping))
        .route("/metrics", get(metrics))
        .route("/metrics/summary", get(metrics_summary))
        .route("/api/v1/status", get(status))
        .route("/api/v1/jobs", get(list_jobs).post(submit))
        .route("/api/v1/jobs/{id}", get(show_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/retry", post(retry))
        .route("/api/v1/workers/claim", post(worker_claim))
        .route("/api/v1/workers/heartbeat", post(worker_heartbeat))
        .route("/api/v1/workers/complete", post(worker_complete))
        .route("/api/v1/workers/fail", post(worker_fail))
        .route("/api/v1/batches", get(list_batches).post(submit_batch))
        .route("/api/v1/batches/{id}", get(show_batch))
        .route("/api/v1/batches/{id}/retry", post(retry_batch))
        .route("/api/v1/batches/{id}/cancel", post(cancel_batch))
        .route("/api/v1/quarantine", get(list_quarantine))
        .route("/api/v1/quarantine/stats", get(quarantine_stats))
        .route("/api/v1/quarantine/purge", post(purge))
        .route("/api/v1/quarantine/{id}", get(show_quarantine))
        .route("/api/v1/quarantine/{id}/retry", post(quarantine_retry))
        .route("/api/v1/docs/search", get(search_docs))
        .route("/api/v1/docs/stats", get(docs_stats))
        .route("/api/v1/docs/{id}", get(show_doc))
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone())
        .nest("/ui", fabric_console::router(ui_state(&state)))
        // The console with a trailing slash, as a browser user may type it.
        .route(
            "/ui/",
            get(|| async { axum::response::Redirect::permanent("/ui") }),
        )
}

/// What the web console under `/ui` is given: the same Console, metrics, tokens and bus.
fn ui_state(s: &ApiState) -> fabric_console::UiState {
    fabric_console::UiState::new(fabric_console::UiDeps {
        console: s.console.clone(),
        metrics: s.metrics.clone(),
        access: s.access.clone(),
        bus: s.bus.clone(),
        max_body_bytes: s.max_body_bytes,
    })
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut state = state;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, mutations = state.access.configured(), "api listening");
        state.listen = Some(addr.to_string());
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A JSON body's raw bytes; a body over the limit or one that cannot be read is an [`ApiError`]
/// (413 or 400) with a JSON message, not axum's plain-text rejection.
struct Body(Bytes);

impl FromRequest<Shared> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge {
                        limit: state.max_body_bytes,
                    }
                } else {
                    ApiError::bad("body", e.body_text())
                }
            })
    }
}

/// Query parameters; a bad or unknown one is a 400 naming it (serde's path), as JSON.
struct ApiQuery<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(ApiQuery(q)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad(
                "query",
                e.source()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.body_text()),
            )),
            Err(e) => Err(ApiError::bad("query", e.body_text())),
        }
    }
}

async fn no_route(uri: Uri) -> ApiError {
    EngineError::NotFound {
        what: "route",
        id: uri.path().to_string(),
    }
    .into()
}

/// Lets reads through; a mutating call needs a configured bearer token whose role allows it:
/// `admin` everything, `worker` the external-worker calls only, `read` nothing. The caller is
/// passed on to the handler (see [`Acting`]).
async fn authorize(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    if !state.access.configured() {
        return ApiError::Forbidden.into_response();
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(principal) = given.and_then(|g| state.access.resolve(g)) else {
        return ApiError::Unauthorized.into_response();
    };
    let allowed = match principal.role {
        TokenRole::Admin => true,
        TokenRole::Worker => req.uri().path().starts_with("/api/v1/workers/"),
        TokenRole::Read => false,
    };
    if allowed {
        req.extensions_mut().insert(principal);
        next.run(req).await
    } else {
        ApiError::NotAllowed {
            role: role_name(principal.role),
        }
        .into_response()
    }
}

/// The Console acting as the caller: the name of its token (`api` for `api.token`), recorded
/// in the audit log.
struct Acting(Console);

impl FromRequestParts<Shared> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self> {
        let name = parts
            .extensions
            .get::<Principal>()
            .map_or("api", |p| p.name.as_str());
        Ok(Acting(state.console.as_actor(name)))
    }
}

/// `?check=NAME` runs one check only.
#[derive(Deserialize)]
struct HealthQuery {
    check: Option<String>,
}

/// The checks of `/healthz` and `fabric health`, in order.
pub const CHECKS: [&str; 5] = ["store", "disk", "config", "workers", "api"];

/// Every check's name, in order: [`CHECKS`], then `docs` (the search index) and each source
/// by its name.
pub async fn check_names(console: &Console) -> Vec<String> {
    let mut names: Vec<String> = CHECKS.iter().map(|n| n.to_string()).collect();
    for n in console.health_names().await {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Probes the API at `listen` as a client would: `GET /api/v1/ping` must answer 200 within
/// 2 s. A listening socket whose server no longer answers fails it.
pub async fn probe(listen: &str) -> Check {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut conn = tokio::net::TcpStream::connect(listen).await?;
        conn.write_all(
            format!("GET /api/v1/ping HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 64];
        let n = conn.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ask).await {
        Ok(Ok(head)) if head.starts_with("HTTP/1.1 200") => {
            Check::new("api", "ok", format!("answers on {listen}"))
        }
        Ok(Ok(head)) => Check::new(
            "api",
            "error",
            format!(
                "{listen} answered {:?}, not 200",
                head.lines().next().unwrap_or("nothing")
            ),
        ),
        Ok(Err(e)) => Check::new("api", "error", format!("{listen}: {e}")),
        Err(_) => Check::new("api", "error", format!("{listen}: no answer in 2 s")),
    }
}

async fn ping() -> Json<Value> {
    Json(json!({"pong": true, "version": env!("CARGO_PKG_VERSION")}))
}

async fn healthz(
    State(s): State<Shared>,
    ApiQuery(query): ApiQuery<HealthQuery>,
) -> Result<Response> {
    let input = fabric_engine::HealthInput {
        home: &s.home,
        config_file: &s.config_file,
        config_named: s.config_named,
        daemon_pid: Some(std::process::id()),
        busy: Some(s.metrics.workers_busy.get().max(0) as u64),
        cached_integrity: true,
    };
    let known = check_names(&s.console).await;
    let names: Vec<String> = match query.check.as_deref() {
        None => known,
        Some(name) if known.iter().any(|n| n == name) => vec![name.to_string()],
        Some(name) => {
            return Err(ApiError::bad(
                "check",
                format!("unknown check '{name}' (one of {})", known.join(", ")),
            ))
        }
    };
    let mut checks = Vec::new();
    for name in &names {
        let name = name.as_str();
        if name == "api" {
            checks.push(match &s.listen {
                Some(addr) => probe(addr).await,
                None => Check::new("api", "error", "not listening"),
            });
        } else {
            checks.extend(s.console.health_check(name, &input).await);
        }
    }
    let health = Health::from_checks(checks);
    let code = if health.status == "error" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok((code, Json(health)).into_response())
}

async fn metrics(State(s): State<Shared>) -> Result<Response> {
    s.metrics.set_counts(&s.console.counts().await?);
    s.metrics.set_slo(&s.console.slo_report().await?);
    if let Some(bus) = &s.bus {
        // A bus that is away (Redis down) leaves the last figures; fabric_bus_up says so.
        let snap = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            bus.metrics_snapshot(),
        )
        .await;
        if let Ok(Ok(snap)) = snap {
            s.metrics.set_bus(&snap);
        }
    }
    if let Some(f) = &s.alerts {
        let active = f().await?;
        let names = active
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect::<Vec<_>>());
        s.metrics.set_alerts_firing(names.unwrap_or_default());
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response())
}

/// `{"slo": {name: {total, violations, burn_rate, …}}, "alerts": {name: {metric, value,
/// routes, since}}}` (RUNBOOK-MAP.md §C).
async fn metrics_summary(State(s): State<Shared>) -> Result<Json<Value>> {
    let slo = s.console.slo_report().await?;
    s.metrics.set_slo(&slo);
    let alerts = match &s.alerts {
        Some(f) => f().await.map_err(ApiError::from)?,
        None => json!({}),
    };
    Ok(Json(json!({"slo": slo, "alerts": alerts})))
}

async fn status(State(s): State<Shared>) -> Result<Json<Value>> {
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
#[serde(deny_unknown_fields)]
struct JobsQuery {
    status: Option<String>,
    shard: Option<String>,
    source: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

/// A page size: default 50, capped at 1000.
fn limit(l: Option<usize>) -> Result<usize> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(ApiError::bad("limit", "must be at least 1")),
        n => Ok(n.min(MAX_LIMIT)),
    }
}

/// A `since` cut-off (`30m`, `24h`, `7d` or RFC 3339) in epoch ms.
fn since(console: &Console, s: Option<&str>) -> Result<Option<i64>> {
    s.map(|s| {
        fabric_core::time::parse_since(s, console.now()).map_err(|e| match e {
            // The core names the CLI flag; over HTTP the field is the query parameter.
            CoreError::InvalidInput { message, .. } => ApiError::bad("since", message),
            other => other.into(),
        })
    })
    .transpose()
}

async fn list_jobs(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<Vec<fabric_core::Job>>> {
    let filter = JobFilter {
        state: q.status.as_deref().map(JobState::parse).transpose()?,
        shard: q.shard,
        source: q.source,
        kind: q.kind,
        since: since(&s.console, q.since.as_deref())?,
        limit: limit(q.limit)?,
        ..JobFilter::default()
    };
    Ok(Json(s.console.jobs(filter).await?))
}

/// `{"jobs": [...]}`: many jobs in one all-or-nothing write.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    jobs: Vec<NewJob>,
}

/// One job, or a batch.
enum SubmitBody {
    One(NewJob),
    Many(Batch),
}

impl SubmitBody {
    /// A body with a top-level `jobs` key is a batch. Parsed as the one type it claims to be
    /// (not an untagged enum) so serde's message names the real problem and its position.
    fn parse(body: &[u8]) -> Result<Self> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad("body", e.to_string()))?;
        let zero_attempts = |v: &Value, path: String| {
            NewJob::check_submitted(v).map_err(|e| match e {
                CoreError::InvalidInput { message, .. } => ApiError::bad(path, message),
                other => other.into(),
            })
        };
        if let Some(jobs) = value.get("jobs") {
            for (i, job) in jobs.as_array().into_iter().flatten().enumerate() {
                zero_attempts(job, format!("jobs[{i}].max_attempts"))?;
            }
            parse_json(body).map(SubmitBody::Many)
        } else {
            zero_attempts(&value, "max_attempts".into())?;
            parse_json(body).map(SubmitBody::One)
        }
    }
}

async fn submit(Acting(console): Acting, Body(body): Body) -> Result<Response> {
    match SubmitBody::parse(&body)? {
        SubmitBody::One(job) => {
            let out = console.submit(job).await?;
            let code = if out.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((code, Json(json!({"id": out.id, "created": out.created}))).into_response())
        }
        SubmitBody::Many(Batch { jobs }) => {
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
    positive_id(raw, "job")
}

/// A path's id of a `what` (job, batch): a positive integer.
fn positive_id(raw: &str, what: &str) -> Result<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", format!("'{raw}' is not a {what} id")))
}

async fn show_job(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(s.console.job(job_id(&id)?).await?).into_response())
}

/// Parses a JSON body; an error names the JSON path of the bad value (`priority`,
/// `jobs[1].run_at`), or `body` when the text is not JSON or the object itself is wrong
/// (a missing or unknown key, which serde's message names).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // A top-level array (serde reads a struct from one) is named from `body`.
        let field = match e.path().to_string() {
            p if p == "." || p.is_empty() => "body".to_string(),
            p if p.starts_with('[') => format!("body{p}"),
            p => p,
        };
        ApiError::bad(field, e.into_inner().to_string())
    })?;
    // Trailing text after the value is refused as `serde_json::from_slice` does.
    de.end().map_err(|e| ApiError::bad("body", e.to_string()))?;
    Ok(value)
}

/// Parses an optional JSON body of a POST (an empty body is `{}`).
fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    Acting(console): Acting,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let b: CancelBody = optional_body(&body)?;
    let reason = b.reason.unwrap_or_default();
    let job = console.cancel(job_id(&id)?, &reason).await?;
    Ok(Json(job).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: Option<String>,
}

async fn retry(
    Acting(console): Acting,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    retry_job(&console, &id, &body, false).await
}

/// `POST /api/v1/jobs/{id}/retry` and `POST /api/v1/quarantine/{id}/retry`.
async fn retry_job(console: &Console, id: &str, body: &[u8], quarantine: bool) -> Result<Response> {
    let b: NoteBody = optional_body(body)?;
    let id = job_id(id)?;
    let job = if quarantine {
        console.quarantine_retry(id, b.note.as_deref()).await?
    } else {
        console.retry(id, b.note.as_deref()).await?
    };
    Ok(Json(job).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineQuery {
    reason: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

async fn list_quarantine(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<QuarantineQuery>,
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

/// `GET /api/v1/docs/search?q=&source=&tag=&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocsQuery {
    q: Option<String>,
    source: Option<String>,
    tag: Option<String>,
    limit: Option<usize>,
}

async fn search_docs(
    State(s): State<Shared>,
    ApiQuery(q): ApiQuery<DocsQuery>,
) -> Result<Response> {
    let text = q.q.ok_or_else(|| ApiError::bad("q", "is required"))?;
    let hits = s
        .console
        .docs_search(&text, q.source.as_deref(), q.tag.as_deref(), q.limit)
        .await?;
    Ok(Json(hits).into_response())
}

async fn show_doc(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad("id", format!("'{id}' is not a document id")))?;
    Ok(Json(s.console.doc(id).await?).into_response())
}

async fn docs_stats(State(s): State<Shared>) -> Result<Response> {
    Ok(Json(s.console.docs_stats().await?).into_response())
}

async fn quarantine_stats(State(s): State<Shared>) -> Result<Response> {
    Ok(Json(s.console.quarantine_stats().await?).into_response())
}

async fn show_quarantine(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(s.console.quarantine_entry(job_id(&id)?).await?).into_response())
}

async fn quarantine_retry(
    Acting(console): Acting,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    retry_job(&console, &id, &body, true).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    older_than_days: Option<u32>,
    reason: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn purge(Acting(console): Acting, Body(body): Body) -> Result<Response> {
    let b: PurgeBody = optional_body(&body)?;
    let days = b
        .older_than_days
        .ok_or_else(|| ApiError::bad("older_than_days", "is required"))?;
    let reason = b
        .reason
        .as_deref()
        .map(QuarantineReason::parse)
        .transpose()?;
    let ids = console.quarantine_purge(days, reason, b.dry_run).await?;
    Ok(Json(json!({"ids": ids, "dry_run": b.dry_run})).into_response())
}

#[cfg(test)]
mod tests {
    use super::SubmitBody;

    #[test]
    fn submit_body_is_one_job_or_a_batch_with_precise_errors() {
        assert!(matches!(
            SubmitBody::parse(br#"{"kind": "noop"}"#),
            Ok(SubmitBody::One(_))
        ));
        assert!(matches!(
            SubmitBody::parse(br#"{"jobs": [{"kind": "noop"}]}"#),
            Ok(SubmitBody::Many(_))
        ));
        let err = |b: &[u8]| match SubmitBody::parse(b) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {}", String::from_utf8_lossy(b)),
        };
        assert!(err(br#"{"shard": "a"}"#).contains("missing field `kind`"));
        assert!(err(br#"{"jobs": [{"kind": 1}]}"#).contains("invalid type: integer"));
        assert!(err(br#"{"jobs": [], "kind": "noop"}"#).contains("unknown field `kind`"));
        assert!(err(b"{\"kind\": ").contains("EOF"));
    }
}
