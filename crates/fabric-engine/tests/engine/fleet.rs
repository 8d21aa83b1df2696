//! Many engines on one store: exactly one maintenance leader, a dead leader replaced within
//! two lease periods, a graceful leader handing over at once, a silent node's jobs
//! reassigned, an operator's offline/drain honoured. Each case runs on SQLite and, when
//! `FABRIC_TEST_POSTGRES_URL` is set, on PostgreSQL in a schema of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::{Clock, JobState, NewJob, RealClock};
use fabric_engine::console::NodeAction;
use fabric_engine::{Console, Engine, EngineOptions, Metrics, Registry};
use fabric_store::testing::TestSchema;
use fabric_store::{sqlite::SqliteOptions, PostgresStore, SqliteStore, Store};
use serde_json::json;

const LEASE: Duration = Duration::from_millis(1000);

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema(#[allow(dead_code)] TestSchema),
}

async fn sqlite() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap();
    (Arc::new(s), Guard::Dir(dir))
}

async fn postgres() -> Option<(Arc<dyn Store>, Guard)> {
    let schema = TestSchema::new()?;
    let s = PostgresStore::open(&schema.url, &schema.name)
        .await
        .unwrap();
    Some((Arc::new(s), Guard::Schema(schema)))
}

fn start(store: &Arc<dyn Store>, id: &str, tune: impl FnOnce(&mut EngineOptions)) -> Engine {
    let mut o = EngineOptions::from_config(Arc::new(Config::default()));
    o.node_id = id.into();
    o.max_workers = 4;
    o.poll_interval = Duration::from_millis(50);
    o.rescue_interval = Duration::from_millis(100);
    o.fleet.heartbeat = Duration::from_millis(100);
    o.fleet.leader_lease = LEASE;
    tune(&mut o);
    Engine::start(
        store.clone(),
        Registry::builtin(),
        Arc::new(RealClock),
        Metrics::new(),
        o,
    )
}

fn console_on(store: &Arc<dyn Store>) -> Console {
    Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(Config::default()),
        Arc::new(RealClock),
        "test",
    )
}

/// Submits `n` jobs that sleep `ms` each; returns their ids.
async fn submit_sleeps(store: &Arc<dyn Store>, n: usize, ms: u64) -> Vec<i64> {
    let mut job = NewJob::new("sleep");
    job.payload = json!({ "ms": ms });
    store
        .submit(vec![job; n], RealClock.now_ms())
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect()
}

/// Health checks of a daemon-less console (the CLI's).
fn health_input() -> fabric_engine::HealthInput<'static> {
    fabric_engine::HealthInput {
        home: std::path::Path::new("/"),
        config_file: std::path::Path::new("/nonexistent/fabric.yaml"),
        config_named: false,
        daemon_pid: None,
        busy: None,
        cached_integrity: false,
    }
}

async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

async fn dead_leader_is_replaced_within_two_lease_periods(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |_| {});
    let b = start(&store, "node-b", |_| {});
    until("a leader", LEASE * 3, || a.is_leader() || b.is_leader()).await;
    // Exactly one, and it stays so over several renewals.
    for _ in 0..10 {
        assert!(a.is_leader() != b.is_leader(), "exactly one leader");
        tokio::time::sleep(LEASE / 10).await;
    }
    let (dead, survivor) = if a.is_leader() { (a, b) } else { (b, a) };
    dead.abandon();
    let took = until("failover", LEASE * 2, || survivor.is_leader()).await;
    eprintln!("failover took {took:?} (lease {LEASE:?})");
    let console = console_on(&store);
    let views = console.nodes().await.unwrap();
    let leaders: Vec<_> = views
        .iter()
        .filter(|v| v.leader)
        .map(|v| &v.node.id)
        .collect();
    assert_eq!(leaders.len(), 1, "{views:?}");
    survivor.shutdown().await;
}

