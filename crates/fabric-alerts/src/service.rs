//! The operator's side of alerting, as `fabric alerts` calls it: alerts, rules and delivery
//! history to read; silences, unsilences, acknowledgements and test notifications, each
//! validated and audited (who, what, when, why) like every Console action.

use std::sync::Arc;
use std::time::Instant;

use fabric_core::config::{AlertRule, Config, RouteType};
use fabric_core::Clock;
use fabric_store::{
    AlertPhase, AlertState, AuditEntry, DeliveryAttempt, NewDeliveryAttempt, NewSilence, Silence,
    Store,
};
use serde::Serialize;

use crate::matcher::{inhibited, silenced_by};
use crate::message::test_alert;
use crate::routes::Routes;
use crate::{AlertsError, Matcher, Result};

/// Longest silence: 90 days.
const MAX_SILENCE_MS: i64 = 90 * 86_400_000;

/// An alert as `fabric alerts list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub state: AlertState,
    /// Ids of the silences holding it back now.
    pub silenced_by: Vec<i64>,
    pub inhibited: bool,
    /// The routes of its rule (none when the rule went away).
    pub routes: Vec<String>,
}

/// A rule in force as `fabric alerts rules` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub rule: AlertRule,
    /// `queue_depth > 4000 for 2 samples`.
    pub condition: String,
    /// Its alerts firing now.
    pub firing: usize,
}

/// What a test notification did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestOutcome {
    pub route: String,
    #[serde(rename = "type")]
    pub kind: RouteType,
    /// Where it went, without secrets.
    pub endpoint: String,
    pub ok: bool,
    /// `delivered`, `retry` (a transient failure) or `failed`.
    pub outcome: String,
    pub detail: String,
    pub duration_ms: i64,
}

/// Operator actions on alerting.
#[derive(Clone)]
pub struct AlertsConsole {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    actor: String,
}

