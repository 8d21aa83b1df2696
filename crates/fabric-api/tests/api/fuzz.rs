//! Property tests of every request body and query string the API parses: the real router
//! (`tower::ServiceExt::oneshot`) over a real SQLite store is fed arbitrary bytes, valid
//! bodies with one field mutated (wrong types, huge and negative numbers, empty and huge
//! strings, nested garbage), odd job ids and arbitrary query strings. Every answer must be a
//! 2xx, or a 4xx whose JSON `error` names the field that was changed; never a 5xx, never a
//! panic.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use fabric_api::ApiState;
use fabric_core::config::Config;
use fabric_core::RealClock;
use fabric_engine::{Console, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

/// One request of a case, and the fields of which a 400 must name one (none listed: the
/// error must still have the form `invalid <field>: …`).
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    uri: String,
    body: Vec<u8>,
    names: Vec<String>,
}

/// Values that are wrong for most fields in some way.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1),
            Just(0),
            Just(u32::MAX as i64 + 1),
            Just(i32::MAX as i64 + 1),
        ]
        .prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        Just(json!("")),
        Just(json!(" ")),
        ".{0,12}".prop_map(Value::from),
        (1usize..5000).prop_map(|n| Value::from("ü".repeat(n))),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid job, some fields of it optional.
fn valid_job(now: i64) -> Value {
    json!({
        "kind": "sleep", "shard": "default", "payload": {"ms": 1}, "priority": 2,
        "max_attempts": 3, "run_at": now + 3_600_000, "unique_key": "k-1", "source": "mail",
    })
}

/// `base` with `field` set to `value` (or an unknown key added); the error must name it.
fn mutate(mut base: Value, field: &str, value: Value) -> Value {
    if let Some(o) = base.as_object_mut() {
        o.insert(field.to_string(), value);
    }
    base
}

/// Percent-encodes every byte but unreserved ones, so any text is a valid URI part.
fn encode(raw: &[u8]) -> String {
    raw.iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn post(uri: impl Into<String>, body: Vec<u8>, names: &[&str]) -> Case {
    Case {
        method: "POST",
        uri: uri.into(),
        body,
        names: names.iter().map(|s| s.to_string()).collect(),
    }
}

/// A body route with one field of a valid body mutated.
fn mutated_bodies(now: i64) -> impl Strategy<Value = Case> {
    let job_fields = [
        "kind",
        "shard",
        "payload",
        "priority",
        "max_attempts",
        "run_at",
        "unique_key",
        "source",
        "bogus",
    ];
    let submit =
        (proptest::sample::select(job_fields.to_vec()), odd_value()).prop_map(move |(f, v)| {
            let body = mutate(valid_job(now), f, v).to_string();
            post("/api/v1/jobs", body.into_bytes(), &[f])
        });
    let payload = (
        proptest::sample::select(vec!["ms", "cmd", "x"]),
        odd_value(),
    )
        .prop_map(move |(f, v)| {
            let mut job = valid_job(now);
            job["payload"] = mutate(json!({"ms": 1}), f, v);
            post("/api/v1/jobs", job.to_string().into_bytes(), &["payload"])
        });
    let batch = (
        proptest::sample::select(job_fields.to_vec()),
        odd_value(),
        any::<bool>(),
    )
        .prop_map(move |(f, v, whole)| {
            if whole {
                let body = json!({ "jobs": v }).to_string();
                return post("/api/v1/jobs", body.into_bytes(), &["jobs"]);
            }
            let jobs = json!([valid_job(now), mutate(valid_job(now), f, v)]);
            let body = json!({ "jobs": jobs }).to_string();
            post(
                "/api/v1/jobs",
                body.into_bytes(),
                &[&format!("jobs[1].{f}")],
            )
        });
    let actions = (
        proptest::sample::select(vec![
            ("/api/v1/jobs/1/cancel", json!({"reason": "r"}), "reason"),
            ("/api/v1/jobs/1/cancel", json!({"reason": "r"}), "bogus"),
            ("/api/v1/jobs/1/retry", json!({"note": "n"}), "note"),
            ("/api/v1/quarantine/1/retry", json!({"note": "n"}), "note"),
            ("/api/v1/quarantine/1/retry", json!({"note": "n"}), "bogus"),
            (
                "/api/v1/quarantine/purge",
                json!({"older_than_days": 30, "reason": "timeout", "dry_run": true}),
                "older_than_days",
            ),
            (
                "/api/v1/quarantine/purge",
                json!({"older_than_days": 30, "reason": "timeout", "dry_run": true}),
                "reason",
            ),
            (
                "/api/v1/quarantine/purge",
                json!({"older_than_days": 30, "reason": "timeout", "dry_run": true}),
                "dry_run",
            ),
        ]),
        odd_value(),
    )
        .prop_map(|((uri, base, f), v)| {
            post(uri, mutate(base, f, v).to_string().into_bytes(), &[f])
        });
    prop_oneof![3 => submit, 1 => payload, 2 => batch, 3 => actions]
}

/// Arbitrary bytes (and JSON that is not an object) to every POST route.
fn raw_bodies() -> impl Strategy<Value = Case> {
    let routes = vec![
        "/api/v1/jobs",
        "/api/v1/jobs/1/cancel",
        "/api/v1/jobs/1/retry",
        "/api/v1/quarantine/1/retry",
        "/api/v1/quarantine/purge",
    ];
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        odd_value().prop_map(|v| v.to_string().into_bytes()),
        ".{0,64}".prop_map(String::into_bytes),
    ];
    // What a valid JSON object lacks is named by its own field.
    (proptest::sample::select(routes), bytes).prop_map(|(uri, body)| post(uri, body, &[]))
}

