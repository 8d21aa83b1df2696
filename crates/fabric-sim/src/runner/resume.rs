//! Checkpoints of a run and resuming from one: the run's state (jobs in flight, virtual
//! time, counters, owner levers) written beside the store, and a runner rebuilt from it.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::sync::Arc;

use fabric_core::{Job, VirtualClock};

use super::{
    payload_index, sim_err, sim_job, stats_of, Fabric, RunOptions, CHECKPOINT_PAGE, SUBMIT_CHUNK,
    TICK_SETTING,
};
use crate::checkpoint::{self, Checkpoint, CheckpointJob};
use crate::{gen, SimError};

impl Fabric {
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

    pub(super) fn governance(&self) -> checkpoint::GovernanceState {
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
            fabric.put_shard(shard).await?;
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
