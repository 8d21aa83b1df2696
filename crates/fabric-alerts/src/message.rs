//! What receivers are told, without I/O: the alert as a notification carries it
//! ([`AlertInfo`]) and the body of each kind of receiver built from a group of them.

use std::collections::BTreeMap;

use fabric_core::config::fmt_number;
use fabric_core::time::format_ms;
use fabric_store::NotifyStatus;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One alert as a notification tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// The rule's name (`alertname`).
    pub name: String,
    pub fingerprint: String,
    pub status: NotifyStatus,
    pub severity: String,
    pub metric: String,
    /// The value of the sample that fired (firing) or cleared (resolved) it.
    pub value: f64,
    /// `queue_depth > 4000 for 2 samples`.
    pub condition: String,
    pub labels: BTreeMap<String, String>,
    /// When it fired (epoch ms).
    pub since: i64,
    /// When this was notified: the firing or clearing sample's time (epoch ms).
    pub at: i64,
}

impl AlertInfo {
    /// The labels other than `alertname` and `severity`, as `{shard=earth}`, or nothing.
    fn extra_labels(&self) -> String {
        let extra: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname" && *k != "severity")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if extra.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", extra.join(", "))
        }
    }

    /// One line for people: `FIRING queue_depth_high [warning]: queue_depth = 4500
    /// (queue_depth > 4000 for 2 samples) since …`.
    pub fn line(&self) -> String {
        match self.status {
            NotifyStatus::Firing => format!(
                "FIRING {} [{}]: {} = {} ({}) since {}{}",
                self.name,
                self.severity,
                self.metric,
                fmt_number(self.value),
                self.condition,
                format_ms(self.since),
                self.extra_labels()
            ),
            NotifyStatus::Resolved => format!(
                "RESOLVED {} [{}]: {} = {} at {}, firing since {}{}",
                self.name,
                self.severity,
                self.metric,
                fmt_number(self.value),
                format_ms(self.at),
                format_ms(self.since),
                self.extra_labels()
            ),
        }
    }
}

/// `[FIRING:2] queue_depth_high`, `[FIRING:1, RESOLVED:1] a, b`, `[RESOLVED:1] a`.
pub fn title(alerts: &[AlertInfo]) -> String {
    let firing = alerts
        .iter()
        .filter(|a| a.status == NotifyStatus::Firing)
        .count();
    let resolved = alerts.len() - firing;
    let counts = match (firing, resolved) {
        (f, 0) => format!("FIRING:{f}"),
        (0, r) => format!("RESOLVED:{r}"),
        (f, r) => format!("FIRING:{f}, RESOLVED:{r}"),
    };
    let mut names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    names.dedup();
    format!("[{counts}] {}", names.join(", "))
}

/// The text of a Slack message or an email: the title, then one line per alert.
pub fn text(alerts: &[AlertInfo]) -> String {
    let mut t = title(alerts);
    for a in alerts {
        t.push('\n');
        t.push_str(&a.line());
    }
    t
}

/// A Slack incoming-webhook message.
pub fn slack(alerts: &[AlertInfo]) -> Value {
    json!({ "text": text(alerts) })
}

/// A PagerDuty Events API v2 event: `trigger` for a firing alert, `resolve` for a resolved
/// one, both with the alert's fingerprint as `dedup_key`.
pub fn pagerduty(routing_key: &str, a: &AlertInfo) -> Value {
    match a.status {
        NotifyStatus::Firing => json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": a.fingerprint,
            "payload": {
                "summary": format!("{}: {} = {} ({})", a.name, a.metric, fmt_number(a.value), a.condition),
                "source": "fabric",
                "severity": a.severity,
                "timestamp": format_ms(a.since),
                "component": a.metric,
                "group": a.name,
                "class": "alert",
                "custom_details": {
                    "value": a.value,
                    "condition": a.condition,
                    "labels": a.labels,
                },
            },
        }),
        NotifyStatus::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": a.fingerprint,
        }),
    }
}

/// A generic webhook's JSON: the group and each alert, `status` firing while any fires.
pub fn webhook(route: &str, group_key: &str, alerts: &[AlertInfo]) -> Value {
    let firing = alerts.iter().any(|a| a.status == NotifyStatus::Firing);
    json!({
        "version": "1",
        "receiver": route,
        "status": if firing { "firing" } else { "resolved" },
        "group_key": group_key,
        "title": title(alerts),
        "alerts": alerts.iter().map(|a| json!({
            "status": a.status,
            "name": a.name,
            "fingerprint": a.fingerprint,
            "severity": a.severity,
            "metric": a.metric,
            "value": a.value,
            "condition": a.condition,
            "labels": a.labels,
            "since": format_ms(a.since),
            "at": format_ms(a.at),
        })).collect::<Vec<_>>(),
    })
}

/// The test notification `fabric alerts test ROUTE` sends.
pub fn test_alert(route: &str, at: i64) -> AlertInfo {
    AlertInfo {
        name: "fabric_test".into(),
        fingerprint: crate::fingerprint(&BTreeMap::from([
            ("alertname".to_string(), "fabric_test".to_string()),
            ("route".to_string(), route.to_string()),
        ])),
        status: NotifyStatus::Firing,
        severity: "info".into(),
        metric: "test".into(),
        value: 1.0,
        condition: format!("a test of route {route}"),
        labels: BTreeMap::from([
            ("alertname".to_string(), "fabric_test".to_string()),
            ("route".to_string(), route.to_string()),
            ("severity".to_string(), "info".to_string()),
        ]),
        since: at,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn alert(status: NotifyStatus) -> AlertInfo {
        AlertInfo {
            name: "queue_depth_high".into(),
            fingerprint: "f00".into(),
            status,
            severity: "warning".into(),
            metric: "queue_depth".into(),
            value: 4500.0,
            condition: "queue_depth > 4000 for 2 samples".into(),
            labels: BTreeMap::from([
                ("alertname".to_string(), "queue_depth_high".to_string()),
                ("severity".to_string(), "warning".to_string()),
                ("shard".to_string(), "earth".to_string()),
            ]),
            since: 0,
            at: 60_000,
        }
    }

    #[test]
    fn lines_and_titles_say_what_happened() {
        let f = alert(NotifyStatus::Firing);
        assert_eq!(
            f.line(),
            "FIRING queue_depth_high [warning]: queue_depth = 4500 (queue_depth > 4000 for 2 \
             samples) since 1970-01-01T00:00:00.000Z {shard=earth}"
        );
        let mut r = alert(NotifyStatus::Resolved);
        r.value = 12.5;
        assert_eq!(
            r.line(),
            "RESOLVED queue_depth_high [warning]: queue_depth = 12.5 at \
             1970-01-01T00:01:00.000Z, firing since 1970-01-01T00:00:00.000Z {shard=earth}"
        );
        assert_eq!(
            title(std::slice::from_ref(&f)),
            "[FIRING:1] queue_depth_high"
        );
        assert_eq!(
            title(&[f, r.clone()]),
            "[FIRING:1, RESOLVED:1] queue_depth_high"
        );
        assert_eq!(title(&[r]), "[RESOLVED:1] queue_depth_high");
    }
}
