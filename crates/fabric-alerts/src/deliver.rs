//! The delivery worker: drains the store's notification queue group by group. A group (one
//! route, one group key) is sent once `group_wait_ms` has passed since its first waiting
//! notification and `group_interval_ms` since its last delivery, as its receiver's rate
//! limit allows. Notifications are claimed under a lease (a notification is sent by one
//! worker at a time), and each try is settled (delivered, retried with backoff or at the
//! receiver's `Retry-After`, or given up) and recorded in the delivery history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::{AlertsConfig, RouteConfig, RouteType};
use fabric_core::Clock;
use fabric_store::{NewDeliveryAttempt, Notification, Settle, Store};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex, Notify};

use crate::message::AlertInfo;
use crate::ratelimit::RateLimiter;
use crate::routes::{cost, Outcome, Routes};
use crate::Result;

/// Notifications read per round.
const BATCH: usize = 1000;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Lease owner of its claims (unique per process).
    pub owner: String,
    /// How often it looks at the queue when nothing wakes it (default 1 s).
    pub poll: Duration,
    /// Build and record every message but send none (drills).
    pub dry_run: bool,
}

impl DeliveryOptions {
    /// Defaults for a worker acting as `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            poll: Duration::from_secs(1),
            dry_run: false,
        }
    }
}

/// One message a receiver was sent (or, in a dry run, would have been).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sent {
    pub route: String,
    pub kind: RouteType,
    pub group_key: String,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
    pub detail: String,
    pub body: Value,
}

/// The delivery worker.
pub struct Deliverer {
    store: Arc<dyn Store>,
    config: Arc<AlertsConfig>,
    clock: Arc<dyn Clock>,
    routes: Routes,
    options: DeliveryOptions,
    limiter: Mutex<RateLimiter>,
    tap: Option<mpsc::UnboundedSender<Sent>>,
    wake: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<AlertsConfig>,
        clock: Arc<dyn Clock>,
        options: DeliveryOptions,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            routes: Routes::new(),
            options,
            limiter: Mutex::new(RateLimiter::default()),
            tap: None,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Reports every message sent to `tx` (drills, tests).
    pub fn with_tap(mut self, tx: mpsc::UnboundedSender<Sent>) -> Self {
        self.tap = Some(tx);
        self
    }

