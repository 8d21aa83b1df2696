//! The API's bodies and query strings, through the real router over a SQLite store: the first
//! byte picks the route, the rest is the body (or the query string of a listing). Every
//! answer is a 2xx or a 4xx with a JSON `error`; never a 5xx, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use fabric_api::ApiState;
use fabric_core::config::Config;
use fabric_core::RealClock;
use fabric_engine::{Console, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct App {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).expect("store"),
        );
        let console = Console::new(
            store,
            Registry::builtin(),
            Arc::new(Config::default()),
            Arc::new(RealClock),
            "fuzz",
        );
        let state = ApiState {
            console,
            metrics: Metrics::new(),
            token: Some("t".into()),
            max_body_bytes: 64 * 1024,
            home: dir.path().to_path_buf(),
            config_file: dir.path().join("fabric.yaml"),
            config_named: false,
            listen: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        App {
            rt,
            router: fabric_api::router(state),
            _dir: dir,
        }
    })
}

const POSTS: [&str; 5] = [
    "/api/v1/jobs",
    "/api/v1/jobs/1/cancel",
    "/api/v1/jobs/1/retry",
    "/api/v1/quarantine/1/retry",
    "/api/v1/quarantine/purge",
];
const GETS: [&str; 3] = ["/api/v1/jobs", "/api/v1/quarantine", "/healthz"];

/// Percent-encodes all but `=`, `&` and unreserved bytes, so the parser sees odd structure.
fn query(raw: &[u8]) -> String {
    raw.iter()
        .map(|b| match b {
            b'=' | b'&' | b'-' | b'.' | b'_' | b'~' => (*b as char).to_string(),
            b if b.is_ascii_alphanumeric() => (*b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let app = app();
    let n = usize::from(pick);
    let req = if n % 2 == 0 {
        Request::post(POSTS[(n / 2) % POSTS.len()])
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::from(rest.to_vec()))
    } else {
        let path = GETS[(n / 2) % GETS.len()];
        Request::get(format!("{path}?{}", query(rest))).body(Body::empty())
    }
    .expect("a request");
    let what = format!("{} {}", req.method(), req.uri());
    let (code, body) = app.rt.block_on(async {
        let resp = app.router.clone().oneshot(req).await.expect("infallible");
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("a body");
        (code, bytes)
    });
    let health = what.starts_with("GET /healthz") && code.as_u16() == 503;
    assert!(!code.is_server_error() || health, "{what} -> {code}");
    if code.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what} -> {v}"
        );
    }
});
