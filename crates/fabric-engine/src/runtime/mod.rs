//! The worker runtime: a dispatcher that claims batches of due jobs into free worker slots,
//! a completer that writes finished attempts back in batches, lease heartbeats and the
//! rescuer. Idle workers wake at once on an in-process enqueue and poll as a fallback.

mod attempt;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::time::{duration_ms, until_ms};
use fabric_core::{Clock, Job, JobId, Priority};
use fabric_store::{ClaimRequest, CompleteReport, Completion, Outcome, Store, StoreEvent};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fleet::FleetOptions;
use crate::handlers::Registry;
use crate::metrics::Metrics;

pub(crate) use attempt::decide_with;
use attempt::execute;

/// Most jobs claimed in one store call.
const CLAIM_BATCH: usize = 1000;
/// Claim ahead of free slots only what the slots finish within this window.
const PREFETCH_WINDOW: Duration = Duration::from_millis(20);
/// Below this many completions the completer lingers while jobs are running.
const LINGER_BATCH: usize = 256;
/// Most completions written in one store call.
const COMPLETE_BATCH: usize = 4096;
/// An idle dispatcher polls no more often than this many times the cost of one poll (the
/// due-time read and the claim that found nothing), so that polling an idle queue costs at
/// most about a twentieth of a core however large the queue.
const IDLE_COST_FACTOR: u32 = 20;
/// Longest idle poll period that a dear poll stretches `poll_interval` to.
const IDLE_POLL_MAX: Duration = Duration::from_secs(10);

/// Called with every batch of completions once it is durable.
pub type CompletionListener = mpsc::UnboundedSender<(Vec<JobId>, CompleteReport)>;

/// Settings of one engine.
#[derive(Clone)]
pub struct EngineOptions {
    /// Lease owner prefix, `<node id>/`; the engine appends its pid and start time.
    pub node_id: String,
    /// Shards to work; empty = all.
    pub shards: Vec<String>,
    pub max_workers: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub shutdown_timeout: Duration,
    /// Handler timeout when the payload sets none.
    pub job_timeout: Duration,
    /// Rescuer period (while this engine leads).
    pub rescue_interval: Duration,
    /// Node registration, heartbeats and leadership.
    pub fleet: FleetOptions,
    /// Retry policies and redaction come from here.
    pub config: Arc<Config>,
    /// Notified after each durable completion batch (benchmarks, tests).
    pub listener: Option<CompletionListener>,
    /// Where to write field reports of job outcomes (`None`: none are written).
    pub reports: Option<crate::reports::ReportsOptions>,
    /// The bus the outbox is published to (`None`: no publisher; events, if captured, wait).
    pub outbox: Option<crate::outbox::OutboxOptions>,
}

impl EngineOptions {
    /// Options taken from a configuration file.
    pub fn from_config(config: Arc<Config>) -> Self {
        let w = &config.workers;
        Self {
            node_id: config.node.id.clone(),
            shards: config.node.shards.clone(),
            max_workers: w.max_workers.max(1) as usize,
            lease: Duration::from_secs(w.lease_seconds.max(1)),
            poll_interval: Duration::from_millis(w.poll_interval_ms.max(1)),
            shutdown_timeout: Duration::from_secs(w.shutdown_timeout_seconds),
            job_timeout: Duration::from_secs(w.job_timeout_seconds.max(1)),
            rescue_interval: Duration::from_secs((w.lease_seconds / 3).clamp(1, 10)),
            listener: None,
            reports: None,
            outbox: None,
            fleet: FleetOptions::from_config(&config),
            config,
        }
    }
}

