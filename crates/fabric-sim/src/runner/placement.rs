//! Where the runner's jobs go: each tick's dispatch of due jobs to nodes by the routing
//! policy of `fabric-core` (room on a shard's nodes, spillover targets, the pick of a node)
//! and the placement of a job on the node chosen.

use std::cmp::Reverse;
use std::collections::VecDeque;

use fabric_core::routing::{choose_node, dispatch_order, placement_order, Liveness, QueuedJob};
use fabric_core::{Clock, Job, Node, Priority, Shard};
use fabric_store::{ClaimRequest, Completion};

use super::{
    live_at, payload_index, sim_err, stats_of, Fabric, Running, CLAIM_AHEAD, FLUSH_AT,
    FLUSH_EVERY_TICKS, LEASE_MS,
};
use crate::{gen, SimError};

impl Fabric {
    /// Places due work on nodes, shard by shard: highest priority then oldest; a node by
    /// skill, load and heartbeat; spillover to other shards under the routing policy.
    pub(super) async fn dispatch(
        &mut self,
        now: i64,
        done: Vec<Completion>,
    ) -> Result<(), SimError> {
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
    pub(super) fn room(&self, shard: &Shard, live: Liveness) -> Option<(u64, Vec<String>, u64)> {
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
    pub(super) fn can_place(&self) -> bool {
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
    pub(super) fn spill_targets(&self, shard: &Shard, live: Liveness) -> Vec<&str> {
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
    pub(super) fn pick(
        &self,
        job: &QueuedJob,
        eligible: impl Fn(&Node) -> bool,
        live: Liveness,
    ) -> Option<usize> {
        let chosen = choose_node(job, self.nodes.iter().filter(|n| eligible(n)), live)?;
        self.nodes.iter().position(|n| std::ptr::eq(n, chosen))
    }

    /// Starts `job` on node `i` now; a spilled job pays the inter-shard latency `delay_ms`.
    pub(super) fn place(&mut self, job: Job, i: usize, delay_ms: u64, now: i64) {
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
}
