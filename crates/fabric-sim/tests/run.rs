//! Scenario runs end to end on a real (temporary) SQLite store: the acceptance cases of the
//! planetary layer.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use fabric_sim::runner::{execute, RunOptions, Stop};
use fabric_sim::scoreboard::Scoreboard;
use fabric_sim::{load_checkpoint, save_checkpoint, Fabric, Scenario};

fn opts(dir: &tempfile::TempDir, scenario: Scenario) -> RunOptions {
    RunOptions {
        scenario,
        seed: 7,
        duration_cap: None,
        store_path: dir.path().join("run.db"),
        checkpoint_path: dir.path().join("checkpoint.json"),
        tick_ms: 100,
        speed: None,
        save_requested: Default::default(),
    }
}

fn quiet() -> Scoreboard {
    Scoreboard::new(Box::new(std::io::sink()), false, true)
}

fn custom(jobs: u64, p: f64, shards: &[&str]) -> Scenario {
    let mut s = Scenario::builtin("k2-benchmark").unwrap();
    s.name = "custom".into();
    s.job_count = jobs;
    s.completion_probability = p;
    s.shards = shards.iter().map(|x| x.to_string()).collect();
    s.duration_seconds = 5.0;
    s
}

#[tokio::test]
async fn all_240_jobs_complete_and_every_queue_empties() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, custom(240, 1.0, &["earth", "luna", "mars"]));
    let out = execute(&o, None, &mut quiet()).await.unwrap();
    let r = out.report;
    assert_eq!(out.stop, Stop::Complete);
    assert_eq!((r.completed, r.failed, r.remaining), (240, 0, 0));
    assert!(
        r.queue_depths.values().all(|d| *d == 0),
        "{:?}",
        r.queue_depths
    );
    assert_eq!(r.metrics.completed_jobs, 240);
    // The store agrees: every job succeeded.
    let cp = load_checkpoint(&o.checkpoint_path).unwrap();
    assert!(cp.state.orchestrator.pending.is_empty() && cp.state.orchestrator.in_flight.is_empty());
}

#[tokio::test]
async fn a_checkpoint_resumes_in_a_fresh_fabric_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, custom(600, 0.9, &["earth", "luna", "mars"]));
    let mut f = Fabric::new(&o).await.unwrap();
    let stop = f
        .run_until(None, |f| f.finished() >= 200, |_| {})
        .await
        .unwrap();
    assert_eq!(stop, Stop::Cut);
    let cp = f.checkpoint().await.unwrap();
    assert!(
        !cp.state.orchestrator.in_flight.is_empty(),
        "jobs in flight at the checkpoint"
    );
    save_checkpoint(&o.checkpoint_path, &cp).unwrap();
    drop(f);
    let mut o2 = o.clone();
    o2.store_path = dir.path().join("fresh.db");
    let loaded = load_checkpoint(&o.checkpoint_path).unwrap();
    let mut g = Fabric::resume(&o2, loaded).await.unwrap();
    let stop = g.run_until(None, |_| false, |_| {}).await.unwrap();
    assert_eq!(stop, Stop::Complete);
    let r = g.report(None);
    assert!(r.loaded_from_checkpoint);
    assert_eq!(r.completed + r.failed, 600, "{r:?}");
    assert!(r.queue_depths.values().all(|d| *d == 0));
}

#[tokio::test]
async fn a_node_taken_offline_has_its_jobs_reassigned_and_its_shard_drains() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, custom(400, 1.0, &["earth", "luna"]));
    let mut f = Fabric::new(&o).await.unwrap();
    f.run_until(None, |f| f.finished() >= 50, |_| {})
        .await
        .unwrap();
    let before = f.counters().reassigned;
    f.fail_node("earth-gpu-1").unwrap();
    assert_eq!(
        f.run_until(None, |_| false, |_| {}).await.unwrap(),
        Stop::Complete
    );
    let r = f.report(None);
    assert!(r.reassigned > before, "{r:?}");
    assert_eq!(r.health.node_health["earth-gpu-1"], "offline");
    assert_eq!(r.queue_depths["earth"], 0);
    assert_eq!(r.completed, 400);
}

#[tokio::test]
async fn k2_benchmark_completes_with_few_failures_and_balanced_queues() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, Scenario::builtin("k2-benchmark").unwrap());
    let r = execute(&o, None, &mut quiet()).await.unwrap().report;
    assert_eq!(r.job_count, 10_000);
    assert!(r.completed as f64 >= 0.98 * 10_000.0, "{}", r.summary());
    assert!((r.failed as f64) < 0.02 * 10_000.0, "{}", r.summary());
    // Balanced queues: mars cannot spill (12.5 light-minutes from every other shard), so
    // the others keep pace with it instead of running ahead.
    assert!(r.max_queue_spread < 400, "{}", r.max_queue_spread);
}

#[tokio::test]
async fn a_paused_shard_dispatches_nothing_and_conservative_mode_runs_only_high_priority() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, custom(300, 1.0, &["earth", "luna"]));
    let mut f = Fabric::new(&o).await.unwrap();
    let owner = f.owner_console();
    owner.pause_shard("luna").await.unwrap();
    owner.set_conservative(true).await.unwrap();
    f.run_until(Some(60_000), |_| false, |_| {}).await.unwrap();
    let stats = f.shard_stats();
    assert_eq!(stats["luna"].dispatched, 0, "paused");
    assert!(stats["luna"].depth > 0);
    let store = f.store().clone();
    let done = store
        .jobs(fabric_store::JobFilter {
            state: Some(fabric_core::JobState::Succeeded),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!done.is_empty());
    assert!(
        done.iter()
            .all(|j| j.priority >= fabric_core::Priority::HIGH),
        "conservative"
    );
    owner.resume_all().await.unwrap();
    owner.set_conservative(false).await.unwrap();
    assert_eq!(
        f.run_until(None, |_| false, |_| {}).await.unwrap(),
        Stop::Complete
    );
    assert_eq!(f.report(None).completed, 300);
    let snap = owner.snapshot().await.unwrap();
    assert!(!snap.conservative && snap.shards.iter().all(|s| !s.paused));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_report() {
    let run = |name: &'static str| async move {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(&dir, Scenario::builtin(name).unwrap());
        let r = execute(&o, None, &mut quiet()).await.unwrap().report;
        (
            r.dispatched,
            r.completed,
            r.failed,
            r.reassigned,
            r.spillovers,
            r.virtual_seconds,
        )
    };
    assert_eq!(run("edge-relief").await, run("edge-relief").await);
    // Also through a node outage and a kill-and-resume.
    assert_eq!(run("resilience-drill").await, run("resilience-drill").await);
}

#[tokio::test]
async fn resilience_drill_loses_a_node_and_the_orchestrator_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir, Scenario::builtin("resilience-drill").unwrap());
    let r = execute(&o, None, &mut quiet()).await.unwrap().report;
    assert!(r.loaded_from_checkpoint, "resumed after the kill");
    assert!(r.reassigned > 0);
    assert_eq!(r.completed + r.failed, 2400);
    assert!(
        r.health.node_health.values().any(|h| h == "offline"),
        "{:?}",
        r.health
    );
}
