//! Measurements of the whole store (the SLO report, the counts by state) are shared when they
//! are dear: a fresh one is served as it is, a stale one while a new one is measured in the
//! background, and one past `STALE_MS` is measured before answering (on the Console's
//! virtual clock); a cheap one is made again for every reader.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::{NewJob, VirtualClock};
use fabric_engine::measured::{MAX_FRESH_MS, STALE_MS};
use fabric_engine::{Console, Registry};
use fabric_store::{sqlite::SqliteOptions, ClaimRequest, Completion, Outcome, SqliteStore, Store};

const T0: i64 = 1_800_000_000_000;

/// Submits, claims and completes one job (succeeded) at `now`.
async fn finish_one(store: &dyn Store, now: i64) {
    store.submit(vec![NewJob::new("noop")], now).await.unwrap();
    let jobs = store
        .claim(ClaimRequest {
            owner: "w".into(),
            limit: 1,
            lease_ms: 60_000,
            now,
            ..ClaimRequest::default()
        })
        .await
        .unwrap();
    let done = Completion {
        id: jobs[0].id,
        attempt: jobs[0].attempt,
        owner: "w".into(),
        started_at: now,
        finished_at: now,
        outcome: Outcome::Succeeded { result: None },
    };
    assert_eq!(store.complete(vec![done]).await.unwrap().applied(), 1);
}

/// A fresh store and a virtual clock at `T0`.
fn fixture() -> (tempfile::TempDir, Arc<dyn Store>, Arc<VirtualClock>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap());
    (dir, store, Arc::new(VirtualClock::new(T0)))
}

/// A Console of the default configuration (its two default SLOs) on `clock`.
fn console(store: &Arc<dyn Store>, clock: &Arc<VirtualClock>) -> Console {
    let config = Arc::new(Config::default());
    Console::new(
        store.clone(),
        Registry::builtin(),
        config,
        clock.clone(),
        "t",
    )
}

async fn succeeded(console: &Console) -> u64 {
    console.slo_report().await.unwrap()["job_success"].total
}

#[tokio::test]
async fn a_dear_slo_report_is_shared_while_fresh_refreshed_when_stale_and_measured_when_old() {
    let (_dir, store, clock) = fixture();
    assert!(
        Config::default().slo.contains_key("job_success"),
        "the default SLOs"
    );
    let console = console(&store, &clock).share_measurements_above(Duration::ZERO);
    let other = console.clone();

    finish_one(&*store, T0).await;
    assert_eq!(succeeded(&console).await, 1);

    // Fresh: a clone is served the same measurement, not a new one.
    finish_one(&*store, T0).await;
    assert_eq!(succeeded(&other).await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        succeeded(&other).await,
        1,
        "nothing measured again while fresh"
    );

    // Stale: served as it was while a new one is measured in the background.
    clock.advance(MAX_FRESH_MS);
    assert_eq!(succeeded(&console).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while succeeded(&console).await != 2 {
        assert!(
            Instant::now() < deadline,
            "the background measurement never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Old: measured before answering.
    finish_one(&*store, fabric_core::Clock::now_ms(&*clock)).await;
    clock.advance(STALE_MS);
    assert_eq!(succeeded(&console).await, 3);
}

#[tokio::test]
async fn cheap_counts_are_measured_for_every_reader_and_dear_ones_shared() {
    let (_dir, store, clock) = fixture();
    let cheap = console(&store, &clock);
    let shared = console(&store, &clock).share_measurements_above(Duration::ZERO);
    assert_eq!(cheap.counts().await.unwrap().total(), 0);
    assert_eq!(shared.counts().await.unwrap().total(), 0);
    store.submit(vec![NewJob::new("noop")], T0).await.unwrap();
    assert_eq!(
        cheap.counts().await.unwrap().pending,
        1,
        "a cheap count is exact"
    );
    let by_state = fabric_store::JobFilter {
        state: Some(fabric_core::JobState::Pending),
        ..Default::default()
    };
    assert_eq!(cheap.count_jobs(by_state.clone()).await.unwrap(), 1);
    assert_eq!(
        shared.counts().await.unwrap().pending,
        0,
        "a dear one is shared while fresh"
    );
    assert_eq!(shared.count_jobs(by_state.clone()).await.unwrap(), 0);
    clock.advance(STALE_MS);
    assert_eq!(shared.count_jobs(by_state).await.unwrap(), 1);
}
