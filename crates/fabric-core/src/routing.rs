//! Routing policy of the planetary layer: which job of a shard goes next, which node takes it,
//! and when (and where) a shard spills work to other shards. Pure and deterministic: every tie
//! is broken by id.

use std::cmp::Ordering;

use crate::job::{Job, JobId, Priority};
use crate::node::{Node, NodeHealth};
use crate::shard::{LatencyMatrix, Shard};

/// Most nodes of other shards a spilling shard hands work to at once.
pub const MAX_SPILLOVER_TARGETS: usize = 3;

/// What routing needs to know of a queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: JobId,
    /// Higher goes first.
    pub priority: Priority,
    /// Submission time (epoch ms); older goes first among equal priorities.
    pub created_at: i64,
    /// Required specialty; `None` runs anywhere.
    pub skill: Option<String>,
    /// Most one-way latency (ms) the job tolerates when spilled; `None` = the shard's budget.
    pub latency_budget_ms: Option<u64>,
}

impl QueuedJob {
    /// Reads `payload.skill` (string) and `payload.latency_budget_ms` (integer) of a stored job.
    pub fn from_job(job: &Job) -> Self {
        Self {
            id: job.id,
            priority: job.priority,
            created_at: job.created_at,
            skill: job.payload["skill"].as_str().map(str::to_string),
            latency_budget_ms: job.payload["latency_budget_ms"].as_u64(),
        }
    }
}

/// Dispatch order within a shard: highest priority, then oldest, then lowest id.
pub fn dispatch_order(a: &QueuedJob, b: &QueuedJob) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// Order in which shards place work on a tick: the deepest queue first, then by name. The
/// deepest queue has first pick of the free slots, its own and (by spillover) other shards',
/// so the slots that fall free go where the backlog is; with the depth margin of
/// [`spillover_targets`] this keeps shard queues close wherever the latency budgets let work
/// move.
pub fn placement_order(a: (&str, u64), b: (&str, u64)) -> Ordering {
    b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0))
}

/// Whether a shard may hand out a job of `priority`: never when paused; in conservative mode
/// only [`Priority::HIGH`] and above.
pub fn may_dispatch(shard: &Shard, priority: Priority, conservative: bool) -> bool {
    !shard.paused && (!conservative || priority >= Priority::HIGH)
}

/// The clock reading that decides which nodes are alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Now (epoch ms).
    pub now: i64,
    /// A node silent for longer is offline (normally [`crate::node::DEFAULT_NODE_TIMEOUT_MS`]).
    pub node_timeout_ms: i64,
}

impl Liveness {
    /// Liveness at `now` under `node_timeout_ms`.
    pub fn new(now: i64, node_timeout_ms: i64) -> Self {
        Self {
            now,
            node_timeout_ms,
        }
    }

    /// Whether `node` takes a job now: healthy or degraded, not stale, not draining, a free slot.
    pub fn takes_work(&self, node: &Node) -> bool {
        node.effective_health(self.now, self.node_timeout_ms)
            .takes_work()
            && node.free_capacity() > 0
    }

    /// Whether `node` may receive spilled work: as [`Self::takes_work`], and healthy.
    pub fn takes_spillover(&self, node: &Node) -> bool {
        self.takes_work(node) && node.health == NodeHealth::Healthy
    }
}

/// Orders by load/capacity without floats (capacity may be 0: such a node takes no work anyway).
fn by_load_ratio(a: &Node, b: &Node) -> Ordering {
    (u64::from(a.load) * u64::from(b.capacity)).cmp(&(u64::from(b.load) * u64::from(a.capacity)))
}

/// The node that takes `job` among `nodes` (the caller passes one shard's nodes, or spillover
/// targets): among those that take work, a skill match first (a job without a skill matches
/// any), then lowest load/capacity, then freshest heartbeat, then lowest id.
pub fn choose_node<'a>(
    job: &QueuedJob,
    nodes: impl IntoIterator<Item = &'a Node>,
    live: Liveness,
) -> Option<&'a Node> {
    let misses = |n: &Node| match &job.skill {
        Some(skill) => !n.specialties.contains(skill),
        None => false,
    };
    nodes
        .into_iter()
        .filter(|n| live.takes_work(n))
        .min_by(|a, b| {
            misses(a)
                .cmp(&misses(b))
                .then_with(|| by_load_ratio(a, b))
                .then(b.heartbeat_at.cmp(&a.heartbeat_at))
                .then_with(|| a.id.cmp(&b.id))
        })
}

