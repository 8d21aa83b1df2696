//! HTTP API tests: a real server on a loopback port over a real SQLite store, driven by a
//! real HTTP client.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use fabric_api::ApiState;
use fabric_core::config::Config;
use fabric_core::RealClock;
use fabric_engine::{Console, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Server {
    base: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(token: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap());
    let console = Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(Config::default()),
        Arc::new(RealClock),
        "test",
    );
    let state = ApiState {
        console,
        metrics: Metrics::new(),
        token: token.map(String::from),
        max_body_bytes: 64 * 1024,
        home: dir.path().to_path_buf(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(fabric_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        store,
        http: reqwest::Client::new(),
        _dir: dir,
        _stop: stop,
    }
}

impl Server {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let code = r.status();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: String) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let code = r.status();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn jobs(&self) -> u64 {
        self.store.counts().await.unwrap().total()
    }
}

#[tokio::test]
async fn healthz_reports_every_check() {
    let s = server(None).await;
    let (code, body) = s.get("/healthz").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "ok", "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["store", "disk", "config", "workers", "api"]);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let s = server(Some("t")).await;
    s.post(
        "/api/v1/jobs",
        Some("t"),
        json!({"kind": "noop"}).to_string(),
    )
    .await;
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    assert!(text.contains("fabric_jobs{state=\"pending\"} 1"), "{text}");
    assert!(text.contains("fabric_jobs_enqueued_total"), "{text}");
    assert!(
        text.contains("fabric_job_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("fabric_worker_utilization"), "{text}");
}

#[tokio::test]
async fn submit_with_the_token_then_list_show_cancel() {
    let s = server(Some("s3cret")).await;
    let job = json!({"kind": "sleep", "payload": {"ms": 10}, "priority": 3}).to_string();
    let (code, body) = s.post("/api/v1/jobs", Some("s3cret"), job).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let (code, list) = s.get("/api/v1/jobs?status=pending&limit=10").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list[0]["id"], id);
    let (_, shown) = s.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(shown["payload"]["ms"], 10);
    let cancel = json!({"reason": "test"}).to_string();
    let path = format!("/api/v1/jobs/{id}/cancel");
    let (code, body) = s.post(&path, Some("s3cret"), cancel.clone()).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cancelled");
    let (code, _) = s.post(&path, Some("s3cret"), cancel).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let many = json!({"jobs": [{"kind": "noop"}, {"kind": "noop"}]}).to_string();
    let (code, body) = s.post("/api/v1/jobs", Some("s3cret"), many).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["ids"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_changes_nothing() {
    let s = server(Some("s3cret")).await;
    let job = json!({"kind": "noop"}).to_string();
    let (code, body) = s.post("/api/v1/jobs", None, job.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let (code, _) = s.post("/api/v1/jobs", Some("s3cre"), job.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = s.post("/api/v1/jobs", Some("s3cret-and-more"), job).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(s.jobs().await, 0);
}

#[tokio::test]
async fn without_a_configured_token_mutations_are_disabled() {
    let s = server(None).await;
    let (code, body) = s
        .post(
            "/api/v1/jobs",
            Some("anything"),
            json!({"kind": "noop"}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("api.token"));
    assert_eq!(s.jobs().await, 0);
    // Reads still work.
    assert_eq!(s.get("/api/v1/jobs").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_400_413_or_404_and_writes_nothing() {
    let s = server(Some("t")).await;
    let (code, body) = s
        .post(
            "/api/v1/jobs",
            Some("t"),
            json!({"kind": "nope"}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("unknown handler kind"));
    let (code, body) = s
        .post("/api/v1/jobs", Some("t"), "{\"kind\": ".into())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let big = json!({"kind": "noop", "payload": {"x": "y".repeat(100_000)}}).to_string();
    let (code, _) = s.post("/api/v1/jobs", Some("t"), big).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    let (code, _) = s.get("/api/v1/jobs/999").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = s.get("/api/v1/jobs?since=yesterday").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");
    let (code, _) = s.get("/api/v1/jobs?status=done").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(s.jobs().await, 0);
}

#[tokio::test]
async fn quarantine_endpoints_on_an_empty_store() {
    let s = server(Some("t")).await;
    let (code, list) = s.get("/api/v1/quarantine?reason=timeout").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list, json!([]));
    let (code, stats) = s.get("/api/v1/quarantine/stats").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(stats["total"], 0);
    let (code, _) = s.get("/api/v1/quarantine/5").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = s
        .post(
            "/api/v1/quarantine/purge",
            Some("t"),
            json!({"older_than_days": 30, "dry_run": true}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, json!({"ids": [], "dry_run": true}));
    let (code, _) = s
        .post("/api/v1/quarantine/purge", Some("t"), "{}".into())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}
