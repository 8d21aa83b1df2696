//! The outbox publisher: sends what the store's outbox holds (job lifecycle events captured
//! with their change, telemetry samples) to the bus, in sequence order, and deletes what the
//! bus took.
//!
//! - One publisher at a time across the fleet: the maintenance leader's (so on PostgreSQL no
//!   two daemons send the same rows in the normal case). Other daemons only report how many
//!   rows wait. Capture itself is switched by [`set_capture`] before the engine starts.
//! - The bus away (Redis killed): rows stay, the publisher retries with capped exponential
//!   backoff, jobs run on; when the bus returns the outbox drains, oldest first.
//! - Delivery is at least once: a crash (or a lost reply) between the bus taking a batch and
//!   the rows' deletion sends that batch again. Consumers drop a `seq` they have seen.
//! - Conservative mode holds normal-lane rows back; emergency (quarantines) and telemetry go.
//! - A message the bus drops for backpressure stays in the outbox and is tried again after
//!   the backoff (it is Fabric's own traffic: the outbox is where it waits).
//! - Unsent rows older than `bus.outbox_retention_days` are pruned by the leader and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_bus::{Bus, Lane, Message, PublishOutcome};
use fabric_core::config::Config;
use fabric_core::time::duration_ms;
use fabric_store::outbox::{NewOutboxRow, OutboxLane, OutboxRow};
use fabric_store::Store;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runtime::Shared;

/// How the engine publishes its outbox.
#[derive(Clone)]
pub struct OutboxOptions {
    /// Where to.
    pub bus: Arc<dyn Bus>,
    /// Capture job lifecycle events (`bus.events`): applied to the store with
    /// [`set_capture`] by whoever starts the engine, before it runs anything.
    pub events: bool,
    /// Telemetry sample period while leading (`None`: no samples).
    pub telemetry_every: Option<Duration>,
    /// Unsent rows older than this are pruned (while leading, every `prune_every`).
    pub retention: Duration,
    pub prune_every: Duration,
    /// Most messages sent in one bus call.
    pub batch: usize,
    /// Idle wait between looks at the outbox.
    pub poll: Duration,
    /// First and longest wait after a failed (or refused) publish.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl OutboxOptions {
    /// Options from the `bus:` section, publishing to `bus`.
    pub fn from_config(config: &Config, bus: Arc<dyn Bus>) -> Self {
        let b = &config.bus;
        Self {
            bus,
            events: b.events,
            telemetry_every: (b.telemetry_interval_ms > 0)
                .then(|| Duration::from_millis(b.telemetry_interval_ms)),
            retention: Duration::from_secs(u64::from(b.outbox_retention_days) * 86_400),
            prune_every: crate::fleet::PRUNE_EVERY,
            batch: DEFAULT_BATCH,
            poll: DEFAULT_POLL,
            backoff_min: Duration::from_millis(100),
            backoff_max: BACKOFF_MAX,
        }
    }
}

/// Messages per pass (one bus call) by default; a message holds up to 1,000 events, so a
/// pass reads and sends up to 16,000 (a short read: a long one would hold back SQLite's
/// checkpoints).
pub const DEFAULT_BATCH: usize = 16;
/// After a wake-up, how long the publisher waits for more events before its pass.
const WAKE_GATHER: Duration = Duration::from_millis(10);
/// Idle poll of the outbox by default: an event reaches the bus within about this long.
pub const DEFAULT_POLL: Duration = Duration::from_millis(100);
/// Longest wait between two tries while the bus is away.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest wait on stop for the last rows to go out.
const FINAL_FLUSH: Duration = Duration::from_secs(3);

/// The running publisher task.
pub(crate) struct Publisher {
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl Publisher {
    /// Starts the task when the engine's options name an outbox.
    pub(crate) fn start(shared: &Arc<Shared>) -> Option<Self> {
        let opts = shared.options.outbox.clone()?;
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(shared.clone(), opts, stop.clone()));
        Some(Self { handle, stop })
    }

    /// Sends what the outbox holds (while leading, for up to a few seconds), then stops.
    /// Called once the last completions are written, so their events go out too.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let abort = self.handle.abort_handle();
        if tokio::time::timeout(FINAL_FLUSH + Duration::from_secs(1), self.handle)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Stops at once (a simulated crash).
    pub(crate) fn abort(self) {
        self.handle.abort();
    }
}

