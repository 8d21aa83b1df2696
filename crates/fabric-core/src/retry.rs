//! Retry policy: strategies, failure types and the backoff formulas of RUNBOOK-MAP.md §A.

use serde::{Deserialize, Serialize};

/// How the delay grows from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryStrategy {
    /// `base · multiplier^n` for the n-th retry (n from 0).
    Exponential,
    /// `base · (n + 1)`.
    Linear,
    /// `base` every time.
    Fixed,
    /// No delay.
    Immediate,
    /// Never retry.
    None,
}

/// What kind of failure an attempt ended in; decides whether and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    /// Worth retrying with backoff.
    Transient,
    /// Retried, with `rate_limit_delay` as the base delay.
    RateLimited,
    /// Never retried: straight to quarantine.
    Permanent,
    /// Unclassified: retried like a transient failure.
    Unknown,
}

impl FailureType {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::Transient => "transient",
            FailureType::RateLimited => "rate_limited",
            FailureType::Permanent => "permanent",
            FailureType::Unknown => "unknown",
        }
    }
}

/// The defaults a policy starts from (RUNBOOK-MAP.md §A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryPreset {
    /// 3 attempts, 30 s base, 300 s cap, rate-limited 60 s.
    #[default]
    LocalFiles,
    /// 5 attempts (transient 7), 120 s base, 1800 s cap, rate-limited 600 s.
    Mail,
    /// 5 attempts, 300 s base, 3600 s cap, rate-limited 900 s.
    Repositories,
}

impl RetryPreset {
    /// Every preset, for messages.
    pub const ALL: [RetryPreset; 3] = [
        RetryPreset::LocalFiles,
        RetryPreset::Mail,
        RetryPreset::Repositories,
    ];

    /// The snake_case name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryPreset::LocalFiles => "local_files",
            RetryPreset::Mail => "mail",
            RetryPreset::Repositories => "repositories",
        }
    }

    /// The preset of this name, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The full policy of the preset.
    pub fn policy(self) -> RetryPolicy {
        match self {
            RetryPreset::LocalFiles => RetryPolicy::local_files(),
            RetryPreset::Mail => RetryPolicy::mail(),
            RetryPreset::Repositories => RetryPolicy::repositories(),
        }
    }
}

/// Largest accepted delay setting: 30 days, in seconds.
pub const MAX_DELAY_SECONDS: f64 = 30.0 * 86_400.0;
/// Largest accepted `backoff_multiplier`.
pub const MAX_MULTIPLIER: f64 = 100.0;
/// Largest accepted `max_attempts` / `transient_max_attempts`.
pub const MAX_ATTEMPTS: u32 = 100;

/// One retry policy (global default or per source). In the config a policy starts from its
/// `preset` (default: the preset named like the policy, else `local_files`) and the keys it
/// sets override the preset's values one by one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RetryPolicyFile")]
pub struct RetryPolicy {
    /// The preset the unset values came from.
    pub preset: RetryPreset,
    /// Delay growth.
    pub strategy: RetryStrategy,
    /// Attempts before quarantine, for jobs submitted without their own (default 3).
    pub max_attempts: u32,
    /// Attempts for transient failures, when it differs (mail: 7).
    pub transient_max_attempts: Option<u32>,
    /// Base delay in seconds (default 30).
    pub base_delay_seconds: f64,
    /// Cap on the delay before jitter, in seconds (default 300).
    pub max_delay_seconds: f64,
    /// Growth factor of the exponential strategy (default 2.0).
    pub backoff_multiplier: f64,
    /// Jitter as a fraction of the delay: the delay moves by up to ±jitter·delay (default 0.1).
    pub jitter: f64,
    /// Base delay for rate-limited failures, in seconds (default 60).
    pub rate_limit_delay_seconds: f64,
}

/// A policy as written in the config: every key optional, unset keys come from the preset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetryPolicyFile {
    preset: Option<RetryPreset>,
    strategy: Option<RetryStrategy>,
    max_attempts: Option<u32>,
    transient_max_attempts: Option<u32>,
    base_delay_seconds: Option<f64>,
    max_delay_seconds: Option<f64>,
    backoff_multiplier: Option<f64>,
    jitter: Option<f64>,
    rate_limit_delay_seconds: Option<f64>,
}