    /// Wakes the worker at once (give it to [`crate::AlertEngine::with_wake`]).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `stop` resolves, delivering while `active()` says so (the leader only, so
    /// that the rate limits, kept per process, hold fleet-wide).
    pub async fn run(
        self: Arc<Self>,
        active: impl Fn() -> bool + Send + Sync,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if active() {
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "alert delivery round failed");
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll) => {}
            }
        }
    }

    /// One round: sends every group that is due and allowed; returns how many groups it
    /// tried.
    pub async fn run_once(&self) -> Result<usize> {
        let now = self.clock.now_ms();
        let queue = self.store.alerts().notification_queue(now, BATCH).await?;
        if queue.is_empty() {
            return Ok(0);
        }
        let flushes: BTreeMap<(String, String), i64> = self
            .store
            .alerts()
            .group_flushes()
            .await?
            .into_iter()
            .map(|f| ((f.route, f.group_key), f.at))
            .collect();
        let mut groups: BTreeMap<(String, String), Vec<Notification>> = BTreeMap::new();
        for n in queue {
            groups
                .entry((n.new.route.clone(), n.new.group_key.clone()))
                .or_default()
                .push(n);
        }
        let mut tried = 0;
        for ((route, group_key), notes) in groups {
            let first = notes.iter().map(|n| n.new.created_at).min().unwrap_or(now);
            let wait = self.config.group_wait_ms as i64;
            if now < first.saturating_add(wait) {
                continue;
            }
            if let Some(last) = flushes.get(&(route.clone(), group_key.clone())) {
                if now < last.saturating_add(self.config.group_interval_ms as i64) {
                    continue;
                }
            }
            let due: Vec<Notification> = notes
                .into_iter()
                .filter(|n| n.next_attempt_at <= now)
                .collect();
            if due.is_empty() {
                continue;
            }
            tried += 1;
            self.send_group(&route, &group_key, due, now).await?;
        }
        Ok(tried)
    }

    /// Claims, sends and settles one group's due notifications.
    async fn send_group(
        &self,
        name: &str,
        group_key: &str,
        due: Vec<Notification>,
        now: i64,
    ) -> Result<()> {
        let route = self.config.route(name);
        let (limit, key) = match &route {
            Some(r) => (self.config.rate_limits.of(r.kind), limiter_key(name, r)),
            None => (None, name.to_string()),
        };
        if self
            .limiter
            .lock()
            .await
            .wait_until(&key, limit, now)
            .is_some()
        {
            return Ok(()); // stays queued: nothing is lost
        }
        let timeout = route.as_ref().map_or(10_000, |r| r.timeout_ms) as i64;
        let lease_until = now + timeout * (due.len() as i64 + 1) + 60_000;
        let ids: Vec<i64> = due.iter().map(|n| n.id).collect();
        let alerts = self.store.alerts();
        let claimed = alerts
            .claim_notifications(ids, &self.options.owner, now, lease_until)
            .await?;
        let notes: Vec<Notification> = due
            .into_iter()
            .filter(|n| claimed.contains(&n.id))
            .collect();
        if notes.is_empty() {
            return Ok(());
        }
        let infos: Vec<AlertInfo> = notes
            .iter()
            .filter_map(|n| serde_json::from_value(n.new.alert.clone()).ok())
            .collect();
        let attempt = notes.iter().map(|n| n.attempts).max().unwrap_or(0) + 1;
        let summary = notes
            .iter()
            .map(|n| format!("{} {}", n.new.status.as_str(), n.new.rule))
            .collect::<Vec<_>>()
            .join("; ");
        let started = Instant::now();
        let outcome = match &route {
            None => Outcome::Failed(format!("route '{name}' is no longer configured")),
            Some(r) => {
                self.limiter
                    .lock()
                    .await
                    .take(&key, limit, cost(r, &infos), now);
                let d = self
                    .routes
                    .deliver(name, r, group_key, &infos, self.options.dry_run)
                    .await;
                if let Some(tap) = &self.tap {
                    for body in &d.messages {
                        let _ = tap.send(Sent {
                            route: name.to_string(),
                            kind: r.kind,
                            group_key: group_key.to_string(),
                            outcome: d.outcome.word().into(),
                            detail: d.outcome.detail(),
                            body: tapped(body),
                        });
                    }
                }
                d.outcome
            }
        };
        let at = self.clock.now_ms();
        let settle = match &outcome {
            Outcome::Delivered(_) => Settle::Delivered { at },
            Outcome::Failed(e) => Settle::Failed {
                at,
                error: e.clone(),
            },
            Outcome::Retry { .. } if attempt >= self.config.delivery_max_attempts => {
                Settle::Failed {
                    at,
                    error: format!("gave up after {attempt} tries: {}", outcome.detail()),
                }
            }
            Outcome::Retry { after, .. } => {
                let next_at = match after {
                    Some(a) => {
                        let until = at + fabric_core::time::duration_ms(*a);
                        self.limiter.lock().await.pause(&key, until);
                        until
                    }
                    None => at + self.backoff_ms(attempt),
                };
                Settle::Retry {
                    next_at,
                    error: outcome.detail(),
                }
            }
        };
        let word = match &settle {
            Settle::Delivered { .. } => "delivered",
            Settle::Retry { .. } => "retry",
            Settle::Failed { .. } => "failed",
        };
        tracing::info!(
            route = name, group = group_key, attempt, outcome = word,
            detail = %outcome.detail(), "alert notification"
        );
        alerts
            .settle_notifications(
                claimed,
                &self.options.owner,
                settle,
                NewDeliveryAttempt {
                    at,
                    route: name.to_string(),
                    group_key: group_key.to_string(),
                    notifications: notes.iter().map(|n| n.id).collect(),
                    summary,
                    attempt,
                    outcome: word.into(),
                    detail: outcome.detail(),
                    duration_ms: fabric_core::time::duration_ms(started.elapsed()),
                },
            )
            .await?;
        Ok(())
    }

    /// The delay before try `attempt + 1`: `delivery_backoff_ms` doubled per try, capped.
    fn backoff_ms(&self, attempt: u32) -> i64 {
        let base = self.config.delivery_backoff_ms.max(1);
        let factor = 1u64 << attempt.saturating_sub(1).min(30);
        base.saturating_mul(factor)
            .min(self.config.delivery_max_backoff_ms.max(base)) as i64
    }
}

/// A message body as the tap shows it (`fabric drill` prints it): PagerDuty's routing key,
/// the secret of an Events API integration, masked.
fn tapped(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(key) = body.get_mut("routing_key") {
        *key = Value::String(fabric_core::config::MASK.into());
    }
    body
}

/// The rate-limit bucket of a route: PagerDuty's per routing key, the others' per route.
fn limiter_key(name: &str, route: &RouteConfig) -> String {
    match (route.kind, &route.routing_key) {
        (RouteType::Pagerduty, Some(k)) => format!("pagerduty:{k}"),
        _ => format!("route:{name}"),
    }
}