/// Switches the store's capture of job lifecycle events to `on` (`bus.events`); call it
/// before the engine starts, so no change of a job is missed.
pub async fn set_capture(store: &dyn Store, on: bool) -> Result<(), crate::EngineError> {
    if store.outbox().set_event_capture(on).await? {
        tracing::info!(on, "job lifecycle event capture switched");
    }
    Ok(())
}

/// What one pass over the outbox did.
#[derive(Debug, PartialEq)]
enum Pass {
    /// Nothing to send.
    Empty,
    /// Sent this many rows; `more`: the batch was full.
    Sent { more: bool },
    /// The bus refused some rows for backpressure; they wait.
    Refused,
}

async fn run(shared: Arc<Shared>, opts: OutboxOptions, stop: CancellationToken) {
    let store = shared.store.clone();
    let mut backoff = opts.backoff_min;
    let mut next_try = Instant::now();
    let mut last_sample: Option<Instant> = None;
    let mut last_prune: Option<Instant> = None;
    let mut last_stats: Option<Instant> = None;
    let mut failing = false;
    loop {
        let leading = shared.leader.load(Ordering::Relaxed);
        let stats_every = if leading { STATS_LEADING } else { STATS_IDLE };
        if last_stats.is_none_or(|t| t.elapsed() >= stats_every) {
            last_stats = Some(Instant::now());
            refresh_stats(&shared, &*store).await;
        }
        if leading {
            if let Some(every) = opts.telemetry_every {
                if last_sample.is_none_or(|t| t.elapsed() >= every) {
                    last_sample = Some(Instant::now());
                    sample(&shared, &*store).await;
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= opts.prune_every) {
                last_prune = Some(Instant::now());
                prune(&shared, &*store, opts.retention).await;
            }
        }
        let mut again = false;
        if leading && Instant::now() >= next_try {
            match pass(&shared, &opts).await {
                Ok(p) => {
                    shared.metrics.bus_up.set(1);
                    if failing {
                        failing = false;
                        tracing::info!("bus reachable again: sending the outbox");
                    }
                    if p == Pass::Refused {
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(opts.backoff_max);
                    } else {
                        backoff = opts.backoff_min;
                        again = matches!(p, Pass::Sent { more: true });
                    }
                }
                Err(e) => {
                    if matches!(e, PassError::Bus(_)) {
                        shared.metrics.bus_up.set(0);
                    }
                    shared.metrics.outbox_errors.inc();
                    if !failing {
                        failing = true;
                        tracing::warn!(error = %e, "publishing the outbox failed; events wait \
                            in the store and are retried with backoff");
                    } else {
                        tracing::debug!(error = %e, retry_in_ms = duration_ms(backoff), "publish failed");
                    }
                    next_try = Instant::now() + backoff;
                    backoff = (backoff * 2).min(opts.backoff_max);
                }
            }
        }
        if stop.is_cancelled() {
            final_flush(&shared, &opts).await;
            return;
        }
        if again {
            continue;
        }
        let wait = if leading && next_try > Instant::now() {
            next_try
                .saturating_duration_since(Instant::now())
                .min(opts.poll)
        } else {
            opts.poll
        };
        let woken = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shared.outbox_wake.notified() => true,
            _ = stop.cancelled() => false,
        };
        if woken && leading && next_try <= Instant::now() {
            // Woken by a completion batch: wait a moment for more, so that one pass (one
            // bus call, one delete) carries the events of many writes.
            tokio::time::sleep(WAKE_GATHER).await;
        }
    }
}

/// How often the waiting rows are counted for `/metrics`: while leading, and otherwise.
const STATS_LEADING: Duration = Duration::from_secs(1);
const STATS_IDLE: Duration = Duration::from_secs(5);

/// On stop, while leading: sends until the outbox is empty, the bus fails or
/// [`FINAL_FLUSH`] passes. What is left goes out from the next leader.
async fn final_flush(shared: &Shared, opts: &OutboxOptions) {
    if !shared.leader.load(Ordering::Relaxed) {
        return;
    }
    let t0 = Instant::now();
    while t0.elapsed() < FINAL_FLUSH {
        match pass(shared, opts).await {
            Ok(Pass::Sent { .. }) => {}
            Ok(Pass::Empty) | Ok(Pass::Refused) => break,
            Err(e) => {
                tracing::debug!(error = %e, "final publish failed; the next leader sends the rest");
                break;
            }
        }
    }
    refresh_stats(shared, &*shared.store).await;
}

