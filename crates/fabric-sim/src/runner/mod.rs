//! The scenario runner: drives the real store (durable SQLite), the routing policy of
//! `fabric-core` and a simulated node fleet on a virtual clock, tick by tick, until every job
//! is final (or an explicit virtual duration ends), with the owner console, checkpoints and
//! the report of RUNBOOK-MAP.md §B.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use fabric_core::routing::{Liveness, QueuedJob};
use fabric_core::{
    Clock, Job, JobId, LatencyMatrix, NewJob, Node, NodeHealth, Priority, Shard, VirtualClock,
};
use fabric_engine::Console;
use fabric_store::{Completion, Outcome, Store};

use crate::checkpoint::{self, load_checkpoint, save_checkpoint, Checkpoint};
use crate::gen;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::SimError;

mod placement;
mod resume;
mod scoring;

/// Attempts a job gets (RUNBOOK-MAP.md §B: 3).
pub const MAX_ATTEMPTS: u32 = 3;
/// Default virtual tick.
pub const DEFAULT_TICK_MS: u64 = 100;
/// Longest virtual tick (`--tick-ms`, a checkpoint's or an operator's tick interval).
pub const MAX_TICK_MS: u64 = 60_000;
/// Slowest and fastest `--speed` (virtual seconds per wall second).
pub const MIN_SPEED: f64 = 0.01;
pub const MAX_SPEED: f64 = 10_000.0;
/// Job kind of simulated work.
pub const SIM_KIND: &str = "sim";
/// Lease of claimed jobs: the runner is their only worker and settles every one itself.
const LEASE_MS: i64 = 365 * 86_400_000;

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    pub seed: u64,
    /// Virtual seconds after which the run stops even with jobs left (`--duration`).
    pub duration_cap: Option<f64>,
    /// The run's store (a SQLite file, created afresh).
    pub store_path: PathBuf,
    /// Where checkpoints are written.
    pub checkpoint_path: PathBuf,
    pub tick_ms: u64,
    /// Paces virtual time at this many times the wall clock (`--speed`); `None` runs as fast
    /// as the machine allows.
    pub speed: Option<f64>,
    /// Set (e.g. by a signal) to have a checkpoint written at the next tick.
    pub save_requested: Arc<std::sync::atomic::AtomicBool>,
}

/// One job running on a simulated node.
#[derive(Debug, Clone)]
struct Running {
    job: Job,
    node: String,
    success: bool,
}

/// Counters of a run (the report's `metrics`), as a checkpoint keeps them.
pub type Counters = checkpoint::MetricsState;

/// Per-shard counters for the scoreboard.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub dispatched: u64,
    pub completed: u64,
    pub failed: u64,
    pub reassigned: u64,
    pub spillovers: u64,
    /// Due jobs not yet placed on a node.
    pub depth: u64,
}

/// A run in progress: the store, the marketplace (nodes, shards, latency) and the jobs on
/// simulated nodes.
pub struct Fabric {
    store: Arc<dyn Store>,
    console: Console,
    clock: Arc<VirtualClock>,
    scenario: Scenario,
    seed: u64,
    tick_ms: u64,
    nodes: Vec<Node>,
    /// Shared, so a tick reads them while it changes the rest of the run.
    shards: Arc<Vec<Shard>>,
    latency: LatencyMatrix,
    conservative: bool,
    counters: Counters,
    per_shard: BTreeMap<String, ShardStats>,
    /// Jobs generated (and submitted) so far.
    next_index: u64,
    /// The scenario index of each job, by its id in the run's store (ids are dense there).
    index_of: Vec<u64>,
    /// Jobs arrived this tick, submitted with the tick's claims (in the same store write
    /// group, ahead of the claims).
    arrivals: Vec<NewJob>,
    /// Claimed from the store but not yet placed (no node fitted), per shard.
    held: BTreeMap<String, VecDeque<(QueuedJob, Job)>>,
    running: HashMap<JobId, Running>,
    finishing: BinaryHeap<Reverse<(i64, JobId)>>,
    latencies: Vec<u32>,
    /// Largest difference between two shards' queue depths seen at a tick.
    max_spread: u64,
    ticks: u64,
    /// Settled attempts not yet written (written with the next claim, or every
    /// `FLUSH_EVERY_TICKS`, and always before `run_until` returns).
    unflushed: Vec<Completion>,
    flushed_at_tick: u64,
    governance_read: Option<Instant>,
    /// `--speed`, and the wall and virtual time pacing started from (at the first tick).
    speed: Option<f64>,
    paced_from: Option<(Instant, i64)>,
    /// Jobs already final when this fabric started (a resumed run).
    finished_at_start: u64,
    loaded_from_checkpoint: bool,
    started: Instant,
    virtual_start: i64,
}

