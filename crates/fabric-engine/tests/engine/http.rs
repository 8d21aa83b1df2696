//! The `http` job kind against a real HTTP server on a port of its own: answers kept with
//! secrets redacted, 429 retried after its `Retry-After`, 5xx retried, other 4xx quarantined
//! at once, timeouts and refused connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use fabric_core::quarantine::QuarantineReason;
use fabric_core::JobState;
use serde_json::json;

use super::{job, rig, wait_state};

const SECRET: &str = "Bearer s3cret-token-42";

/// What the server saw: the path and `Authorization` of every request.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `/ok` (200, echoing the secret in a header and the body), `/limited` (429,
/// `Retry-After: 120`), `/limited-once` (429 with `Retry-After: 1`, then 200), `/unavailable`
/// (503), `/missing` (404, echoing the secret), `/hop` (307 to `/ok` on `localhost`) and
/// `/slow` (10 s).
async fn server() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let calls = {
                let mut l = log.lock().unwrap();
                l.push((uri.path().to_string(), auth.clone()));
                l.iter().filter(|(p, _)| p == uri.path()).count()
            };
            let auth = auth.unwrap_or_default();
            let ctype = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let body = String::from_utf8_lossy(&body).into_owned();
            match uri.path() {
                "/ok" => (
                    StatusCode::OK,
                    [
                        ("x-echo", auth.clone()),
                        ("set-cookie", "sid=abc123".to_string()),
                        ("x-plain", "visible".to_string()),
                    ],
                    format!("{ctype}|{body}|you sent {auth}"),
                )
                    .into_response(),
                "/limited" => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "120")],
                    "slow down",
                )
                    .into_response(),
                "/limited-once" if calls == 1 => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    "slow down",
                )
                    .into_response(),
                "/limited-once" => (StatusCode::OK, "now").into_response(),
                // To the same server under another host name.
                "/hop" => {
                    let host = headers
                        .get("host")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .replace("127.0.0.1", "localhost");
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", format!("http://{host}/ok"))],
                    )
                        .into_response()
                }
                "/unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    (StatusCode::OK, "late").into_response()
                }
                _ => (
                    StatusCode::NOT_FOUND,
                    format!("no such page; you sent {auth}"),
                )
                    .into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_job_keeps_the_answer_with_secrets_redacted() {
    let (addr, seen) = server().await;
    let r = rig();
    let s = r
        .console
        .submit(job(
            "http",
            json!({
                "method": "post",
                "url": format!("http://{addr}/ok"),
                "headers": {"Authorization": SECRET},
                "body": {"a": 1},
            }),
            1,
        ))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Succeeded).await;
    let result = j.result.unwrap();
    assert_eq!(result["status"], 200);
    // The JSON body went with its content type, and the secret reached the server...
    assert_eq!(
        result["body"],
        "application/json|{\"a\":1}|you sent [redacted]"
    );
    assert!(seen
        .lock()
        .unwrap()
        .contains(&("/ok".to_string(), Some(SECRET.to_string()))));
    // ...but is nowhere in what was kept.
    assert_eq!(result["headers"]["x-echo"], "[redacted]");
    assert_eq!(result["headers"]["set-cookie"], "[redacted]");
    assert_eq!(result["headers"]["x-plain"], "visible");
    assert_eq!(result["body_truncated"], false);
    assert!(result["elapsed_ms"].is_u64());
    assert!(!result.to_string().contains("s3cret"), "{result}");
    // A redirect to another host is followed, unless the request holds a secret header
    // reqwest would send on (it drops only Authorization, Cookie and Proxy-Authorization).
    let hop = |headers: serde_json::Value| {
        job(
            "http",
            json!({"url": format!("http://{addr}/hop"), "headers": headers}),
            3,
        )
    };
    let plain = r.console.submit(hop(json!({}))).await.unwrap();
    let keyed = r
        .console
        .submit(hop(json!({"X-Api-Key": "k-secret-77"})))
        .await
        .unwrap();
    let j = wait_state(&*r.store, plain.id, JobState::Succeeded).await;
    assert_eq!(j.result.unwrap()["status"], 200);
    let j = wait_state(&*r.store, keyed.id, JobState::Quarantined).await;
    assert_eq!(j.attempt, 1);
    let e = j.last_error.unwrap();
    assert!(
        e.starts_with(&format!("GET http://{addr}/hop returned 307")),
        "{e}"
    );
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/ok")
            .count(),
        2,
        "/ok reached by the first job and the redirected one only"
    );
    // A bad payload is refused at submit, naming the field.
    let e = r
        .console
        .submit(job("http", json!({"url": "file:///etc/passwd"}), 1))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("payload.url must be http or https"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_failures_are_retried_or_quarantined_by_status() {
    let (addr, _) = server().await;
    let r = rig(); // immediate retries: the only delay is a Retry-After
    let submit = |path: &str, max_attempts: u32| {
        job(
            "http",
            json!({
                "url": format!("http://ann:pw-987654@{addr}{path}"),
                "headers": {"Authorization": SECRET},
            }),
            max_attempts,
        )
    };
    let missing = r
        .console
        .submit(job(
            "http",
            json!({
                "url": format!("http://{addr}/missing?token=qs-123456&page=2"),
                "headers": {"Authorization": SECRET},
            }),
            5,
        ))
        .await
        .unwrap();
    let unavailable = r.console.submit(submit("/unavailable", 3)).await.unwrap();
    let limited = r.console.submit(submit("/limited", 3)).await.unwrap();
    let once = r.console.submit(submit("/limited-once", 3)).await.unwrap();

    // 404: permanent, quarantined after its first attempt, the secrets not in the error.
    let j = wait_state(&*r.store, missing.id, JobState::Quarantined).await;
    assert_eq!(j.attempt, 1);
    let d = r.store.job(missing.id).await.unwrap();
    assert_eq!(d.errors.len(), 1);
    assert_eq!(d.errors[0].failure, "permanent");
    let e = &d.errors[0].error;
    assert!(
        e.starts_with(&format!(
            "GET http://{addr}/missing?token=[redacted]&page=2 returned 404 Not Found: no such page"
        )),
        "{e}"
    );
    assert!(!e.contains("s3cret") && !e.contains("qs-123456"), "{e}");
    let q = r.store.quarantine_entry(missing.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::PermissionDenied);
    assert!(!q.error.contains("s3cret"), "{}", q.error);

    // 503: transient, retried until its attempts run out.
    let j = wait_state(&*r.store, unavailable.id, JobState::Quarantined).await;
    assert_eq!(j.attempt, 3);
    let d = r.store.job(unavailable.id).await.unwrap();
    assert!(d.errors.iter().all(|e| e.failure == "transient"), "{d:?}");
    let e = &d.errors[0].error;
    assert!(
        e.starts_with(&format!(
            "GET http://ann:[redacted]@{addr}/unavailable returned 503 Service Unavailable"
        )),
        "{e}"
    );
    assert!(!e.contains("pw-987654"), "{e}");
    let q = r.store.quarantine_entry(unavailable.id).await.unwrap();
    assert_eq!(
        q.reason,
        QuarantineReason::Timeout,
        "503 is quarantined as timeout"
    );

    // 429: waits for its Retry-After (120 s), not the policy's immediate retry.
    let j = wait_state(&*r.store, limited.id, JobState::Failed).await;
    let d = r.store.job(limited.id).await.unwrap();
    assert_eq!(d.errors[0].failure, "rate_limited");
    assert!(
        d.errors[0].error.contains("(Retry-After 120 s)"),
        "{}",
        d.errors[0].error
    );
    let wait = j.run_at - d.errors[0].finished_at;
    assert!((119_000..=121_000).contains(&wait), "retry in {wait} ms");

    // 429 with a short Retry-After, then 200: succeeds on its second attempt.
    let j = wait_state(&*r.store, once.id, JobState::Succeeded).await;
    assert_eq!(j.attempt, 2);
    assert_eq!(j.result.unwrap()["body"], "now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_job_past_its_timeout_or_without_a_server_fails_as_transient() {
    let (addr, _) = server().await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = rig();
    let slow = r
        .console
        .submit(job(
            "http",
            json!({"url": format!("http://{addr}/slow"), "timeout_s": 1}),
            1,
        ))
        .await
        .unwrap();
    let refused = r
        .console
        .submit(job("http", json!({"url": format!("http://{closed}/x")}), 1))
        .await
        .unwrap();
    let j = wait_state(&*r.store, slow.id, JobState::Quarantined).await;
    let e = j.last_error.unwrap();
    assert!(e.contains("timed out after 1"), "{e}");
    let q = r.store.quarantine_entry(slow.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::Timeout);
    wait_state(&*r.store, refused.id, JobState::Quarantined).await;
    let d = r.store.job(refused.id).await.unwrap();
    assert_eq!(d.errors[0].failure, "transient");
    assert!(
        d.errors[0]
            .error
            .starts_with(&format!("GET http://{closed}/x: cannot connect")),
        "{}",
        d.errors[0].error
    );
    let q = r.store.quarantine_entry(refused.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::ConnectorError);
}
