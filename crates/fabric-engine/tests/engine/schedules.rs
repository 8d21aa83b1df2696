//! Cron schedules fired by the maintenance leader on the engine's virtual clock: an
//! every-second schedule fires once per second, a daily one once a day in its time zone,
//! daylight-saving jumps fire the skipped and the repeated time once each, a clock jump of an
//! hour with catch-up `one` fires one run and not a burst, and two daemons on PostgreSQL
//! fire each due time exactly once. On the real clock, an every-second schedule fires every
//! second although the leader's fleet tick (the heartbeat) is two seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use fabric_core::config::Config;
use fabric_core::cron_schedule::{CatchUp, Overlap, ScheduleDef};
use fabric_core::VirtualClock;
use fabric_engine::{Console, Engine, EngineOptions, Metrics, Registry};
use fabric_store::testing::TestSchema;
use fabric_store::{sqlite::SqliteOptions, JobFilter, PostgresStore, SqliteStore, Store};

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    chrono::Utc
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .unwrap()
        .timestamp_millis()
}

fn start(store: &Arc<dyn Store>, id: &str, clock: &Arc<VirtualClock>) -> Engine {
    start_on(store, id, clock.clone(), Duration::from_millis(50))
}

fn start_on(
    store: &Arc<dyn Store>,
    id: &str,
    clock: Arc<dyn fabric_core::Clock>,
    heartbeat: Duration,
) -> Engine {
    let mut o = EngineOptions::from_config(Arc::new(Config::default()));
    o.node_id = id.into();
    o.max_workers = 4;
    o.poll_interval = Duration::from_millis(50);
    o.fleet.heartbeat = heartbeat;
    o.fleet.leader_lease = Duration::from_secs(30);
    Engine::start(store.clone(), Registry::builtin(), clock, Metrics::new(), o)
}

fn console(store: &Arc<dyn Store>, clock: &Arc<VirtualClock>) -> Console {
    Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(Config::default()),
        clock.clone(),
        "test",
    )
}

fn def(name: &str, cron: &str, tz: &str, catch_up: CatchUp) -> ScheduleDef {
    let mut d = ScheduleDef::new(name, cron, "noop");
    d.timezone = tz.into();
    d.catch_up = catch_up;
    d.overlap = Overlap::Allow;
    d
}

