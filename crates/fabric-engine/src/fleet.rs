//! This daemon as a node of the fleet: it registers and heartbeats its worker pool as a node,
//! competes for the maintenance leader's lease in the store, and while it leads does the
//! fleet's maintenance: rescue of expired leases, reassignment of silent nodes' jobs, and
//! retention in the store (finished jobs, quarantine, audit log, recovery reports).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::time::duration_ms;
use fabric_core::Node;
use fabric_store::{NodeChange, Store, LEADER_LEASE};
use tokio::sync::watch;

use crate::runtime::Shared;
use crate::EngineError;

/// How the engine takes part in the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Home shard of this node.
    pub shard: String,
    /// Capacity reported to the marketplace.
    pub capacity: u32,
    pub specialties: Vec<String>,
    /// Node heartbeat period.
    pub heartbeat: Duration,
    /// A node silent for longer is offline; the leader reassigns its jobs.
    pub node_timeout: Duration,
    /// Length of the leader lease; renewed every third of it.
    pub leader_lease: Duration,
    /// Finished jobs older than this are pruned by the leader (`None`: never).
    pub retention: Option<Duration>,
    /// Quarantined jobs quarantined longer ago than this are purged by the leader
    /// (`quarantine.retention_days`; `None`: never).
    pub quarantine_retention: Option<Duration>,
    /// Audit entries older than this are deleted by the leader
    /// (`security.audit_retention_days`; `None`: never).
    pub audit_retention: Option<Duration>,
    /// Telemetry samples older than this are deleted by the leader
    /// (`telemetry.retention_days`; `None`: never).
    pub telemetry_retention: Option<Duration>,
    /// Recovery reports kept in the store beyond which the leader deletes the oldest
    /// (`recovery.keep`; `None`: all).
    pub recovery_keep: Option<usize>,
    /// How often the leader applies retention (default one hour; also once on taking the
    /// lead).
    pub prune_every: Duration,
}

impl FleetOptions {
    /// Options taken from a configuration file.
    pub fn from_config(config: &Config) -> Self {
        let n = &config.node;
        let days = |d: u32| (d > 0).then(|| Duration::from_secs(u64::from(d) * 86_400));
        Self {
            shard: n.shard.clone(),
            capacity: n.capacity.unwrap_or(config.workers.max_workers).max(1),
            specialties: n.specialties.clone(),
            heartbeat: Duration::from_millis(n.heartbeat_ms.max(1)),
            node_timeout: Duration::from_millis(n.timeout_ms.max(1)),
            leader_lease: Duration::from_millis(n.leader_lease_ms.max(1)),
            retention: days(config.queue.retention_days),
            quarantine_retention: days(config.quarantine.retention_days),
            audit_retention: days(config.security.audit_retention_days),
            telemetry_retention: days(config.telemetry.retention_days),
            recovery_keep: Some(config.recovery.keep as usize),
            prune_every: PRUNE_EVERY,
        }
    }
}

/// How often the leader applies retention by default.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// This machine's host name (for `fabric nodes list` and the node-id guard).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Refuses to start a second live daemon under a node id that a live daemon on another host,
/// or another live process on this host, already uses (their leases and crash recovery
/// would collide).
pub async fn check_node_id(
    store: &dyn Store,
    id: &str,
    now: i64,
    timeout: Duration,
) -> Result<(), EngineError> {
    let Some(n) = store
        .fleet()
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.id == id)
    else {
        return Ok(());
    };
    if n.stopped_at.is_some() || n.is_stale(now, duration_ms(timeout)) {
        return Ok(());
    }
    let here = host_name();
    let alive_here = n.host == here && n.pid != std::process::id() && alive(n.pid);
    if n.host != here || alive_here {
        return Err(EngineError::Conflict(format!(
            "node id '{id}' is in use by a live daemon on {} (pid {}, heartbeat {} ms ago); \
             give each daemon its own node.id (e.g. FABRIC__NODE__ID=node-2)",
            n.host,
            n.pid,
            now - n.heartbeat_at
        )));
    }
    Ok(())
}