/// Ids of the nodes of other shards that take work spilled from `shard`, least loaded first,
/// at most [`MAX_SPILLOVER_TARGETS`]. `depth_of` gives a shard's queue depth (due jobs not
/// yet on a node). Empty unless `shard` is unpaused, none of its own nodes takes work, and its
/// depth exceeds its spillover limit. A target is healthy, live, not draining, has a free
/// slot, lives in a shard listed in `shards` that is not paused, is within
/// `shard.effective_budget_ms(job_budget_ms)` of `shard`, and its shard's own queue is
/// shallower than `shard`'s by more than `shard`'s spillover limit: a slot its own shard's
/// work is about to fill is not spare, and two shards of about the same depth do not trade
/// work across the latency between them.
pub fn spillover_targets<'a>(
    shard: &Shard,
    depth_of: impl Fn(&str) -> u64,
    shards: &[Shard],
    nodes: &'a [Node],
    latency: &LatencyMatrix,
    job_budget_ms: Option<u64>,
    live: Liveness,
) -> Vec<&'a str> {
    let local_free = nodes
        .iter()
        .any(|n| n.shard == shard.name && live.takes_work(n));
    let queue_depth = depth_of(&shard.name);
    let limit = u64::from(shard.spillover_limit);
    if shard.paused || local_free || queue_depth <= limit {
        return Vec::new();
    }
    let budget = shard.effective_budget_ms(job_budget_ms);
    let open = |name: &str| shards.iter().any(|s| s.name == name && !s.paused);
    let mut targets: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            n.shard != shard.name
                && live.takes_spillover(n)
                && open(&n.shard)
                && latency.get(&shard.name, &n.shard) <= budget
                && depth_of(&n.shard).saturating_add(limit) < queue_depth
        })
        .collect();
    targets.sort_by(|a, b| by_load_ratio(a, b).then_with(|| a.id.cmp(&b.id)));
    targets
        .into_iter()
        .take(MAX_SPILLOVER_TARGETS)
        .map(|n| n.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::shard::DEFAULT_SHARDS as NAMES;
    const LIVE: Liveness = Liveness {
        now: 100_000,
        node_timeout_ms: 30_000,
    };

    fn node(id: &str, shard: &str, capacity: u32, load: u32) -> Node {
        Node {
            id: id.into(),
            shard: shard.into(),
            capacity,
            specialties: vec![],
            health: NodeHealth::Healthy,
            draining: false,
            load,
            heartbeat_at: LIVE.now,
            started_at: 0,
            stopped_at: None,
            host: String::new(),
            pid: 0,
            version: String::new(),
        }
    }

    fn job(id: JobId, priority: i32, created_at: i64, skill: Option<&str>) -> QueuedJob {
        QueuedJob {
            id,
            priority: Priority(priority),
            created_at,
            skill: skill.map(str::to_string),
            latency_budget_ms: None,
        }
    }

    fn shards() -> Vec<Shard> {
        crate::shard::default_shards()
    }

    #[test]
    fn jobs_go_highest_priority_then_oldest_then_lowest_id() {
        let mut q = vec![
            job(4, 1, 10, None),
            job(3, 5, 30, None),
            job(2, 5, 20, None),
        ];
        q.push(job(1, 5, 20, None));
        q.sort_by(dispatch_order);
        let ids: Vec<JobId> = q.iter().map(|j| j.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn from_job_reads_skill_and_budget_from_the_payload() {
        let j: Job = serde_json::from_value(serde_json::json!({
            "id": 7, "kind": "sim", "shard": "earth", "priority": 3, "state": "pending",
            "payload": {"skill": "gpu", "latency_budget_ms": 900}, "attempt": 0,
            "max_attempts": 3, "run_at": 0, "created_at": 5, "updated_at": 5,
        }))
        .unwrap();
        let q = QueuedJob::from_job(&j);
        assert_eq!(
            (q.skill.as_deref(), q.latency_budget_ms),
            (Some("gpu"), Some(900))
        );
    }

    #[test]
    fn paused_shards_dispatch_nothing_and_conservative_mode_only_high() {
        let mut s = Shard::new("earth").unwrap();
        assert!(may_dispatch(&s, Priority::LOW, false));
        assert!(!may_dispatch(&s, Priority::NORMAL, true));
        assert!(may_dispatch(&s, Priority(5), true));
        s.paused = true;
        assert!(!may_dispatch(&s, Priority(9), false));
    }

    #[test]
    fn the_deepest_queue_places_first_then_by_name() {
        let mut q = vec![("luna", 5), ("earth", 9), ("mars", 9), ("edge", 0)];
        q.sort_by(|a, b| placement_order(*a, *b));
        assert_eq!(q, [("earth", 9), ("mars", 9), ("luna", 5), ("edge", 0)]);
    }

    #[test]
    fn choose_node_prefers_skill_then_load_then_heartbeat_then_id() {
        let mut gpu = node("gpu", "earth", 4, 3);
        gpu.specialties = vec!["render".into()];
        let mut nodes = vec![gpu, node("b", "earth", 4, 1), node("a", "earth", 2, 0)];
        nodes[2].heartbeat_at -= 1;
        let render = job(1, 2, 0, Some("render"));
        assert_eq!(choose_node(&render, &nodes, LIVE).unwrap().id, "gpu");
        let plain = job(2, 2, 0, None);
        assert_eq!(choose_node(&plain, &nodes, LIVE).unwrap().id, "a");
        nodes[2].load = 1; // a: 1/2, b: 1/4
        assert_eq!(choose_node(&plain, &nodes, LIVE).unwrap().id, "b");
        nodes[1].load = 2; // a and b both at 1/2: fresher heartbeat wins
        assert_eq!(choose_node(&plain, &nodes, LIVE).unwrap().id, "b");
        nodes[2].heartbeat_at += 1; // same heartbeat: lower id wins
        assert_eq!(choose_node(&plain, &nodes, LIVE).unwrap().id, "a");
        // A skill no one has still runs somewhere.
        assert!(choose_node(&job(3, 2, 0, Some("x")), &nodes, LIVE).is_some());
    }

    #[test]
    fn choose_node_skips_nodes_that_take_no_work() {
        let mut nodes = vec![
            node("full", "earth", 2, 2),
            node("off", "earth", 2, 0),
            node("drain", "earth", 2, 0),
            node("stale", "earth", 2, 0),
            node("sick", "earth", 2, 1),
        ];
        nodes[1].health = NodeHealth::Offline;
        nodes[2].draining = true;
        nodes[3].heartbeat_at = LIVE.now - 30_001;
        nodes[4].health = NodeHealth::Degraded;
        assert_eq!(
            choose_node(&job(1, 2, 0, None), &nodes, LIVE).unwrap().id,
            "sick"
        );
        nodes[4].load = 2;
        assert!(choose_node(&job(1, 2, 0, None), &nodes, LIVE).is_none());
    }

    #[test]
    fn spillover_only_from_a_saturated_deep_shard_to_near_open_healthy_nodes() {
        let lat = LatencyMatrix::default();
        let mut sh = shards();
        let mut nodes = vec![
            node("e1", "earth", 2, 2),
            node("edge1", "edge", 4, 1),
            node("edge2", "edge", 4, 0),
            node("luna1", "luna", 4, 3),
            node("mars1", "mars", 8, 0), // 750 s away: over any budget
        ];
        let earth = sh[0].clone();
        let spill = |sh: &[Shard], nodes: &[Node], depth, budget| {
            spillover_targets(
                &earth,
                |s| if s == "earth" { depth } else { 0 },
                sh,
                nodes,
                &lat,
                budget,
                LIVE,
            )
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        };
        assert!(
            spill(&sh, &nodes, 10, None).is_empty(),
            "depth at the limit"
        );
        assert_eq!(spill(&sh, &nodes, 11, None), ["edge2", "edge1", "luna1"]);
        assert_eq!(spill(&sh, &nodes, 11, Some(1_000)), ["edge2", "edge1"]);
        nodes[2].health = NodeHealth::Degraded;
        assert_eq!(spill(&sh, &nodes, 11, Some(1_000)), ["edge1"]);
        sh[4].paused = true;
        assert!(spill(&sh, &nodes, 11, Some(1_000)).is_empty());
        nodes[0].load = 1; // a free local node: no spill
        assert!(spill(&sh, &nodes, 50, None).is_empty());
        nodes.extend((0..5).map(|i| node(&format!("l{i}"), "luna", 4, 0)));
        nodes[0].load = 2;
        assert_eq!(spill(&sh, &nodes, 50, None).len(), MAX_SPILLOVER_TARGETS);
        // A target shard with a backlog of its own takes spilled work only while the
        // spilling shard is deeper by more than its spillover limit (10).
        nodes.truncate(5);
        sh[4].paused = false;
        nodes[2].health = NodeHealth::Healthy;
        let backlog = |edge: u64, luna: u64, earth_depth: u64| {
            spillover_targets(
                &earth,
                |s| match s {
                    "earth" => earth_depth,
                    "edge" => edge,
                    "luna" => luna,
                    _ => 0,
                },
                &sh,
                &nodes,
                &lat,
                None,
                LIVE,
            )
        };
        assert_eq!(backlog(0, 0, 11), ["edge2", "edge1", "luna1"]);
        assert_eq!(backlog(40, 0, 50), ["luna1"], "edge only 10 shallower");
        assert_eq!(backlog(39, 0, 50), ["edge2", "edge1", "luna1"]);
        assert!(backlog(40, 45, 50).is_empty());
        let mut paused_earth = earth.clone();
        paused_earth.paused = true;
        assert!(spillover_targets(&paused_earth, |_| 50, &sh, &nodes, &lat, None, LIVE).is_empty());
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        (
            0..6usize,
            0..5u32,
            0..6u32,
            0..5usize,
            prop::bool::weighted(0.2),
            0..40_000i64,
        )
            .prop_map(|(s, capacity, load, h, draining, age)| {
                let shard = NAMES.get(s).copied().unwrap_or("unlisted");
                let mut n = node("", shard, capacity, load);
                n.health = NodeHealth::ALL[h.saturating_sub(2)]; // mostly healthy
                n.draining = draining;
                n.heartbeat_at = LIVE.now - age;
                n
            })
    }

    proptest! {
        #[test]
        fn spillover_never_breaks_a_rule(
            mut nodes in prop::collection::vec(arb_node(), 0..24),
            paused in prop::collection::vec(prop::bool::weighted(0.25), 5),
            limits in prop::collection::vec(0..6u32, 5),
            shard_budgets in prop::collection::vec(0..4_000u64, 5),
            pair_ms in prop::collection::vec(0..2_000u64, 10),
            from in 0..5usize,
            depth in 0..12u64,
            others in prop::collection::vec(0..12u64, 5),
            budget in prop::option::of(0..3_000u64),
            saturate in prop::bool::weighted(0.75),
        ) {
            for (i, n) in nodes.iter_mut().enumerate() {
                n.id = format!("n{i}");
                // Most cases fill the source shard, so spills actually happen.
                if saturate && n.shard == NAMES[from] {
                    n.load = n.capacity;
                }
            }
            let mut sh = shards();
            for (i, s) in sh.iter_mut().enumerate() {
                s.paused = paused[i];
                s.spillover_limit = limits[i];
                s.latency_budget_ms = shard_budgets[i];
            }
            let mut lat = LatencyMatrix::default();
            for (ms, (a, b, _)) in pair_ms.iter().zip(crate::shard::DEFAULT_LATENCIES_MS) {
                lat.set(a, b, *ms).unwrap();
            }
            let shard = &sh[from];
            let depth_of = |s: &str| {
                if s == shard.name {
                    return depth;
                }
                NAMES.iter().position(|n| *n == s).map_or(0, |i| others[i])
            };
            let got = spillover_targets(shard, depth_of, &sh, &nodes, &lat, budget, LIVE);
            prop_assert!(got.len() <= MAX_SPILLOVER_TARGETS);
            let local_free = nodes.iter().any(|n| n.shard == shard.name && LIVE.takes_work(n));
            if local_free || depth <= u64::from(shard.spillover_limit) || shard.paused {
                prop_assert!(got.is_empty());
            }
            for id in got {
                let n = nodes.iter().find(|n| n.id == id).unwrap();
                let target = sh.iter().find(|s| s.name == n.shard);
                prop_assert!(target.is_some_and(|t| !t.paused && t.name != shard.name));
                prop_assert!(n.free_capacity() > 0 && !n.draining);
                prop_assert_eq!(n.effective_health(LIVE.now, LIVE.node_timeout_ms), NodeHealth::Healthy);
                let ms = lat.get(&shard.name, &n.shard);
                prop_assert!(ms <= shard.latency_budget_ms);
                prop_assert!(budget.is_none_or(|b| ms <= b));
                prop_assert!(depth_of(&n.shard) + u64::from(shard.spillover_limit) < depth);
            }
        }
    }
}
