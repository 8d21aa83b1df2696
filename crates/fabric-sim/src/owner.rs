//! The owner's levers on a run (RUNBOOK-MAP.md §B: `pause_shard`, `update_spillover_limit`,
//! `update_latency_budget`, `resume_all`, …): each change persisted in the run's store and
//! audited; the run reads them at its next lever read.

use fabric_core::Shard;
use fabric_engine::Console;

use crate::runner::MAX_TICK_MS;
use crate::SimError;

/// The setting holding the run's tick interval (ms).
pub const TICK_SETTING: &str = "tick_interval_ms";

fn sim_err(e: impl std::fmt::Display) -> SimError {
    SimError::Runtime(e.to_string())
}

/// An operator's mistake (unknown shard, bad value) is bad input; anything else a failure.
fn lever_err(e: fabric_engine::EngineError) -> SimError {
    if e.is_usage() {
        SimError::invalid("owner lever", e.to_string())
    } else {
        SimError::Runtime(e.to_string())
    }
}

/// The owner's levers on a run (or on any Fabric store): every change persisted, audited and
/// applied at the next tick.
#[derive(Clone)]
pub struct OwnerConsole {
    console: Console,
}

impl OwnerConsole {
    /// The levers of the store `console` acts on.
    pub(crate) fn new(console: Console) -> Self {
        Self { console }
    }
}

/// The levers as they stand.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GovernanceSnapshot {
    pub shards: Vec<Shard>,
    pub conservative: bool,
    pub tick_interval_ms: Option<u64>,
}

impl OwnerConsole {
    /// Pauses a shard: nothing of it is dispatched until it is resumed.
    pub async fn pause_shard(&self, shard: &str) -> Result<(), SimError> {
        self.console
            .pause_shard(shard, None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Resumes a paused shard.
    pub async fn resume_shard(&self, shard: &str) -> Result<(), SimError> {
        self.console
            .resume_shard(shard, None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Pauses every shard.
    pub async fn pause_all(&self) -> Result<(), SimError> {
        self.console
            .pause_all(None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Resumes every shard.
    pub async fn resume_all(&self) -> Result<(), SimError> {
        self.console
            .resume_all(None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Sets the queue depth above which a shard without a free node spills.
    pub async fn update_spillover_limit(&self, shard: &str, limit: u32) -> Result<(), SimError> {
        self.console
            .update_spillover_limit(shard, limit, None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Sets the latency budget (ms) that a shard's spilled work must fit.
    pub async fn update_latency_budget(&self, shard: &str, ms: u64) -> Result<(), SimError> {
        self.console
            .update_latency_budget(shard, ms, None)
            .await
            .map(drop)
            .map_err(lever_err)
    }
    /// Conservative mode: only high-priority work is dispatched.
    pub async fn set_conservative(&self, on: bool) -> Result<(), SimError> {
        self.console
            .set_conservative(on, None)
            .await
            .map_err(lever_err)
    }
    /// Sets the virtual tick (ms) of runs on this store.
    pub async fn set_tick_interval(&self, ms: u64) -> Result<(), SimError> {
        if !(1..=MAX_TICK_MS).contains(&ms) {
            return Err(SimError::invalid(
                "tick interval",
                format!("{ms} ms must be 1..{MAX_TICK_MS}"),
            ));
        }
        self.console
            .store()
            .fleet()
            .put_setting(TICK_SETTING, &ms.to_string())
            .await
            .map_err(sim_err)?;
        self.console
            .record("governance.set-tick-interval", &format!("{ms} ms"), None)
            .await
            .map_err(sim_err)
    }
    /// The levers now.
    pub async fn snapshot(&self) -> Result<GovernanceSnapshot, SimError> {
        let store = self.console.store();
        Ok(GovernanceSnapshot {
            shards: store.fleet().shards().await.map_err(sim_err)?,
            conservative: self.console.conservative().await.map_err(sim_err)?,
            tick_interval_ms: store
                .fleet()
                .setting(TICK_SETTING)
                .await
                .map_err(sim_err)?
                .and_then(|t| t.parse().ok()),
        })
    }
}
