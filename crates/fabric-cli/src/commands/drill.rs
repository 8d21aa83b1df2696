//! `fabric drill queue-depth|latency|retry|quarantine [--dry-run]`: breaching samples, then a
//! clearing one, through the real rule evaluation and delivery path (the configured rules and
//! routes, rate limits and retries), on a scratch store so no real alert state is touched;
//! shows the alert fire and clear and what each receiver was sent.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fabric_alerts::drill::Drill;
use fabric_alerts::{Sample, Sent, Transition, TransitionKind};
use fabric_core::config::{fmt_number, AlertRule, Comparator};
use fabric_core::RealClock;
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use serde::Serialize;
use serde_json::json;

use crate::cli::DrillKind;
use crate::context::{Ctx, Usage};
use crate::output::{emit, print};

/// How long a drill waits for its messages to be delivered (rate limits, retries).
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

impl DrillKind {
    /// The metric the drill drives, as the default rules name it.
    fn metric(self) -> &'static str {
        match self {
            Self::QueueDepth => "queue_depth",
            Self::Latency => "job_latency_ms",
            Self::Retry => "retries",
            Self::Quarantine => "quarantined",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::QueueDepth => "queue-depth",
            Self::Latency => "latency",
            Self::Retry => "retry",
            Self::Quarantine => "quarantine",
        }
    }
}

/// A value that breaches `rule`, and one that does not: half and one and a half times a
/// positive threshold (a count or a ratio stays positive), one off another; `> 0` clears at 0.
fn values(rule: &AlertRule) -> (f64, f64) {
    let t = rule.threshold;
    let (below, above) = if t > 0.0 {
        (t / 2.0, t * 1.5)
    } else {
        (t - 1.0, t + 1.0)
    };
    match rule.comparator {
        Comparator::Gt => (above, if t > 0.0 { below } else { t }),
        Comparator::Ge => (above, below),
        Comparator::Lt | Comparator::Le => (below, above),
        Comparator::Eq => (t, above),
        Comparator::Ne => (above, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_values_breach_then_clear_every_default_rule() {
        for rule in fabric_core::config::AlertsConfig::default().effective_rules() {
            let (breach, clear) = values(&rule);
            assert!(
                rule.comparator.breaches(breach, rule.threshold),
                "{}",
                rule.name
            );
            assert!(
                !rule.comparator.breaches(clear, rule.threshold),
                "{}",
                rule.name
            );
            assert!(
                breach >= 0.0 && clear >= 0.0,
                "{}: {breach} {clear}",
                rule.name
            );
        }
    }
}

/// One sample of the drill and what it did.
#[derive(Serialize)]
struct Step {
    metric: String,
    value: f64,
    breaching: bool,
    transitions: Vec<Transition>,
    sent: Vec<Sent>,
}

pub async fn run(ctx: &Ctx, kind: DrillKind, dry_run: bool) -> anyhow::Result<ExitCode> {
    let metric = kind.metric();
    let rules: Vec<AlertRule> = ctx
        .config
        .alerts
        .effective_rules()
        .into_iter()
        .filter(|r| r.metric == metric)
        .collect();
    // The rule that needs the most samples decides how many breaching ones are sent.
    let Some(rule) = rules.iter().max_by_key(|r| r.for_count).cloned() else {
        return Err(Usage(format!(
            "no alert rule watches {metric} (the default was disabled or replaced): \
             `fabric alerts rules` lists them"
        ))
        .into());
    };
    let (breach, clear) = values(&rule);
    // A scratch store: the drill's alerts, notifications and history never mix with the
    // daemon's.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        dir.path().join("drill.db"),
        SqliteOptions::default(),
    )?);
    let mut drill = Drill::new(store, &ctx.config.alerts, Arc::new(RealClock), dry_run);
    let table = ctx.global.format == crate::cli::Format::Table;
    if table {
        let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        emit(&format!(
            "drill {}: {} breaching samples of {metric} ({}), then one clearing sample ({}), \
             through rule{} {}{}\n",
            kind.name(),
            rule.for_count,
            fmt_number(breach),
            fmt_number(clear),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if dry_run {
                " (dry run: nothing is sent)"
            } else {
                ""
            }
        ))?;
    }
    let mut steps = Vec::new();
    let plan: Vec<f64> = std::iter::repeat_n(breach, rule.for_count.max(1) as usize)
        .chain([clear])
        .collect();
    for (i, value) in plan.into_iter().enumerate() {
        let sample = Sample::new(metric, value).with_label("drill", kind.name());
        let transitions = drill.feed(vec![sample]).await?;
        let sent = if transitions.is_empty() {
            Vec::new()
        } else {
            drill.flush(DELIVERY_WAIT).await?
        };
        let breaching = rule.comparator.breaches(value, rule.threshold);
        if table {
            let mut text = format!(
                "sample {}: {metric} = {} ({})\n",
                i + 1,
                fmt_number(value),
                if breaching {
                    format!("breaches {}", rule.condition())
                } else {
                    "does not breach".into()
                }
            );
            for t in &transitions {
                let verb = t.kind.shout();
                text.push_str(&format!(
                    "  {verb} {} → {}{}\n",
                    t.rule,
                    if t.routes.is_empty() {
                        "no route".to_string()
                    } else {
                        t.routes.join(", ")
                    },
                    t.held_back.map(|h| format!(" ({h})")).unwrap_or_default()
                ));
            }
            for s in &sent {
                text.push_str(&format!(
                    "  {} ({}): {} {}\n    sent: {}\n",
                    s.route,
                    format!("{:?}", s.kind).to_lowercase(),
                    s.outcome,
                    s.detail,
                    s.body
                ));
            }
            emit(&text)?;
        }
        steps.push(Step {
            metric: metric.into(),
            value,
            breaching,
            transitions,
            sent,
        });
    }
    let fired = steps
        .iter()
        .flat_map(|s| &s.transitions)
        .any(|t| t.kind == TransitionKind::Fired);
    let cleared = steps
        .iter()
        .flat_map(|s| &s.transitions)
        .any(|t| t.kind == TransitionKind::Cleared);
    // A message retried and then delivered within the wait is fine; one that failed, or
    // whose route's last word was a retry, is not.
    let all: Vec<&Sent> = steps.iter().flat_map(|s| &s.sent).collect();
    let failed: Vec<&Sent> = all
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            s.outcome == "failed"
                || (s.outcome == "retry" && !all[i + 1..].iter().any(|l| l.route == s.route))
        })
        .map(|(_, s)| *s)
        .collect();
    let ok = fired && cleared && failed.is_empty();
    if table {
        emit(&format!(
            "{}\n",
            if ok {
                "drill passed: the alert fired and cleared, and every receiver took its messages"
                    .to_string()
            } else if !fired || !cleared {
                "drill FAILED: the alert did not both fire and clear".to_string()
            } else {
                format!(
                    "drill FAILED: {} deliveries did not succeed (see above; `fabric alerts \
                     test ROUTE` checks one route)",
                    failed.len()
                )
            }
        ))?;
    } else {
        let value = json!({
            "drill": kind.name(),
            "metric": metric,
            "rules": rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            "dry_run": dry_run,
            "fired": fired,
            "cleared": cleared,
            "ok": ok,
            "steps": steps,
        });
        print(ctx.global.format, &value, String::new)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
