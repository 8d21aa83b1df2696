//! Service-level objectives: their configuration (`slo:`), and the pure arithmetic of error
//! budgets and burn rates over the multi-window pairs of the SRE workbook (14.4× over 1 h and
//! 5 m, 6× over 6 h and 30 m, 1× over 3 d and 6 h).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigProblem;

/// The windows every SLO's burn rate is computed over, as (label, milliseconds).
pub const BURN_WINDOWS: [(&str, i64); 5] = [
    ("5m", 300_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("6h", 21_600_000),
    ("3d", 259_200_000),
];

/// The multi-window alerts: (long window, short window, burn-rate factor, severity). An SLO
/// breaches one when its burn rate exceeds the factor over both windows.
pub const BURN_ALERTS: [(&str, &str, f64, &str); 3] = [
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("3d", "6h", 1.0, "ticket"),
];

/// What an SLO counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    /// Jobs that finished (succeeded or quarantined); the quarantined ones violate it.
    Success,
    /// Jobs that succeeded; those that took longer than `threshold_ms` from their due time to
    /// their end (queueing, retries and run time) violate it.
    Latency,
}

/// One SLO of `slo:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// What is counted.
    pub indicator: Indicator,
    /// The fraction of good events promised, in (0, 1): `0.99`.
    pub objective: f64,
    /// The window the objective holds over (`30d`, `3d`, `24h`); the summary's totals and
    /// `burn_rate` are over it.
    #[serde(default = "default_window")]
    pub window: String,
    /// For `latency`: slower than this (ms) is a violation.
    #[serde(default)]
    pub threshold_ms: Option<u64>,
}

fn default_window() -> String {
    "3d".into()
}

/// The SLOs that ship: 99 % of finished jobs succeed; 95 % of successes end within a minute of
/// being due.
pub fn default_slos() -> BTreeMap<String, SloConfig> {
    BTreeMap::from([
        (
            "job_success".to_string(),
            SloConfig {
                indicator: Indicator::Success,
                objective: 0.99,
                window: default_window(),
                threshold_ms: None,
            },
        ),
        (
            "job_latency".to_string(),
            SloConfig {
                indicator: Indicator::Latency,
                objective: 0.95,
                window: default_window(),
                threshold_ms: Some(60_000),
            },
        ),
    ])
}

/// The longest SLO window: 90 days.
pub const MAX_WINDOW_MS: i64 = 90 * 86_400_000;

impl SloConfig {
    /// The window in milliseconds (the default's when it does not parse: validation reports
    /// that).
    pub fn window_ms(&self) -> i64 {
        crate::time::parse_duration_ms(&self.window).unwrap_or(259_200_000)
    }
}

/// The problems of the `slo:` section, each naming `slo.<name>.<key>` and the value.
pub fn problems(slos: &BTreeMap<String, SloConfig>) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let mut bad = |path: String, message: String| out.push(ConfigProblem { path, message });
    for (name, s) in slos {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bad(
                format!("slo.{name}"),
                format!("{name:?} must be letters, digits and '_' (it is a Prometheus label)"),
            );
        }
        if !(s.objective > 0.0 && s.objective < 1.0) {
            bad(
                format!("slo.{name}.objective"),
                format!(
                    "{} must lie strictly between 0 and 1 (0.99 = 99 %)",
                    s.objective
                ),
            );
        }
        match crate::time::parse_duration_ms(&s.window) {
            Err(e) => bad(format!("slo.{name}.window"), e),
            Ok(ms) if !(60_000..=MAX_WINDOW_MS).contains(&ms) => bad(
                format!("slo.{name}.window"),
                format!("'{}' is out of range 1m..90d", s.window),
            ),
            Ok(_) => {}
        }
        match (s.indicator, s.threshold_ms) {
            (Indicator::Latency, None) => bad(
                format!("slo.{name}.threshold_ms"),
                "is required for indicator latency".into(),
            ),
            (Indicator::Latency, Some(0)) => bad(
                format!("slo.{name}.threshold_ms"),
                "0 is out of range 1..".into(),
            ),
            (Indicator::Success, Some(t)) => bad(
                format!("slo.{name}.threshold_ms"),
                format!("{t} applies to indicator latency only; remove it"),
            ),
            _ => {}
        }
    }
    out
}

/// Good and bad events over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events counted.
    pub total: u64,
    /// Those that violated the objective.
    pub violations: u64,
}

impl Counts {
    /// violations / total (0 with no events).
    pub fn error_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.violations as f64 / self.total as f64
        }
    }

    /// How fast the error budget burns: the error rate over the budget (1 - objective). 1 uses
    /// the budget up exactly at the end of the window; 14.4 uses a 30-day budget in 2 days.
    pub fn burn_rate(&self, objective: f64) -> f64 {
        let budget = 1.0 - objective;
        if budget <= 0.0 {
            return 0.0;
        }
        self.error_rate() / budget
    }
}

/// The multi-window alerts `rates` (burn rate by window label) breach.
pub fn breached(
    rates: &BTreeMap<String, f64>,
) -> Vec<(&'static str, &'static str, f64, &'static str)> {
    BURN_ALERTS
        .into_iter()
        .filter(|(long, short, factor, _)| {
            let r = |w: &str| rates.get(w).copied().unwrap_or(0.0);
            r(long) > *factor && r(short) > *factor
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_rate_is_the_error_rate_over_the_budget() {
        let c = Counts {
            total: 1000,
            violations: 144,
        };
        assert!((c.error_rate() - 0.144).abs() < 1e-12);
        assert!((c.burn_rate(0.99) - 14.4).abs() < 1e-9);
        assert_eq!(
            Counts::default().burn_rate(0.99),
            0.0,
            "no events burn nothing"
        );
    }

    #[test]
    fn an_alert_needs_both_of_its_windows_over_the_factor() {
        let rates = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        // A spike in the last 5 minutes alone is not a page.
        assert!(breached(&rates(&[("5m", 50.0), ("1h", 3.0)])).is_empty());
        let b = breached(&rates(&[
            ("5m", 20.0),
            ("1h", 15.0),
            ("30m", 20.0),
            ("6h", 7.0),
        ]));
        let names: Vec<(&str, &str)> = b.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(names, [("1h", "5m"), ("6h", "30m")]);
    }

    #[test]
    fn bad_slos_are_named_with_their_values() {
        let mut slos = default_slos();
        slos.insert(
            "x".into(),
            SloConfig {
                indicator: Indicator::Latency,
                objective: 1.0,
                window: "2y".into(),
                threshold_ms: None,
            },
        );
        let p = problems(&slos);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["slo.x.objective", "slo.x.window", "slo.x.threshold_ms"],
            "{p:?}"
        );
        assert!(problems(&default_slos()).is_empty());
    }
}
