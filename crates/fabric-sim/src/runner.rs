//! The scenario runner: drives the real store (durable SQLite), the routing policy of
//! `fabric-core` and a simulated node fleet on a virtual clock, tick by tick, until every job
//! is final (or an explicit virtual duration ends), with the owner console, checkpoints and
//! the report of RUNBOOK-MAP.md §B.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use fabric_core::routing::{choose_node, dispatch_order, placement_order, Liveness, QueuedJob};
use fabric_core::{
    Clock, Job, JobId, LatencyMatrix, NewJob, Node, NodeHealth, Priority, Shard, VirtualClock,
};
use fabric_engine::Console;
use fabric_store::{ClaimRequest, Completion, Outcome, Store};

use crate::checkpoint::{self, load_checkpoint, save_checkpoint, Checkpoint, CheckpointJob};
use crate::gen;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::SimError;

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
                fabric
                    .store
                    .fleet()
                    .put_shard(shard)
                    .await
                    .map_err(sim_err)?;
            }
        }
        fabric.refresh_governance().await?;
        Ok(fabric)
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

    /// Places due work on nodes, shard by shard: highest priority then oldest; a node by
    /// skill, load and heartbeat; spillover to other shards under the routing policy.
    async fn dispatch(&mut self, now: i64, done: Vec<Completion>) -> Result<(), SimError> {
        let live = live_at(now);
        let shards = self.shards.clone();
        // Plan: what each shard can place now (local free slots plus spillover targets).
        // The deepest queue places first (`placement_order`).
        let mut due: Vec<(&Shard, u64)> = shards
            .iter()
            .filter(|s| !s.paused)
            .filter_map(|s| Some((s, self.per_shard.get(&s.name)?.depth)))
            .filter(|(_, depth)| *depth > 0)
            .collect();
        due.sort_by(|a, b| placement_order((&a.0.name, a.1), (&b.0.name, b.1)));
        let mut plans: Vec<(&Shard, Vec<String>, Option<ClaimRequest>)> = Vec::new();
        for (shard, depth) in due {
            let Some((local_free, targets, spill_free)) = self.room(shard, live) else {
                continue;
            };
            let held = self.held.get(&shard.name).map_or(0, |h| h.len() as u64);
            let want = (local_free + spill_free).saturating_sub(held);
            let claimable = depth.saturating_sub(held);
            // Claim ahead (CLAIM_AHEAD more than the free slots) so most ticks need no
            // store round trip at all; the extra jobs wait in `held`.
            let claim = (want > 0 && claimable > 0).then(|| ClaimRequest {
                owner: format!("sim/{}", shard.name),
                shards: vec![shard.name.clone()],
                min_priority: self.conservative.then_some(Priority::HIGH.0),
                limit: (want + CLAIM_AHEAD).min(claimable) as usize,
                lease_ms: LEASE_MS,
                now,
                ..ClaimRequest::default()
            });
            plans.push((shard, targets, claim));
        }
        // I/O: the arrivals, the completions and every shard's claim go to the store together
        // (one group commit for the writer thread, one transaction for write-behind).
        let store = self.store.clone();
        let requests: Vec<Option<ClaimRequest>> =
            plans.iter_mut().map(|(_, _, c)| c.take()).collect();
        let any_claim = requests.iter().any(Option::is_some);
        let claims = requests.into_iter().map(|c| {
            let store = store.clone();
            async move {
                match c {
                    Some(c) => store.claim(c).await.map_err(sim_err),
                    None => Ok(Vec::new()),
                }
            }
        });
        self.unflushed.extend(done);
        let flush = any_claim
            || self.unflushed.len() >= FLUSH_AT
            || self.ticks.saturating_sub(self.flushed_at_tick) >= FLUSH_EVERY_TICKS;
        let done = if flush {
            self.flushed_at_tick = self.ticks;
            std::mem::take(&mut self.unflushed)
        } else {
            Vec::new()
        };
        // The arrivals go first (join! polls in order, and the writer runs writes in the
        // order they come), so this tick's claims already see them.
        let arrivals = std::mem::take(&mut self.arrivals);
        let (submitted, written, claimed) = tokio::join!(
            self.submit(arrivals, now),
            Self::write_completions(&store, done),
            futures_util::future::join_all(claims)
        );
        submitted?;
        written?;
        // Place: held jobs first, then the new ones, by the routing policy.
        for ((shard, targets, _), claimed) in plans.into_iter().zip(claimed) {
            let targets = &targets;
            // Held jobs are kept in dispatch order; new claims are merged in.
            let mut queue = self
                .held
                .get_mut(&shard.name)
                .map(std::mem::take)
                .unwrap_or_default();
            let fresh = claimed?;
            if !fresh.is_empty() {
                queue.extend(fresh.into_iter().map(|j| (QueuedJob::from_job(&j), j)));
                queue
                    .make_contiguous()
                    .sort_by(|a, b| dispatch_order(&a.0, &b.0));
            }
            // Jobs passed over this tick (held back or without a node), ahead of the rest.
            let mut passed = VecDeque::new();
            while let Some((q, job)) = queue.pop_front() {
                let room = self.nodes.iter().any(|n| {
                    (n.shard == shard.name || targets.contains(&n.id)) && live.takes_work(n)
                });
                if !room {
                    // No node here or among the spill targets has a free slot: the rest
                    // waits for the next tick, in order.
                    queue.push_front((q, job));
                    break;
                }
                if self.conservative && job.priority < Priority::HIGH {
                    passed.push_back((q, job));
                    continue;
                }
                let local = self
                    .pick(&q, |n| n.shard == shard.name, live)
                    .map(|i| (i, 0u64));
                let placed = match local {
                    Some(p) => Some(p),
                    None if !targets.is_empty() => {
                        let budget = shard.effective_budget_ms(q.latency_budget_ms);
                        let from = shard.name.clone();
                        let latency = &self.latency;
                        let targets = &targets;
                        let idx = self.pick(
                            &q,
                            |n| targets.contains(&n.id) && latency.get(&from, &n.shard) <= budget,
                            live,
                        );
                        idx.map(|i| (i, self.latency.get(&shard.name, &self.nodes[i].shard)))
                    }
                    None => None,
                };
                match placed {
                    Some((i, delay)) => self.place(job, i, delay, now),
                    None => passed.push_back((q, job)),
                }
            }
            if !passed.is_empty() {
                passed.append(&mut queue);
                queue = passed;
            }
            match self.held.get_mut(&shard.name) {
                Some(slot) => *slot = queue,
                None => {
                    self.held.insert(shard.name.clone(), queue);
                }
            }
        }
        Ok(())
    }

    /// Where `shard` can place work now: its own free slots, the
    /// spillover targets the routing policy allows and their free slots; `None` when there
    /// is no free slot for it anywhere.
    fn room(&self, shard: &Shard, live: Liveness) -> Option<(u64, Vec<String>, u64)> {
        let local_free: u64 = self
            .nodes
            .iter()
            .filter(|n| n.shard == shard.name && live.takes_work(n))
            .map(|n| u64::from(n.free_capacity()))
            .sum();
        let targets: Vec<String> = self
            .spill_targets(shard, live)
            .into_iter()
            .map(String::from)
            .collect();
        let spill_free: u64 = self
            .nodes
            .iter()
            .filter(|n| targets.contains(&n.id))
            .map(|n| u64::from(n.free_capacity()))
            .sum();
        (local_free + spill_free > 0).then_some((local_free, targets, spill_free))
    }

    /// Whether some due job of an unpaused shard has a free slot to go to now (in
    /// conservative mode this may be a job that is then held back: the run steps tick by
    /// tick then, as an operator may lift the mode at any moment).
    fn can_place(&self) -> bool {
        let live = live_at(self.clock.now_ms());
        self.shards.iter().any(|shard| {
            let depth = self.per_shard.get(&shard.name).map_or(0, |s| s.depth);
            let local = || {
                self.nodes
                    .iter()
                    .any(|n| n.shard == shard.name && live.takes_work(n))
            };
            // A spillover target always has a free slot.
            let spill = || !self.spill_targets(shard, live).is_empty();
            depth > 0 && !shard.paused && (local() || spill())
        })
    }

    /// The nodes that may take work spilled from `shard` now.
    fn spill_targets(&self, shard: &Shard, live: Liveness) -> Vec<&str> {
        fabric_core::routing::spillover_targets(
            shard,
            |s| self.per_shard.get(s).map_or(0, |x| x.depth),
            &self.shards,
            &self.nodes,
            &self.latency,
            None,
            live,
        )
    }

    /// The node (index) that takes `job` among those `eligible`, by the routing policy.
    fn pick(
        &self,
        job: &QueuedJob,
        eligible: impl Fn(&Node) -> bool,
        live: Liveness,
    ) -> Option<usize> {
        let chosen = choose_node(job, self.nodes.iter().filter(|n| eligible(n)), live)?;
        self.nodes.iter().position(|n| std::ptr::eq(n, chosen))
    }

    /// Starts `job` on node `i` now; a spilled job pays the inter-shard latency `delay_ms`.
    fn place(&mut self, job: Job, i: usize, delay_ms: u64, now: i64) {
        let index = payload_index(&job.payload);
        let (duration, success) = gen::attempt_outcome(
            self.seed,
            index,
            job.attempt,
            self.scenario.completion_probability,
        );
        let node = &mut self.nodes[i];
        node.load += 1;
        let spilled = node.shard != job.shard;
        let finish_at = now + duration as i64 + delay_ms as i64;
        self.counters.dispatched += 1;
        let stats = stats_of(&mut self.per_shard, &job.shard);
        stats.dispatched += 1;
        stats.depth = stats.depth.saturating_sub(1);
        if spilled {
            self.counters.spillovers += 1;
            stats.spillovers += 1;
        }
        self.finishing.push(Reverse((finish_at, job.id)));
        self.running.insert(
            job.id,
            Running {
                node: node.id.clone(),
                job,
                success,
            },
        );
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

    /// The state a fresh fabric needs to continue this run.
    pub async fn checkpoint(&self) -> Result<Checkpoint, SimError> {
        // The store and the checkpoint agree: every write so far is committed first.
        self.store.sync().await.map_err(sim_err)?;
        // Page through the queue without payloads (a job's payload follows from its index), so
        // a checkpoint of a million queued jobs stays small and quick. The store holds `depth`
        // minus the held jobs as pending; the walk stops once it has found them all, so a
        // drained run does not read its finished rows.
        let held: usize = self.held.values().map(VecDeque::len).sum();
        let in_store = (self.depth() as usize).saturating_sub(held);
        let mut pending = Vec::with_capacity(in_store + held);
        let mut after_id = 0;
        while pending.len() < in_store {
            let want = (in_store - pending.len()).min(CHECKPOINT_PAGE);
            let page = self
                .store
                .pending_keys(after_id, want)
                .await
                .map_err(sim_err)?;
            let Some(last) = page.last() else { break };
            after_id = last.id;
            let full = page.len() == want;
            for k in page {
                // A job that someone else submitted into the run's store is not one of the
                // scenario's (a checkpoint regenerates jobs from the scenario): left out.
                let Some(index) = self.index_for(k.id) else {
                    continue;
                };
                pending.push(CheckpointJob {
                    index,
                    shard: k.shard,
                    priority: k.priority,
                    attempt: k.attempt,
                    payload: None,
                    created_at: k.created_at,
                });
            }
            if !full {
                break;
            }
        }
        pending.extend(self.held.values().flatten().map(|(_, j)| checkpoint_job(j)));
        let mut in_flight: Vec<CheckpointJob> = self
            .running
            .values()
            .map(|r| checkpoint_job(&r.job))
            .collect();
        // Deterministic order: a resumed run of one seed gives one report.
        in_flight.sort_by_key(|j| j.index);
        Ok(checkpoint::Checkpoint::new(checkpoint::CheckpointState {
            registry: self.nodes.clone(),
            marketplace: checkpoint::MarketplaceState {
                shards: self.shards.to_vec(),
                latency: self.latency.clone(),
            },
            orchestrator: checkpoint::OrchestratorState {
                scenario: self.scenario.clone(),
                seed: self.seed,
                virtual_ms: self.virtual_ms(),
                next_index: self.next_index,
                pending,
                in_flight,
            },
            metrics: self.counters.clone(),
            governance: self.governance(),
        }))
    }

    fn governance(&self) -> checkpoint::GovernanceState {
        checkpoint::GovernanceState {
            tick_interval_ms: self.tick_ms,
            conservative: self.conservative,
            shard_pauses: self
                .shards
                .iter()
                .map(|s| (s.name.clone(), s.paused))
                .collect(),
            spillover_limits: self
                .shards
                .iter()
                .map(|s| (s.name.clone(), s.spillover_limit))
                .collect(),
            latency_budgets: self
                .shards
                .iter()
                .map(|s| (s.name.clone(), s.latency_budget_ms))
                .collect(),
        }
    }

    /// A fresh fabric that continues the run saved in `cp`: jobs queued or in flight at
    /// checkpoint time are queued again (in-flight attempts are not lost).
    pub async fn resume(opts: &RunOptions, cp: Checkpoint) -> Result<Self, SimError> {
        let state = cp.state;
        let o = state.orchestrator;
        let mut run_opts = opts.clone();
        run_opts.scenario = o.scenario.clone();
        run_opts.seed = o.seed;
        let clock = Arc::new(VirtualClock::new(0));
        let mut nodes = state.registry;
        for n in &mut nodes {
            // The new orchestrator starts with nothing running on its nodes.
            n.load = 0;
        }
        let mut fabric = Self::open(&run_opts, clock.clone(), nodes).await?;
        for shard in state.marketplace.shards {
            fabric
                .store
                .fleet()
                .put_shard(shard)
                .await
                .map_err(sim_err)?;
        }
        fabric.latency = state.marketplace.latency;
        fabric.tick_ms = state.governance.tick_interval_ms.max(1);
        fabric
            .store
            .fleet()
            .put_setting(TICK_SETTING, &fabric.tick_ms.to_string())
            .await
            .map_err(sim_err)?;
        fabric
            .store
            .fleet()
            .put_setting(
                fabric_engine::fleet::CONSERVATIVE_SETTING,
                if state.governance.conservative {
                    "on"
                } else {
                    "off"
                },
            )
            .await
            .map_err(sim_err)?;
        clock.advance_to(o.virtual_ms);
        fabric.counters = state.metrics;
        fabric.next_index = o.next_index;
        let requeued = o.in_flight.len() as u64;
        fabric.counters.reassigned += requeued;
        // Grouped by shard and priority (neighbouring pages, as at arrival), oldest first in
        // each group: the ids of one priority of a shard follow age, as dispatch expects.
        let mut queued: Vec<&CheckpointJob> = o.pending.iter().chain(o.in_flight.iter()).collect();
        queued.sort_by(|a, b| {
            (a.shard.as_str(), Reverse(a.priority), a.index).cmp(&(
                b.shard.as_str(),
                Reverse(b.priority),
                b.index,
            ))
        });
        // Built and written a chunk at a time, so a million queued jobs never sit in memory
        // as full jobs at once.
        for chunk in queued.chunks(SUBMIT_CHUNK) {
            let mut jobs = Vec::with_capacity(chunk.len());
            for j in chunk {
                let payload = j
                    .payload
                    .clone()
                    .unwrap_or_else(|| gen::job_spec(o.seed, j.index, &o.scenario).payload());
                stats_of(&mut fabric.per_shard, &j.shard).depth += 1;
                jobs.push(sim_job(j.shard.clone(), j.priority, payload));
            }
            fabric.submit(jobs, o.virtual_ms).await?;
        }
        fabric.loaded_from_checkpoint = true;
        fabric.finished_at_start = fabric.finished();
        fabric.refresh_governance().await?;
        Ok(fabric)
    }

    /// The report of §B, plus Fabric's own figures.
    pub fn report(&self, checkpoint: Option<&Path>) -> Report {
        let now = self.clock.now_ms();
        let queue_depths: BTreeMap<String, u64> = self
            .per_shard
            .iter()
            .map(|(k, v)| (k.clone(), v.depth))
            .collect();
        let node_health: BTreeMap<String, String> = self
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id.clone(),
                    n.effective_health(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
                        .to_string(),
                )
            })
            .collect();
        let stale_nodes: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| {
                n.stopped_at.is_some()
                    || n.is_stale(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
            })
            .map(|n| n.id.clone())
            .collect();
        let wall = self.started.elapsed().as_secs_f64();
        let mut lat = self.latencies.clone();
        let (p50, p99) = crate::report::percentiles(&mut lat);
        crate::report::Report::build(crate::report::ReportInput {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            job_count: self.scenario.job_count,
            dispatched: self.counters.dispatched,
            completed: self.counters.completed,
            failed: self.counters.failed,
            reassigned: self.counters.reassigned,
            spillovers: self.counters.spillovers,
            queue_depths,
            loaded_from_checkpoint: self.loaded_from_checkpoint,
            checkpoint: checkpoint.map(|p| p.display().to_string()),
            governance: self.governance(),
            stale_nodes,
            node_health,
            wall_seconds: wall,
            virtual_seconds: self.virtual_ms() as f64 / 1000.0,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            max_queue_spread: self.max_spread,
            finished_here: self.finished() - self.finished_at_start,
        })
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