async fn graceful_leader_hands_over_at_once(store: Arc<dyn Store>) {
    // A long lease: only the release on stop can explain a quick handover.
    let long = |o: &mut EngineOptions| o.fleet.leader_lease = Duration::from_secs(30);
    let a = start(&store, "node-a", long);
    until("a leads", Duration::from_secs(5), || a.is_leader()).await;
    let b = start(&store, "node-b", long);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_leader());
    a.shutdown().await;
    until("b takes over", Duration::from_secs(5), || b.is_leader()).await;
    let nodes = store.fleet().nodes().await.unwrap();
    let a_row = nodes.iter().find(|n| n.id == "node-a").unwrap();
    assert!(a_row.stopped_at.is_some(), "a stopped node says so");
    b.shutdown().await;
}

async fn silent_nodes_jobs_are_reassigned(store: Arc<dyn Store>) {
    // Job leases far longer than the test: only the node timeout can free the jobs.
    let tune = |o: &mut EngineOptions| {
        o.lease = Duration::from_secs(600);
        o.fleet.node_timeout = Duration::from_millis(600);
    };
    let a = start(&store, "node-a", tune);
    until("a leads", Duration::from_secs(5), || a.is_leader()).await;
    let ids = submit_sleeps(&store, 4, 60_000).await;
    until("a runs them", Duration::from_secs(10), || {
        a.in_flight() == 4
    })
    .await;
    a.abandon();
    let b = start(&store, "node-b", tune);
    let mut reassigned = false;
    for _ in 0..500 {
        let running: Vec<_> = store
            .jobs(fabric_store::JobFilter {
                state: Some(JobState::Running),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        if ids.iter().all(|id| {
            running.iter().any(|j| {
                j.id == *id
                    && j.lease_owner
                        .as_deref()
                        .unwrap_or("")
                        .starts_with("node-b/")
            })
        }) {
            reassigned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reassigned, "node-a's jobs were not reassigned to node-b");
    for id in &ids {
        assert_eq!(store.job(*id).await.unwrap().job.attempt, 2);
    }
    b.abandon();
}

async fn offline_and_drained_nodes_claim_nothing(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |_| {});
    until("registered", Duration::from_secs(5), || a.is_leader()).await;
    let console = console_on(&store).with_engine(a.waker(), Metrics::new());
    for action in [NodeAction::Offline, NodeAction::Drain] {
        console
            .set_node("node-a", action, Some("test"))
            .await
            .unwrap();
        if action == NodeAction::Drain {
            // Drain alone: bring health back, keep the drain.
            store
                .fleet()
                .update_node(
                    "node-a",
                    fabric_store::NodeChange {
                        health: Some(fabric_core::NodeHealth::Healthy),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
        }
        // The next heartbeat tells the engine; then a submitted job stays pending.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let id = console.submit(NewJob::new("noop")).await.unwrap().id;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            store.job(id).await.unwrap().job.state,
            JobState::Pending,
            "{action:?}"
        );
        console
            .set_node("node-a", NodeAction::Online, None)
            .await
            .unwrap();
        // The job runs once the node is back.
        super::wait_state(&*store, id, JobState::Succeeded).await;
    }
    let actions: Vec<String> = console
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"nodes.offline".to_string()),
        "{actions:?}"
    );
    assert!(actions.contains(&"nodes.drain".to_string()), "{actions:?}");
    a.shutdown().await;
}

async fn paused_shards_and_conservative_mode_hold_work_back(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |_| {});
    until("registered", Duration::from_secs(5), || a.is_leader()).await;
    let console = console_on(&store).with_engine(a.waker(), Metrics::new());
    let job = |shard: &str, p: fabric_core::Priority| {
        let mut j = NewJob::new("noop");
        j.shard = shard.into();
        j.priority = p;
        j
    };
    let state = |id: i64| {
        let store = store.clone();
        async move { store.job(id).await.unwrap().job.state }
    };
    console.pause_shard("luna", Some("drill")).await.unwrap();
    console.set_conservative(true, None).await.unwrap();
    // The next fleet tick (100 ms here) brings the levers to the dispatcher.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let luna = console
        .submit(job("luna", fabric_core::Priority::HIGH))
        .await
        .unwrap()
        .id;
    let low = console
        .submit(job("earth", fabric_core::Priority::LOW))
        .await
        .unwrap()
        .id;
    let high = console
        .submit(job("earth", fabric_core::Priority::HIGH))
        .await
        .unwrap()
        .id;
    // High priority runs.
    super::wait_state(&*store, high, JobState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(luna).await, JobState::Pending, "paused shard holds");
    assert_eq!(
        state(low).await,
        JobState::Pending,
        "conservative holds low"
    );
    console.set_conservative(false, None).await.unwrap();
    console.resume_all(None).await.unwrap();
    for id in [luna, low] {
        // Each runs after the resume.
        super::wait_state(&*store, id, JobState::Succeeded).await;
    }
    a.shutdown().await;
}