/// Shared by the engine's tasks.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    registry: Registry,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    pub(crate) options: EngineOptions,
    owner: String,
    pub(crate) wake: Notify,
    /// Counts enqueues, for waiters other than the dispatcher (external workers'
    /// long-polling claims): a receiver taken before a claim sees any enqueue after it.
    pub(crate) enqueued: watch::Sender<u64>,
    /// Jobs claimed and not yet finished, running or waiting for a slot.
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// Asks the heartbeat task for a lease check now: a job of this engine may have been
    /// cancelled (SIGUSR1 from the CLI on SQLite; a stop).
    check_leases: Notify,
    home: Option<String>,
    /// Mean handler run time in seconds (f64 bits; NaN until the first job).
    avg_run_secs: AtomicU64,
    /// This engine holds the maintenance leader's lease.
    pub(crate) leader: AtomicBool,
    /// The node is offline or draining: claim nothing new.
    pub(crate) paused: AtomicBool,
    /// The last node heartbeat reached the store.
    pub(crate) store_up: AtomicBool,
    /// The owner levers that limit claims, refreshed by the fleet task.
    pub(crate) governance: Mutex<Governance>,
    /// The field-report writer, when the options ask for reports.
    field_log: Option<Arc<crate::reports::FieldLog>>,
    /// Tells the outbox publisher that a write may have added events.
    pub(crate) outbox_wake: Notify,
}

/// A job this engine claimed: its attempt (heartbeats, fencing) and what stops it.
struct InFlight {
    attempt: u32,
    stop: CancellationToken,
}

impl Shared {
    /// Stops the attempt of job `id` this engine runs (or has claimed and not yet started),
    /// if it is attempt `attempt` (any, with `None`): its handler future is dropped, its slot
    /// freed at once, and no completion is written (the store already says what became of
    /// the job). Returns whether there was such an attempt.
    pub(crate) fn stop_attempt(&self, id: JobId, attempt: Option<u32>) -> bool {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&id) {
            Some(f) if attempt.is_none_or(|a| a == f.attempt) => {
                if let Some(f) = map.remove(&id) {
                    f.stop.cancel();
                }
                true
            }
            _ => false,
        }
    }

    /// Stops every attempt this engine holds (the stop deadline); returns how many.
    fn stop_all(&self) -> usize {
        let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for f in map.values() {
            f.stop.cancel();
        }
        map.len()
    }
}

/// Owner levers the dispatcher applies to its claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Governance {
    /// Shards an operator paused: nothing of them is claimed.
    pub(crate) paused_shards: Vec<String>,
    /// Conservative mode: only high-priority jobs are claimed.
    pub(crate) conservative: bool,
}

/// A running engine. Dropping it does not stop it; call [`Engine::shutdown`].
pub struct Engine {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Node heartbeats and the leader lease (see [`crate::fleet::run`]).
    fleet: Option<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    completer: Option<JoinHandle<()>>,
    /// Sends the outbox to the bus (see [`crate::outbox`]).
    publisher: Option<crate::outbox::Publisher>,
}

/// Longest wait on stop for the fleet task's step in progress (a store round trip).
const FLEET_STOP_WAIT: Duration = Duration::from_secs(2);

/// Wakes idle workers of an engine; cheap to clone.
#[derive(Clone)]
pub struct Waker(Arc<Shared>);

/// New work may be due: wakes the dispatcher (one permit: a burst costs one claim) and every
/// other waiter (external workers' long-polling claims).
pub(crate) fn work_due(shared: &Shared) {
    shared.wake.notify_one();
    shared.enqueued.send_modify(|n| *n += 1);
}

impl Waker {
    /// Tells idle workers that new work may be due.
    pub fn wake(&self) {
        work_due(&self.0);
    }

    /// The owner levers (paused shards, conservative mode) changed in the store through this
    /// daemon's own API or console: the dispatcher applies them from its next claim, not from
    /// the next fleet tick (other daemons, and a CLI's change, wait for their tick).
    pub async fn levers_changed(&self) {
        crate::fleet::refresh_governance(&self.0).await;
        self.wake();
    }

    /// A receiver that changes at every later enqueue this engine hears of (its own API's
    /// and CLI's, other processes' where the store tells); for waiters other than the
    /// dispatcher.
    pub fn enqueues(&self) -> watch::Receiver<u64> {
        self.0.enqueued.subscribe()
    }

    /// Checks at once whether this engine still holds the leases of the jobs it runs, and
    /// stops the attempts of those it lost (cancelled by another process, rescued).
    pub fn check_leases(&self) {
        self.0.check_leases.notify_one();
    }

    /// Job `id` was cancelled: stops its attempt here, if this engine runs it.
    pub fn cancelled(&self, id: JobId) -> bool {
        cancelled(&self.0, id)
    }
}