/// Odd job ids in the path of every route that takes one.
fn odd_ids() -> impl Strategy<Value = Case> {
    let id = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("99999999999999999999999".to_string()),
        Just("-0".to_string()),
        Just("1.5".to_string()),
        Just(" 1".to_string()),
        ".{1,16}".prop_map(String::from),
    ];
    let routes = vec![
        ("POST", "/cancel", r#"{"reason": "r"}"#),
        ("POST", "/retry", ""),
        ("GET", "", ""),
    ];
    (id, proptest::sample::select(routes), any::<bool>()).prop_map(
        |(id, (method, tail, body), quarantine)| {
            let base = if quarantine && tail != "/cancel" {
                "quarantine"
            } else {
                "jobs"
            };
            Case {
                method,
                uri: format!("/api/v1/{base}/{}{tail}", encode(id.as_bytes())),
                body: body.as_bytes().to_vec(),
                names: vec!["id".into()],
            }
        },
    )
}

/// Query strings of the GET listings: known keys with odd values, unknown keys, and
/// arbitrary bytes.
fn queries() -> impl Strategy<Value = Case> {
    let key = proptest::sample::select(vec![
        "status", "shard", "source", "kind", "since", "limit", "reason", "check", "x", "",
    ]);
    let value = prop_oneof![
        Just("".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("99999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("9223372036854775807d".to_string()),
        Just("9999999999999999999ms".to_string()),
        Just("0000-01-01T00:00:00Z".to_string()),
        Just("9999-12-31T23:59:59.999+23:59".to_string()),
        Just("pending".to_string()),
        Just("timeout".to_string()),
        ".{0,12}".prop_map(String::from),
        (1usize..3000).prop_map(|n| "9".repeat(n)),
    ];
    let pairs = proptest::collection::vec((key, value), 0..4);
    let path = proptest::sample::select(vec!["/api/v1/jobs", "/api/v1/quarantine", "/healthz"]);
    let structured = (path.clone(), pairs).prop_map(|(path, pairs)| {
        // An empty key is named by serde as the unknown field ``.
        let names = pairs
            .iter()
            .map(|(k, _)| if k.is_empty() { "``" } else { k }.to_string())
            .collect();
        let q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k.as_bytes()), encode(v.as_bytes())))
            .collect();
        Case {
            method: "GET",
            uri: format!("{path}?{}", q.join("&")),
            body: Vec::new(),
            names,
        }
    });
    let raw = (path, proptest::collection::vec(any::<u8>(), 0..48)).prop_map(|(path, raw)| {
        // Keep `=`, `&` and `%` as they are sometimes, so the parser sees odd structure.
        let q: String = raw
            .iter()
            .map(|b| match b {
                b'=' | b'&' => (*b as char).to_string(),
                b => encode(&[*b]),
            })
            .collect();
        Case {
            method: "GET",
            uri: format!("{path}?{q}"),
            body: Vec::new(),
            names: Vec::new(),
        }
    });
    prop_oneof![3 => structured, 1 => raw]
}