impl From<RetryPolicyFile> for RetryPolicy {
    fn from(f: RetryPolicyFile) -> Self {
        let base = f.preset.unwrap_or_default().policy();
        RetryPolicy {
            preset: base.preset,
            strategy: f.strategy.unwrap_or(base.strategy),
            max_attempts: f.max_attempts.unwrap_or(base.max_attempts),
            transient_max_attempts: f.transient_max_attempts.or(base.transient_max_attempts),
            base_delay_seconds: f.base_delay_seconds.unwrap_or(base.base_delay_seconds),
            max_delay_seconds: f.max_delay_seconds.unwrap_or(base.max_delay_seconds),
            backoff_multiplier: f.backoff_multiplier.unwrap_or(base.backoff_multiplier),
            jitter: f.jitter.unwrap_or(base.jitter),
            rate_limit_delay_seconds: f
                .rate_limit_delay_seconds
                .unwrap_or(base.rate_limit_delay_seconds),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::local_files()
    }
}

/// The outcome of asking the policy about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Run again after this many milliseconds.
    RetryAfterMs(i64),
    /// No more attempts: quarantine.
    Quarantine,
}

/// Longest retry delay a failure may ask for ([`RetryDecision::with_retry_after`]): one day.
pub const MAX_RETRY_AFTER_MS: u64 = 86_400_000;

impl RetryDecision {
    /// A retry waits `retry_after_ms` (the failed service's `Retry-After`, at most
    /// [`MAX_RETRY_AFTER_MS`]) instead of the policy's backoff; a quarantine stays one, as the
    /// attempts (or the policy) are what decide whether to retry at all.
    pub fn with_retry_after(self, retry_after_ms: Option<u64>) -> Self {
        match (self, retry_after_ms) {
            (RetryDecision::RetryAfterMs(_), Some(ms)) => {
                // ≤ one day, so it fits an i64.
                RetryDecision::RetryAfterMs(ms.min(MAX_RETRY_AFTER_MS) as i64)
            }
            (decision, _) => decision,
        }
    }
}

impl RetryPolicy {
    /// Local files: 3 attempts, 30 s base, 300 s cap.
    pub fn local_files() -> Self {
        Self {
            preset: RetryPreset::LocalFiles,
            strategy: RetryStrategy::Exponential,
            max_attempts: 3,
            transient_max_attempts: None,
            base_delay_seconds: 30.0,
            max_delay_seconds: 300.0,
            backoff_multiplier: 2.0,
            jitter: 0.1,
            rate_limit_delay_seconds: 60.0,
        }
    }

    /// Mail: 5 attempts (transient 7), 120 s base, 1800 s cap, rate-limited 600 s.
    pub fn mail() -> Self {
        Self {
            preset: RetryPreset::Mail,
            max_attempts: 5,
            transient_max_attempts: Some(7),
            base_delay_seconds: 120.0,
            max_delay_seconds: 1800.0,
            rate_limit_delay_seconds: 600.0,
            ..Self::local_files()
        }
    }

    /// Repositories: 5 attempts, 300 s base, 3600 s cap, rate-limited 900 s.
    pub fn repositories() -> Self {
        Self {
            preset: RetryPreset::Repositories,
            max_attempts: 5,
            transient_max_attempts: None,
            base_delay_seconds: 300.0,
            max_delay_seconds: 3600.0,
            rate_limit_delay_seconds: 900.0,
            ..Self::local_files()
        }
    }

    /// The delay before retry number `n` (0-based), before jitter and floor, in seconds.
    pub fn raw_delay_seconds(&self, failure: FailureType, n: u32) -> f64 {
        let base = if failure == FailureType::RateLimited {
            self.rate_limit_delay_seconds
        } else {
            self.base_delay_seconds
        };
        // Float arithmetic never traps; NaN and infinities from absurd settings are folded
        // into the cap below, so the result is always a finite number of seconds ≥ 0.
        let d = match self.strategy {
            RetryStrategy::Exponential => base * self.backoff_multiplier.powi(n.min(1024) as i32),
            RetryStrategy::Linear => base * (f64::from(n) + 1.0),
            RetryStrategy::Fixed => base,
            RetryStrategy::Immediate | RetryStrategy::None => 0.0,
        };
        let cap = if self.max_delay_seconds.is_finite() {
            self.max_delay_seconds.clamp(0.0, MAX_DELAY_SECONDS)
        } else {
            MAX_DELAY_SECONDS
        };
        if d.is_nan() {
            cap
        } else {
            d.clamp(0.0, cap)
        }
    }