/// Where a run stands after [`Fabric::run_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every job is final.
    Complete,
    /// The virtual duration cap or the requested stop point came first; jobs are left.
    Cut,
}

fn sim_err(e: impl std::fmt::Display) -> SimError {
    SimError::Runtime(e.to_string())
}

impl Fabric {
    /// A fresh run: a new store at `opts.store_path` (any old one is replaced), the
    /// scenario's shards and fleet, virtual time 0.
    pub async fn new(opts: &RunOptions) -> Result<Self, SimError> {
        let clock = Arc::new(VirtualClock::new(0));
        let nodes = crate::fleet::fleet_for(&opts.scenario.shards, 0);
        let mut fabric = Self::open(opts, clock, nodes).await?;
        for name in &opts.scenario.shards {
            if !fabric.shards.iter().any(|s| &s.name == name) {
                let shard = Shard::new(name.clone()).map_err(sim_err)?;
                fabric.put_shard(shard).await?;
            }
        }
        fabric.refresh_governance().await?;
        Ok(fabric)
    }

    /// Writes `shard` (its levers) to the run's store.
    async fn put_shard(&self, shard: Shard) -> Result<(), SimError> {
        self.store.fleet().put_shard(shard).await.map_err(sim_err)
    }

    async fn open(
        opts: &RunOptions,
        clock: Arc<VirtualClock>,
        nodes: Vec<Node>,
    ) -> Result<Self, SimError> {
        let path = &opts.store_path;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| SimError::io(&p, e))?;
            }
        }
        // A small page cache, as a run's store outgrows any cache
        // (`SqliteOptions::cache_kib`); a per-shard index, as its claims go shard by shard
        // (`SqliteOptions::shard_index`); write-behind, as the run is the store's one busy
        // owner and syncs it before every checkpoint (`SqliteOptions::write_behind`).
        let options = fabric_store::sqlite::SqliteOptions {
            cache_kib: Some(RUN_CACHE_KIB),
            shard_index: true,
            write_behind: Some(RUN_COMMIT_EVERY),
            ..Default::default()
        };
        let store: Arc<dyn Store> =
            Arc::new(fabric_store::SqliteStore::open(path, options).map_err(sim_err)?);
        let mut config = fabric_core::config::Config::default();
        config.store.path = path.display().to_string();
        let console = Console::new(
            store.clone(),
            fabric_engine::Registry::builtin(),
            Arc::new(config),
            clock.clone(),
            "owner",
        );
        let shards = store.fleet().shards().await.map_err(sim_err)?;
        let mut per_shard = BTreeMap::new();
        for s in &opts.scenario.shards {
            per_shard.insert(s.clone(), ShardStats::default());
        }
        Ok(Self {
            store,
            console,
            virtual_start: clock.now_ms(),
            clock,
            scenario: opts.scenario.clone(),
            seed: opts.seed,
            tick_ms: opts.tick_ms.clamp(1, MAX_TICK_MS),
            nodes,
            shards: Arc::new(shards),
            latency: LatencyMatrix::default(),
            conservative: false,
            counters: Counters::default(),
            per_shard,
            next_index: 0,
            index_of: Vec::new(),
            arrivals: Vec::new(),
            held: BTreeMap::new(),
            running: HashMap::new(),
            finishing: BinaryHeap::new(),
            latencies: Vec::new(),
            max_spread: 0,
            ticks: 0,
            unflushed: Vec::new(),
            flushed_at_tick: 0,
            governance_read: None,
            speed: opts.speed.filter(|x| (MIN_SPEED..=MAX_SPEED).contains(x)),
            paced_from: None,
            finished_at_start: 0,
            loaded_from_checkpoint: false,
            started: Instant::now(),
        })
    }

    /// The owner levers of this run (persisted in its store, audited, applied at the next
    /// tick).
    pub fn owner_console(&self) -> OwnerConsole {
        OwnerConsole::new(self.console.clone())
    }

    /// The run's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Per-shard counters so far.
    pub fn shard_stats(&self) -> &BTreeMap<String, ShardStats> {
        &self.per_shard
    }

    /// The simulated fleet.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Virtual milliseconds since the run began.
    pub fn virtual_ms(&self) -> i64 {
        self.clock.now_ms() - self.virtual_start
    }

    /// Jobs that are final (completed or failed for good).
    pub fn finished(&self) -> u64 {
        self.counters.completed + self.counters.failed
    }

    /// Whether every job of the scenario is final.
    pub fn is_complete(&self) -> bool {
        self.next_index >= self.scenario.job_count && self.finished() >= self.scenario.job_count
    }

    fn arrival_ms(&self, index: u64) -> i64 {
        let window = (self.scenario.duration_seconds * 1000.0) as u64;
        (index.saturating_mul(window) / self.scenario.job_count.max(1)) as i64
    }

    /// Generates every job that has arrived by `now` into `arrivals` (the tick's dispatch
    /// submits them).
    fn arrive(&mut self, now: i64) {
        let mut batch = std::mem::take(&mut self.arrivals);
        while self.next_index < self.scenario.job_count
            && self.virtual_start + self.arrival_ms(self.next_index) <= now
            && batch.len() < SUBMIT_CHUNK
        {
            let spec = gen::job_spec(self.seed, self.next_index, &self.scenario);
            if let Some(s) = self.per_shard.get_mut(&spec.shard) {
                s.depth += 1;
            }
            let payload = spec.payload();
            batch.push(sim_job(spec.shard, spec.priority, payload));
            self.next_index += 1;
        }
        if !batch.is_empty() {
            // Every job of a batch arrives at this tick, so their order among themselves is
            // free: grouped by shard and priority, each (shard, priority) queue lies on
            // neighbouring table pages, and claims and completions in dispatch order dirty
            // (and write) a few pages instead of one page per job. Within a group the
            // arrival order is kept (stable sort), so ids still follow age.
            batch.sort_by(|a, b| a.shard.cmp(&b.shard).then(b.priority.cmp(&a.priority)));
        }
        self.arrivals = batch;
    }

    /// Submits generated jobs in one durable write and records the index of each new id.
    async fn submit(&mut self, batch: Vec<NewJob>, now: i64) -> Result<(), SimError> {
        if batch.is_empty() {
            return Ok(());
        }
        let indexes: Vec<u64> = batch.iter().map(|j| payload_index(&j.payload)).collect();
        let ids = self.store.submit(batch, now).await.map_err(sim_err)?;
        for (s, index) in ids.iter().zip(indexes) {
            let at = usize::try_from(s.id).map_err(sim_err)?;
            if self.index_of.len() <= at {
                self.index_of.resize(at + 1, u64::MAX);
            }
            self.index_of[at] = index;
        }
        Ok(())
    }

    /// The scenario index of the job with store id `id`, if this run submitted it.
    fn index_for(&self, id: JobId) -> Option<u64> {
        let at = usize::try_from(id).ok()?;
        self.index_of.get(at).copied().filter(|i| *i != u64::MAX)
    }

    /// Settles every attempt due by `now` in memory; returns the completions to write.
    fn finish(&mut self, now: i64) -> Vec<Completion> {
        let mut batch = Vec::new();
        while let Some(Reverse((at, id))) = self.finishing.peek().copied() {
            if at > now {
                break;
            }
            self.finishing.pop();
            let dead = self
                .running
                .get(&id)
                .and_then(|r| self.nodes.iter().find(|n| n.id == r.node))
                .is_some_and(|n| n.stopped_at.is_some());
            if dead {
                // Its node died: no result comes; the job is reassigned once the node's
                // heartbeat is older than the timeout.
                continue;
            }
            let Some(r) = self.running.remove(&id) else {
                continue; // reassigned when its node went offline
            };
            if let Some(n) = self.nodes.iter_mut().find(|n| n.id == r.node) {
                n.load = n.load.saturating_sub(1);
            }
            let stats = stats_of(&mut self.per_shard, &r.job.shard);
            let outcome = if r.success {
                self.counters.completed += 1;
                stats.completed += 1;
                self.latencies
                    .push((at - r.job.created_at).clamp(0, u32::MAX as i64) as u32);
                Outcome::Succeeded { result: None }
            } else if r.job.attempt < MAX_ATTEMPTS {
                self.counters.reassigned += 1;
                stats.reassigned += 1;
                stats.depth += 1;
                Outcome::Retry {
                    run_at: at,
                    error: format!("simulated failure on {}", r.node),
                    failure: "transient".into(),
                }
            } else {
                self.counters.failed += 1;
                stats.failed += 1;
                Outcome::Quarantine {
                    reason: fabric_core::quarantine::QuarantineReason::Unknown,
                    error: format!("simulated failure on {} (last attempt)", r.node),
                    failure: "transient".into(),
                }
            };
            batch.push(Completion {
                id,
                attempt: r.job.attempt,
                owner: r.job.lease_owner.clone().unwrap_or_default(),
                started_at: r.job.started_at.unwrap_or(at),
                finished_at: at,
                outcome,
            });
        }
        batch
    }

    /// Writes a completion batch (fenced); every one must apply.
    async fn write_completions(
        store: &Arc<dyn Store>,
        batch: Vec<Completion>,
    ) -> Result<(), SimError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() as u64;
        let report = store.complete(batch).await.map_err(sim_err)?;
        if report.applied() != n {
            return Err(SimError::Runtime(format!(
                "{} of {n} completions were rejected by the store",
                n - report.applied()
            )));
        }
        Ok(())
    }

    /// Reads the owner levers from the store (an operator may change them at any time).
    async fn refresh_governance(&mut self) -> Result<(), SimError> {
        self.shards = Arc::new(self.store.fleet().shards().await.map_err(sim_err)?);
        self.conservative = self.console.conservative().await.map_err(sim_err)?;
        if let Some(t) = self
            .store
            .fleet()
            .setting(TICK_SETTING)
            .await
            .map_err(sim_err)?
        {
            if let Ok(ms) = t.parse::<u64>() {
                self.tick_ms = ms.clamp(1, MAX_TICK_MS);
            }
        }
        Ok(())
    }

    /// Heartbeats of live simulated nodes; a silent node past the timeout goes offline and
    /// the jobs it held are reassigned.
    async fn heartbeat(&mut self, now: i64) -> Result<(), SimError> {
        let mut lost = Vec::new();
        for n in &mut self.nodes {
            if n.stopped_at.is_none() {
                n.heartbeat_at = now;
            } else if n.health != NodeHealth::Offline
                && n.is_stale(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
            {
                n.health = NodeHealth::Offline;
                n.load = 0;
                lost.push(n.id.clone());
            }
        }
        for id in lost {
            self.reassign_node(&id, now).await?;
        }
        Ok(())
    }

    /// Returns every job on node `id` to its queue (fenced: a retry of the same attempt).
    async fn reassign_node(&mut self, id: &str, now: i64) -> Result<(), SimError> {
        let ids: Vec<JobId> = self
            .running
            .iter()
            .filter(|(_, r)| r.node == id)
            .map(|(j, _)| *j)
            .collect();
        let mut batch = Vec::new();
        for jid in ids {
            let Some(r) = self.running.remove(&jid) else {
                continue;
            };
            let stats = stats_of(&mut self.per_shard, &r.job.shard);
            self.counters.reassigned += 1;
            stats.reassigned += 1;
            stats.depth += 1;
            batch.push(Completion {
                id: jid,
                attempt: r.job.attempt,
                owner: r.job.lease_owner.clone().unwrap_or_default(),
                started_at: r.job.started_at.unwrap_or(now),
                finished_at: now,
                outcome: Outcome::Retry {
                    run_at: now,
                    error: format!("node {id} went offline"),
                    failure: "node_offline".into(),
                },
            });
        }
        if !batch.is_empty() {
            // Back to pending under the same attempt budget check as any retry; a job lost
            // on its last attempt still runs once more (the runner decides final failure
            // by the attempt that actually failed).
            self.store.complete(batch).await.map_err(sim_err)?;
        }
        Ok(())
    }

    /// One tick: arrivals, finished attempts, node heartbeats, owner levers, dispatch.
    async fn tick(&mut self) -> Result<(), SimError> {
        let now = self.clock.now_ms();
        self.arrive(now);
        let done = self.finish(now);
        self.heartbeat(now).await?;
        // An operator's lever reaches the run within GOVERNANCE_EVERY of wall time.
        self.ticks += 1;
        if self
            .governance_read
            .is_none_or(|t| t.elapsed() >= GOVERNANCE_EVERY)
        {
            self.refresh_governance().await?;
            self.governance_read = Some(Instant::now());
        }
        self.dispatch(now, done).await?;
        let depths = self.per_shard.values().map(|s| s.depth);
        let (lo, hi) = depths.fold((u64::MAX, 0), |(lo, hi), d| (lo.min(d), hi.max(d)));
        self.max_spread = self.max_spread.max(hi.saturating_sub(lo));
        Ok(())
    }

    /// Largest difference between two shards' queue depths seen so far.
    pub fn max_queue_spread(&self) -> u64 {
        self.max_spread
    }

    /// Total due jobs not yet on a node.
    fn depth(&self) -> u64 {
        self.per_shard.values().map(|s| s.depth).sum()
    }

    /// Moves virtual time on by a tick, or, when no due job has a free slot to go to, straight
    /// to the tick of the next event that can change that (an attempt ends, a job arrives, a
    /// silent node times out), but never past `cap` (absolute virtual ms).
    fn advance(&mut self, cap: Option<i64>) {
        let now = self.clock.now_ms();
        let tick = self.tick_ms as i64;
        let mut next = now + tick;
        // A paced run steps tick by tick, reading the levers as it goes; jumping ahead would
        // only make it sleep through them.
        if self.speed.is_none() && !self.can_place() {
            let next_finish = self.finishing.peek().map(|Reverse((t, _))| *t);
            let next_arrival = (self.next_index < self.scenario.job_count)
                .then(|| self.virtual_start + self.arrival_ms(self.next_index));
            let timeout = fabric_core::node::DEFAULT_NODE_TIMEOUT_MS;
            let next_timeout = self
                .nodes
                .iter()
                .filter(|n| n.stopped_at.is_some() && n.health != NodeHealth::Offline)
                .map(|n| n.heartbeat_at + timeout + 1)
                .min();
            let event = [next_finish, next_arrival, next_timeout]
                .into_iter()
                .flatten()
                .min();
            if let Some(event) = event.map(|e| cap.map_or(e, |c| e.min(c))) {
                if event > next {
                    // Stay on the tick grid.
                    let ticks = (event - now + tick - 1) / tick;
                    next = now + ticks * tick;
                }
            }
        }
        self.clock.advance_to(next);
    }

    /// Runs ticks until every job is final, the virtual time reaches `until_ms` (since the
    /// start of the run), or `stop_when` says so; `on_tick` sees the run after every tick.
    pub async fn run_until(
        &mut self,
        until_ms: Option<i64>,
        mut stop_when: impl FnMut(&Fabric) -> bool,
        mut on_tick: impl FnMut(&Fabric),
    ) -> Result<Stop, SimError> {
        let mut yielded = Instant::now();
        let stop = loop {
            self.tick().await?;
            on_tick(self);
            // The store answers on this thread without ever suspending (write-behind), so
            // the run gives the runtime's other tasks (the `fabric checkpoint save` signal
            // listener) their turn now and then.
            if yielded.elapsed() >= YIELD_EVERY {
                tokio::task::yield_now().await;
                yielded = Instant::now();
            }
            if self.is_complete() {
                break Stop::Complete;
            }
            if until_ms.is_some_and(|u| self.virtual_ms() >= u) || stop_when(self) {
                break Stop::Cut;
            }
            self.advance(until_ms.map(|u| self.virtual_start + u));
            self.pace().await?;
        };
        // The store holds every settled attempt whenever the run is not inside a tick.
        let done = std::mem::take(&mut self.unflushed);
        self.flushed_at_tick = self.ticks;
        Self::write_completions(&self.store, done).await?;
        self.store.sync().await.map_err(sim_err)?;
        Ok(stop)
    }

    /// With `--speed X`, waits until the wall clock has caught up with the virtual time
    /// gone since pacing began, divided by X. Before a wait of some length the store is
    /// committed, so that an operator's lever (another process) finds its lock free.
    async fn pace(&mut self) -> Result<(), SimError> {
        let Some(speed) = self.speed else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let (wall0, virtual0) = *self.paced_from.get_or_insert((Instant::now(), now));
        let ahead = now.saturating_sub(virtual0) as f64 / speed / 1000.0;
        let Some(due) = std::time::Duration::try_from_secs_f64(ahead)
            .ok()
            .and_then(|d| wall0.checked_add(d))
        else {
            return Ok(());
        };
        let wait = due.saturating_duration_since(Instant::now());
        if wait >= PACE_SYNC_AFTER {
            let done = std::mem::take(&mut self.unflushed);
            self.flushed_at_tick = self.ticks;
            Self::write_completions(&self.store, done).await?;
            self.store.sync().await.map_err(sim_err)?;
        }
        if !wait.is_zero() {
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(())
    }

    /// Takes node `id` down as an outage would: it stops heartbeating, and once its
    /// heartbeat is older than the timeout it is offline and its jobs are reassigned.
    pub fn fail_node(&mut self, id: &str) -> Result<(), SimError> {
        let now = self.clock.now_ms();
        let node = self.nodes.iter_mut().find(|n| n.id == id).ok_or_else(|| {
            SimError::invalid("node", format!("'{id}' is not a node of this run"))
        })?;
        node.stopped_at = Some(now);
        Ok(())
    }
}

/// Page cache of a run's store connections (KiB).
const RUN_CACHE_KIB: u32 = 4_096;
/// A run's store commits at most this long (wall time) after a write; see
/// `SqliteOptions::write_behind`.
const RUN_COMMIT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// How often (wall time) a run lets other tasks of its runtime run.
const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(5);
/// Most jobs submitted in one store write (a tick's arrivals, a resume's chunk).
const SUBMIT_CHUNK: usize = 50_000;
/// Queued jobs read from the store per page when a checkpoint is taken.
const CHECKPOINT_PAGE: usize = 20_000;
/// Jobs claimed per shard beyond its free slots.
const CLAIM_AHEAD: u64 = 32;
/// Settled attempts are written at least this often (ticks) or at this many.
const FLUSH_EVERY_TICKS: u64 = 20;
const FLUSH_AT: usize = 512;

/// A paced run commits its store before a wait at least this long.
const PACE_SYNC_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// Owner levers are re-read from the store this often (wall time).
const GOVERNANCE_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

pub use crate::owner::{GovernanceSnapshot, OwnerConsole, TICK_SETTING};

/// The scenario index a generated job's payload carries.
fn payload_index(payload: &serde_json::Value) -> u64 {
    payload
        .get("index")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// Node liveness at virtual time `now` under the fleet's heartbeat timeout.
fn live_at(now: i64) -> Liveness {
    Liveness::new(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
}

/// The counters of `shard`, created on first use (a shard added while the run goes).
fn stats_of<'a>(map: &'a mut BTreeMap<String, ShardStats>, shard: &str) -> &'a mut ShardStats {
    if !map.contains_key(shard) {
        map.insert(shard.to_string(), ShardStats::default());
    }
    map.get_mut(shard).expect("inserted above")
}

/// The store's form of a simulated job.
fn sim_job(shard: String, priority: i32, payload: serde_json::Value) -> NewJob {
    let mut job = NewJob::new(SIM_KIND);
    job.shard = shard;
    job.priority = Priority(priority);
    job.max_attempts = MAX_ATTEMPTS;
    job.payload = payload;
    job
}

/// How a whole run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    pub stop: Stop,
}