struct App {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap());
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
        access: fabric_api::Access::new(Some(TOKEN.into()), Vec::new()),
        max_body_bytes: 64 * 1024,
        home: dir.path().to_path_buf(),
        config_file: dir.path().join("fabric.yaml"),
        config_named: false,
        listen: None,
        alerts: None,
        bus: None,
    };
    let router = fabric_api::router(state);
    // Job 1 exists (pending) so cancel and retry reach the Console with a real job.
    let (code, body) = send(
        &router,
        &post("/api/v1/jobs", br#"{"kind":"noop"}"#.to_vec(), &[]),
    )
    .await
    .unwrap();
    assert_eq!(code, StatusCode::CREATED, "{body}");
    App { router, _dir: dir }
}

async fn send(router: &Router, case: &Case) -> Result<(StatusCode, Value), TestCaseError> {
    let req = Request::builder()
        .method(case.method)
        .uri(&case.uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(case.body.clone()))
        .map_err(|e| TestCaseError::fail(format!("bad test request {case:?}: {e}")))?;
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| TestCaseError::fail(format!("body of {case:?}: {e}")))?;
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        Value::String(format!("(not JSON) {}", String::from_utf8_lossy(&bytes)))
    });
    Ok((code, body))
}

/// The promise: a 2xx, or a 4xx with a JSON `error`; a 400 names the changed field.
fn check(case: &Case, code: StatusCode, body: &Value) -> Result<(), TestCaseError> {
    let what = format!(
        "{} {} {:?} -> {code} {body}",
        case.method,
        case.uri,
        String::from_utf8_lossy(&case.body)
    );
    // `/healthz` is 503 when a check fails (no config file here is fine; disk may warn).
    let health = case.uri.starts_with("/healthz") && code == StatusCode::SERVICE_UNAVAILABLE;
    prop_assert!(!code.is_server_error() || health, "server error: {what}");
    if code.is_success() || health {
        return Ok(());
    }
    prop_assert!(code.is_client_error(), "{what}");
    let Some(error) = body.get("error").and_then(Value::as_str) else {
        return Err(TestCaseError::fail(format!("no JSON error: {what}")));
    };
    if code == StatusCode::BAD_REQUEST && case.names.is_empty() {
        // Any input: the message has the form `invalid <field>: <why>`.
        let field = error
            .strip_prefix("invalid ")
            .and_then(|rest| rest.split_once(": "))
            .map(|(field, _)| field);
        prop_assert!(
            field.is_some_and(|f| !f.is_empty()),
            "the error names no field: {what}"
        );
    } else if code == StatusCode::BAD_REQUEST {
        prop_assert!(
            case.names.iter().any(|n| error.contains(n.as_str())),
            "the error names none of {:?}: {what}",
            case.names
        );
    }
    Ok(())
}