    /// Decides what follows failed attempt number `attempt` (1-based) of a job allowed
    /// `max_attempts`. `jitter_sample` is a uniform random number in [-1, 1]; the delay is
    /// capped, jittered by ±`jitter`·delay, then floored at 1 s (immediate stays 0).
    pub fn decide(
        &self,
        failure: FailureType,
        attempt: u32,
        max_attempts: u32,
        jitter_sample: f64,
    ) -> RetryDecision {
        if failure == FailureType::Permanent || self.strategy == RetryStrategy::None {
            return RetryDecision::Quarantine;
        }
        let allowed = match (failure, self.transient_max_attempts) {
            (FailureType::Transient, Some(t)) => t.max(max_attempts),
            _ => max_attempts,
        };
        if attempt >= allowed {
            return RetryDecision::Quarantine;
        }
        if self.strategy == RetryStrategy::Immediate {
            return RetryDecision::RetryAfterMs(0);
        }
        let d = self.raw_delay_seconds(failure, attempt.saturating_sub(1));
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = if jitter_sample.is_finite() {
            jitter_sample.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        // d ≤ 30 days and |j| ≤ d, so the milliseconds fit an i64 with room to spare.
        let secs = (d + sample * jitter * d).max(1.0);
        RetryDecision::RetryAfterMs((secs * 1000.0).round() as i64)
    }

    /// Checks the policy's numbers; returns (field, message) pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            out.push((
                "max_attempts".into(),
                format!("{} is out of range 1..{MAX_ATTEMPTS}", self.max_attempts),
            ));
        }
        if let Some(t) = self.transient_max_attempts {
            if !(1..=MAX_ATTEMPTS).contains(&t) {
                out.push((
                    "transient_max_attempts".into(),
                    format!("{t} is out of range 1..{MAX_ATTEMPTS}"),
                ));
            }
        }
        for (name, v) in [
            ("base_delay_seconds", self.base_delay_seconds),
            ("max_delay_seconds", self.max_delay_seconds),
            ("rate_limit_delay_seconds", self.rate_limit_delay_seconds),
        ] {
            if !(v.is_finite() && (0.0..=MAX_DELAY_SECONDS).contains(&v)) {
                out.push((
                    name.into(),
                    format!("{v} is out of range 0..{MAX_DELAY_SECONDS} seconds (30 days)"),
                ));
            }
        }
        if !(self.backoff_multiplier.is_finite()
            && (1.0..=MAX_MULTIPLIER).contains(&self.backoff_multiplier))
        {
            out.push((
                "backoff_multiplier".into(),
                format!(
                    "{} is out of range 1..{MAX_MULTIPLIER}",
                    self.backoff_multiplier
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            out.push((
                "jitter".into(),
                format!("{} must be within 0..1", self.jitter),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::MAX),
            0.0..1e6f64
        ]
    }

    proptest! {
        /// Absurd settings and attempt numbers give a delay, never a panic or an overflow.
        #[test]
        fn decide_never_panics(
            base in any_f64(), cap in any_f64(), mult in any_f64(), jitter in any_f64(),
            sample in any_f64(), attempt in any::<u32>(), max in any::<u32>(),
            strategy in prop_oneof![
                Just(RetryStrategy::Exponential), Just(RetryStrategy::Linear),
                Just(RetryStrategy::Fixed), Just(RetryStrategy::Immediate)
            ],
        ) {
            let p = RetryPolicy {
                strategy,
                base_delay_seconds: base,
                max_delay_seconds: cap,
                backoff_multiplier: mult,
                jitter,
                rate_limit_delay_seconds: base,
                ..RetryPolicy::local_files()
            };
            for f in [FailureType::Transient, FailureType::RateLimited] {
                prop_assert!(p.raw_delay_seconds(f, attempt).is_finite());
                if let RetryDecision::RetryAfterMs(ms) = p.decide(f, attempt, max, sample) {
                    prop_assert!((0..=(MAX_DELAY_SECONDS as i64 + 1) * 2000).contains(&ms));
                }
            }
        }
    }

    #[test]
    fn huge_settings_are_capped_at_thirty_days() {
        let p = RetryPolicy {
            base_delay_seconds: f64::MAX,
            max_delay_seconds: f64::INFINITY,
            backoff_multiplier: 1e300,
            ..RetryPolicy::local_files()
        };
        assert_eq!(
            p.raw_delay_seconds(FailureType::Transient, u32::MAX),
            MAX_DELAY_SECONDS
        );
        let mut lin = p.clone();
        lin.strategy = RetryStrategy::Linear;
        assert_eq!(
            lin.raw_delay_seconds(FailureType::Transient, u32::MAX),
            MAX_DELAY_SECONDS
        );
        let problems = p.problems();
        assert!(
            problems
                .iter()
                .any(|(f, m)| f == "backoff_multiplier" && m.contains("out of range 1..100")),
            "{problems:?}"
        );
    }

    #[test]
    fn exponential_linear_fixed_formulas() {
        let mut p = RetryPolicy::local_files();
        p.jitter = 0.0;
        assert_eq!(p.raw_delay_seconds(FailureType::Transient, 0), 30.0);
        assert_eq!(p.raw_delay_seconds(FailureType::Transient, 1), 60.0);
        assert_eq!(p.raw_delay_seconds(FailureType::Transient, 2), 120.0);
        assert_eq!(
            p.raw_delay_seconds(FailureType::Transient, 5),
            300.0,
            "capped"
        );
        p.strategy = RetryStrategy::Linear;
        assert_eq!(p.raw_delay_seconds(FailureType::Transient, 2), 90.0);
        p.strategy = RetryStrategy::Fixed;
        assert_eq!(p.raw_delay_seconds(FailureType::Transient, 4), 30.0);
        assert_eq!(p.raw_delay_seconds(FailureType::RateLimited, 4), 60.0);
    }

    #[test]
    fn a_retry_after_replaces_the_backoff_while_attempts_remain() {
        let p = RetryPolicy::local_files();
        let retry = p.decide(FailureType::RateLimited, 1, 3, 0.0);
        assert_eq!(retry, RetryDecision::RetryAfterMs(60_000));
        assert_eq!(retry.with_retry_after(None), retry);
        assert_eq!(
            retry.with_retry_after(Some(5_000)),
            RetryDecision::RetryAfterMs(5_000)
        );
        assert_eq!(
            retry.with_retry_after(Some(u64::MAX)),
            RetryDecision::RetryAfterMs(MAX_RETRY_AFTER_MS as i64),
            "capped at a day"
        );
        let last = p.decide(FailureType::RateLimited, 3, 3, 0.0);
        assert_eq!(
            last.with_retry_after(Some(5_000)),
            RetryDecision::Quarantine,
            "no attempts left"
        );
    }

    #[test]
    fn decide_applies_attempts_jitter_and_floor() {
        let p = RetryPolicy::local_files();
        assert_eq!(
            p.decide(FailureType::Transient, 1, 3, 0.0),
            RetryDecision::RetryAfterMs(30_000)
        );
        assert_eq!(
            p.decide(FailureType::Transient, 1, 3, 1.0),
            RetryDecision::RetryAfterMs(33_000)
        );
        assert_eq!(
            p.decide(FailureType::Transient, 1, 3, -1.0),
            RetryDecision::RetryAfterMs(27_000)
        );
        assert_eq!(
            p.decide(FailureType::Transient, 3, 3, 0.0),
            RetryDecision::Quarantine
        );
        assert_eq!(
            p.decide(FailureType::Permanent, 1, 3, 0.0),
            RetryDecision::Quarantine
        );
        let mut tiny = p.clone();
        tiny.base_delay_seconds = 0.1;
        assert_eq!(
            tiny.decide(FailureType::Unknown, 1, 3, 0.0),
            RetryDecision::RetryAfterMs(1_000),
            "floor 1 s"
        );
        tiny.strategy = RetryStrategy::Immediate;
        assert_eq!(
            tiny.decide(FailureType::Unknown, 1, 3, 0.0),
            RetryDecision::RetryAfterMs(0)
        );
        tiny.strategy = RetryStrategy::None;
        assert_eq!(
            tiny.decide(FailureType::Unknown, 1, 3, 0.0),
            RetryDecision::Quarantine
        );
    }

    #[test]
    fn mail_gives_transient_failures_more_attempts_and_rate_limits_a_longer_base() {
        let p = RetryPolicy::mail();
        assert!(matches!(
            p.decide(FailureType::Transient, 6, 5, 0.0),
            RetryDecision::RetryAfterMs(_)
        ));
        assert_eq!(
            p.decide(FailureType::Transient, 7, 5, 0.0),
            RetryDecision::Quarantine
        );
        assert_eq!(
            p.decide(FailureType::Unknown, 5, 5, 0.0),
            RetryDecision::Quarantine
        );
        assert_eq!(
            p.decide(FailureType::RateLimited, 1, 5, 0.0),
            RetryDecision::RetryAfterMs(600_000)
        );
        assert_eq!(
            RetryPolicy::repositories().decide(FailureType::RateLimited, 1, 5, 0.0),
            RetryDecision::RetryAfterMs(900_000)
        );
    }
}
