//! Deferred claims of a write-behind store: a claim of one shard is applied in memory only,
//! and its job row is written once, with its completion, when both fall inside one open
//! transaction. Anything else that touches the store first writes the claims still held
//! ([`Deferred::flush`]), and so does every commit, so no reader, in this process or another,
//! ever sees a claimed job as pending.

use std::collections::HashMap;

use fabric_core::{Job, JobId, JobState};
use rusqlite::{params, Connection};

use crate::{ClaimRequest, Result};

/// A claim not yet written: what the claim's `UPDATE` would have set.
struct Claim {
    shard: String,
    attempt: u32,
    owner: String,
    lease_until: i64,
    started_at: i64,
}

/// The claims held in memory, by job.
#[derive(Default)]
pub(crate) struct Deferred {
    claims: HashMap<JobId, Claim>,
    /// Claims held per shard: how many more rows a claim of that shard reads to skip them.
    per_shard: HashMap<String, usize>,
}

/// The due pending jobs of one shard in dispatch order: `?1` shard, `?2` now, `?3` lowest
/// priority, `?4` limit (`+?4`: see `CLAIM_ONE_SHARD`).
static PEEK_ONE_SHARD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM jobs INDEXED BY jobs_shard_ready
         WHERE state IN ('pending', 'failed') AND shard = ?1 AND run_at <= ?2 AND priority >= ?3
         ORDER BY priority DESC, id LIMIT +?4",
        super::JOB_COLS
    )
});

/// A completion of a deferred claim, written as one row update: the claim's fields and the
/// outcome's together, fenced on the row still being the pending job the claim took. `?1` id,
/// `?2` attempt, `?3` finished at, `?4` new state, `?5` retry time, `?6` error, `?7` result,
/// `?8` started at.
pub(crate) const FINISH_CLAIMED: &str =
    "UPDATE jobs SET state = ?4, attempt = ?2, run_at = coalesce(?5, run_at),
         last_error = coalesce(?6, last_error), result = ?7, started_at = ?8,
         finished_at = CASE WHEN ?4 = 'failed' THEN finished_at ELSE ?3 END,
         updated_at = ?3, lease_owner = NULL, lease_expires_at = NULL
     WHERE id = ?1 AND state IN ('pending', 'failed') AND attempt = ?2 - 1";

impl Deferred {
    /// Whether no claim is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Writes every claim held, as the claim itself would have, and forgets them.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        let mut stmt = conn.prepare_cached(
            "UPDATE jobs SET state = 'running', attempt = ?2, lease_owner = ?3,
                 lease_expires_at = ?4, started_at = ?5, updated_at = ?5
             WHERE id = ?1 AND state IN ('pending', 'failed')",
        )?;
        for (id, c) in &self.claims {
            stmt.execute(params![id, c.attempt, c.owner, c.lease_until, c.started_at])?;
        }
        self.claims.clear();
        self.per_shard.clear();
        Ok(())
    }

    /// Claims up to `req.limit` due jobs of the one shard `req.shards[0]`, highest priority
    /// then oldest, skipping those already claimed here, and holds the claims in memory.
    pub(crate) fn claim(&mut self, conn: &Connection, req: &ClaimRequest) -> Result<Vec<Job>> {
        let shard = &req.shards[0];
        let skip = self.per_shard.get(shard).copied().unwrap_or(0);
        let floor = req.min_priority.unwrap_or(i32::MIN);
        let limit = (req.limit + skip) as i64;
        let until = req.now + req.lease_ms;
        let mut stmt = conn.prepare_cached(&PEEK_ONE_SHARD)?;
        let mut rows = stmt.query(params![shard, req.now, floor, limit])?;
        let mut jobs = Vec::with_capacity(req.limit);
        // Held only once every row is read: a failure part way claims nothing.
        while jobs.len() < req.limit {
            let Some(row) = rows.next()? else { break };
            let id: JobId = row.get(0)?;
            if self.claims.contains_key(&id) {
                continue;
            }
            let mut job = super::row_to_job(row)?;
            job.state = JobState::Running;
            job.attempt += 1;
            job.lease_owner = Some(req.owner.clone());
            job.lease_expires_at = Some(until);
            job.started_at = Some(req.now);
            job.updated_at = req.now;
            jobs.push(job);
        }
        for job in &jobs {
            let claim = Claim {
                shard: shard.clone(),
                attempt: job.attempt,
                owner: req.owner.clone(),
                lease_until: until,
                started_at: req.now,
            };
            self.claims.insert(job.id, claim);
        }
        if !jobs.is_empty() {
            *self.per_shard.entry(shard.clone()).or_default() += jobs.len();
        }
        Ok(jobs)
    }

    /// Takes the claim of job `id` held here for `attempt` by `owner`, if any: its start time.
    /// A completion of another attempt or owner leaves it held (and is late, as it would be
    /// against the written claim).
    pub(crate) fn take(&mut self, id: JobId, attempt: u32, owner: &str) -> Option<i64> {
        let c = self.claims.get(&id)?;
        if c.attempt != attempt || c.owner != owner {
            return None;
        }
        let c = self.claims.remove(&id)?;
        if let Some(n) = self.per_shard.get_mut(&c.shard) {
            *n = n.saturating_sub(1);
        }
        Some(c.started_at)
    }

    /// Forgets every claim held (their transaction was rolled back).
    pub(crate) fn clear(&mut self) {
        self.claims.clear();
        self.per_shard.clear();
    }
}