impl AlertsConsole {
    /// Acting as `actor` (recorded in the audit log).
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            actor: actor.into(),
        }
    }

    async fn audit(&self, action: &str, target: String, reason: Option<String>) -> Result<()> {
        if self.config.security.audit_logging {
            self.store
                .audit(AuditEntry {
                    at: self.clock.now_ms(),
                    actor: self.actor.clone(),
                    action: action.into(),
                    target,
                    reason,
                })
                .await?;
        }
        Ok(())
    }

    /// Every pending and firing alert, firing first, with what holds it back.
    pub async fn list(&self) -> Result<Vec<AlertView>> {
        let now = self.clock.now_ms();
        let states = self.store.alerts().alert_states().await?;
        let silences: Vec<Silence> = self
            .store
            .alerts()
            .silences()
            .await?
            .into_iter()
            .filter(|s| s.active(now))
            .collect();
        let rules = self.config.alerts.effective_rules();
        let firing: Vec<_> = states
            .iter()
            .filter(|s| s.phase == AlertPhase::Firing)
            .map(|s| &s.labels)
            .collect();
        let mut out: Vec<AlertView> = states
            .iter()
            .map(|s| AlertView {
                silenced_by: silences
                    .iter()
                    .filter(|x| silenced_by(&x.new.matchers, &s.labels))
                    .map(|x| x.id)
                    .collect(),
                inhibited: s.phase == AlertPhase::Firing
                    && inhibited(&self.config.alerts.inhibit, &s.labels, &firing),
                routes: rules
                    .iter()
                    .find(|r| r.name == s.rule)
                    .map(|r| r.routes.clone())
                    .unwrap_or_default(),
                state: s.clone(),
            })
            .collect();
        out.sort_by_key(|v| (v.state.phase != AlertPhase::Firing, v.state.rule.clone()));
        Ok(out)
    }

    /// The rules in force with their firing alerts.
    pub async fn rules(&self) -> Result<Vec<RuleView>> {
        let states = self.store.alerts().alert_states().await?;
        Ok(self
            .config
            .alerts
            .effective_rules()
            .into_iter()
            .map(|r| RuleView {
                condition: r.condition(),
                firing: states
                    .iter()
                    .filter(|s| s.rule == r.name && s.phase == AlertPhase::Firing)
                    .count(),
                rule: r,
            })
            .collect())
    }

    /// Delivery attempts, newest first.
    pub async fn history(
        &self,
        since: Option<i64>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        Ok(self.store.alerts().deliveries(since, route, limit).await?)
    }

    /// Silences, newest first; with `all`, also those over.
    pub async fn silences(&self, all: bool) -> Result<Vec<Silence>> {
        let now = self.clock.now_ms();
        Ok(self
            .store
            .alerts()
            .silences()
            .await?
            .into_iter()
            .filter(|s| all || s.new.ends_at > now)
            .collect())
    }

    /// Silences the alerts matching every one of `matchers` for `duration_ms` from now.
    pub async fn silence(
        &self,
        matchers: &[String],
        duration_ms: i64,
        author: Option<&str>,
        comment: &str,
    ) -> Result<Silence> {
        if matchers.is_empty() {
            return Err(AlertsError::invalid(
                "--matcher",
                "give at least one (label=value, e.g. alertname=queue_depth_high), or --rule",
            ));
        }
        let parsed = matchers
            .iter()
            .map(|m| Matcher::parse("--matcher", m))
            .collect::<Result<Vec<_>>>()?;
        if !(60_000..=MAX_SILENCE_MS).contains(&duration_ms) {
            return Err(AlertsError::invalid(
                "--duration",
                format!("{duration_ms} ms is out of range 1m..90d"),
            ));
        }
        let author = author.unwrap_or(&self.actor).trim().to_string();
        if author.is_empty() {
            return Err(AlertsError::invalid("--author", "is empty"));
        }
        let now = self.clock.now_ms();
        let silence = self
            .store
            .alerts()
            .add_silence(
                NewSilence {
                    matchers: parsed.iter().map(Matcher::to_string).collect(),
                    starts_at: now,
                    ends_at: now + duration_ms,
                    author,
                    comment: comment.to_string(),
                },
                now,
            )
            .await?;
        self.audit(
            "alerts.silence",
            format!(
                "silence {} [{}]",
                silence.id,
                silence.new.matchers.join(", ")
            ),
            Some(comment.to_string()).filter(|c| !c.is_empty()),
        )
        .await?;
        Ok(silence)
    }

    /// Ends silence `id` now.
    pub async fn unsilence(&self, id: i64) -> Result<Silence> {
        let s = self
            .store
            .alerts()
            .expire_silence(id, self.clock.now_ms())
            .await
            .map_err(|e| match e {
                fabric_store::StoreError::NotFound { .. } => AlertsError::NotFound {
                    what: "silence",
                    id: id.to_string(),
                },
                e => e.into(),
            })?;
        self.audit("alerts.unsilence", format!("silence {id}"), None)
            .await?;
        Ok(s)
    }

    /// Acknowledges the firing alerts of `target`: a fingerprint (or a unique prefix of at
    /// least 6 digits) or a rule name (all its firing alerts). An acknowledged alert is not
    /// notified again until it resolves.
    pub async fn ack(&self, target: &str, comment: Option<&str>) -> Result<Vec<AlertState>> {
        let firing: Vec<AlertState> = self
            .store
            .alerts()
            .alert_states()
            .await?
            .into_iter()
            .filter(|s| s.phase == AlertPhase::Firing)
            .collect();
        let by_rule: Vec<&AlertState> = firing.iter().filter(|s| s.rule == target).collect();
        let chosen: Vec<&AlertState> = if !by_rule.is_empty() {
            by_rule
        } else if target.len() >= 6 {
            firing
                .iter()
                .filter(|s| s.fingerprint.starts_with(target))
                .collect()
        } else {
            Vec::new()
        };
        if chosen.is_empty() {
            return Err(AlertsError::NotFound {
                what: "firing alert",
                id: target.to_string(),
            });
        }
        if chosen.len() > 1 && !firing.iter().any(|s| s.rule == target) {
            return Err(AlertsError::invalid(
                "ALERT",
                format!(
                    "'{target}' matches {} alerts: give more digits",
                    chosen.len()
                ),
            ));
        }
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for s in chosen {
            let acked = self
                .store
                .alerts()
                .ack_alert(&s.fingerprint, &self.actor, comment, now)
                .await?;
            self.audit(
                "alerts.ack",
                format!("alert {} {}", acked.rule, acked.fingerprint),
                comment.map(String::from),
            )
            .await?;
            out.push(acked);
        }
        Ok(out)
    }

    /// Sends a test notification through route `name` now (one try, under the route's
    /// timeout), records it in the history and audits it.
    pub async fn test(&self, name: &str) -> Result<TestOutcome> {
        let route = self.config.alerts.route(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .alerts
                .routes
                .keys()
                .map(String::as_str)
                .chain([fabric_core::config::LOG_ROUTE])
                .collect();
            AlertsError::invalid(
                "ROUTE",
                format!("'{name}' is not a route (configured: {})", known.join(", ")),
            )
        })?;
        let now = self.clock.now_ms();
        let started = Instant::now();
        let d = Routes::new()
            .deliver(name, &route, "test", &[test_alert(name, now)], false)
            .await;
        let duration_ms = fabric_core::time::duration_ms(started.elapsed());
        let ok = matches!(d.outcome, crate::routes::Outcome::Delivered(_));
        let out = TestOutcome {
            route: name.to_string(),
            kind: route.kind,
            endpoint: route.endpoint(),
            ok,
            outcome: d.outcome.word().into(),
            detail: d.outcome.detail(),
            duration_ms,
        };
        self.store
            .alerts()
            .record_delivery(NewDeliveryAttempt {
                at: self.clock.now_ms(),
                route: name.to_string(),
                group_key: "test".into(),
                notifications: Vec::new(),
                summary: "test".into(),
                attempt: 1,
                outcome: if ok { "test-ok" } else { "test-failed" }.into(),
                detail: out.detail.clone(),
                duration_ms,
            })
            .await?;
        self.audit(
            "alerts.test",
            format!("route {name}"),
            Some(format!("{}: {}", out.outcome, out.detail)),
        )
        .await?;
        Ok(out)
    }
}