/// Runs a scenario from start (or from `resume`) to its end: the drills of the scenario
/// (a node outage at half way, an orchestrator kill-and-resume at three quarters), the
/// scoreboard, and a checkpoint at the end (and at the kill) at `opts.checkpoint_path`.
pub async fn execute(
    opts: &RunOptions,
    resume: Option<Checkpoint>,
    board: &mut crate::scoreboard::Scoreboard,
) -> Result<RunOutcome, SimError> {
    let fabric = start(opts, resume).await?;
    drive(opts, fabric, board).await
}

/// The fabric a run starts with: a fresh one, or one resumed from `resume`. Its store is
/// open (any old one replaced) when this returns.
pub async fn start(opts: &RunOptions, resume: Option<Checkpoint>) -> Result<Fabric, SimError> {
    match resume {
        Some(cp) => Fabric::resume(opts, cp).await,
        None => Fabric::new(opts).await,
    }
}

/// Runs `fabric` (from [`start`]) to its end, as [`execute`] does.
pub async fn drive(
    opts: &RunOptions,
    mut fabric: Fabric,
    board: &mut crate::scoreboard::Scoreboard,
) -> Result<RunOutcome, SimError> {
    let cap = opts.duration_cap.map(|s| (s * 1000.0) as i64);
    let every = if board.is_tty() {
        std::time::Duration::from_millis(100)
    } else {
        std::time::Duration::from_secs(1)
    };
    let mut last = Instant::now();
    let mut draw = |f: &Fabric| {
        if last.elapsed() >= every {
            board.update(&f.board());
            last = Instant::now();
        }
    };
    let total = fabric.scenario.job_count;
    let capped = |f: &Fabric| cap.is_some_and(|c| f.virtual_ms() >= c);
    if !fabric.loaded_from_checkpoint {
        if fabric.scenario.node_outage {
            let stop = fabric
                .run_until(cap, |f| f.finished() >= total / 2, &mut draw)
                .await?;
            if stop == Stop::Cut && !capped(&fabric) {
                if let Some(id) = fabric.busiest_node() {
                    fabric.fail_node(&id)?;
                }
            }
        }
        if fabric.scenario.orchestrator_kill && !fabric.is_complete() && !capped(&fabric) {
            let stop = fabric
                .run_until(cap, |f| f.finished() >= total * 3 / 4, &mut draw)
                .await?;
            if stop == Stop::Cut && !capped(&fabric) {
                // The orchestrator dies: all that survives is the checkpoint.
                let cp = fabric.checkpoint().await?;
                save_checkpoint(&opts.checkpoint_path, &cp)?;
                drop(fabric);
                let cp = load_checkpoint(&opts.checkpoint_path)?;
                // A store of its own: the dead orchestrator's threads may still hold the
                // old file for a moment.
                let mut fresh = opts.clone();
                fresh.store_path = opts.store_path.with_file_name(format!(
                    "{}-resumed.db",
                    opts.store_path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or("run")
                ));
                fabric = Fabric::resume(&fresh, cp).await?;
            }
        }
    }
    let stop = if fabric.is_complete() || capped(&fabric) {
        if fabric.is_complete() {
            Stop::Complete
        } else {
            Stop::Cut
        }
    } else {
        loop {
            let asked = &opts.save_requested;
            let stop = fabric
                .run_until(
                    cap,
                    |_| asked.load(std::sync::atomic::Ordering::Relaxed),
                    &mut draw,
                )
                .await?;
            if asked.swap(false, std::sync::atomic::Ordering::Relaxed)
                && stop == Stop::Cut
                && !capped(&fabric)
            {
                // `fabric checkpoint save`: write one now and carry on.
                save_checkpoint(&opts.checkpoint_path, &fabric.checkpoint().await?)?;
                continue;
            }
            break stop;
        }
    };
    board.update(&fabric.board());
    let t0 = Instant::now();
    save_checkpoint(&opts.checkpoint_path, &fabric.checkpoint().await?)?;
    let mut report = fabric.report(Some(&opts.checkpoint_path));
    report.checkpoint_seconds = t0.elapsed().as_secs_f64();
    Ok(RunOutcome { report, stop })
}