/// A shard paused through this daemon's own console (or API) holds its work back from the
/// next claim, not from the next fleet tick (30 s here).
async fn a_lever_pulled_through_this_daemon_applies_before_its_next_tick(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |o| {
        o.fleet.heartbeat = Duration::from_secs(30);
        o.fleet.leader_lease = Duration::from_secs(90);
    });
    until("registered", Duration::from_secs(5), || a.is_leader()).await;
    let console = console_on(&store).with_engine(a.waker(), Metrics::new());
    let job = |shard: &str| {
        let mut j = NewJob::new("noop");
        j.shard = shard.into();
        j
    };
    console.pause_shard("luna", Some("drill")).await.unwrap();
    let luna = console.submit(job("luna")).await.unwrap().id;
    let earth = console.submit(job("earth")).await.unwrap().id;
    super::wait_state(&*store, earth, JobState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = store.job(luna).await.unwrap().job.state;
    assert_eq!(held, JobState::Pending, "the paused shard holds at once");
    console.resume_shard("luna", None).await.unwrap();
    super::wait_state(&*store, luna, JobState::Succeeded).await;
    a.shutdown().await;
}

/// A running job cancelled by another process (the CLI) stops on the node that runs it:
/// PostgreSQL tells that node with a NOTIFY; on SQLite the CLI signals the daemon, which
/// checks its leases (here: the call the signal makes). The slot is free at once, and a stop
/// does not wait for the cancelled work.
async fn a_cancelled_running_job_stops_where_it_runs(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |o| {
        o.max_workers = 1;
        // Heartbeats (a third of the lease) would find the cancel only after 20 s.
        o.lease = Duration::from_secs(60);
        o.shutdown_timeout = Duration::from_secs(60);
    });
    let ids = submit_sleeps(&store, 1, 60_000).await;
    super::wait_state(&*store, ids[0], JobState::Running).await;
    until("the attempt starts", Duration::from_secs(10), || {
        a.in_flight() == 1
    })
    .await;
    console_on(&store)
        .cancel(ids[0], "wrong input")
        .await
        .unwrap();
    if store.backend() == "sqlite" {
        a.waker().check_leases();
    }
    until(
        "the cancelled attempt stops",
        Duration::from_secs(10),
        || a.in_flight() == 0,
    )
    .await;
    // The one slot takes new work at once.
    let next = submit_sleeps(&store, 1, 1).await;
    a.waker().wake();
    super::wait_state(&*store, next[0], JobState::Succeeded).await;
    let cancelled = store.job(ids[0]).await.unwrap().job;
    assert_eq!(cancelled.state, JobState::Cancelled);
    let stop = tokio::time::timeout(Duration::from_secs(20), a.shutdown()).await;
    assert_eq!(stop.ok(), Some(0), "the stop waited for cancelled work");
}