#[test]
fn every_body_and_query_is_answered_2xx_or_a_4xx_naming_the_field() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(app());
    let now = fabric_core::Clock::now_ms(&RealClock);
    let cases = prop_oneof![
        4 => mutated_bodies(now),
        2 => raw_bodies(),
        1 => odd_ids(),
        3 => queries(),
    ];
    let mut runner = TestRunner::new(RunConfig {
        cases: 2000,
        failure_persistence: None,
        ..RunConfig::default()
    });
    runner
        .run(&cases, |case| {
            rt.block_on(async {
                let (code, body) = send(&app.router, &case).await?;
                check(&case, code, &body)
            })
        })
        .unwrap();
}

/// What the property test found, pinned: each names its field exactly.
#[test]
fn the_cases_the_property_test_found_name_their_field() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(app());
    let get = |uri: &str| Case {
        method: "GET",
        uri: uri.into(),
        body: Vec::new(),
        names: Vec::new(),
    };
    for (case, status, error) in [
        // A serde type error named only its line and column.
        (
            post(
                "/api/v1/jobs",
                br#"{"kind":"noop","priority":"x"}"#.to_vec(),
                &[],
            ),
            400,
            "invalid priority: invalid type: string \"x\", expected i32",
        ),
        (
            post(
                "/api/v1/jobs",
                br#"{"jobs":[{"kind":"noop"},{"kind":"noop","run_at":1e400}]}"#.to_vec(),
                &[],
            ),
            400,
            "invalid body: number out of range",
        ),
        (
            post(
                "/api/v1/jobs",
                br#"{"jobs":[{"kind":"noop"},{"kind":"noop","max_attempts":-1}]}"#.to_vec(),
                &[],
            ),
            400,
            "invalid jobs[1].max_attempts: invalid value: integer `-1`",
        ),
        (
            post(
                "/api/v1/jobs",
                br#"{"jobs":[{"kind":"noop"},{"kind":"noop","max_attempts":0}]}"#.to_vec(),
                &[],
            ),
            400,
            "invalid jobs[1].max_attempts: 0 is out of range 1..100",
        ),
        (
            post(
                "/api/v1/jobs",
                br#"{"kind":"noop","max_attempts":0}"#.to_vec(),
                &[],
            ),
            400,
            "invalid max_attempts: 0 is out of range 1..100",
        ),
        (
            post(
                "/api/v1/quarantine/purge",
                br#"{"older_than_days":4294967296}"#.to_vec(),
                &[],
            ),
            400,
            "invalid older_than_days: invalid value: integer `4294967296`",
        ),
        (
            post(
                "/api/v1/jobs/1/cancel",
                br#"{"reason":["r"]}"#.to_vec(),
                &[],
            ),
            400,
            "invalid reason: invalid type: sequence",
        ),
        // A batch of one job was named without its index.
        (
            post("/api/v1/jobs", br#"{"jobs":[{"kind":""}]}"#.to_vec(), &[]),
            400,
            "invalid jobs[0].kind: '' must be",
        ),
        // A top-level array and an empty key named the field "[0]" and "".
        (
            post("/api/v1/jobs", b"[null]".to_vec(), &[]),
            400,
            "invalid body[0]: invalid type: null",
        ),
        (
            post("/api/v1/jobs", br#"{"":1}"#.to_vec(), &[]),
            400,
            "invalid body: unknown field ``",
        ),
        // A run_at beyond any clock was stored.
        (
            post(
                "/api/v1/jobs",
                format!(r#"{{"kind":"noop","run_at":{}}}"#, i64::MAX).into_bytes(),
                &[],
            ),
            400,
            "invalid run_at: 9223372036854775807 is not a time",
        ),
        // /healthz answered a bad query in plain text.
        (
            get("/healthz?check=&check="),
            400,
            "invalid query: duplicate field `check`",
        ),
    ] {
        let (code, body) = rt.block_on(send(&app.router, &case)).unwrap();
        assert_eq!(code.as_u16(), status, "{case:?}: {body}");
        let got = body["error"].as_str().unwrap_or_default();
        assert!(got.starts_with(error), "{case:?}: {got}");
    }
}
