//! Per-receiver token buckets. A send over the limit is not dropped: the delivery worker
//! leaves its notifications queued until the bucket allows it. A bucket may go into debt (a
//! PagerDuty group of several events takes them all at once) and then waits longer.

use std::collections::HashMap;

use fabric_core::config::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
    /// A receiver's `Retry-After`: nothing before this.
    paused_until: i64,
}

/// Buckets by receiver key (a route, or a PagerDuty routing key).
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    fn refill(&mut self, key: &str, limit: Option<RateLimit>, now: i64) -> &mut Bucket {
        let burst = limit.map_or(1.0, |l| f64::from(l.burst.max(1)));
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
            paused_until: 0,
        });
        if let Some(l) = limit {
            let elapsed = (now - b.at).max(0) as f64;
            b.tokens = (b.tokens + elapsed * l.per_minute / 60_000.0).min(burst);
        }
        b.at = now;
        b
    }

    /// `None` when `key` may send now, else the earliest time it may.
    pub(crate) fn wait_until(
        &mut self,
        key: &str,
        limit: Option<RateLimit>,
        now: i64,
    ) -> Option<i64> {
        let b = self.refill(key, limit, now);
        if b.paused_until > now {
            return Some(b.paused_until);
        }
        match limit {
            Some(l) if b.tokens < 1.0 => {
                let missing = 1.0 - b.tokens;
                Some(now + (missing * 60_000.0 / l.per_minute - 1e-6).ceil().max(1.0) as i64)
            }
            _ => None,
        }
    }

    /// Takes `n` sends from `key`'s bucket.
    pub(crate) fn take(&mut self, key: &str, limit: Option<RateLimit>, n: usize, now: i64) {
        if limit.is_some() {
            self.refill(key, limit, now).tokens -= n as f64;
        }
    }

    /// Holds `key` back until `until` (a receiver asked so).
    pub(crate) fn pause(&mut self, key: &str, until: i64) {
        let b = self.buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: 0.0,
            at: until,
            paused_until: 0,
        });
        b.paused_until = b.paused_until.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second_with_debt_and_pauses() {
        let slack = Some(RateLimit {
            per_minute: 60.0,
            burst: 1,
        });
        let mut r = RateLimiter::default();
        assert_eq!(r.wait_until("s", slack, 0), None);
        r.take("s", slack, 1, 0);
        assert_eq!(r.wait_until("s", slack, 0), Some(1_000));
        assert_eq!(r.wait_until("s", slack, 999), Some(1_000));
        assert_eq!(r.wait_until("s", slack, 1_000), None);
        // Three at once: two seconds of debt.
        r.take("s", slack, 3, 1_000);
        assert_eq!(r.wait_until("s", slack, 1_000), Some(4_000));
        assert_eq!(r.wait_until("other", slack, 1_000), None, "per key");
        r.pause("u", 5_000);
        assert_eq!(r.wait_until("u", None, 10), Some(5_000));
        assert_eq!(r.wait_until("u", None, 5_000), None);
    }
}
