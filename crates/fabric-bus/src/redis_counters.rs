//! The Redis bus's counters as the whole fleet sees them: every process counts in memory and
//! adds what it counted since its last flush to one Redis hash (`<prefix>:counters`), at most
//! once a second while it works and on every `metrics_snapshot`, so `fabric bus snapshot` from
//! any machine shows what every publisher and consumer did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::metrics::{Counters, MetricsSnapshot};
use crate::BusError;

/// How often a busy process adds its counts to the shared hash.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Adds the deltas (pairs of name, value; `queue_depth_max` is a maximum, not a sum) and
/// returns the whole hash.
const FLUSH: &str = r"
for i = 1, #ARGV - 1, 2 do
  local k = ARGV[i]
  local v = tonumber(ARGV[i + 1])
  if k == 'queue_depth_max' then
    local cur = tonumber(redis.call('HGET', KEYS[1], k) or '0')
    if v > cur then redis.call('HSET', KEYS[1], k, v) end
  elseif v ~= 0 then
    redis.call('HINCRBY', KEYS[1], k, v)
  end
end
return redis.call('HGETALL', KEYS[1])
";

/// Keys that are depths of now, not counts: read from the streams, never summed.
const DEPTHS: [&str; 2] = ["queue_depth_normal", "queue_depth_emergency"];

/// This process's side of the shared counters.
pub(crate) struct SharedCounters {
    key: String,
    script: redis::Script,
    /// What was added to the hash so far, and when.
    flushed: tokio::sync::Mutex<(BTreeMap<&'static str, u64>, Instant)>,
}

impl SharedCounters {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            key: format!("{prefix}:counters"),
            script: redis::Script::new(FLUSH),
            // Due at once: a short-lived process (one `fabric bus publish`) flushes after its
            // first operation.
            flushed: tokio::sync::Mutex::new((
                BTreeMap::new(),
                Instant::now()
                    .checked_sub(FLUSH_EVERY)
                    .unwrap_or_else(Instant::now),
            )),
        }
    }

    /// The hash's key.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Adds this process's counts since the last flush to the hash; returns the fleet's
    /// counters (depth keys excluded).
    pub(crate) async fn flush(
        &self,
        conn: &ConnectionManager,
        local: &Counters,
    ) -> Result<BTreeMap<String, u64>, BusError> {
        let mut flushed = self.flushed.lock().await;
        let now = local.snapshot(0, 0);
        let mut call = self.script.key(&self.key);
        let mut deltas = Vec::new();
        for (name, value) in &now.0 {
            if DEPTHS.contains(name) {
                continue;
            }
            let sent = if *name == "queue_depth_max" {
                *value
            } else {
                value.saturating_sub(flushed.0.get(name).copied().unwrap_or(0))
            };
            call.arg(*name).arg(sent);
            deltas.push((*name, *value));
        }
        let pairs: Vec<(String, u64)> = call.invoke_async(&mut conn.clone()).await?;
        flushed.0.extend(deltas);
        flushed.1 = Instant::now();
        Ok(pairs.into_iter().collect())
    }

    /// Flushes when the last flush is older than a second, something was counted since,
    /// and no other flush runs (an idle reader calls this every read: it costs no round trip
    /// while there is nothing to add).
    pub(crate) async fn maybe_flush(&self, conn: &ConnectionManager, local: &Counters) {
        let due = self.flushed.try_lock().is_ok_and(|f| {
            f.1.elapsed() >= FLUSH_EVERY
                && local.snapshot(0, 0).0.iter().any(|(name, v)| {
                    !DEPTHS.contains(name) && f.0.get(name).copied().unwrap_or(0) != *v
                })
        });
        if due {
            if let Err(e) = self.flush(conn, local).await {
                tracing::debug!(error = %e, "bus counters not flushed; next time");
            }
        }
    }

    /// The fleet's snapshot: the hash's counters with the streams' depths of now.
    pub(crate) fn snapshot(
        hash: BTreeMap<String, u64>,
        local: &Counters,
        normal: u64,
        emergency: u64,
    ) -> MetricsSnapshot {
        let mut snap = local.snapshot(normal, emergency);
        for (name, value) in snap.0.iter_mut() {
            if !DEPTHS.contains(name) {
                *value = hash.get(*name).copied().unwrap_or(0);
            }
        }
        snap
    }
}
