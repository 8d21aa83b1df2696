//! The receivers get exactly the payloads they expect, for firing and resolved; SMTP works;
//! `Retry-After` is honoured; a rate limit queues and loses nothing; a permanent error is not
//! retried; `alerts test` reports the outcome.

use fabric_alerts::{fingerprint, TransitionKind};
use fabric_store::QueueState;
use serde_json::json;

use crate::receivers::{Http, Smtp};
use crate::{config, H, T0};

/// `2027-01-15T08:00:01.000Z`, the time of the virtual clock after `n` seconds.
fn at(secs: i64) -> String {
    fabric_core::time::format_ms(T0 + secs * 1000)
}

#[tokio::test]
async fn slack_pagerduty_and_webhook_get_exact_payloads_firing_and_resolved() {
    let (slack, pd, hook) = (
        Http::start().await,
        Http::start().await,
        Http::start().await,
    );
    let y = config(&format!(
        "  routes:
    chat: {{type: slack, url: \"{}/services/T0/B0/x\"}}
    pager: {{type: pagerduty, url: \"{}/v2/enqueue\", routing_key: rk-1}}
    hook: {{type: webhook, url: \"{}/hook\", secret: s3cret}}
  rules:
    - {{name: qd, metric: queue_depth, comparator: \">\", threshold: 10, for_count: 2, routes: [chat, pager, hook], labels: {{team: ops}}}}
",
        slack.url, pd.url, hook.url
    ));
    let h = H::new(&y);
    let t = h.feed("queue_depth", &[11.0, 12.0]).await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].kind, TransitionKind::Fired);
    assert_eq!(t[0].routes, ["chat", "pager", "hook"]);
    let fp = t[0].fingerprint.clone();
    let labels = json!({"alertname": "qd", "severity": "warning", "team": "ops"});
    assert_eq!(
        fp,
        fingerprint(&serde_json::from_value(labels.clone()).unwrap())
    );
    assert_eq!(h.deliver().await, 3);

    let line = format!(
        "FIRING qd [warning]: queue_depth = 12 (queue_depth > 10 for 2 samples) since {} \
         {{team=ops}}",
        at(2)
    );
    assert_eq!(
        slack.bodies(),
        [json!({ "text": format!("[FIRING:1] qd\n{line}") })]
    );
    assert_eq!(slack.requests()[0].path, "/services/T0/B0/x");
    assert_eq!(
        pd.bodies(),
        [json!({
            "routing_key": "rk-1",
            "event_action": "trigger",
            "dedup_key": fp,
            "payload": {
                "summary": "qd: queue_depth = 12 (queue_depth > 10 for 2 samples)",
                "source": "fabric",
                "severity": "warning",
                "timestamp": at(2),
                "component": "queue_depth",
                "group": "qd",
                "class": "alert",
                "custom_details": {
                    "value": 12.0,
                    "condition": "queue_depth > 10 for 2 samples",
                    "labels": labels,
                },
            },
        })]
    );
    let alert = |status: &str, value: f64, at_s: i64| {
        json!({
            "status": status, "name": "qd", "fingerprint": fp, "severity": "warning",
            "metric": "queue_depth", "value": value,
            "condition": "queue_depth > 10 for 2 samples", "labels": labels,
            "since": at(2), "at": at(at_s),
        })
    };
    let firing_hook = json!({
        "version": "1", "receiver": "hook", "status": "firing", "group_key": "alertname=qd",
        "title": "[FIRING:1] qd", "alerts": [alert("firing", 12.0, 2)],
    });
    assert_eq!(hook.bodies(), [firing_hook]);
    // The signature covers the timestamp and the exact body.
    let req = &hook.requests()[0];
    let ts: i64 = req.header("x-fabric-timestamp").parse().unwrap();
    assert_eq!(
        req.header("x-fabric-signature"),
        fabric_alerts::routes::signature("s3cret", ts, &req.body)
    );
    assert!(slack.requests()[0].header("x-fabric-signature").is_empty());

    // Still breaching: nothing more. Then it clears: one resolve each.
    h.feed("queue_depth", &[50.0]).await;
    assert_eq!(h.deliver().await, 0);
    let t = h.feed("queue_depth", &[3.5]).await;
    assert_eq!(t[0].kind, TransitionKind::Cleared);
    assert_eq!(h.deliver().await, 3);
    assert_eq!(
        slack.bodies()[1],
        json!({ "text": format!(
            "[RESOLVED:1] qd\nRESOLVED qd [warning]: queue_depth = 3.5 at {}, firing since {} {{team=ops}}",
            at(4), at(2)
        ) })
    );
    assert_eq!(
        pd.bodies()[1],
        json!({"routing_key": "rk-1", "event_action": "resolve", "dedup_key": fp})
    );
    assert_eq!(
        hook.bodies()[1],
        json!({
            "version": "1", "receiver": "hook", "status": "resolved",
            "group_key": "alertname=qd", "title": "[RESOLVED:1] qd",
            "alerts": [alert("resolved", 3.5, 4)],
        })
    );
    h.feed("queue_depth", &[1.0, 2.0]).await;
    assert_eq!(h.deliver().await, 0);
    assert_eq!(
        (slack.bodies().len(), pd.bodies().len(), hook.bodies().len()),
        (2, 2, 2)
    );
    let history = h.console().history(None, None, 100).await.unwrap();
    assert_eq!(history.len(), 6);
    assert!(history.iter().all(|a| a.attempt.outcome == "delivered"));
}

#[tokio::test]
async fn email_goes_through_smtp_with_subject_and_lines() {
    let smtp = Smtp::start().await;
    let y = config(&format!(
        "  routes:
    mail: {{type: email, host: 127.0.0.1, port: {}, from: fabric@example.org, to: [ops@example.org, oncall@example.org], timeout_ms: 5000}}
  rules:
    - {{name: tezzeret_compile_retry_high, metric: tezzeret_compile_retries, comparator: \">\", threshold: 3, routes: [mail]}}
",
        smtp.port
    ));
    let h = H::new(&y);
    h.feed("tezzeret_compile_retries", &[4.0]).await;
    assert_eq!(h.deliver().await, 1);
    h.feed("tezzeret_compile_retries", &[0.0]).await;
    assert_eq!(h.deliver().await, 1);
    // Quoted-printable: soft line breaks and `=` encoded.
    let mails: Vec<_> = smtp
        .mails()
        .into_iter()
        .map(|mut m| {
            m.data = m.data.replace("=\n", "").replace("=3D", "=");
            m
        })
        .collect();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails[0].from, "<fabric@example.org>");
    assert_eq!(mails[0].to, ["<ops@example.org>", "<oncall@example.org>"]);
    assert!(
        mails[0]
            .data
            .contains("Subject: [FIRING:1] tezzeret_compile_retry_high"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains(
            "\nFIRING tezzeret_compile_retry_high [warning]: tezzeret_compile_retries = 4 \
             (tezzeret_compile_retries > 3 for 1 sample) since"
        ),
        "{}",
        mails[0].data
    );
    assert!(mails[1]
        .data
        .contains("Subject: [RESOLVED:1] tezzeret_compile_retry_high"));
    let history = h.console().history(None, Some("mail"), 10).await.unwrap();
    assert!(history[0].attempt.detail.starts_with("250"), "{history:?}");
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_permanent_error_is_not_retried() {
    let (slack, hook) = (Http::start().await, Http::start().await);
    slack.answer(&[(429, Some("3"))]);
    hook.answer(&[(400, None)]);
    let y = config(&format!(
        "  delivery_backoff_ms: 100
  routes:
    chat: {{type: slack, url: \"{}/x\"}}
    hook: {{type: webhook, url: \"{}/hook\"}}
  rules:
    - {{name: lat, metric: training_latency_ms, comparator: \">\", threshold: 18, routes: [chat, hook]}}
",
        slack.url, hook.url
    ));
    let h = H::new(&y);
    h.feed("training_latency_ms", &[20.0]).await;
    assert_eq!(h.deliver().await, 2);
    assert_eq!((slack.requests().len(), hook.requests().len()), (1, 1));
    // Slack asked for 3 s: not before (the backoff would have been 100 ms).
    h.clock.advance(2_900);
    h.deliver().await;
    assert_eq!(slack.requests().len(), 1, "retried before Retry-After");
    h.clock.advance(100);
    h.deliver().await;
    assert_eq!(slack.requests().len(), 2);
    assert_eq!(slack.bodies()[0], slack.bodies()[1], "the same message");
    // The webhook's 400 was given up at once.
    h.clock.advance(60_000);
    h.deliver().await;
    assert_eq!(hook.requests().len(), 1);
    let notes = h.store.alerts().notifications(10).await.unwrap();
    let state_of = |route: &str| {
        let n = notes.iter().find(|n| n.new.route == route).unwrap();
        (n.state, n.attempts)
    };
    assert_eq!(state_of("chat"), (QueueState::Delivered, 2));
    assert_eq!(state_of("hook"), (QueueState::Failed, 1));
    let history = h.console().history(None, None, 10).await.unwrap();
    let outcomes: Vec<(&str, &str)> = history
        .iter()
        .rev()
        .map(|a| (a.attempt.route.as_str(), a.attempt.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [("chat", "retry"), ("hook", "failed"), ("chat", "delivered")]
    );
    assert!(
        history[2].attempt.detail.contains("HTTP 429"),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_rate_limit_queues_messages_and_loses_none() {
    let slack = Http::start().await;
    let y = config(&format!(
        "  routes:
    chat: {{type: slack, url: \"{}/x\"}}
  rules:
    - {{name: a, metric: m, comparator: \">\", threshold: 0, routes: [chat]}}
    - {{name: b, metric: m, comparator: \">\", threshold: 0, routes: [chat]}}
    - {{name: c, metric: m, comparator: \">\", threshold: 0, routes: [chat]}}
",
        slack.url
    ));
    let h = H::new(&y);
    h.feed("m", &[1.0]).await;
    // Three groups (one per alertname), Slack's 1/s: one a second, none lost.
    h.deliver().await;
    assert_eq!(slack.requests().len(), 1);
    h.clock.advance(500);
    h.deliver().await;
    assert_eq!(slack.requests().len(), 1, "over the limit");
    for want in [2, 3] {
        h.clock.advance(1_000);
        h.deliver().await;
        assert_eq!(slack.requests().len(), want);
    }
    assert_eq!(h.queued().await, 0);
    let mut titles: Vec<String> = slack
        .bodies()
        .iter()
        .map(|b| {
            b["text"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    titles.sort();
    assert_eq!(titles, ["[FIRING:1] a", "[FIRING:1] b", "[FIRING:1] c"]);
}

#[tokio::test]
async fn alerts_test_sends_through_the_route_and_reports_failure() {
    let hook = Http::start().await;
    let y = config(&format!(
        "  routes:
    hook: {{type: webhook, url: \"{}/hook\"}}
    dead: {{type: slack, url: \"http://127.0.0.1:1/x\", timeout_ms: 2000}}
",
        hook.url
    ));
    let h = H::new(&y);
    let ok = h.console().test("hook").await.unwrap();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.detail, "HTTP 200: ok");
    let body = &hook.bodies()[0];
    assert_eq!(body["alerts"][0]["name"], "fabric_test");
    let bad = h.console().test("dead").await.unwrap();
    assert!(!bad.ok);
    assert_eq!(bad.outcome, "retry");
    assert_eq!(bad.detail, "cannot connect");
    assert_eq!(bad.endpoint, "http://127.0.0.1:1/********");
    let e = h.console().test("nope").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "ROUTE: 'nope' is not a route (configured: dead, hook, log)"
    );
    let outcomes: Vec<String> = h
        .console()
        .history(None, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.attempt.outcome.clone())
        .collect();
    assert_eq!(outcomes, ["test-failed", "test-ok"]);
    let audit = h.store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (audit[0].action.as_str(), audit[0].target.as_str()),
        ("alerts.test", "route dead")
    );
    assert_eq!(audit[0].actor, "cli:test");
}
