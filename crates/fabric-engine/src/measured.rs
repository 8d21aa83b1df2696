//! Measurements of the whole store shared by the clones of a Console: the job counts by state
//! and the SLO report each read every row they count (about a second over a million jobs), so
//! the overview, `/metrics`, `/metrics/summary` and every viewer of them share one
//! measurement instead of each reading the jobs again, while a small store is measured afresh
//! for every reader.
//!
//! The rule, per measurement: one that took less than [`CHEAP`] (a Console's
//! `share_measurements_above` sets another) is made again for every reader, exact, as on a
//! store of thousands of jobs. A dearer one is served as it is for ten times what it cost
//! (within [`MIN_FRESH_MS`] and [`MAX_FRESH_MS`]), so measuring costs at most a tenth of a core
//! however many read; up to [`STALE_MS`] old it is served while a new one is measured in the
//! background; older (or none) it is measured before answering.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A dear measurement is reused for at least this long (ms of the Console's clock)...
pub const MIN_FRESH_MS: i64 = 1_000;
/// ...and at most this long.
pub const MAX_FRESH_MS: i64 = 30_000;
/// A measurement older than this (ms) is never served; a reader waits for a new one.
pub const STALE_MS: i64 = 60_000;
/// A measurement that took less than this is made again for every reader.
pub const CHEAP: Duration = Duration::from_millis(25);
/// A dear measurement is reused for this many times what it cost.
const REUSE_FACTOR: u32 = 10;

/// The last measurement of one kind: when it was made, for what (`K`: the configuration it
/// measured), what it cost, and what it found.
pub(crate) struct Memo<K, T> {
    last: Mutex<Option<Last<K, T>>>,
    refreshing: AtomicBool,
    /// Measurements cheaper than this are not reused.
    cheap: Duration,
}

struct Last<K, T> {
    at: i64,
    cost: Duration,
    key: K,
    value: Arc<T>,
}

impl<K, T> Default for Memo<K, T> {
    fn default() -> Self {
        Self::sharing_above(CHEAP)
    }
}

impl<K, T> Memo<K, T> {
    /// A memo that shares measurements that took `cheap` or more.
    pub(crate) fn sharing_above(cheap: Duration) -> Self {
        Self {
            last: Mutex::new(None),
            refreshing: AtomicBool::new(false),
            cheap,
        }
    }
}

impl<K, T> Memo<K, T>
where
    K: PartialEq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// The value for `key` at `now`, measured by `measure` when the rule above says so.
    pub(crate) async fn get<E, F, Fut>(
        self: &Arc<Self>,
        key: K,
        now: i64,
        measure: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display + Send + 'static,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(i64, T), E>> + Send + 'static,
    {
        let reuse = {
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            last.as_ref()
                .filter(|l| l.key == key && l.cost >= self.cheap)
                .map(|l| {
                    let fresh = i64::try_from((l.cost * REUSE_FACTOR).as_millis())
                        .unwrap_or(i64::MAX)
                        .clamp(MIN_FRESH_MS, MAX_FRESH_MS);
                    (now.saturating_sub(l.at), fresh, l.value.clone())
                })
        };
        if let Some((age, fresh, value)) = reuse {
            if age < fresh {
                return Ok((*value).clone());
            }
            if age < STALE_MS {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.measure(key, &measure).await {
                            tracing::warn!(error = %e, "measuring the store failed");
                        }
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok((*value).clone());
            }
        }
        self.measure(key, &measure).await
    }

    async fn measure<E, F, Fut>(&self, key: K, measure: &F) -> Result<T, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(i64, T), E>>,
    {
        let started = Instant::now();
        let (at, value) = measure().await?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Last {
            at,
            cost: started.elapsed(),
            key,
            value: Arc::new(value.clone()),
        });
        Ok(value)
    }
}
