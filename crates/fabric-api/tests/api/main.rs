//! HTTP API tests: a real server on a loopback port over a real SQLite store, driven by a
//! real HTTP client.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod fuzz;
mod workflows;

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
    server_with(token, Config::default(), None).await
}

/// A server of `config`, with `file` as the config file on disk the next start would load.
async fn server_with(token: Option<&str>, config: Config, file: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    if let Some(text) = file {
        std::fs::write(dir.path().join("fabric.yaml"), text).unwrap();
    }
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap());
    let tokens = config
        .api
        .tokens
        .iter()
        .map(|t| fabric_api::Credential {
            name: t.name.clone(),
            secret: t.token.clone().unwrap_or_default(),
            role: t.role,
        })
        .collect();
    let console = Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(config),
        Arc::new(RealClock),
        "test",
    );
    let state = ApiState {
        console,
        metrics: Metrics::new(),
        access: fabric_api::Access::new(token.map(String::from), tokens),
        max_body_bytes: 64 * 1024,
        home: dir.path().to_path_buf(),
        config_file: dir.path().join("fabric.yaml"),
        config_named: false,
        listen: None,
        alerts: None,
        bus: None,
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

    /// A raw POST, for tests that look at headers.
    async fn post_raw(&self, path: &str, auth: Option<&str>, body: String) -> reqwest::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
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
    let checks = body["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["store", "disk", "config", "workers", "api", "docs"]);
    for c in checks {
        assert!(c["detail"].is_string(), "{c}");
        // Only the disk check depends on the machine (it warns under 5 GiB free).
        if c["name"] != "disk" {
            assert_eq!(c["status"], "ok", "{c}");
        }
    }
    let disk = &checks[1]["status"];
    assert_eq!(body["status"], *disk, "{body}");
    // The API answered a real request to itself.
    assert!(
        checks[4]["detail"]
            .as_str()
            .unwrap()
            .starts_with("answers on 127.0.0.1:"),
        "{body}"
    );
    // A probe reads the last full integrity check (run in the background) with its age.
    let mut store = Value::Null;
    for _ in 0..500 {
        store = s.get("/healthz?check=store").await.1["checks"][0].clone();
        if store["detail"]
            .as_str()
            .unwrap()
            .contains("integrity ok (full check")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        store["detail"].as_str().unwrap().contains("s ago)"),
        "{store}"
    );
    // One check by name; an unknown name is refused naming the field.
    let (code, one) = s.get("/healthz?check=workers").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(one["checks"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["checks"][0]["name"], "workers");
    let (code, bad) = s.get("/healthz?check=nope").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("check"), "{bad}");
}

#[tokio::test]
async fn healthz_is_503_when_a_check_fails() {
    // The file the next start loads is broken (the running config is fine).
    let s = server_with(
        None,
        Config::default(),
        Some("store:\n  synchronous: sometimes\n"),
    )
    .await;
    let (code, body) = s.get("/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "error");
    assert_eq!(body["checks"][2]["status"], "error", "{body}");
    assert!(
        body["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("store.synchronous"),
        "{body}"
    );
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
async fn named_tokens_do_what_their_role_allows() {
    use fabric_core::config::{ApiToken, TokenRole};
    let mut config = Config::default();
    config.workers.external_kinds = vec!["ocr".into()];
    let named = |name: &str, secret: &str, role| ApiToken {
        name: name.into(),
        token: Some(secret.into()),
        token_file: None,
        role,
    };
    config.api.tokens = vec![
        named("py", "w0rker", TokenRole::Worker),
        named("grafana", "r3ader", TokenRole::Read),
        named("ops", "4dmin", TokenRole::Admin),
    ];
    // No `api.token`: the named tokens alone enable mutating calls.
    let s = server_with(None, config, None).await;
    let job = json!({"kind": "ocr"}).to_string();
    let claim = json!({"worker": "py-1", "kinds": ["ocr"]}).to_string();
    let (code, body) = s.post("/api/v1/jobs", Some("w0rker"), job.clone()).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "a worker token may not submit");
    assert!(
        body["error"].as_str().unwrap().contains("role 'worker'"),
        "{body}"
    );
    let (code, _) = s.post("/api/v1/jobs", Some("r3ader"), job.clone()).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = s
        .post("/api/v1/workers/claim", Some("r3ader"), claim.clone())
        .await;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "only worker or admin tokens claim"
    );
    assert_eq!(s.jobs().await, 0);
    let (code, _) = s.post("/api/v1/jobs", Some("4dmin"), job).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, body) = s
        .post("/api/v1/workers/claim", Some("w0rker"), claim.clone())
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
    let (code, _) = s
        .post("/api/v1/workers/claim", Some("4dmin"), claim.clone())
        .await;
    assert_eq!(code, StatusCode::OK, "admin may claim too");
    let (code, _) = s.post("/api/v1/workers/claim", Some("nobody"), claim).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_changes_nothing() {
    let s = server(Some("s3cret")).await;
    let job = json!({"kind": "noop"}).to_string();
    let r = s.post_raw("/api/v1/jobs", None, job.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let r = s
        .post_raw("/api/v1/jobs", Some("Basic s3cret"), job.clone())
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
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
    let (code, body) = s.post("/api/v1/jobs", Some("t"), big).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"].as_str().unwrap().contains("max_body_bytes"),
        "{body}"
    );
    let (code, _) = s.get("/api/v1/jobs/999").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(s.jobs().await, 0);
}

#[tokio::test]
async fn bad_query_values_are_400_naming_the_field() {
    let s = server(None).await;
    for (query, field) in [
        ("since=yesterday", "invalid since:"),
        ("status=done", "invalid status:"),
        ("limit=abc", "limit"),
        ("limit=0", "invalid limit:"),
        ("state=pending", "unknown field `state`"),
    ] {
        let (code, body) = s.get(&format!("/api/v1/jobs?{query}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(field), "{query}: {error}");
    }
    let (code, body) = s.get("/api/v1/quarantine?reason=gremlins").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("invalid reason:"));
    let (code, list) = s.get("/api/v1/jobs?limit=5000&since=1h&kind=noop").await;
    assert_eq!(code, StatusCode::OK, "a large limit is capped, not refused");
    assert_eq!(list, json!([]));
    let (code, body) = s.get("/api/v1/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("/api/v1/nope"));
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_unique_keys_are_idempotent() {
    let s = server(Some("t")).await;
    let batch = json!({"jobs": [{"kind": "noop"}, {"kind": "nope"}]}).to_string();
    let (code, body) = s.post("/api/v1/jobs", Some("t"), batch).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("jobs[1].kind"),
        "{body}"
    );
    let (code, _) = s
        .post("/api/v1/jobs", Some("t"), json!({"jobs": []}).to_string())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(s.jobs().await, 0);

    let keyed = json!({"kind": "noop", "unique_key": "k-1"}).to_string();
    let (code, first) = s.post("/api/v1/jobs", Some("t"), keyed.clone()).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(first["created"], true);
    let (code, again) = s.post("/api/v1/jobs", Some("t"), keyed).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again, json!({"id": first["id"], "created": false}));
    assert_eq!(s.jobs().await, 1);
}

#[tokio::test]
async fn status_counts_the_queue_and_names_the_backend() {
    let s = server(Some("t")).await;
    s.post(
        "/api/v1/jobs",
        Some("t"),
        json!({"kind": "noop"}).to_string(),
    )
    .await;
    let (code, body) = s.get("/api/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["queue"]["pending"], 1);
    assert_eq!(body["backend"], "sqlite");
    assert_eq!(body["workers"]["max"], 0);
    assert_eq!(body["workers"]["utilization"], 0.0);
}

#[tokio::test]
async fn retry_needs_a_quarantined_job_and_cancel_a_reason() {
    let s = server(Some("t")).await;
    let (_, body) = s
        .post(
            "/api/v1/jobs",
            Some("t"),
            json!({"kind": "noop"}).to_string(),
        )
        .await;
    let id = body["id"].as_i64().unwrap();
    let (code, _) = s
        .post(
            &format!("/api/v1/jobs/{id}/retry"),
            Some("t"),
            String::new(),
        )
        .await;
    assert_eq!(
        code,
        StatusCode::CONFLICT,
        "a pending job cannot be retried"
    );
    let (code, _) = s
        .post(
            &format!("/api/v1/quarantine/{id}/retry"),
            Some("t"),
            json!({"note": "x"}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "never quarantined");
    let (code, body) = s
        .post(&format!("/api/v1/jobs/{id}/cancel"), Some("t"), "{}".into())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("reason"), "{body}");
    let (code, _) = s
        .post(
            "/api/v1/jobs/abc/cancel",
            Some("t"),
            json!({"reason": "x"}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (_, shown) = s.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(shown["state"], "pending");
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

#[tokio::test]
async fn docs_search_and_show() {
    use fabric_core::doc::{Chunk, DocType, NewDocument};
    let s = server(None).await;
    let put = |path: &str, text: &str| NewDocument {
        source: "notes".into(),
        path: path.into(),
        doc_type: DocType::Text,
        title: path.into(),
        size: text.len() as u64,
        mtime: 0,
        hash: path.into(),
        tags: vec!["t".into()],
        meta: Default::default(),
        links: vec![],
        chunks: vec![Chunk {
            key: "k".into(),
            ord: 0,
            heading: String::new(),
            text: text.into(),
        }],
    };
    let id = s
        .store
        .docs()
        .put_document(put("a.txt", "the axolotl swims"), 1)
        .await
        .unwrap()
        .id;
    s.store
        .docs()
        .put_document(put("b.txt", "nothing here"), 1)
        .await
        .unwrap();

    let (code, body) = s
        .get("/api/v1/docs/search?q=axolotl&source=notes&tag=t&limit=5")
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let hits = body.as_array().unwrap();
    assert_eq!(hits.len(), 1, "{body}");
    assert_eq!(hits[0]["doc_id"], id);
    assert_eq!(hits[0]["snippet"], "the [axolotl] swims");
    let (code, body) = s.get("/api/v1/docs/search?q=%22%20NEAR(%20*").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    for (query, field) in [
        ("", "q"),
        ("?q=", "query"),
        ("?q=x&limit=0", "limit"),
        ("?q=x&limit=many", "limit"),
        ("?q=x&nope=1", "nope"),
    ] {
        let (code, body) = s.get(&format!("/api/v1/docs/search{query}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.to_string().contains(field), "{query}: {body}");
    }

    let (code, body) = s.get(&format!("/api/v1/docs/{id}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["path"], "a.txt");
    assert_eq!(body["chunks"][0]["text"], "the axolotl swims");
    assert_eq!(s.get("/api/v1/docs/9999").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/docs/x").await.0, StatusCode::BAD_REQUEST);
    let (code, body) = s.get("/api/v1/docs/stats").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["documents"], 2);
}

/// `/metrics/summary` and `fabric_slo_burn_rate`: the SLOs measured on the store's jobs.
#[tokio::test]
async fn metrics_summary_measures_the_slos() {
    use fabric_core::quarantine::QuarantineReason;
    use fabric_store::{ClaimRequest, Completion, Outcome};
    let s = server(None).await;
    let now = fabric_core::Clock::now_ms(&RealClock);
    let jobs: Vec<fabric_core::NewJob> =
        (0..10).map(|_| fabric_core::NewJob::new("noop")).collect();
    s.store.submit(jobs, now - 120_000).await.unwrap();
    let claimed = s
        .store
        .claim(ClaimRequest {
            owner: "w".into(),
            limit: 10,
            lease_ms: 600_000,
            now: now - 120_000,
            ..ClaimRequest::default()
        })
        .await
        .unwrap();
    // 9 succeed (one of them 90 s after it was due: slower than job_latency's 60 s), 1 is
    // quarantined.
    let done: Vec<Completion> = claimed
        .iter()
        .enumerate()
        .map(|(i, j)| Completion {
            id: j.id,
            attempt: j.attempt,
            owner: "w".into(),
            started_at: now - 120_000,
            finished_at: if i == 1 { now - 30_000 } else { now - 110_000 },
            outcome: if i == 0 {
                Outcome::Quarantine {
                    reason: QuarantineReason::PermissionDenied,
                    error: "denied".into(),
                    failure: "permanent".into(),
                }
            } else {
                Outcome::Succeeded { result: None }
            },
        })
        .collect();
    s.store.complete(done).await.unwrap();
    let (code, body) = s.get("/metrics/summary").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let ok = &body["slo"]["job_success"];
    assert_eq!(
        (ok["total"].as_u64(), ok["violations"].as_u64()),
        (Some(10), Some(1)),
        "{body}"
    );
    // 10 % errors against a 1 % budget: a burn rate of 10 over the window.
    assert!(
        (ok["burn_rate"].as_f64().unwrap() - 10.0).abs() < 1e-9,
        "{body}"
    );
    let lat = &body["slo"]["job_latency"];
    assert_eq!(
        (lat["total"].as_u64(), lat["violations"].as_u64()),
        (Some(9), Some(1)),
        "{body}"
    );
    assert!(ok["burn_rates"]["5m"].as_f64().unwrap() > 9.0, "{body}");
    assert_eq!(body["alerts"], json!({}));
    let text = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("fabric_slo_burn_rate{slo=\"job_success\",window=\"1h\"}"))
        .unwrap_or_else(|| panic!("no burn rate in {text}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((value - 10.0).abs() < 1e-9, "{line}");
}
