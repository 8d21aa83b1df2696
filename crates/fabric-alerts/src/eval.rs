//! The rule state machine of one alert, without I/O: a rule fires once after `for_count`
//! consecutive breaching samples and clears on the first sample that does not breach.

use std::collections::BTreeMap;

use fabric_core::config::AlertRule;
use fabric_store::{AlertPhase, AlertState};

/// What one sample did to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing worth telling (a breach short of `for_count`, or one more while firing).
    Quiet,
    /// It fired with this sample.
    Fired,
    /// It was firing and this sample cleared it.
    Cleared,
}

/// Advances the alert `prev` of `rule` with a sample of `value` at `at`. The new state is
/// `None` when the alert is fine and owes nothing; on [`Step::Cleared`] it is the last state
/// (still `Firing`), for the caller to settle what it owes.
pub(crate) fn step(
    rule: &AlertRule,
    prev: Option<AlertState>,
    fingerprint: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    at: i64,
) -> (Option<AlertState>, Step) {
    let breaching = rule.comparator.breaches(value, rule.threshold);
    match (prev, breaching) {
        (None, false) => (None, Step::Quiet),
        (Some(mut s), false) => {
            s.last_value = value;
            s.last_at = at;
            s.breaches = 0;
            if s.phase == AlertPhase::Firing || s.notified_firing {
                (Some(s), Step::Cleared)
            } else {
                (None, Step::Quiet)
            }
        }
        (prev, true) => {
            let mut s = prev.unwrap_or_else(|| AlertState {
                fingerprint: fingerprint.to_string(),
                rule: rule.name.clone(),
                labels: labels.clone(),
                metric: rule.metric.clone(),
                phase: AlertPhase::Pending,
                breaches: 0,
                since: at,
                last_value: value,
                last_at: at,
                notified_firing: false,
                notified_routes: Vec::new(),
                last_notified_at: None,
                acked_by: None,
                acked_at: None,
                ack_comment: None,
            });
            s.breaches = s.breaches.saturating_add(1);
            s.last_value = value;
            s.last_at = at;
            if s.phase == AlertPhase::Pending && s.breaches >= rule.for_count {
                s.phase = AlertPhase::Firing;
                s.since = at;
                (Some(s), Step::Fired)
            } else {
                (Some(s), Step::Quiet)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::config::{Comparator, Severity};

    fn rule(for_count: u32) -> AlertRule {
        AlertRule {
            name: "training_latency_high".into(),
            metric: "training_latency_ms".into(),
            comparator: Comparator::Gt,
            threshold: 18.0,
            for_count,
            routes: vec!["log".into()],
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            origin: "default",
        }
    }

    /// Feeds `values` and returns the steps.
    fn run(r: &AlertRule, values: &[f64]) -> Vec<Step> {
        let mut state = None;
        let mut steps = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let (next, s) = step(r, state.take(), "fp", &BTreeMap::new(), *v, i as i64);
            state = if s == Step::Cleared { None } else { next };
            steps.push(s);
        }
        steps
    }

    #[test]
    fn fires_once_after_for_count_breaches_and_clears_on_the_first_good_sample() {
        use Step::*;
        let r = rule(3);
        assert_eq!(
            run(&r, &[19.0, 20.0, 21.0, 25.0, 30.0, 10.0, 19.0]),
            [Quiet, Quiet, Fired, Quiet, Quiet, Cleared, Quiet]
        );
        // A good sample before the third breach starts the count over.
        assert_eq!(
            run(&r, &[19.0, 20.0, 18.0, 19.0, 20.0, 21.0]),
            [Quiet, Quiet, Quiet, Quiet, Quiet, Fired]
        );
        assert_eq!(run(&rule(1), &[19.0, 1.0]), [Fired, Cleared]);
    }

    #[test]
    fn the_threshold_itself_does_not_breach_a_strict_rule() {
        assert_eq!(run(&rule(1), &[18.0, 18.0]), [Step::Quiet, Step::Quiet]);
    }

    #[test]
    fn a_fired_alert_keeps_its_fire_time_and_last_value() {
        let r = rule(2);
        let (s, _) = step(&r, None, "fp", &BTreeMap::new(), 19.0, 100);
        let (s, st) = step(&r, s, "fp", &BTreeMap::new(), 22.5, 200);
        assert_eq!(st, Step::Fired);
        let (s, st) = step(&r, s, "fp", &BTreeMap::new(), 30.0, 300);
        let s = s.unwrap();
        assert_eq!(st, Step::Quiet);
        assert_eq!(
            (s.since, s.last_value, s.last_at, s.breaches),
            (200, 30.0, 300, 3)
        );
    }
}
