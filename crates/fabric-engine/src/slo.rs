//! The SLOs of the configuration, measured: totals and violations over each SLO's window and
//! burn rates over the multi-window pairs (`fabric_core::slo`), from one store query; what
//! `/metrics/summary` shows and `fabric_slo_burn_rate` exports.

use std::collections::BTreeMap;

use fabric_core::slo::{self, Counts, Indicator, BURN_WINDOWS};
use serde::Serialize;

use crate::console::Result;
use crate::Console;

/// One SLO, measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub indicator: Indicator,
    pub objective: f64,
    /// The SLO's window (`3d`).
    pub window: String,
    /// Events over the window.
    pub total: u64,
    /// Violations over the window.
    pub violations: u64,
    /// violations / total over the window.
    pub error_rate: f64,
    /// The error budget's burn rate over the window: error_rate / (1 - objective).
    pub burn_rate: f64,
    /// Burn rate per window of [`BURN_WINDOWS`] (`5m`, `30m`, `1h`, `6h`, `3d`).
    pub burn_rates: BTreeMap<String, f64>,
    /// The multi-window alerts breached now, as `1h/5m>14.4 (page)`.
    pub breached: Vec<String>,
}

/// The configured SLOs (`slo:`), by name.
pub(crate) type SloConfigs = BTreeMap<String, slo::SloConfig>;
/// Every configured SLO, measured.
pub(crate) type SloReport = BTreeMap<String, SloStatus>;

impl Console {
    /// Every configured SLO, measured for this reader or shared with others when measuring
    /// is dear (it reads every job finished in the longest window; see `measured`).
    pub async fn slo_report(&self) -> Result<SloReport> {
        let slos = &self.config().slo;
        if slos.is_empty() {
            return Ok(BTreeMap::new());
        }
        let console = self.clone();
        self.slo_memo
            .get(slos.clone(), self.now(), move || {
                let console = console.clone();
                async move {
                    let at = console.now();
                    Ok::<_, crate::EngineError>((at, console.measure_slos_now().await?))
                }
            })
            .await
    }

    async fn measure_slos_now(&self) -> Result<SloReport> {
        let slos = &self.config().slo;
        let now = self.now();
        let mut windows: Vec<i64> = BURN_WINDOWS.iter().map(|(_, ms)| *ms).collect();
        for s in slos.values() {
            if !windows.contains(&s.window_ms()) {
                windows.push(s.window_ms());
            }
        }
        let mut thresholds: Vec<i64> = Vec::new();
        for s in slos.values() {
            if let (Indicator::Latency, Some(t)) = (s.indicator, s.threshold_ms) {
                let t = i64::try_from(t).unwrap_or(i64::MAX);
                if !thresholds.contains(&t) {
                    thresholds.push(t);
                }
            }
        }
        let since: Vec<i64> = windows.iter().map(|w| now.saturating_sub(*w)).collect();
        let found = self.store().finished_windows(&since, &thresholds).await?;
        let counts = |s: &slo::SloConfig, window_ms: i64| -> Counts {
            let Some(w) = windows
                .iter()
                .position(|x| *x == window_ms)
                .and_then(|i| found.get(i))
            else {
                return Counts::default();
            };
            match s.indicator {
                Indicator::Success => Counts {
                    total: w.succeeded + w.quarantined,
                    violations: w.quarantined,
                },
                Indicator::Latency => {
                    let t = s.threshold_ms.and_then(|t| i64::try_from(t).ok());
                    let slow = t
                        .and_then(|t| thresholds.iter().position(|x| *x == t))
                        .and_then(|i| w.slow.get(i).copied())
                        .unwrap_or(0);
                    Counts {
                        total: w.succeeded,
                        violations: slow,
                    }
                }
            }
        };
        Ok(slos
            .iter()
            .map(|(name, s)| {
                let whole = counts(s, s.window_ms());
                let burn_rates: BTreeMap<String, f64> = BURN_WINDOWS
                    .iter()
                    .map(|(label, ms)| (label.to_string(), counts(s, *ms).burn_rate(s.objective)))
                    .collect();
                let breached = slo::breached(&burn_rates)
                    .into_iter()
                    .map(|(long, short, factor, severity)| {
                        format!("{long}/{short}>{factor} ({severity})")
                    })
                    .collect();
                let status = SloStatus {
                    indicator: s.indicator,
                    objective: s.objective,
                    window: s.window.clone(),
                    total: whole.total,
                    violations: whole.violations,
                    error_rate: whole.error_rate(),
                    burn_rate: whole.burn_rate(s.objective),
                    burn_rates,
                    breached,
                };
                (name.clone(), status)
            })
            .collect())
    }
}