/// The API's cancel (a Console inside the daemon) stops the attempt directly.
async fn a_cancel_in_the_daemon_stops_its_attempt(store: Arc<dyn Store>) {
    let a = start(&store, "node-a", |o| o.lease = Duration::from_secs(60));
    let console = console_on(&store).with_engine(a.waker(), Metrics::new());
    let ids = submit_sleeps(&store, 1, 60_000).await;
    super::wait_state(&*store, ids[0], JobState::Running).await;
    until("the attempt starts", Duration::from_secs(10), || {
        a.in_flight() == 1
    })
    .await;
    console.cancel(ids[0], "operator").await.unwrap();
    assert_eq!(a.in_flight(), 0, "stopped before the cancel returned");
    assert_eq!(a.shutdown().await, 0);
}

/// The `workers` check fails when a daemon runs yet due work waits with slots free (a
/// stalled dispatcher), and when its node is offline; a paused shard's work is no stall.
async fn the_workers_check_reports_a_stall_and_an_offline_node(store: Arc<dyn Store>) {
    let console = console_on(&store);
    let daemon = fabric_engine::HealthInput {
        daemon_pid: Some(4242),
        busy: Some(0),
        ..health_input()
    };
    let check = |c: &Console| {
        let (c, daemon) = (c.clone(), daemon.clone());
        async move { c.health_check("workers", &daemon).await.unwrap() }
    };
    assert_eq!(check(&console).await.status, "ok");
    let mut late = NewJob::new("noop");
    late.shard = "luna".into();
    late.run_at = Some(RealClock.now_ms() - 60_000);
    store.submit(vec![late], RealClock.now_ms()).await.unwrap();
    // Nothing claims it: no engine runs although the "daemon" does.
    let stalled = check(&console).await;
    assert_eq!(stalled.status, "error", "{stalled:?}");
    assert!(stalled.detail.contains("dispatcher stalled"), "{stalled:?}");
    assert!(stalled.detail.contains("shard luna"), "{stalled:?}");
    console.pause_shard("luna", None).await.unwrap();
    assert_eq!(
        check(&console).await.status,
        "ok",
        "a paused shard holds work on purpose"
    );
    // The node of this console's config (`local`) taken offline by an operator.
    let engine = start(&store, "local", |_| {});
    for _ in 0..100 {
        if console
            .nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.node.id == "local")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    console
        .set_node("local", NodeAction::Offline, Some("maintenance"))
        .await
        .unwrap();
    let offline = check(&console).await;
    assert_eq!(offline.status, "error", "{offline:?}");
    assert!(offline.detail.contains("offline"), "{offline:?}");
    engine.shutdown().await;
}

/// Quarantines one `noop` job at `at`; returns its id.
async fn quarantine_at(store: &Arc<dyn Store>, at: i64) -> i64 {
    let id = store.submit(vec![NewJob::new("noop")], at).await.unwrap()[0].id;
    let req = fabric_store::ClaimRequest {
        owner: "old/1".into(),
        limit: 10,
        lease_ms: 30_000,
        now: at,
        ..Default::default()
    };
    let job = store.claim(req).await.unwrap().remove(0);
    assert_eq!(job.id, id);
    let done = fabric_store::Completion {
        id,
        attempt: job.attempt,
        owner: "old/1".into(),
        started_at: at,
        finished_at: at,
        outcome: fabric_store::Outcome::Quarantine {
            reason: fabric_core::quarantine::QuarantineReason::Unknown,
            error: "boom".into(),
            failure: "permanent".into(),
        },
    };
    assert_eq!(store.complete(vec![done]).await.unwrap().applied(), 1);
    id
}