impl Engine {
    /// Starts the dispatcher, completer, heartbeat and rescuer tasks.
    pub fn start(
        store: Arc<dyn Store>,
        registry: Registry,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        options: EngineOptions,
    ) -> Self {
        let owner = format!(
            "{}/{}/{}",
            options.node_id,
            std::process::id(),
            clock.now_ms()
        );
        metrics.workers_max.set(options.max_workers as i64);
        let field_log = options.reports.clone().and_then(|r| {
            crate::reports::FieldLog::start(r)
                .map_err(|e| tracing::warn!(error = %e, "field reports off: no writer thread"))
                .ok()
                .map(Arc::new)
        });
        let shared = Arc::new(Shared {
            store,
            registry,
            clock,
            metrics,
            owner,
            wake: Notify::new(),
            enqueued: watch::Sender::new(0),
            in_flight: Mutex::new(HashMap::new()),
            check_leases: Notify::new(),
            home: std::env::var("HOME").ok(),
            avg_run_secs: AtomicU64::new(f64::NAN.to_bits()),
            leader: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            store_up: AtomicBool::new(true),
            governance: Mutex::new(Governance::default()),
            field_log,
            outbox_wake: Notify::new(),
            options,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(completer(shared.clone(), done_rx));
        let dispatcher = tokio::spawn(dispatcher(shared.clone(), stop_rx.clone(), done_tx));
        let fleet = tokio::spawn(crate::fleet::run(shared.clone(), stop_rx.clone()));
        let mut tasks = vec![tokio::spawn(heartbeats(shared.clone(), stop_rx))];
        // Other processes' enqueues wake this engine where the store can tell (PostgreSQL
        // LISTEN/NOTIFY); every wake-up is one permit, so a burst costs one claim. Their
        // cancels of running jobs stop the attempt here at once.
        let weak = Arc::downgrade(&shared);
        let listener = shared
            .store
            .listen(Box::new(move |event| match weak.upgrade() {
                Some(s) => {
                    match event {
                        StoreEvent::Inserted => work_due(&s),
                        StoreEvent::Cancelled(id) => {
                            cancelled(&s, id);
                        }
                    }
                    true
                }
                None => false,
            }));
        tasks.extend(listener);
        let publisher = crate::outbox::Publisher::start(&shared);
        Self {
            publisher,
            shared,
            stop,
            tasks,
            fleet: Some(fleet),
            dispatcher: Some(dispatcher),
            completer: Some(completer),
        }
    }

    /// A handle that wakes this engine's idle workers.
    pub fn waker(&self) -> Waker {
        Waker(self.shared.clone())
    }

    /// The lease owner token of this engine.
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// Jobs running now.
    pub fn in_flight(&self) -> usize {
        in_flight(&self.shared)
    }

    /// Whether this engine is the fleet's maintenance leader now.
    pub fn is_leader(&self) -> bool {
        self.shared.leader.load(Ordering::Relaxed)
    }

    /// Whether the engine's last node heartbeat reached the store.
    pub fn store_up(&self) -> bool {
        self.shared.store_up.load(Ordering::Relaxed)
    }

    /// Stops every task of the engine at once, writing nothing more (no completions, no
    /// node stop, the leader lease left to lapse), as a crash of the process would. For
    /// failover tests and simulations.
    pub fn abandon(mut self) {
        for t in self
            .tasks
            .drain(..)
            .chain(self.fleet.take())
            .chain(self.dispatcher.take())
            .chain(self.completer.take())
        {
            t.abort();
        }
        if let Some(p) = self.publisher.take() {
            p.abort();
        }
    }

    /// Graceful stop within the configured `shutdown_timeout`: see [`Engine::shutdown_within`].
    pub async fn shutdown(self) -> usize {
        let timeout = self.shared.options.shutdown_timeout;
        self.shutdown_within(timeout).await
    }

    /// Graceful stop: stop claiming, wait up to `timeout` for in-flight jobs, write their
    /// completions. At the deadline the attempts still running are dropped (a shell job's
    /// process is killed) and their jobs go back to `pending` at once (one whose attempt was
    /// its last is quarantined, as a rescue does). Returns how many jobs were cut off.
    pub async fn shutdown_within(mut self, timeout: Duration) -> usize {
        let _ = self.stop.send(true);
        self.shared.wake.notify_waiters();
        // Work cancelled by another process and not yet noticed is not waited for.
        self.shared.check_leases.notify_one();
        let mut cut_off = false;
        if let Some(mut d) = self.dispatcher.take() {
            if tokio::time::timeout(timeout, &mut d).await.is_err() {
                cut_off = true;
                let n = self.shared.stop_all();
                tracing::warn!(
                    attempts = n,
                    "stop deadline: cutting off the running attempts"
                );
                // The dropped attempts give their slots back, so the dispatcher ends.
                let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
            }
        }
        if let Some(c) = self.completer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
        }
        // The last completions are written: their events go out before the lease is given up.
        if let Some(p) = self.publisher.take() {
            p.finish().await;
        }
        if let Some(log) = self.shared.field_log.clone() {
            let _ = tokio::task::spawn_blocking(move || log.close()).await;
        }
        let mut abandoned = 0;
        if cut_off {
            let owner = self.shared.owner.clone();
            match self
                .shared
                .store
                .rescue(self.shared.clock.now_ms(), Some(&owner))
                .await
            {
                Ok(r) => abandoned = r.reset.len() + r.quarantined.len(),
                Err(e) => {
                    abandoned = self.in_flight();
                    tracing::warn!(error = %e, "cannot return the cut-off jobs to pending; \
                        they are rescued when their lease expires");
                }
            }
        }
        // The fleet task ends its step first: a node heartbeat still in flight (on another
        // PostgreSQL connection) would otherwise land after the stop mark and clear it.
        if let Some(f) = self.fleet.take() {
            let abort = f.abort_handle();
            if tokio::time::timeout(FLEET_STOP_WAIT, f).await.is_err() {
                abort.abort();
            }
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        crate::fleet::leave(&self.shared).await;
        abandoned
    }
}

async fn dispatcher(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<Completion>,
) {
    let slots = Arc::new(Semaphore::new(shared.options.max_workers));
    let opts = &shared.options;
    let mut backoff = Duration::from_millis(10);
    // Claimed jobs waiting for a free slot (at most PREFETCH_WINDOW of work; see `prefetch`).
    let mut ready: VecDeque<Job> = VecDeque::new();
    // Set when the last claim got fewer jobs than asked: nothing more is due, so wait for
    // a wake-up, the next due time or the poll before claiming again. The wake-up future
    // is armed before that claim, so an enqueue racing with it is never missed.
    let mut drained = false;
    // What the last claim that found the queue drained took (see `idle_poll`).
    let mut idle_claim = Duration::ZERO;
    // The clock of the last claim: jobs due by then that it left are not this node's to
    // claim (external kinds, paused shards, low priority in conservative mode), so waiting
    // for them would spin; the next wait is for what comes due after it.
    let mut last_claim_at = i64::MIN;
    let mut wake = Box::pin(shared.wake.notified());
    wake.as_mut().enable();
    loop {
        let stopping = *stop.borrow();
        if stopping && ready.is_empty() {
            break;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        if let Some(job) = ready.pop_front() {
            spawn_job(&shared, &done, job, permit);
            continue;
        }
        if stopping {
            break;
        }
        if drained {
            let now = shared.clock.now_ms();
            let asked = Instant::now();
            let next = shared.store.next_run_at(last_claim_at).await;
            let poll = idle_poll(opts.poll_interval, idle_claim + asked.elapsed());
            let wait = match next {
                Ok(Some(t)) => until_ms(now, t),
                _ => poll,
            }
            .min(poll);
            if !wait.is_zero() {
                tokio::select! {
                    _ = wake.as_mut() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            drained = false;
            if *stop.borrow() {
                continue;
            }
        }
        wake = Box::pin(shared.wake.notified());
        wake.as_mut().enable();
        if shared.paused.load(Ordering::Relaxed) {
            // Offline or draining: what runs finishes, nothing new is claimed.
            drained = true;
            drop(permit);
            continue;
        }
        let free = 1 + slots.available_permits();
        let limit = (free + prefetch(&shared)).min(CLAIM_BATCH);
        let governance = shared
            .governance
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        let req = ClaimRequest {
            owner: shared.owner.clone(),
            shards: opts.shards.clone(),
            exclude_shards: governance.paused_shards,
            min_priority: governance.conservative.then_some(Priority::HIGH.0),
            kinds: Vec::new(),
            // Jobs of the kinds external workers serve wait for them.
            exclude_kinds: opts.config.workers.external_kinds.clone(),
            limit,
            lease_ms: duration_ms(opts.lease),
            now: shared.clock.now_ms(),
        };
        let claimed_at = Instant::now();
        last_claim_at = req.now;
        let jobs = match shared.store.claim(req).await {
            Ok(jobs) => {
                backoff = Duration::from_millis(10);
                jobs
            }
            Err(e) => {
                tracing::warn!(error = %e, "claim failed; retrying");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        drained = jobs.len() < limit;
        if drained {
            idle_claim = claimed_at.elapsed();
        }
        tracing::trace!(claimed = jobs.len(), free, "claimed");
        if jobs.is_empty() {
            drop(permit);
            continue;
        }
        {
            let mut map = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for j in &jobs {
                let stop = CancellationToken::new();
                let attempt = j.attempt;
                map.insert(j.id, InFlight { attempt, stop });
            }
        }
        ready.extend(jobs);
        if let Some(job) = ready.pop_front() {
            spawn_job(&shared, &done, job, permit);
        }
    }
    // Wait for every slot to come back: in-flight jobs finished.
    let _ = slots.acquire_many(shared.options.max_workers as u32).await;
}

/// The period of an idle dispatcher's poll: `interval`, or on a queue whose poll (`cost`: the
/// due-time read and the claim, each of which reads every pending job when none is due) is
/// dear, `IDLE_COST_FACTOR` times that cost, at most `IDLE_POLL_MAX`. A job due at a known
/// time still starts at that time, and an enqueue, a retry, a release or a rescue wakes the
/// dispatcher at once; only a change no wake-up announces (another process writing the store
/// without one) waits for the longer poll.
fn idle_poll(interval: Duration, cost: Duration) -> Duration {
    interval.max((cost * IDLE_COST_FACTOR).min(IDLE_POLL_MAX))
}

/// How many jobs to claim beyond the free slots: as many as the slots finish within
/// `PREFETCH_WINDOW` at the observed run time (none until a run time is known, so slow
/// jobs are never hoarded away from other nodes).
fn prefetch(shared: &Shared) -> usize {
    let avg = f64::from_bits(shared.avg_run_secs.load(Ordering::Relaxed));
    if !avg.is_finite() || avg <= 0.0 {
        return 0;
    }
    let n = shared.options.max_workers as f64 * PREFETCH_WINDOW.as_secs_f64() / avg;
    (n as usize).min(CLAIM_BATCH)
}

fn spawn_job(
    shared: &Arc<Shared>,
    done: &mpsc::UnboundedSender<Completion>,
    job: Job,
    permit: OwnedSemaphorePermit,
) {
    let stop = {
        let map = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&job.id) {
            Some(f) => f.stop.clone(),
            // Cancelled while it waited for a slot: never started, the slot stays free.
            None => return,
        }
    };
    shared.metrics.workers_busy.inc();
    let shared = shared.clone();
    let done = done.clone();
    tokio::spawn(async move {
        // Stopped (cancelled, lease lost, or cut off at the stop deadline): the handler's
        // future is dropped here (a shell job's process group is killed) and no completion
        // is written; the store holds or gets the job's new state from whoever stopped it.
        let completion = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            c = execute(&shared, job) => Some(c),
        };
        shared.metrics.workers_busy.dec();
        drop(permit);
        if let Some(completion) = completion {
            let _ = done.send(completion);
        }
    });
}

async fn completer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Completion>) {
    let mut batch = Vec::with_capacity(COMPLETE_BATCH);
    while rx.recv_many(&mut batch, COMPLETE_BATCH).await > 0 {
        // Under load, give running jobs a moment to finish so one write carries many
        // completions; an idle engine (a trickle) writes at once.
        let mut spins = 0;
        while batch.len() < LINGER_BATCH && spins < 8 && in_flight(&shared) > 0 {
            tokio::task::yield_now().await;
            while batch.len() < COMPLETE_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            spins += 1;
        }
        tracing::trace!(batch = batch.len(), "completing");
        let ids: Vec<JobId> = batch.iter().map(|c| c.id).collect();
        let (mut ok, mut failed, mut quarantined) = (0u64, 0u64, 0u64);
        for c in &batch {
            match c.outcome {
                Outcome::Succeeded { .. } => ok += 1,
                Outcome::Retry { .. } => failed += 1,
                Outcome::Quarantine { .. } => {
                    failed += 1;
                    quarantined += 1
                }
            }
        }
        let mut delay = Duration::from_millis(10);
        let report = loop {
            // Completions are retried until the store takes them: an acknowledged result is
            // never dropped (and if the process dies first, the lease expires and the job runs
            // again: at-least-once).
            match shared.store.complete(batch.clone()).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "completion write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        // Their events (if captured) wait in the outbox: the publisher may send them now.
        shared.outbox_wake.notify_one();
        // Batch items these successes released may be claimed now, not at the next poll
        // (by this engine's workers, or an external worker waiting in a claim); a retry
        // written here is due at a time an idle dispatcher has not read yet.
        let retried = failed - quarantined;
        if report.released > 0 || retried > 0 {
            work_due(&shared);
        }
        if let Some(log) = &shared.field_log {
            log.send(crate::reports::of_completions(
                &shared.options.node_id,
                &batch,
                report.late > 0,
            ));
        }
        batch.clear();
        let m = &shared.metrics;
        if report.late == 0 {
            m.completed.inc_by(ok);
            m.failed.inc_by(failed);
            m.quarantined.inc_by(quarantined);
        } else {
            // Which ones were late is not reported; count what was applied as completed.
            m.completed.inc_by(report.applied().min(ok));
            m.failed.inc_by(failed);
        }
        m.late_completions.inc_by(report.late);
        if report.late > 0 {
            tracing::info!(
                late = report.late,
                "late completions of rescued attempts rejected"
            );
        }
        if let Some(l) = &shared.options.listener {
            let _ = l.send((ids, report));
        }
    }
}

/// Job `id` was cancelled (by this process or, as the store says, another): stops its
/// attempt here, if this engine runs it.
fn cancelled(shared: &Shared, id: JobId) -> bool {
    let stopped = shared.stop_attempt(id, None);
    if stopped {
        tracing::info!(job = id, "attempt stopped: the job was cancelled");
    }
    stopped
}

pub(crate) fn in_flight(shared: &Shared) -> usize {
    shared.in_flight.lock().map(|m| m.len()).unwrap_or(0)
}

/// Renews the leases of this engine's jobs every third of a lease, and at once when asked
/// ([`Waker::check_leases`]); stops the attempts whose lease the store no longer gives this
/// engine (cancelled, rescued).
async fn heartbeats(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    // A zero lease (options built by hand) must not spin.
    let period = (shared.options.lease / 3).max(Duration::from_millis(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shared.check_leases.notified() => {}
            r = stop.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
        let attempts: HashMap<JobId, u32> = match shared.in_flight.lock() {
            Ok(m) => m.iter().map(|(k, v)| (*k, v.attempt)).collect(),
            Err(_) => continue,
        };
        if attempts.is_empty() {
            continue;
        }
        let until = shared
            .clock
            .now_ms()
            .saturating_add(duration_ms(shared.options.lease));
        match shared
            .store
            .heartbeat(&shared.owner, attempts.clone().into_iter().collect(), until)
            .await
        {
            Ok(lost) => {
                for id in lost {
                    if shared.stop_attempt(id, attempts.get(&id).copied()) {
                        tracing::info!(
                            job = id,
                            "attempt stopped: the job was cancelled or its lease lost"
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod idle_poll_tests {
    use super::*;

    #[test]
    fn an_idle_poll_stretches_only_when_it_is_dear_and_never_past_the_cap() {
        let interval = Duration::from_millis(250);
        // A small queue: the configured interval.
        assert_eq!(idle_poll(interval, Duration::from_micros(300)), interval);
        assert_eq!(idle_poll(interval, Duration::from_millis(12)), interval);
        // A million pending jobs due in years: reads of 150 ms poll every 3 s.
        assert_eq!(
            idle_poll(interval, Duration::from_millis(150)),
            Duration::from_secs(3)
        );
        assert_eq!(idle_poll(interval, Duration::from_secs(5)), IDLE_POLL_MAX);
        // A configured interval above the cap stays as configured.
        let slow = Duration::from_secs(60);
        assert_eq!(idle_poll(slow, Duration::from_secs(5)), slow);
    }
}
