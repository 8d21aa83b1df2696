//! The outbox publisher with the in-process bus: events wait in the store while the bus is
//! away and drain, in order per job and without gaps, once it returns; conservative mode
//! holds the normal lane back and lets the emergency lane through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabric_bus::{
    Bus, BusConfig, BusError, DeadLetter, Delivery, InProcBus, Lane, Message, MetricsSnapshot,
    PublishOutcome, Reclaimed, StreamInfo,
};
use fabric_core::quarantine::Failure;
use fabric_core::{Job, JobState, NewJob, Priority};
use fabric_engine::{EngineOptions, Handler, OutboxOptions, Registry};
use fabric_store::Store;
use serde_json::Value;

use super::{rig_with, wait_state, Rig};

/// The in-process bus behind a switch: while `down`, every publish fails as a dead Redis
/// server's would.
struct Switched {
    inner: InProcBus,
    down: AtomicBool,
}

impl Switched {
    fn check(&self) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("switched off".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Bus for Switched {
    fn config(&self) -> &BusConfig {
        self.inner.config()
    }
    async fn init(&self, group: &str) -> Result<(), BusError> {
        self.inner.init(group).await
    }
    async fn init_lane(&self, lane: Lane, group: &str) -> Result<(), BusError> {
        self.inner.init_lane(lane, group).await
    }
    async fn publish(&self, message: Message) -> Result<PublishOutcome, BusError> {
        self.check()?;
        self.inner.publish(message).await
    }
    async fn publish_many(&self, messages: Vec<Message>) -> Result<Vec<PublishOutcome>, BusError> {
        self.check()?;
        self.inner.publish_many(messages).await
    }
    async fn publish_to(&self, lane: Lane, payload: &str) -> Result<String, BusError> {
        self.check()?;
        self.inner.publish_to(lane, payload).await
    }
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner.read(group, consumer, count, block).await
    }
    async fn read_lane(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner
            .read_lane(lane, group, consumer, count, block)
            .await
    }
    async fn ack(&self, group: &str, lane: Lane, ids: &[String]) -> Result<u64, BusError> {
        self.inner.ack(group, lane, ids).await
    }
    async fn reclaim(
        &self,
        lane: Lane,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Reclaimed, BusError> {
        self.inner.reclaim(lane, group, consumer, count).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        self.inner.dead_letters(limit).await
    }
    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, BusError> {
        self.inner.metrics_snapshot().await
    }
    async fn streams(&self) -> Result<Vec<StreamInfo>, BusError> {
        self.inner.streams().await
    }
    async fn entries(
        &self,
        lane: Lane,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        self.inner.entries(lane, after, count).await
    }
    async fn delete_dead_letters(&self, ids: &[String]) -> Result<u64, BusError> {
        self.inner.delete_dead_letters(ids).await
    }
}

fn switched(down: bool) -> Arc<Switched> {
    let config = BusConfig {
        emergency_threshold: 1_000_000,
        backpressure_drop_threshold: 2_000_000,
        max_stream_length: 1_000_000,
        ..BusConfig::default()
    };
    Arc::new(Switched {
        inner: InProcBus::new(config).unwrap(),
        down: AtomicBool::new(down),
    })
}

fn publish_to(bus: Arc<Switched>) -> impl FnOnce(&mut EngineOptions) {
    move |o: &mut EngineOptions| {
        o.fleet.heartbeat = Duration::from_millis(50);
        o.outbox = Some(OutboxOptions {
            events: true,
            telemetry_every: None,
            poll: Duration::from_millis(20),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            ..OutboxOptions::from_config(&fabric_core::config::Config::default(), bus)
        });
    }
}

/// Fails its first attempt, succeeds on the next.
struct FailOnce;
#[async_trait]
impl Handler for FailOnce {
    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        if job.attempt == 1 {
            return Err(Failure::msg("not yet"));
        }
        Ok(None)
    }
}

/// Fails for good.
struct Doomed;
#[async_trait]
impl Handler for Doomed {
    async fn run(&self, _job: &Job) -> Result<Option<Value>, Failure> {
        Err(Failure {
            permanent: true,
            ..Failure::msg("doomed")
        })
    }
}

/// A rig whose store captures events (set before any job is submitted, as the daemon does
/// before it starts the engine).
async fn capturing(rig: Rig) -> Rig {
    fabric_engine::outbox::set_capture(&*rig.store, true)
        .await
        .unwrap();
    rig
}

fn registry() -> Registry {
    let mut r = Registry::builtin();
    r.register("flaky", FailOnce);
    r.register("doomed", Doomed);
    r
}

/// Every message on the bus as `(stream, message JSON)`, emergency first, each stream in
/// order.
async fn consume(bus: &dyn Bus) -> Vec<(Lane, Value)> {
    bus.init("test").await.unwrap();
    let mut out = Vec::new();
    loop {
        let got = bus.read("test", "c", 10_000, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            return out;
        }
        for d in got {
            out.push((d.lane, serde_json::from_str(&d.payload).unwrap()));
        }
    }
}

/// The lifecycle events of `messages` as `(stream, seq, event)`, in the order received.
fn events(messages: &[(Lane, Value)]) -> Vec<(Lane, i64, Value)> {
    let mut out = Vec::new();
    for (lane, m) in messages {
        assert_eq!(m["type"], "job_events", "{m}");
        for e in m["events"].as_array().unwrap() {
            out.push((*lane, m["seq"].as_i64().unwrap(), e.clone()));
        }
    }
    out
}

async fn outbox_pending(store: &dyn Store) -> u64 {
    store.outbox().outbox_stats().await.unwrap().pending
}

async fn outbox_events(store: &dyn Store) -> u64 {
    store.outbox().outbox_stats().await.unwrap().events
}

/// Waits (up to 20 s) for the outbox to empty.
async fn drained(store: &dyn Store) {
    for _ in 0..2000 {
        if outbox_pending(store).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the outbox never drained: {} left",
        outbox_pending(store).await
    );
}

/// The sequence-gap check: every message `seq` from the first to the last arrived exactly
/// once, and each job's events arrived in order within each stream. Returns the events per
/// job, in order.
fn check_sequence(messages: &[(Lane, Value)]) -> BTreeMap<i64, Vec<String>> {
    let mut seqs: Vec<i64> = messages
        .iter()
        .map(|(_, m)| m["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    let expected: Vec<i64> = (seqs[0]..=seqs[seqs.len() - 1]).collect();
    assert_eq!(seqs, expected, "a gap or a duplicate in the sequence");
    let mut last_seen: BTreeMap<(Lane, i64), i64> = BTreeMap::new();
    let mut per_job: BTreeMap<i64, Vec<(i64, usize, String)>> = BTreeMap::new();
    for (i, (lane, seq, e)) in events(messages).into_iter().enumerate() {
        let job = e["job_id"].as_i64().unwrap();
        if let Some(prev) = last_seen.insert((lane, job), seq) {
            assert!(
                prev < seq,
                "job {job}: message {seq} after {prev} on {lane:?}"
            );
        }
        let name = e["event"].as_str().unwrap().to_string();
        per_job.entry(job).or_default().push((seq, i, name));
    }
    per_job
        .into_iter()
        .map(|(job, mut v)| {
            v.sort();
            (job, v.into_iter().map(|(_, _, e)| e).collect())
        })
        .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| format!("job.{s}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_while_the_bus_is_away_and_drain_in_order_when_it_returns() {
    let bus = switched(true);
    let r = capturing(rig_with(registry(), publish_to(bus.clone()))).await;
    let mut jobs: Vec<NewJob> = (0..40).map(|_| NewJob::new("noop")).collect();
    jobs.extend((0..5).map(|_| NewJob::new("flaky")));
    jobs.extend((0..3).map(|_| NewJob::new("doomed")));
    let ids = r.console.submit_many(jobs).await.unwrap();
    // The jobs run while the bus is away.
    for (i, s) in ids.iter().enumerate() {
        let state = if i >= 45 {
            JobState::Quarantined
        } else {
            JobState::Succeeded
        };
        wait_state(&*r.store, s.id, state).await;
    }
    // Each job's events are in the outbox; nothing reached the bus.
    let waiting = outbox_events(&*r.store).await;
    assert_eq!(waiting, 40 * 2 + 5 * 3 + 3 * 2, "events waiting");
    assert!(consume(&bus.inner).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = r.metrics.render();
    assert!(text.contains("fabric_bus_up 0"), "{text}");
    assert!(
        !text.contains("fabric_outbox_publish_errors_total 0"),
        "{text}"
    );

    bus.down.store(false, Ordering::SeqCst);
    drained(&*r.store).await;
    let messages = consume(&bus.inner).await;
    let evs = events(&messages);
    assert_eq!(evs.len() as u64, waiting);
    let per_job = check_sequence(&messages);
    for (i, s) in ids.iter().enumerate() {
        let want = match i {
            0..40 => names(&["submitted", "succeeded"]),
            40..45 => names(&["submitted", "failed", "succeeded"]),
            _ => names(&["submitted", "quarantined"]),
        };
        assert_eq!(per_job[&s.id], want, "job {}", s.id);
    }
    let quarantines: Vec<&(Lane, i64, Value)> = evs
        .iter()
        .filter(|(_, _, e)| e["event"] == "job.quarantined")
        .collect();
    assert_eq!(quarantines.len(), 3);
    assert!(quarantines.iter().all(|(l, _, _)| *l == Lane::Emergency));
    assert_eq!(quarantines[0].2["detail"], "doomed");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let text = r.metrics.render();
    assert!(text.contains("fabric_bus_up 1"), "{text}");
    assert!(text.contains("fabric_outbox_pending 0"), "{text}");
    assert!(
        text.contains(&format!("fabric_outbox_events_published_total {waiting}")),
        "{text}"
    );
    r.engine.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conservative_mode_holds_the_normal_lane_and_lets_emergencies_through() {
    let bus = switched(false);
    let r = capturing(rig_with(registry(), publish_to(bus.clone()))).await;
    r.store
        .fleet()
        .put_setting("conservative", "on")
        .await
        .unwrap();
    // The fleet tick reads the lever (conservative mode claims high-priority jobs only).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut urgent = NewJob::new("doomed");
    urgent.priority = Priority::HIGH;
    let id = r.console.submit_many(vec![urgent]).await.unwrap()[0].id;
    wait_state(&*r.store, id, JobState::Quarantined).await;
    let mut messages = Vec::new();
    for _ in 0..200 {
        messages.extend(consume(&bus.inner).await);
        if !messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let evs = events(&messages);
    assert_eq!(evs.len(), 1, "{messages:?}");
    assert_eq!(evs[0].0, Lane::Emergency);
    assert_eq!(evs[0].2["event"], "job.quarantined");
    // The publisher deletes what it sent after the bus took it: wait for that delete.
    for _ in 0..200 {
        if outbox_events(&*r.store).await <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(outbox_events(&*r.store).await, 1, "job.submitted waits");

    r.store
        .fleet()
        .put_setting("conservative", "off")
        .await
        .unwrap();
    drained(&*r.store).await;
    let rest = events(&consume(&bus.inner).await);
    let got: Vec<&str> = rest
        .iter()
        .map(|(_, _, e)| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["job.submitted"]);
    r.engine.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_publishes_telemetry_samples_and_events_off_captures_nothing() {
    let bus = switched(false);
    let tune = publish_to(bus.clone());
    let r = rig_with(registry(), move |o| {
        tune(o);
        let out = o.outbox.as_mut().unwrap();
        out.events = false;
        out.telemetry_every = Some(Duration::from_millis(100));
    });
    let id = r
        .console
        .submit_many(vec![NewJob::new("noop")])
        .await
        .unwrap()[0]
        .id;
    wait_state(&*r.store, id, JobState::Succeeded).await;
    let mut samples = Vec::new();
    for _ in 0..200 {
        bus.inner.init("test").await.unwrap();
        samples.extend(
            bus.inner
                .read_lane(Lane::Telemetry, "test", "c", 100, Duration::ZERO)
                .await
                .unwrap(),
        );
        if samples.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(samples.len() >= 2, "{samples:?}");
    let last: Value = serde_json::from_str(&samples[samples.len() - 1].payload).unwrap();
    assert_eq!(last["type"], "telemetry");
    for key in [
        "queue_depth",
        "throughput_per_s",
        "in_flight",
        "conservative_mode",
    ] {
        assert!(last["sample"].get(key).is_some(), "{key} in {last}");
    }
    assert!(!r.store.outbox().event_capture().await.unwrap());
    assert!(consume(&bus.inner).await.is_empty(), "no lifecycle events");
    r.engine.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_prunes_messages_past_their_retention_and_counts_them() {
    let bus = switched(true);
    let tune = publish_to(bus.clone());
    let r = capturing(rig_with(registry(), move |o| {
        tune(o);
        let out = o.outbox.as_mut().unwrap();
        out.retention = Duration::from_millis(200);
        out.prune_every = Duration::from_millis(100);
    }))
    .await;
    let ids = r
        .console
        .submit_many(vec![NewJob::new("noop"); 3])
        .await
        .unwrap();
    wait_state(&*r.store, ids[2].id, JobState::Succeeded).await;
    // The bus stays away: the messages age past their retention and are deleted.
    drained(&*r.store).await;
    let text = r.metrics.render();
    let pruned = text
        .lines()
        .find_map(|l| l.strip_prefix("fabric_outbox_pruned_total "))
        .unwrap();
    assert_ne!(pruned, "0", "{text}");
    assert!(consume(&bus.inner).await.is_empty(), "nothing was sent");
    r.engine.unwrap().shutdown().await;
}