fn checkpoint_job(j: &Job) -> CheckpointJob {
    CheckpointJob {
        index: payload_index(&j.payload),
        shard: j.shard.clone(),
        priority: j.priority.0,
        attempt: j.attempt,
        payload: None,
        created_at: j.created_at,
    }
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

impl Fabric {
    /// The scenario being run.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Whether this run was loaded from a checkpoint.
    pub fn loaded_from_checkpoint(&self) -> bool {
        self.loaded_from_checkpoint
    }

    /// The scoreboard's view of the run.
    pub fn board(&self) -> crate::scoreboard::Board {
        let now = self.clock.now_ms();
        let rows = self
            .per_shard
            .iter()
            .map(|(name, s)| {
                let nodes: Vec<&Node> = self.nodes.iter().filter(|n| &n.shard == name).collect();
                crate::scoreboard::ShardRow {
                    shard: name.clone(),
                    dispatched: s.dispatched,
                    completed: s.completed,
                    failed: s.failed,
                    reassigned: s.reassigned,
                    spillovers: s.spillovers,
                    queue_depth: s.depth,
                    nodes_healthy: nodes
                        .iter()
                        .filter(|n| {
                            n.effective_health(now, fabric_core::node::DEFAULT_NODE_TIMEOUT_MS)
                                .takes_work()
                        })
                        .count(),
                    nodes_total: nodes.len(),
                }
            })
            .collect();
        let wall = self.started.elapsed().as_secs_f64();
        crate::scoreboard::Board {
            rows,
            finished: self.finished(),
            total: self.scenario.job_count,
            virtual_seconds: self.virtual_ms() as f64 / 1000.0,
            throughput: if wall > 0.0 {
                (self.finished() - self.finished_at_start) as f64 / wall
            } else {
                0.0
            },
        }
    }

    /// The busiest live node (ties: lowest id): the one a drill takes down.
    fn busiest_node(&self) -> Option<String> {
        self.nodes
            .iter()
            .filter(|n| n.stopped_at.is_none())
            .max_by(|a, b| a.load.cmp(&b.load).then(b.id.cmp(&a.id)))
            .map(|n| n.id.clone())
    }
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
