//! The evaluator: feeds samples through the rules, decides what each alert owes its routes
//! (silences and inhibition hold back firing notifications, never resolved ones) and saves
//! the new states with the notifications they owe in one store transaction. The leader runs
//! it on each `alerts.interval_ms`; anything may feed it samples ([`AlertEngine::observe`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fabric_core::config::{AlertRule, AlertsConfig};
use fabric_core::Clock;
use fabric_store::{AlertPhase, AlertState, NewNotification, NotifyStatus, Store};
use serde::Serialize;
use tokio::sync::{Mutex, Notify};

use crate::eval::{step, Step};
use crate::matcher::{inhibited, silenced_by};
use crate::{alert_labels, fingerprint, AlertInfo, Result, Sample};

/// What happened to an alert in one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Fired,
    Cleared,
}

impl TransitionKind {
    /// `FIRED` or `CLEARED`, as the drill and the demo print it.
    pub fn shout(self) -> &'static str {
        match self {
            Self::Fired => "FIRED",
            Self::Cleared => "CLEARED",
        }
    }
}

/// An alert that fired or cleared, and which notifications that queued.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub kind: TransitionKind,
    pub rule: String,
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub at: i64,
    /// Routes a notification was queued for (none when silenced or inhibited, or a cleared
    /// alert that was never notified).
    pub routes: Vec<String>,
    /// `silenced`, `inhibited`, or `None`.
    pub held_back: Option<&'static str>,
}

/// A firing alert as `/metrics/summary` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    pub metric: String,
    pub value: f64,
    pub routes: Vec<String>,
    /// When it fired (epoch ms).
    pub since: i64,
}

/// The rule evaluator over the store.
pub struct AlertEngine {
    store: Arc<dyn Store>,
    config: Arc<AlertsConfig>,
    rules: Vec<AlertRule>,
    clock: Arc<dyn Clock>,
    /// One evaluation at a time (the collector and external feeders share the engine).
    lock: Mutex<()>,
    /// Woken when notifications were queued (the local delivery worker).
    queued: Option<Arc<Notify>>,
}

impl AlertEngine {
    /// An evaluator of the rules in force under `config`.
    pub fn new(store: Arc<dyn Store>, config: Arc<AlertsConfig>, clock: Arc<dyn Clock>) -> Self {
        Self {
            rules: config.effective_rules(),
            store,
            config,
            clock,
            lock: Mutex::new(()),
            queued: None,
        }
    }