/// Due times of the jobs schedule `name` enqueued, with how many jobs each has.
async fn fired(store: &dyn Store, name: &str) -> BTreeMap<i64, usize> {
    let prefix = format!("schedule:{name}:");
    let mut out = BTreeMap::new();
    let jobs = store
        .jobs(JobFilter {
            limit: 100_000,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    for j in jobs {
        let due = j
            .unique_key
            .as_deref()
            .and_then(|k| k.strip_prefix(&prefix));
        // `<due>`; a trigger's `manual:<now>` is not a due time.
        if let Some(due) = due.and_then(|d| d.split(':').next()?.parse::<i64>().ok()) {
            *out.entry(due).or_default() += 1;
        }
    }
    out
}

/// Moves the clock to `to` and waits (real time, up to 20 s) until the leader has moved the
/// schedule's next due time past `to`; returns it.
async fn step(store: &dyn Store, clock: &VirtualClock, name: &str, to: i64) -> i64 {
    clock.advance_to(to);
    let t0 = Instant::now();
    loop {
        let next = store.schedules().schedule(name).await.unwrap().next_due;
        if let Some(n) = next.filter(|n| *n > to) {
            return n;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{name}: not fired at {to}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Steps the clock from due time to due time (100 ms past each) until `until`; returns the
/// due times fired.
async fn run_until(store: &dyn Store, clock: &VirtualClock, name: &str, until: i64) -> Vec<i64> {
    loop {
        let next = store
            .schedules()
            .schedule(name)
            .await
            .unwrap()
            .next_due
            .unwrap();
        if next > until {
            return fired(store, name).await.into_keys().collect();
        }
        step(store, clock, name, next + 100).await;
    }
}

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap();
    (Arc::new(s), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_second_schedule_fires_once_per_second_of_virtual_time() {
    let (store, _dir) = sqlite().await;
    let t0 = utc(2026, 6, 1, 0, 0);
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = start(&store, "node-a", &clock);
    let c = console(&store, &clock);
    let view = c
        .add_schedule(def("tick", "* * * * * *", "UTC", CatchUp::One))
        .await
        .unwrap();
    assert_eq!(view.schedule.next_due, Some(t0 + SEC));
    assert_eq!(
        view.upcoming,
        (1..=5).map(|i| t0 + i * SEC).collect::<Vec<_>>()
    );
    for i in 1..=10 {
        let next = step(&*store, &clock, "tick", t0 + i * SEC).await;
        assert_eq!(next, t0 + (i + 1) * SEC);
    }
    let got = fired(&*store, "tick").await;
    assert_eq!(
        got,
        (1..=10)
            .map(|i| (t0 + i * SEC, 1))
            .collect::<BTreeMap<_, _>>(),
        "one job per second"
    );
    let rec = store.schedules().schedule("tick").await.unwrap();
    assert_eq!((rec.runs, rec.skipped), (10, 0));
    engine.shutdown().await;
}

/// The daemon's fleet tick is its heartbeat, 2 s by default; the leader wakes for each due
/// time between ticks, so an every-second schedule with catch-up `one` runs every second and
/// skips none (before, it fired at each tick and skipped every other second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_second_schedule_fires_every_second_between_two_second_ticks() {
    let (store, _dir) = sqlite().await;
    let clock: Arc<dyn fabric_core::Clock> = Arc::new(fabric_core::RealClock);
    let engine = start_on(&store, "node-a", clock.clone(), Duration::from_secs(2));
    let c = Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(Config::default()),
        clock,
        "test",
    );
    c.add_schedule(def("tick", "* * * * * *", "UTC", CatchUp::One))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let rec = store.schedules().schedule("tick").await.unwrap();
    let got: Vec<i64> = fired(&*store, "tick").await.into_keys().collect();
    assert!(got.len() >= 3, "fired {got:?}");
    assert!(
        got.windows(2).all(|w| w[1] - w[0] == SEC),
        "one run per second, none skipped: {got:?}"
    );
    assert_eq!(rec.skipped, 0, "fired {got:?}");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_schedule_fires_once_a_day_in_its_time_zone() {
    let (store, _dir) = sqlite().await;
    let t0 = utc(2026, 6, 1, 0, 0);
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = start(&store, "node-a", &clock);
    // 09:00 in Berlin is 07:00 UTC in summer.
    console(&store, &clock)
        .add_schedule(def("daily", "0 9 * * *", "Europe/Berlin", CatchUp::One))
        .await
        .unwrap();
    let got = run_until(&*store, &clock, "daily", utc(2026, 6, 4, 0, 0)).await;
    assert_eq!(
        got,
        [
            utc(2026, 6, 1, 7, 0),
            utc(2026, 6, 2, 7, 0),
            utc(2026, 6, 3, 7, 0)
        ]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dst_jumps_fire_the_skipped_and_the_repeated_time_once() {
    let (store, _dir) = sqlite().await;
    let clock = Arc::new(VirtualClock::new(utc(2026, 3, 7, 12, 0)));
    let engine = start(&store, "node-a", &clock);
    let c = console(&store, &clock);
    let ny = "America/New_York";
    // 02:30 does not exist on 2026-03-08 (02:00 EST -> 03:00 EDT): it runs at 03:00 EDT.
    c.add_schedule(def("spring", "30 2 * * *", ny, CatchUp::One))
        .await
        .unwrap();
    let got = run_until(&*store, &clock, "spring", utc(2026, 3, 10, 0, 0)).await;
    assert_eq!(got, [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]);

    // 01:30 comes twice on 2026-11-01 (at 05:30 and 06:30 UTC): it runs once.
    clock.advance_to(utc(2026, 10, 31, 12, 0));
    c.add_schedule(def("fall", "30 1 * * *", ny, CatchUp::One))
        .await
        .unwrap();
    let got = run_until(&*store, &clock, "fall", utc(2026, 11, 3, 0, 0)).await;
    assert_eq!(got, [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_clock_jump_with_catch_up_one_fires_one_run() {
    let (store, _dir) = sqlite().await;
    let t0 = utc(2026, 6, 1, 0, 0);
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = start(&store, "node-a", &clock);
    console(&store, &clock)
        .add_schedule(def("minutely", "* * * * *", "UTC", CatchUp::One))
        .await
        .unwrap();
    step(&*store, &clock, "minutely", t0 + MIN).await;
    // The clock jumps an hour and a half minute ahead: 60 due times passed.
    let next = step(&*store, &clock, "minutely", t0 + MIN + HOUR + 30 * SEC).await;
    assert_eq!(next, t0 + 2 * MIN + HOUR);
    let got = fired(&*store, "minutely").await;
    assert_eq!(
        got.into_keys().collect::<Vec<_>>(),
        [t0 + MIN, t0 + MIN + HOUR],
        "one run for the jump, the latest due time"
    );
    let rec = store.schedules().schedule("minutely").await.unwrap();
    assert_eq!((rec.runs, rec.skipped), (2, 59));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_postgres_fire_each_due_time_once() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let open = || async {
        let s: Arc<dyn Store> = Arc::new(
            PostgresStore::open(&schema.url, &schema.name)
                .await
                .unwrap(),
        );
        s
    };
    let (a_store, b_store) = (open().await, open().await);
    let t0 = utc(2026, 6, 1, 0, 0);
    let clock = Arc::new(VirtualClock::new(t0));
    // A short lease on a clock that jumps: the lease lapses between ticks and the two
    // daemons' leaderships overlap, as after a pause of the leader.
    let lease = |store: &Arc<dyn Store>, id: &str| {
        let mut o = EngineOptions::from_config(Arc::new(Config::default()));
        o.node_id = id.into();
        o.poll_interval = Duration::from_millis(50);
        o.fleet.heartbeat = Duration::from_millis(20);
        o.fleet.leader_lease = Duration::from_millis(300);
        Engine::start(
            store.clone(),
            Registry::builtin(),
            clock.clone(),
            Metrics::new(),
            o,
        )
    };
    let a = lease(&a_store, "node-a");
    let b = lease(&b_store, "node-b");
    console(&a_store, &clock)
        .add_schedule(def("both", "* * * * * *", "UTC", CatchUp::All))
        .await
        .unwrap();
    for i in 1..=20 {
        step(&*b_store, &clock, "both", t0 + i * SEC).await;
    }
    let got = fired(&*a_store, "both").await;
    assert_eq!(
        got,
        (1..=20)
            .map(|i| (t0 + i * SEC, 1))
            .collect::<BTreeMap<_, _>>(),
        "each due time once"
    );
    assert_eq!(a_store.schedules().schedule("both").await.unwrap().runs, 20);
    a.shutdown().await;
    b.shutdown().await;
}