async fn refresh_stats(shared: &Shared, store: &dyn Store) {
    match store.outbox().outbox_stats().await {
        Ok(s) => {
            shared.metrics.outbox_pending.set(s.pending as i64);
            shared.metrics.outbox_pending_events.set(s.events as i64);
            let age = s
                .oldest_at
                .map(|at| (shared.clock.now_ms() - at).max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            shared.metrics.outbox_oldest_age.set(age);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count the outbox"),
    }
}

async fn prune(shared: &Shared, store: &dyn Store, retention: Duration) {
    let before = shared.clock.now_ms().saturating_sub(duration_ms(retention));
    match store.outbox().outbox_prune(before).await {
        Ok(0) => {}
        Ok(n) => {
            shared.metrics.outbox_pruned.inc_by(n);
            tracing::warn!(
                pruned = n,
                "outbox: unsent rows past bus.outbox_retention_days deleted"
            );
        }
        Err(e) => tracing::warn!(error = %e, "outbox: pruning failed"),
    }
}

/// One look at the outbox: sends up to a batch in sequence order, deletes what the bus
/// took. Rows the bus refused stay; so do all when the bus fails (some of them may have
/// been taken: they are sent again, at least once).
/// Why a pass sent nothing: the bus, or the store (the outbox unreadable).
#[derive(Debug)]
enum PassError {
    Bus(fabric_bus::BusError),
    Store(fabric_store::StoreError),
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bus(e) => e.fmt(f),
            Self::Store(e) => write!(f, "reading the outbox: {e}"),
        }
    }
}

impl From<fabric_bus::BusError> for PassError {
    fn from(e: fabric_bus::BusError) -> Self {
        Self::Bus(e)
    }
}

impl From<fabric_store::StoreError> for PassError {
    fn from(e: fabric_store::StoreError) -> Self {
        Self::Store(e)
    }
}

async fn pass(shared: &Shared, opts: &OutboxOptions) -> Result<Pass, PassError> {
    let conservative = shared
        .governance
        .lock()
        .map(|g| g.conservative)
        .unwrap_or(false);
    let outbox = shared.store.outbox();
    let rows = outbox.outbox_peek(opts.batch, conservative).await?;
    if rows.is_empty() {
        return Ok(Pass::Empty);
    }
    let more = rows.len() >= opts.batch;
    let (telemetry, lifecycle): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
        rows.iter().partition(|r| r.lane == OutboxLane::Telemetry);
    let mut sent: Vec<i64> = Vec::with_capacity(rows.len());
    let mut refused = 0u64;
    let result = async {
        if !lifecycle.is_empty() {
            let messages = lifecycle
                .iter()
                .map(|r| Message {
                    payload: payload(r),
                    emergency: r.lane == OutboxLane::Emergency,
                })
                .collect();
            let outcomes = opts.bus.publish_many(messages).await?;
            for (row, outcome) in lifecycle.iter().zip(outcomes) {
                let lane = match outcome {
                    PublishOutcome::Dropped => {
                        refused += 1;
                        continue;
                    }
                    PublishOutcome::Normal(_) => "normal",
                    PublishOutcome::Emergency(_) | PublishOutcome::Rerouted(_) => "emergency",
                };
                shared
                    .metrics
                    .outbox_published
                    .with_label_values(&[lane])
                    .inc();
                shared.metrics.outbox_events.inc_by(u64::from(row.events));
                sent.push(row.seq);
            }
        }
        for row in telemetry {
            opts.bus.publish_to(Lane::Telemetry, &payload(row)).await?;
            shared
                .metrics
                .outbox_published
                .with_label_values(&["telemetry"])
                .inc();
            sent.push(row.seq);
        }
        Ok::<_, fabric_bus::BusError>(())
    }
    .await;
    if !sent.is_empty() {
        if let Err(e) = outbox.outbox_remove(sent).await {
            // They are sent again next pass (at least once).
            tracing::warn!(error = %e, "outbox: cannot delete sent rows");
        }
    }
    result?;
    if refused > 0 {
        shared.metrics.outbox_refused.inc_by(refused);
        tracing::debug!(
            refused,
            "outbox: the bus refused rows for backpressure; they wait"
        );
        return Ok(Pass::Refused);
    }
    Ok(Pass::Sent { more })
}

