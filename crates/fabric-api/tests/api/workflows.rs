//! The workflow endpoints over HTTP: batches with dependencies, and external workers that
//! claim, heartbeat, complete and fail jobs fenced by their tokens.

use fabric_core::config::Config;
use fabric_core::RealClock;
use reqwest::StatusCode;
use serde_json::json;

use super::{server, server_with};

#[tokio::test]
async fn batches_are_submitted_shown_listed_and_cancelled_over_http() {
    let s = server(Some("s3cret")).await;
    let batch = json!({
        "name": "nightly",
        "items": [
            {"key": "a", "kind": "noop"},
            {"key": "b", "kind": "noop", "depends_on": ["a"]},
        ],
        "on_complete": {"kind": "noop"},
    })
    .to_string();
    let r = s.post_raw("/api/v1/batches", None, batch.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (code, body) = s.post("/api/v1/batches", Some("s3cret"), batch).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    assert_eq!(body["items"], 2);
    assert_eq!(body["dependencies"], 1);
    let id = body["id"].as_i64().unwrap();
    let (code, shown) = s.get(&format!("/api/v1/batches/{id}")).await;
    assert_eq!(code, StatusCode::OK, "{shown}");
    assert_eq!(shown["name"], "nightly");
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["on_complete"], "noop");
    assert_eq!(shown["items"][1]["state"], "waiting");
    assert_eq!(shown["items"][1]["depends_on"], json!(["a"]));
    let (_, list) = s.get("/api/v1/batches?state=running").await;
    assert_eq!(list[0]["id"], id);
    let (code, body) = s.get("/api/v1/batches?state=done").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (code, body) = s.get("/api/v1/batches?limit=0").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "a page of none: {body}");
    // A bad item names its index; nothing is written.
    let bad = json!({"items": [{"key": "a", "kind": "noop"}, {"key": "b", "kind": "noop", "depends_on": ["zz"]}]});
    let (code, body) = s
        .post("/api/v1/batches", Some("s3cret"), bad.to_string())
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("items[1]"),
        "{body}"
    );
    let (code, body) = s.get("/api/v1/batches/999").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let path = format!("/api/v1/batches/{id}/cancel");
    let (code, body) = s
        .post(&path, Some("s3cret"), json!({"reason": "test"}).to_string())
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["cancelled"], 2);
    let (_, shown) = s.get(&format!("/api/v1/batches/{id}")).await;
    assert_eq!(shown["state"], "cancelled");
    assert_eq!(s.jobs().await, 3, "two items and the callback");
}

#[tokio::test]
async fn external_workers_claim_heartbeat_complete_and_fail_fenced_by_their_token() {
    let mut config = Config::default();
    config.workers.external_kinds = vec!["ocr".into()];
    let s = server_with(Some("s3cret"), config, None).await;
    let t = Some("s3cret");
    let submit = |n: i64| json!({"kind": "ocr", "payload": {"page": n}}).to_string();
    let (code, body) = s.post("/api/v1/jobs", t, submit(1)).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let claim = |worker: &str, lease: u64| {
        json!({"worker": worker, "kinds": ["ocr"], "max": 10, "lease_seconds": lease}).to_string()
    };
    let (code, _) = s.post("/api/v1/workers/claim", None, claim("a", 1)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, body) = s.post("/api/v1/workers/claim", t, claim("a", 1)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["payload"]["page"], 1);
    assert_eq!(jobs[0]["attempt"], 1);
    let stale = jobs[0]["token"].as_str().unwrap().to_string();
    let beat = |token: &str| json!({"id": id, "token": token, "lease_seconds": 1}).to_string();
    let (code, body) = s.post("/api/v1/workers/heartbeat", t, beat(&stale)).await;
    assert_eq!(code, StatusCode::OK, "{body}");

    // The worker goes silent: its lease lapses and the rescuer hands the job back.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let now = fabric_core::Clock::now_ms(&RealClock);
    assert_eq!(s.store.rescue(now, None).await.unwrap().reset, vec![id]);
    let (code, body) = s.post("/api/v1/workers/heartbeat", t, beat(&stale)).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    let done =
        |token: &str| json!({"id": id, "token": token, "result": {"text": "hi"}}).to_string();
    let (code, _) = s.post("/api/v1/workers/complete", t, done(&stale)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (_, job) = s.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        job["state"], "pending",
        "a stale completion changes nothing"
    );

    let (_, body) = s.post("/api/v1/workers/claim", t, claim("b", 30)).await;
    let fresh = body["jobs"][0]["token"].as_str().unwrap().to_string();
    assert_eq!(body["jobs"][0]["attempt"], 2);
    let (code, _) = s.post("/api/v1/workers/complete", t, done(&stale)).await;
    assert_eq!(code, StatusCode::CONFLICT, "the old attempt is fenced out");
    let (code, body) = s.post("/api/v1/workers/complete", t, done(&fresh)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (_, job) = s.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["result"]["text"], "hi");

    // Failures go through the retry policy: transient waits for a retry, permanent is
    // quarantined at once.
    for (kind, state) in [("transient", "failed"), ("permanent", "quarantined")] {
        let (_, body) = s.post("/api/v1/jobs", t, submit(2)).await;
        let job = body["id"].as_i64().unwrap();
        let (_, body) = s.post("/api/v1/workers/claim", t, claim("c", 30)).await;
        let token = body["jobs"][0]["token"].as_str().unwrap().to_string();
        let fail =
            json!({"id": job, "token": token, "error": "scanner jammed", "failure_type": kind});
        let (code, body) = s.post("/api/v1/workers/fail", t, fail.to_string()).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["state"], state);
        let (_, shown) = s.get(&format!("/api/v1/jobs/{job}")).await;
        assert_eq!(shown["state"], state);
        assert_eq!(shown["last_error"], "scanner jammed");
        // The worker's failure type is the one recorded, whatever the message says.
        assert_eq!(shown["errors"][0]["failure"], kind, "{shown}");
    }

    // Many completions in one write: each applies or is reported lost on its own.
    for n in 0..2 {
        s.post("/api/v1/jobs", t, submit(10 + n)).await;
    }
    let (_, body) = s.post("/api/v1/workers/claim", t, claim("e", 30)).await;
    let got = body["jobs"].as_array().unwrap().clone();
    assert_eq!(got.len(), 2);
    let many = json!({"jobs": [
        {"id": got[0]["id"], "token": got[0]["token"], "result": {"n": 0}},
        {"id": got[1]["id"], "token": stale},
    ]});
    let (code, body) = s
        .post("/api/v1/workers/complete", t, many.to_string())
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["completed"], json!([got[0]["id"]]));
    assert_eq!(body["lost"], json!([got[1]["id"]]));
    let (_, shown) = s.get(&format!("/api/v1/jobs/{}", got[1]["id"])).await;
    assert_eq!(
        shown["state"], "running",
        "a lost completion changes nothing"
    );

    // Nothing due: a claim that may wait returns empty once its wait is over.
    let wait = json!({"worker": "d", "kinds": ["ocr"], "wait_seconds": 1}).to_string();
    let (code, body) = s.post("/api/v1/workers/claim", t, wait).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["jobs"], json!([]));
    // Bad input names the field.
    let (code, body) = s
        .post(
            "/api/v1/workers/claim",
            t,
            json!({"worker": "d", "kinds": []}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("kinds"), "{body}");
    let (code, body) = s
        .post(
            "/api/v1/workers/complete",
            t,
            json!({"id": id, "token": "forged"}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
}