    /// Wakes `notify` whenever an evaluation queued notifications.
    pub fn with_wake(mut self, notify: Arc<Notify>) -> Self {
        self.queued = Some(notify);
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Evaluates `samples` (in order; `at_ms` 0 means now) and then every alert's
    /// notifications: firing ones not yet notified and no longer held back, repeats after
    /// `repeat_interval_ms`, and resolved ones for alerts whose rule went away. Returns what
    /// fired and cleared. Call it with no samples to do only the latter.
    pub async fn observe(&self, samples: Vec<Sample>) -> Result<Vec<Transition>> {
        let _one = self.lock.lock().await;
        let now = self.clock.now_ms();
        let alerts = self.store.alerts();
        let mut states: BTreeMap<String, AlertState> = alerts
            .alert_states()
            .await?
            .into_iter()
            .map(|s| (s.fingerprint.clone(), s))
            .collect();
        let mut changed = BTreeSet::new();
        let mut cleared: Vec<(AlertState, TransitionKind)> = Vec::new();
        let mut fired = Vec::new();
        for sample in &samples {
            let at = if sample.at_ms > 0 { sample.at_ms } else { now };
            for rule in self.rules.iter().filter(|r| r.metric == sample.metric) {
                let labels = alert_labels(rule, &sample.labels);
                let fp = fingerprint(&labels);
                let (next, what) = step(rule, states.remove(&fp), &fp, &labels, sample.value, at);
                changed.insert(fp.clone());
                match (next, what) {
                    (Some(s), Step::Cleared) => cleared.push((s, TransitionKind::Cleared)),
                    (Some(s), what) => {
                        if what == Step::Fired {
                            fired.push(fp.clone());
                        }
                        states.insert(fp, s);
                    }
                    (None, _) => {}
                }
            }
        }
        // Alerts of rules no longer in force clear (and resolve if they were notified).
        let gone: Vec<String> = states
            .values()
            .filter(|s| !self.rules.iter().any(|r| r.name == s.rule))
            .map(|s| s.fingerprint.clone())
            .collect();
        for fp in gone {
            if let Some(s) = states.remove(&fp) {
                changed.insert(fp);
                cleared.push((s, TransitionKind::Cleared));
            }
        }

        let mut notes = Vec::new();
        let mut transitions = Vec::new();
        for (s, kind) in cleared {
            let routes = if s.notified_firing {
                s.notified_routes.clone()
            } else {
                Vec::new()
            };
            for route in &routes {
                notes.push(self.note(route, &s, NotifyStatus::Resolved, s.last_at));
            }
            transitions.push(self.transition(kind, &s, routes, None));
        }

        let silences: Vec<Vec<String>> = alerts
            .silences()
            .await?
            .into_iter()
            .filter(|s| s.active(now))
            .map(|s| s.new.matchers)
            .collect();
        let firing_labels: Vec<BTreeMap<String, String>> = states
            .values()
            .filter(|s| s.phase == AlertPhase::Firing)
            .map(|s| s.labels.clone())
            .collect();
        let firing_refs: Vec<&BTreeMap<String, String>> = firing_labels.iter().collect();
        for s in states.values_mut() {
            if s.phase != AlertPhase::Firing {
                continue;
            }
            let held_back = if silences.iter().any(|m| silenced_by(m, &s.labels)) {
                Some("silenced")
            } else if inhibited(&self.config.inhibit, &s.labels, &firing_refs) {
                Some("inhibited")
            } else {
                None
            };
            let just_fired = fired.contains(&s.fingerprint);
            let repeat = self.config.repeat_interval_ms;
            let due = if !s.notified_firing {
                true
            } else {
                s.acked_by.is_none()
                    && repeat > 0
                    && s.last_notified_at
                        .is_none_or(|t| now.saturating_sub(t) >= repeat as i64)
            };
            let mut routes = Vec::new();
            if held_back.is_none() && due {
                let rule_routes = self
                    .rules
                    .iter()
                    .find(|r| r.name == s.rule)
                    .map(|r| r.routes.clone())
                    .unwrap_or_default();
                routes = if s.notified_firing {
                    s.notified_routes.clone()
                } else {
                    rule_routes
                };
                for route in &routes {
                    notes.push(self.note(route, s, NotifyStatus::Firing, s.since));
                }
                s.notified_firing = true;
                s.notified_routes = routes.clone();
                s.last_notified_at = Some(now);
                changed.insert(s.fingerprint.clone());
            }
            if just_fired {
                transitions.push(self.transition(TransitionKind::Fired, s, routes, held_back));
            }
        }

        let remove: Vec<String> = changed
            .iter()
            .filter(|fp| !states.contains_key(*fp))
            .cloned()
            .collect();
        let save: Vec<AlertState> = changed
            .iter()
            .filter_map(|fp| states.get(fp).cloned())
            .collect();
        if save.is_empty() && remove.is_empty() && notes.is_empty() {
            return Ok(transitions);
        }
        let queued = !notes.is_empty();
        alerts.save_evaluation(save, remove, notes).await?;
        if queued {
            if let Some(n) = &self.queued {
                n.notify_one();
            }
        }
        for t in &transitions {
            tracing::info!(
                rule = %t.rule, kind = ?t.kind, value = t.value, routes = ?t.routes,
                held_back = ?t.held_back, "alert"
            );
        }
        Ok(transitions)
    }

    fn transition(
        &self,
        kind: TransitionKind,
        s: &AlertState,
        routes: Vec<String>,
        held_back: Option<&'static str>,
    ) -> Transition {
        Transition {
            kind,
            rule: s.rule.clone(),
            fingerprint: s.fingerprint.clone(),
            labels: s.labels.clone(),
            value: s.last_value,
            at: s.last_at,
            routes,
            held_back,
        }
    }

    /// The notification of `s` for `route`.
    fn note(&self, route: &str, s: &AlertState, status: NotifyStatus, at: i64) -> NewNotification {
        let rule = self.rules.iter().find(|r| r.name == s.rule);
        let info = AlertInfo {
            name: s.rule.clone(),
            fingerprint: s.fingerprint.clone(),
            status,
            severity: s.labels.get("severity").cloned().unwrap_or_default(),
            metric: s.metric.clone(),
            value: s.last_value,
            condition: rule
                .map(AlertRule::condition)
                .unwrap_or_else(|| "rule no longer configured".into()),
            labels: s.labels.clone(),
            since: s.since,
            at,
        };
        let group_by = self
            .config
            .route(route)
            .map(|r| r.group_by)
            .unwrap_or_default();
        NewNotification {
            route: route.to_string(),
            group_key: group_key(&group_by, &s.labels),
            fingerprint: s.fingerprint.clone(),
            rule: s.rule.clone(),
            status,
            alert: serde_json::to_value(&info).unwrap_or_default(),
            created_at: self.clock.now_ms(),
        }
    }

    /// The firing alerts by rule name, for `/metrics/summary`: a rule with several firing
    /// alerts (label sets) shows the earliest `since` and the latest value, and the routes
    /// notified. An alert never notified (silenced, inhibited) shows its rule's routes.
    pub async fn active(&self) -> Result<BTreeMap<String, ActiveAlert>> {
        let mut out = active_summary(&*self.store).await?;
        for (name, a) in out.iter_mut() {
            if a.routes.is_empty() {
                if let Some(r) = self.rules.iter().find(|r| &r.name == name) {
                    a.routes = r.routes.clone();
                }
            }
        }
        Ok(out)
    }
}

/// The firing alerts of `store` by rule name (see [`AlertEngine::active`]).
pub async fn active_summary(store: &dyn Store) -> Result<BTreeMap<String, ActiveAlert>> {
    let mut out: BTreeMap<String, (ActiveAlert, i64)> = BTreeMap::new();
    for s in store.alerts().alert_states().await? {
        if s.phase != AlertPhase::Firing {
            continue;
        }
        let entry = out.entry(s.rule.clone()).or_insert_with(|| {
            (
                ActiveAlert {
                    metric: s.metric.clone(),
                    value: s.last_value,
                    routes: Vec::new(),
                    since: s.since,
                },
                s.last_at,
            )
        });
        entry.0.since = entry.0.since.min(s.since);
        if s.last_at >= entry.1 {
            entry.0.value = s.last_value;
            entry.1 = s.last_at;
        }
        for r in &s.notified_routes {
            if !entry.0.routes.contains(r) {
                entry.0.routes.push(r.clone());
            }
        }
    }
    Ok(out.into_iter().map(|(k, (a, _))| (k, a)).collect())
}

/// The group of an alert with `labels` on a route grouping by `group_by`:
/// `alertname=queue_depth_high` (labels it lacks count as empty).
pub(crate) fn group_key(group_by: &[String], labels: &BTreeMap<String, String>) -> String {
    group_by
        .iter()
        .map(|l| format!("{l}={}", labels.get(l).map(String::as_str).unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}