/// The JSON message of row `r` (see docs/runbook.md, "Lifecycle events"): its lifecycle
/// events, or its telemetry sample, with its sequence number.
pub fn payload(r: &OutboxRow) -> String {
    let (kind, key) = if r.lane == OutboxLane::Telemetry {
        ("telemetry", "sample")
    } else {
        ("job_events", "events")
    };
    format!(
        "{{\"seq\":{},\"type\":\"{kind}\",\"at\":{},\"{key}\":{}}}",
        r.seq, r.at, r.body
    )
}

/// A telemetry sample of the fleet, as the leader sees it in the store.
#[derive(Debug, Serialize)]
struct Sample {
    node: String,
    /// Jobs waiting to run (pending, and failed ones waiting for their retry).
    queue_depth: u64,
    running: u64,
    /// Failed attempts waiting for their retry.
    retrying: u64,
    quarantined: u64,
    /// Jobs that succeeded over the last interval, per second.
    throughput_per_s: f64,
    /// Jobs the live nodes are running, as their last heartbeats said.
    in_flight: u64,
    nodes: usize,
    conservative_mode: u8,
    outbox_pending: u64,
}

/// Appends one telemetry sample to the outbox (sent with the next pass).
async fn sample(shared: &Shared, store: &dyn Store) {
    let now = shared.clock.now_ms();
    let every = shared
        .options
        .outbox
        .as_ref()
        .and_then(|o| o.telemetry_every)
        .unwrap_or(Duration::from_secs(10));
    let built = async {
        let counts = store.counts().await?;
        let since = now.saturating_sub(duration_ms(every));
        let succeeded = store.succeeded_since(since).await?;
        let timeout = duration_ms(shared.options.fleet.node_timeout);
        let live: Vec<_> = store
            .fleet()
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.stopped_at.is_none() && !n.is_stale(now, timeout))
            .collect();
        let pending = store.outbox().outbox_stats().await?.pending;
        let conservative = shared
            .governance
            .lock()
            .map(|g| g.conservative)
            .unwrap_or(false);
        Ok::<_, fabric_store::StoreError>(Sample {
            node: shared.options.node_id.clone(),
            queue_depth: counts.pending + counts.failed,
            running: counts.running,
            retrying: counts.failed,
            quarantined: counts.quarantined,
            throughput_per_s: succeeded as f64 / every.as_secs_f64().max(0.001),
            in_flight: live.iter().map(|n| u64::from(n.load)).sum(),
            nodes: live.len(),
            conservative_mode: u8::from(conservative),
            outbox_pending: pending,
        })
    }
    .await;
    let row = match built.map(|s| serde_json::to_string(&s)) {
        Ok(Ok(body)) => NewOutboxRow {
            lane: OutboxLane::Telemetry,
            body,
            at: now,
        },
        Ok(Err(e)) => return tracing::warn!(error = %e, "telemetry sample not encoded"),
        Err(e) => return tracing::warn!(error = %e, "telemetry sample not taken"),
    };
    if let Err(e) = store.outbox().outbox_append(vec![row]).await {
        tracing::warn!(error = %e, "telemetry sample not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lane: OutboxLane, body: &str) -> OutboxRow {
        OutboxRow {
            seq: 7,
            lane,
            events: 1,
            body: body.into(),
            at: 1_000,
        }
    }

    #[test]
    fn a_message_of_events_and_a_sample_have_the_documented_shape() {
        let body = r#"[{"event":"job.quarantined","job_id":3,"kind":"noop","shard":"default","attempt":1,"from":"running","detail":"boom","at":1000}]"#;
        let e: serde_json::Value =
            serde_json::from_str(&payload(&row(OutboxLane::Emergency, body))).unwrap();
        assert_eq!(
            e,
            serde_json::json!({"seq": 7, "type": "job_events", "at": 1000, "events": [
                {"event": "job.quarantined", "job_id": 3, "kind": "noop", "shard": "default",
                 "attempt": 1, "from": "running", "detail": "boom", "at": 1000}]})
        );
        let sample = row(OutboxLane::Telemetry, r#"{"queue_depth":4}"#);
        let t: serde_json::Value = serde_json::from_str(&payload(&sample)).unwrap();
        assert_eq!(
            t,
            serde_json::json!({"seq": 7, "type": "telemetry", "at": 1000,
                "sample": {"queue_depth": 4}})
        );
    }
}