async fn the_leader_applies_every_retention(store: Arc<dyn Store>) {
    const DAY: i64 = 86_400_000;
    let now = RealClock.now_ms();
    let old_q = quarantine_at(&store, now - 31 * DAY).await;
    let new_q = quarantine_at(&store, now - 29 * DAY).await;
    for (at, target) in [(now - 366 * DAY, "old"), (now - 364 * DAY, "new")] {
        let entry = fabric_store::AuditEntry {
            at,
            actor: "alice".into(),
            action: "jobs.cancel".into(),
            target: target.into(),
            reason: None,
        };
        store.audit(entry).await.unwrap();
    }
    for i in 0..4 {
        let report = fabric_store::RecoveryReport {
            at: now - 1_000 + i,
            jobs_reset_to_pending: 0,
            jobs_quarantined: 0,
            duration_ms: 1.0,
            wal_checkpointed: true,
            integrity: "ok".into(),
            errors: vec![],
        };
        store.put_recovery_report(report).await.unwrap();
    }
    for at in [now - 91 * DAY, now - 89 * DAY] {
        let sample = fabric_store::TelemetrySample {
            at,
            source: "notes".into(),
            job_id: None,
            files: 1,
            bytes: 1,
            duration_ms: 1,
            outcome: "ok".into(),
            reason: None,
        };
        store.record_telemetry(vec![sample]).await.unwrap();
    }
    // The defaults: quarantine 30 days, audit 365 days, telemetry 90 days; recovery.keep 2.
    let mut config = Config::default();
    config.recovery.keep = 2;
    let mut o = EngineOptions::from_config(Arc::new(config));
    o.node_id = "node-a".into();
    o.fleet.heartbeat = Duration::from_millis(100);
    o.fleet.leader_lease = LEASE;
    let engine = Engine::start(
        store.clone(),
        Registry::builtin(),
        Arc::new(RealClock),
        Metrics::new(),
        o,
    );
    let t0 = Instant::now();
    loop {
        let quarantined: Vec<i64> = store
            .quarantine(fabric_store::QuarantineFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|q| q.id)
            .collect();
        let audit: Vec<String> = store
            .audit_log(None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.actor == "alice")
            .map(|e| e.target)
            .collect();
        if quarantined == vec![new_q] && audit == vec!["new".to_string()] {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "retention not applied: quarantine {quarantined:?} (old {old_q}), audit {audit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Shutdown ends the fleet task's round, recovery reports (pruned last) included.
    engine.shutdown().await;
    assert_eq!(
        store.prune_recovery_reports(2).await.unwrap(),
        0,
        "the leader kept only the newest 2 recovery reports"
    );
    let telemetry = store.telemetry(0, None).await.unwrap();
    assert_eq!(
        telemetry[0].first_at,
        now - 89 * DAY,
        "older than 90 days pruned"
    );
    assert_eq!(telemetry[0].samples, 1);
    let last = store.last_recovery_report().await.unwrap().unwrap();
    assert_eq!(last.at, now - 1_000 + 3);
    assert_eq!(store.prune_recovery_reports(1).await.unwrap(), 1);
}

/// The leader runs source schedules: the first due time is set, a due source gets one scan
/// job per due time (its unique key), even when the same due time is seen twice, and a paused
/// source gets none.
async fn schedules_enqueue_one_scan_per_due_time(store: Arc<dyn Store>) {
    use fabric_core::source::{SourceDef, SourceType};
    let def = |name: &str| SourceDef {
        name: name.into(),
        source_type: SourceType::LocalFiles,
        path: "/tmp".into(),
        include: vec![],
        exclude: vec![],
        schedule: Some("every 1m".into()),
        priority: fabric_core::Priority::NORMAL,
        retry_policy: None,
    };
    let now = RealClock.now_ms();
    store.put_source(def("notes"), now).await.unwrap();
    store.put_source(def("held"), now).await.unwrap();
    store
        .set_source_paused("held", Some("maintenance"), now)
        .await
        .unwrap();
    let engine = start(&store, "node-a", |_| {});
    let mut first = None;
    for _ in 0..500 {
        first = store.source("notes").await.unwrap().next_run_at;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = first.expect("the leader sets the first due time");
    assert!(
        first > now && first <= RealClock.now_ms() + 60_000,
        "{first}"
    );
    let scans = || async {
        store
            .jobs(fabric_store::JobFilter {
                kind: Some("scan".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    assert!(scans().await.is_empty(), "nothing is due yet");
    // Due now; then the same due time seen again (an overlapping leader): one job.
    let due = RealClock.now_ms() - 1;
    for _ in 0..2 {
        store.set_source_next_run("notes", Some(due)).await.unwrap();
        for _ in 0..500 {
            let next = store.source("notes").await.unwrap().next_run_at;
            if next.is_some_and(|n| n > due) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let jobs = scans().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].source.as_deref(), Some("notes"));
    assert_eq!(
        jobs[0].unique_key.as_deref(),
        Some(format!("scan:notes:{due}").as_str())
    );
    let held = store.source("held").await.unwrap();
    assert_eq!(held.next_run_at, None, "a paused source is not scheduled");
    engine.shutdown().await;
}

macro_rules! on_both_backends {
    ($($case:ident),*) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, _guard)) = super::postgres().await else { return };
                    super::$case(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    schedules_enqueue_one_scan_per_due_time,
    the_workers_check_reports_a_stall_and_an_offline_node,
    a_cancelled_running_job_stops_where_it_runs,
    a_cancel_in_the_daemon_stops_its_attempt,
    dead_leader_is_replaced_within_two_lease_periods,
    graceful_leader_hands_over_at_once,
    silent_nodes_jobs_are_reassigned,
    offline_and_drained_nodes_claim_nothing,
    paused_shards_and_conservative_mode_hold_work_back,
    a_lever_pulled_through_this_daemon_applies_before_its_next_tick,
    the_leader_applies_every_retention
);

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones:
/// the database "lost" while the engine runs.
struct Proxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_lost_while_running_loses_nothing() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    // postgres://user@host:port/db → the same through the proxy.
    let (scheme_user, rest) = schema.url.split_once('@').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let upstream = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    };
    let proxy = Proxy::start(upstream).await;
    let proxied = format!("{scheme_user}@127.0.0.1:{}/{db}", proxy.port);
    let store: Arc<dyn Store> =
        Arc::new(PostgresStore::open(&proxied, &schema.name).await.unwrap());
    let engine = start(&store, "node-a", |_| {});
    let console = console_on(&store);
    let ids = submit_sleeps(&store, 8, 1500).await;
    until("4 in flight", Duration::from_secs(10), || {
        engine.in_flight() == 4
    })
    .await;

    proxy.cut();
    // Health says the store is down; the running jobs finish meanwhile and their
    // completions wait; nothing new is claimed.
    let store_check = console
        .health_check("store", &health_input())
        .await
        .unwrap();
    let health = [store_check.clone()];
    assert_eq!(store_check.status, "error", "{health:?}");
    until("the engine notices", Duration::from_secs(10), || {
        !engine.store_up()
    })
    .await;
    until("in-flight jobs finish", Duration::from_secs(10), || {
        engine.in_flight() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        engine.in_flight(),
        0,
        "claimed nothing while the store was down"
    );

    proxy.restore();
    for id in &ids {
        super::wait_state(&*store, *id, JobState::Succeeded).await;
    }
    until(
        "the engine sees the store again",
        Duration::from_secs(10),
        || engine.store_up(),
    )
    .await;
    // The first four finished while the store was away: their completions were retried
    // and applied to the very attempt that ran (no rescue, no second run).
    for id in &ids {
        assert_eq!(store.job(*id).await.unwrap().job.attempt, 1, "job {id}");
    }
    let store_check = console
        .health_check("store", &health_input())
        .await
        .unwrap();
    assert_eq!(store_check.status, "ok");
    engine.shutdown().await;
}
