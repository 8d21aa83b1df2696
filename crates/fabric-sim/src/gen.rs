//! Deterministic job generation: every job and every attempt's outcome is a pure function of
//! (seed, job index, attempt), so one seed gives one report whatever the scheduling order.

use serde_json::json;

use crate::fleet::SKILLS;
use crate::scenario::Scenario;

/// SplitMix64: a fast, well-mixed hash of a 64-bit state.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `lo..=hi` from `(seed, a, b, salt)`.
fn draw(seed: u64, a: u64, b: u64, salt: u64, lo: u64, hi: u64) -> u64 {
    let h = mix(mix(mix(seed ^ salt).wrapping_add(a)).wrapping_add(b));
    lo + h % (hi - lo + 1)
}

/// One generated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub index: u64,
    pub shard: String,
    pub skill: String,
    pub latency_budget_ms: u64,
    pub priority: i32,
}

impl JobSpec {
    /// The payload the job carries in the store.
    pub fn payload(&self) -> serde_json::Value {
        json!({
            "index": self.index,
            "skill": self.skill,
            "latency_budget_ms": self.latency_budget_ms,
        })
    }
}

/// Job `index` of `scenario` under `seed`: a random shard of the scenario, a skill of the
/// catalogue, a latency budget of 200..5000 ms and a priority of 0..5.
pub fn job_spec(seed: u64, index: u64, scenario: &Scenario) -> JobSpec {
    let n = scenario.shards.len() as u64;
    JobSpec {
        index,
        shard: scenario.shards[draw(seed, index, 0, 1, 0, n - 1) as usize].clone(),
        skill: SKILLS[draw(seed, index, 0, 2, 0, SKILLS.len() as u64 - 1) as usize].into(),
        latency_budget_ms: draw(seed, index, 0, 3, 200, 5000),
        priority: draw(seed, index, 0, 4, 0, 5) as i32,
    }
}

/// How attempt `attempt` of job `index` goes: its virtual duration (50..1500 ms) and whether
/// it succeeds (with probability `p`).
pub fn attempt_outcome(seed: u64, index: u64, attempt: u32, p: f64) -> (u64, bool) {
    let duration = draw(seed, index, u64::from(attempt), 5, 50, 1500);
    let roll = draw(seed, index, u64::from(attempt), 6, 0, 999_999) as f64 / 1_000_000.0;
    (duration, roll < p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_jobs_and_outcomes() {
        let s = Scenario::builtin("k2-benchmark").unwrap();
        assert_eq!(job_spec(7, 42, &s), job_spec(7, 42, &s));
        assert_ne!(
            (0..20).map(|i| job_spec(7, i, &s)).collect::<Vec<_>>(),
            (0..20).map(|i| job_spec(8, i, &s)).collect::<Vec<_>>()
        );
        assert_eq!(attempt_outcome(7, 1, 1, 0.5), attempt_outcome(7, 1, 1, 0.5));
        let ok = (0..100_000)
            .filter(|i| attempt_outcome(3, *i, 1, 0.92).1)
            .count();
        assert!((91_000..93_000).contains(&ok), "{ok}");
        let j = job_spec(1, 5, &s);
        assert!((200..=5000).contains(&j.latency_budget_ms) && (0..=5).contains(&j.priority));
    }
}