/// Whether process `pid` runs on this machine (a zombie, killed but not reaped, does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn this_node(shared: &Shared, now: i64) -> Node {
    let f = &shared.options.fleet;
    Node {
        id: shared.options.node_id.clone(),
        shard: f.shard.clone(),
        capacity: f.capacity,
        specialties: f.specialties.clone(),
        health: fabric_core::NodeHealth::Healthy,
        draining: false,
        load: crate::runtime::in_flight(shared) as u32,
        heartbeat_at: now,
        started_at: now,
        stopped_at: None,
        host: host_name(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// Applies what the store says about this node: offline or draining → take no new work.
fn apply(shared: &Shared, node: &Node) {
    let pause = !node.health.takes_work() || node.draining;
    if shared.paused.swap(pause, Ordering::Relaxed) != pause {
        if pause {
            tracing::warn!(health = %node.health, draining = node.draining, "node paused: taking no new work");
        } else {
            tracing::info!("node resumed: taking work");
            shared.wake.notify_one();
        }
    }
}

/// The fleet task: node heartbeats, the leader lease and, while leading, maintenance.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let opts = shared.options.fleet.clone();
    let id = shared.options.node_id.clone();
    let store = shared.store.clone();
    let lease_ms = duration_ms(opts.leader_lease);
    let tick = opts
        .heartbeat
        .min(opts.leader_lease / 3)
        .max(Duration::from_millis(10));
    let mut registered = false;
    let mut last_heartbeat: Option<Instant> = None;
    let mut leader_until = 0i64;
    let mut last_rescue = Instant::now();
    let mut last_prune: Option<Instant> = None;
    // Silent nodes already reassigned, by the heartbeat they were silent since.
    let mut handled: HashMap<String, i64> = HashMap::new();
    // The earliest cron due time after the last firing step, while leading.
    let mut cron_due: Option<i64> = None;
    loop {
        let now = shared.clock.now_ms();
        if last_heartbeat.is_none_or(|t| t.elapsed() >= opts.heartbeat) {
            let load = crate::runtime::in_flight(&shared) as u32;
            let result = if registered {
                store.fleet().node_heartbeat(&id, load, now).await
            } else {
                store
                    .fleet()
                    .register_node(this_node(&shared, now))
                    .await
                    .map(Some)
            };
            match result {
                Ok(Some(node)) => {
                    registered = true;
                    last_heartbeat = Some(Instant::now());
                    shared.store_up.store(true, Ordering::Relaxed);
                    apply(&shared, &node);
                }
                Ok(None) => registered = false,
                Err(e) => {
                    shared.store_up.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        }
        refresh_governance(&shared).await;
        match store
            .fleet()
            .acquire_lease(LEADER_LEASE, &id, now, lease_ms)
            .await
        {
            Ok(true) => leader_until = now.saturating_add(lease_ms),
            Ok(false) => leader_until = 0,
            // Unknown: keep leading only until the lease we hold would lapse anyway.
            Err(e) => tracing::warn!(error = %e, "leader lease renewal failed"),
        }
        let leading = shared.clock.now_ms() < leader_until;
        if shared.leader.swap(leading, Ordering::Relaxed) != leading {
            shared.metrics.leader.set(i64::from(leading));
            if leading {
                tracing::info!(node = %id, "became the maintenance leader");
            } else {
                tracing::warn!(node = %id, "no longer the maintenance leader");
            }
        }
        if leading {
            if last_rescue.elapsed() >= shared.options.rescue_interval {
                last_rescue = Instant::now();
                rescue(&shared, None).await;
            }
            reassign_silent_nodes(&shared, &opts, &mut handled).await;
            cron_due = crate::schedules::run_due(&shared, now).await;
            crate::batches::finish_due(&shared, now).await;
            compact_index(&*store).await;
            if last_prune.is_none_or(|t| t.elapsed() >= opts.prune_every) {
                last_prune = Some(Instant::now());
                apply_retention(&*store, &opts, now).await;
            }
        }
        // Sleep until the next tick, waking between ticks for each cron due time that comes
        // first while this node leads (a schedule may fire every second).
        let next_tick = tokio::time::Instant::now() + tick;
        loop {
            let mut wake = next_tick;
            if let Some(due) = cron_due.filter(|_| leading) {
                let in_ms = due
                    .saturating_sub(shared.clock.now_ms())
                    .max(CRON_WAKE_MIN_MS);
                wake = wake.min(tokio::time::Instant::now() + Duration::from_millis(in_ms as u64));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.changed() => { if *stop.borrow() { return; } }
            }
            let now = shared.clock.now_ms();
            if tokio::time::Instant::now() >= next_tick || !leading || now >= leader_until {
                break;
            }
            cron_due = crate::schedules::run_cron_due(&shared, now).await;
        }
    }
}

/// The shortest wait of the leader for a cron due time, so that a clock that stands still
/// (or a due time just passed) cannot make it spin.
const CRON_WAKE_MIN_MS: i64 = 5;

/// Pages of the full-text index merged per fleet tick while the index has segments to merge.
const COMPACT_PAGES: u32 = 500;

/// One step of background compaction of the full-text index (a big ingest leaves many
/// segments, and every search reads them all); a few milliseconds of the writer a tick, and
/// nothing once the index is compact.
async fn compact_index(store: &dyn Store) {
    if let Err(e) = store.docs().compact_index(COMPACT_PAGES).await {
        tracing::warn!(error = %e, "full-text index compaction failed");
    }
}

/// Deletes what is past its retention: finished jobs, quarantined jobs, audit entries and
/// recovery reports beyond the newest `recovery_keep`. A failure is logged and retried at
/// the next round; one kind failing does not stop the others.
async fn apply_retention(store: &dyn Store, opts: &FleetOptions, now: i64) {
    let before = |d: Duration| now.saturating_sub(duration_ms(d));
    if let Some(d) = opts.retention {
        log_pruned("finished jobs", store.prune_finished(before(d)).await);
    }
    if let Some(d) = opts.quarantine_retention {
        let purged = store.purge_quarantine(before(d), None, false).await;
        log_pruned("quarantined jobs", purged.map(|ids| ids.len() as u64));
    }
    if let Some(d) = opts.audit_retention {
        log_pruned("audit entries", store.prune_audit(before(d)).await);
    }
    if let Some(d) = opts.telemetry_retention {
        let pruned = store.prune_telemetry(before(d), false).await;
        log_pruned("telemetry samples", pruned);
    }
    if let Some(keep) = opts.recovery_keep {
        log_pruned("recovery reports", store.prune_recovery_reports(keep).await);
    }
}

fn log_pruned(what: &'static str, result: fabric_store::Result<u64>) {
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, what, "retention: pruned"),
        Err(e) => tracing::warn!(error = %e, what, "retention: pruning failed"),
    }
}

/// The setting that turns conservative mode on (`"on"`) or off.
pub const CONSERVATIVE_SETTING: &str = "conservative";

/// Reads the owner levers (paused shards, conservative mode) the dispatcher applies; an
/// operator's change takes effect within one fleet tick.
/// The owner levers as the store holds them now: paused shards and conservative mode.
pub(crate) async fn read_governance(
    store: &dyn fabric_store::Store,
) -> fabric_store::Result<crate::runtime::Governance> {
    let shards = store.fleet().shards().await?;
    let conservative = store.fleet().setting(CONSERVATIVE_SETTING).await?;
    Ok(crate::runtime::Governance {
        paused_shards: shards
            .into_iter()
            .filter(|s| s.paused)
            .map(|s| s.name)
            .collect(),
        conservative: conservative.as_deref() == Some("on"),
    })
}

pub(crate) async fn refresh_governance(shared: &Shared) {
    let Ok(next) = read_governance(&*shared.store).await else {
        return; // the store is away: keep the last known levers
    };
    shared
        .metrics
        .conservative
        .set(i64::from(next.conservative));
    let mut g = shared.governance.lock().unwrap_or_else(|p| p.into_inner());
    if *g != next {
        tracing::info!(paused = ?next.paused_shards, conservative = next.conservative, "owner levers changed");
        *g = next;
        shared.wake.notify_one();
    }
}

/// Returns jobs to `pending`: those whose lease expired, or with `owner_prefix` every job a
/// node held. Counts them as rescued and wakes the workers.
async fn rescue(shared: &Shared, owner_prefix: Option<&str>) -> usize {
    match shared
        .store
        .rescue(shared.clock.now_ms(), owner_prefix)
        .await
    {
        Ok(r) => {
            let n = r.reset.len() + r.quarantined.len();
            if n > 0 {
                shared.metrics.rescued.inc_by(n as u64);
                shared
                    .metrics
                    .quarantined
                    .inc_by(r.quarantined.len() as u64);
                tracing::warn!(
                    reset = r.reset.len(),
                    quarantined = r.quarantined.len(),
                    owner = owner_prefix.unwrap_or("(expired leases)"),
                    "rescued jobs"
                );
                // Rescued jobs of external kinds are for workers waiting in a claim too.
                crate::runtime::work_due(shared);
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "rescue failed");
            0
        }
    }
}

/// Reassigns the jobs of every node that went silent (or stopped) since last seen.
async fn reassign_silent_nodes(
    shared: &Shared,
    opts: &FleetOptions,
    handled: &mut HashMap<String, i64>,
) {
    let now = shared.clock.now_ms();
    let nodes = match shared.store.fleet().nodes().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "listing nodes failed");
            return;
        }
    };
    let timeout = duration_ms(opts.node_timeout);
    for n in nodes {
        if n.id == shared.options.node_id {
            continue;
        }
        let silent = n.stopped_at.is_some() || n.is_stale(now, timeout);
        if !silent {
            handled.remove(&n.id);
            continue;
        }
        if handled.get(&n.id) == Some(&n.heartbeat_at) {
            continue;
        }
        let moved = rescue(shared, Some(&format!("{}/", n.id))).await;
        if moved > 0 {
            tracing::warn!(node = %n.id, jobs = moved, "reassigned the jobs of a silent node");
        }
        handled.insert(n.id, n.heartbeat_at);
    }
}

/// On graceful stop: marks the node stopped and gives the leader lease up at once, so
/// another daemon takes over without waiting for it to lapse.
pub(crate) async fn leave(shared: &Shared) {
    let now = shared.clock.now_ms();
    let id = &shared.options.node_id;
    let change = NodeChange {
        stopped_at: Some(now),
        ..NodeChange::default()
    };
    if let Err(e) = shared.store.fleet().update_node(id, change).await {
        tracing::debug!(error = %e, "could not mark the node stopped");
    }
    if shared.leader.swap(false, Ordering::Relaxed) {
        shared.metrics.leader.set(0);
        if let Err(e) = shared.store.fleet().release_lease(LEADER_LEASE, id).await {
            tracing::warn!(error = %e, "could not release the leader lease");
        }
    }
}
