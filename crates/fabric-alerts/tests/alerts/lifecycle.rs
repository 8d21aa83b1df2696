//! What alerts owe: grouping waits, exactly one resolved notification for every alert
//! notified as firing (silenced meanwhile, or across a restart), inhibition, repeats and
//! acknowledgements, the collector's samples, and drills.

use std::time::Duration;

use fabric_alerts::{drill::Drill, Collector, Sample, TransitionKind};
use fabric_store::AlertPhase;

use crate::receivers::Http;
use crate::{config, H};

fn texts(r: &Http) -> Vec<String> {
    r.bodies()
        .iter()
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_group_waits_then_goes_out_as_one_message_and_then_keeps_its_interval() {
    let slack = Http::start().await;
    let y = format!(
        "alerts:
  default_rules: false
  group_wait_ms: 30000
  group_interval_ms: 300000
  rate_limits: {{slack: {{per_minute: 0}}}}
  routes:
    chat: {{type: slack, url: \"{}/x\"}}
  rules:
    - {{name: qd, metric: queue_depth, comparator: \">\", threshold: 10, routes: [chat]}}
",
        slack.url
    );
    let h = H::new(&y);
    let earth = Sample::new("queue_depth", 20.0).with_label("shard", "earth");
    let mars = Sample::new("queue_depth", 30.0).with_label("shard", "mars");
    h.engine.observe(vec![earth.clone()]).await.unwrap();
    h.clock.advance(10_000);
    h.engine.observe(vec![mars.clone()]).await.unwrap();
    h.deliver().await;
    assert!(slack.requests().is_empty(), "sent before group_wait");
    h.clock.advance(20_000);
    h.deliver().await;
    let t = texts(&slack);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("[FIRING:2] qd\n"), "{}", t[0]);
    assert!(t[0].contains("{shard=earth}") && t[0].contains("{shard=mars}"));
    // Earth clears: the resolved waits for group_interval after the last message.
    h.engine
        .observe(vec![
            Sample::new("queue_depth", 1.0).with_label("shard", "earth")
        ])
        .await
        .unwrap();
    h.clock.advance(299_000);
    h.deliver().await;
    assert_eq!(slack.requests().len(), 1, "sent within group_interval");
    h.clock.advance(1_000);
    h.deliver().await;
    let t = texts(&slack);
    assert_eq!(t.len(), 2);
    assert!(t[1].starts_with("[RESOLVED:1] qd\nRESOLVED qd"), "{}", t[1]);
    assert!(t[1].contains("{shard=earth}") && !t[1].contains("mars"));
}

#[tokio::test]
async fn a_silenced_alert_still_gets_exactly_one_resolved() {
    let slack = Http::start().await;
    let y = config(&format!(
        "  routes:
    chat: {{type: slack, url: \"{}/x\"}}
  rules:
    - {{name: lat, metric: training_latency_ms, comparator: \">\", threshold: 18, for_count: 3, routes: [chat]}}
    - {{name: other, metric: other, comparator: \">\", threshold: 0, routes: [chat]}}
",
        slack.url
    ));
    let h = H::new(&y);
    h.feed("training_latency_ms", &[19.0, 20.0, 21.0]).await;
    h.deliver().await;
    assert_eq!(texts(&slack).len(), 1);
    let console = h.console();
    let s = console
        .silence(
            &["alertname=lat".into()],
            7_200_000,
            Some("ada"),
            "known issue",
        )
        .await
        .unwrap();
    assert_eq!(s.new.author, "ada");
    // Silenced from the start: never notified, so no resolved either.
    console
        .silence(&["alertname=other".into()], 7_200_000, None, "")
        .await
        .unwrap();
    let t = h.feed("other", &[5.0]).await;
    assert_eq!(t[0].held_back, Some("silenced"));
    h.feed("training_latency_ms", &[25.0, 30.0]).await;
    h.clock.advance(1_000);
    h.deliver().await;
    assert_eq!(texts(&slack).len(), 1, "silenced");
    h.feed("training_latency_ms", &[10.0, 9.0, 19.0, 8.0]).await;
    h.feed("other", &[0.0]).await;
    h.clock.advance(1_000);
    h.deliver().await;
    h.deliver().await;
    let t = texts(&slack);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1].starts_with("[RESOLVED:1] lat"), "{}", t[1]);
    assert_eq!(h.queued().await, 0);
    let audit = h.store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[1].action, "alerts.silence");
    assert_eq!(audit[1].reason.as_deref(), Some("known issue"));
}

#[tokio::test]
async fn a_restart_between_firing_and_clearing_still_resolves_exactly_once() {
    let pd = Http::start().await;
    let y = config(&format!(
        "  routes:
    pager: {{type: pagerduty, url: \"{}/v2/enqueue\", routing_key: rk}}
  rules:
    - {{name: iso, metric: kasmina_isolation_violations, comparator: \">\", threshold: 0, routes: [pager]}}
",
        pd.url
    ));
    let h = H::new(&y);
    h.feed("kasmina_isolation_violations", &[2.0]).await;
    h.deliver().await;
    let h = h.restart(&y);
    // The new daemon knows the alert fires: a breaching sample changes nothing.
    let t = h.feed("kasmina_isolation_violations", &[3.0]).await;
    assert!(t.is_empty(), "{t:?}");
    let h = h.restart(&y);
    let t = h.feed("kasmina_isolation_violations", &[0.0]).await;
    assert_eq!(t[0].kind, TransitionKind::Cleared);
    // The resolve is queued durably: a restart before delivery loses nothing.
    let h = h.restart(&y);
    h.deliver().await;
    h.feed("kasmina_isolation_violations", &[0.0, 0.0]).await;
    h.deliver().await;
    let actions: Vec<String> = pd
        .bodies()
        .iter()
        .map(|b| format!("{} {}", b["event_action"], b["dedup_key"]))
        .collect();
    let fp = &pd.bodies()[0]["dedup_key"];
    assert_eq!(
        actions,
        [format!("\"trigger\" {fp}"), format!("\"resolve\" {fp}")]
    );
}

#[tokio::test]
async fn a_critical_inhibits_warnings_of_its_shard_until_it_clears() {
    let slack = Http::start().await;
    let y = config(&format!(
        "  rate_limits: {{slack: {{per_minute: 0}}}}
  routes:
    chat: {{type: slack, url: \"{}/x\"}}
  rules:
    - {{name: down, metric: up, comparator: \"==\", threshold: 0, severity: critical, routes: [chat]}}
    - {{name: slow, metric: latency, comparator: \">\", threshold: 100, routes: [chat]}}
  inhibit:
    - {{source_match: {{severity: critical}}, target_match: {{severity: warning}}, equal: [shard]}}
",
        slack.url
    ));
    let h = H::new(&y);
    let on = |m: &str, v: f64, shard: &str| Sample::new(m, v).with_label("shard", shard);
    h.engine
        .observe(vec![on("up", 0.0, "earth")])
        .await
        .unwrap();
    let t = h
        .engine
        .observe(vec![
            on("latency", 500.0, "earth"),
            on("latency", 500.0, "mars"),
        ])
        .await
        .unwrap();
    let mut held: Vec<(String, Option<&str>)> = t
        .iter()
        .map(|t| (t.labels["shard"].clone(), t.held_back))
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            ("earth".to_string(), Some("inhibited")),
            ("mars".to_string(), None)
        ]
    );
    h.deliver().await;
    let t = texts(&slack);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(!t.iter().any(|t| t.contains("slow") && t.contains("earth")));
    let list = h.console().list().await.unwrap();
    assert!(list
        .iter()
        .any(|a| a.inhibited && a.state.labels["shard"] == "earth"));
    // The critical clears: the warning, still firing, is notified now.
    h.engine
        .observe(vec![on("up", 1.0, "earth")])
        .await
        .unwrap();
    h.deliver().await;
    let t = texts(&slack);
    assert!(
        t.iter()
            .any(|t| t.contains("FIRING slow") && t.contains("earth")),
        "{t:?}"
    );
}

#[tokio::test]
async fn repeats_come_after_repeat_interval_unless_acknowledged() {
    let slack = Http::start().await;
    let y = config(&format!(
        "  repeat_interval_ms: 60000
  routes:
    chat: {{type: slack, url: \"{}/x\"}}
  rules:
    - {{name: qd, metric: q, comparator: \">\", threshold: 1, routes: [chat]}}
",
        slack.url
    ));
    let h = H::new(&y);
    h.feed("q", &[5.0]).await;
    h.deliver().await;
    h.clock.advance(60_000);
    h.engine.observe(vec![]).await.unwrap();
    h.deliver().await;
    assert_eq!(texts(&slack).len(), 2, "repeated");
    let acked = h.console().ack("qd", Some("on it")).await.unwrap();
    assert_eq!(acked[0].acked_by.as_deref(), Some("cli:test"));
    h.clock.advance(120_000);
    h.engine.observe(vec![]).await.unwrap();
    h.deliver().await;
    assert_eq!(texts(&slack).len(), 2, "acknowledged: no repeat");
    let list = h.console().list().await.unwrap();
    assert_eq!(list[0].state.ack_comment.as_deref(), Some("on it"));
    let e = h.console().ack("nope", None).await.unwrap_err();
    assert_eq!(e.to_string(), "firing alert 'nope' not found");
}

#[tokio::test]
async fn the_collector_samples_the_queue_and_the_default_rule_fires() {
    let h = H::new("alerts:\n  group_wait_ms: 0\n");
    let jobs = vec![fabric_core::NewJob::new("noop"); 5];
    h.store.submit(jobs, crate::T0).await.unwrap();
    let c = Collector::new(h.store.clone());
    let samples = c.collect(crate::T0 + 1_000, 10_000).await.unwrap();
    let value = |m: &str| samples.iter().find(|s| s.metric == m).unwrap().value;
    assert_eq!(value("queue_depth"), 5.0);
    assert_eq!(
        value("job_latency_ms"),
        1_000.0,
        "the oldest due job's wait"
    );
    assert_eq!(value("throughput_ratio"), 0.0, "jobs wait, none succeeds");
    assert_eq!(value("quarantined"), 0.0);
    // queue_depth_high (> 4000 for 2) on the default rules, routed to the log.
    let many = vec![fabric_core::NewJob::new("noop"); 4000];
    h.store.submit(many, crate::T0).await.unwrap();
    for _ in 0..2 {
        h.clock.advance(10_000);
        let s = c.collect(crate::T0, 10_000).await.unwrap();
        h.engine.observe(s).await.unwrap();
    }
    let list = h.console().list().await.unwrap();
    let qd = list
        .iter()
        .find(|a| a.state.rule == "queue_depth_high")
        .unwrap();
    assert_eq!(qd.state.phase, AlertPhase::Firing);
    assert_eq!(qd.routes, ["log"]);
    h.deliver().await;
    let history = h.console().history(None, Some("log"), 10).await.unwrap();
    assert!(history.iter().any(|a| a.attempt.outcome == "delivered"));
    let active = h.engine.active().await.unwrap();
    assert_eq!(active["queue_depth_high"].value, 4005.0);
    assert_eq!(active["queue_depth_high"].routes, ["log"]);
}

#[tokio::test]
async fn a_drill_shows_fire_and_clear_and_what_each_receiver_was_sent() {
    let slack = Http::start().await;
    // The default rules, training_latency_high among them, routed to the Slack route.
    let y = format!(
        "alerts:\n  routes:\n    chat: {{type: slack, url: \"{}/x\"}}\n",
        slack.url
    );
    let h = H::new(&y);
    let mut d = Drill::new(h.store.clone(), &h.config.alerts, h.clock.clone(), true);
    let mut fired = Vec::new();
    for v in [20.0, 21.0, 22.0, 5.0] {
        h.clock.advance(1_000);
        fired.extend(
            d.feed(vec![Sample::new("training_latency_ms", v)])
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        fired.iter().map(|t| t.kind).collect::<Vec<_>>(),
        [TransitionKind::Fired, TransitionKind::Cleared]
    );
    assert_eq!(fired[0].rule, "training_latency_high");
    let sent = d.flush(Duration::from_secs(5)).await.unwrap();
    // Firing and resolved went out together (no grouping wait in a drill); dry run: the
    // receiver saw nothing.
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].route, "chat");
    let text = sent[0].body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING:1, RESOLVED:1] training_latency_high"),
        "{text}"
    );
    assert!(slack.requests().is_empty());
}
