//! The live feed: one sampler task per daemon keeps a ring buffer of throughput and failures
//! (a point every 5 s, the last 10 minutes) and, while at least one browser listens, checks
//! once a second whether anything changed: this daemon's job counters, the newest job and the
//! newest audit entry (every operator action is audited). Each open page holds one
//! server-sent-event stream and is told only when something changed, so ten idle dashboards
//! cost one cheap check a second in all. The page's script closes its stream while its tab is
//! hidden.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use crate::auth::Viewer;
use crate::{Inner, UiState};

/// Points kept: 10 minutes at one every 5 s.
const RING: usize = 120;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// One point of the charts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Point {
    /// Jobs that succeeded on this daemon in the interval.
    pub completed: u64,
    /// Attempts that failed (retried or quarantined) on this daemon in the interval.
    pub failed: u64,
}

pub(crate) struct Live {
    ring: Mutex<VecDeque<Point>>,
    /// A number that changes whenever something a page shows may have changed.
    stamp: watch::Sender<u64>,
    started: OnceLock<()>,
}

impl Live {
    pub(crate) fn new() -> Self {
        Self {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            stamp: watch::Sender::new(0),
            started: OnceLock::new(),
        }
    }

    /// The chart points, oldest first.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// Starts the sampler once (on the first request, inside the server's runtime); it stops
/// when the console is dropped.
pub(crate) fn ensure_started(state: &UiState) {
    state.0.live.started.get_or_init(|| {
        let weak = Arc::downgrade(&state.0);
        tokio::spawn(sample(weak));
    });
}

async fn sample(weak: Weak<Inner>) {
    // (succeeded, failed attempts) of this daemon so far.
    let totals = |inner: &Inner| {
        let m = &inner.deps.metrics;
        // `failed` counts every failed attempt, the last one of a quarantined job included.
        (m.completed.get(), m.failed.get())
    };
    let Some(mut last) = weak.upgrade().map(|i| totals(&i)) else {
        return;
    };
    let checks_per_point = SAMPLE_EVERY.as_secs() / CHECK_EVERY.as_secs();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    for n in 1u64.. {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if n % checks_per_point == 0 {
            let now = totals(&inner);
            let mut ring = inner.live.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(Point {
                completed: now.0.saturating_sub(last.0),
                failed: now.1.saturating_sub(last.1),
            });
            last = now;
        }
        if inner.live.stamp.receiver_count() == 0 {
            continue;
        }
        let stamp = change_stamp(&inner).await;
        inner.live.stamp.send_if_modified(|old| {
            let changed = *old != stamp;
            *old = stamp;
            changed
        });
    }
}

/// Changes when this daemon's counters move, a job is added or an operator acts.
async fn change_stamp(inner: &Inner) -> u64 {
    let m = &inner.deps.metrics;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        m.enqueued.get(),
        m.completed.get(),
        m.failed.get(),
        m.quarantined.get(),
        m.rescued.get(),
        m.workers_busy.get(),
    )
        .hash(&mut h);
    let store = inner.deps.console.store();
    let newest = fabric_store::JobFilter {
        limit: 1,
        ..Default::default()
    };
    if let Ok(jobs) = store.jobs(newest).await {
        jobs.first().map(|j| (j.id, j.updated_at)).hash(&mut h);
    }
    if let Ok(audit) = store.audit_log(None, 1).await {
        audit
            .first()
            .map(|a| (a.at, a.action.clone(), a.target.clone()))
            .hash(&mut h);
    }
    h.finish()
}

/// `GET /ui/events`: a `change` event whenever the stamp moves (and a keep-alive comment
/// every 15 s).
pub(crate) async fn events(
    State(state): State<UiState>,
    _viewer: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    ensure_started(&state);
    let mut rx = state.0.live.stamp.subscribe();
    rx.mark_unchanged();
    let stream = stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let stamp = *rx.borrow_and_update();
        Some((
            Ok(Event::default().event("change").data(stamp.to_string())),
            rx,
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
