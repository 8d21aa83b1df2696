//! Ingestion telemetry as operators read it: throughput (the runbook's figures), failures, a
//! per-source view, and cleaning old samples. Samples are written by the ingest jobs.

use fabric_store::TelemetryTotal;
use serde::Serialize;

use crate::console::Result;
use crate::{Console, EngineError};

/// Throughput over a window, with the keys of the runbook (`jq '.throughput_mbps'`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    pub files_processed: u64,
    pub bytes_processed: u64,
    /// Time the ingest jobs spent, summed.
    pub duration_seconds: f64,
    pub throughput_bytes_per_second: f64,
    pub throughput_files_per_second: f64,
    /// MiB per second.
    pub throughput_mbps: f64,
}

impl Throughput {
    /// The throughput of `totals` (every outcome: time spent on a failure is spent too).
    pub fn of(totals: &[TelemetryTotal]) -> Self {
        let files: u64 = totals.iter().map(|t| t.files).sum();
        let bytes: u64 = totals.iter().map(|t| t.bytes).sum();
        let ms: u64 = totals.iter().map(|t| t.duration_ms).sum();
        let secs = ms as f64 / 1000.0;
        let rate = |x: u64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
        Self {
            files_processed: files,
            bytes_processed: bytes,
            duration_seconds: secs,
            throughput_bytes_per_second: rate(bytes),
            throughput_files_per_second: rate(files),
            throughput_mbps: rate(bytes) / (1024.0 * 1024.0),
        }
    }
}

/// One source's telemetry over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceTelemetry {
    pub source: String,
    /// Ingest jobs (samples) by outcome.
    pub ok: u64,
    pub failed: u64,
    pub quarantined: u64,
    #[serde(flatten)]
    pub throughput: Throughput,
}

impl Console {
    /// Telemetry at or after `since` (epoch ms), of one source or all, summed per source,
    /// outcome and reason.
    pub async fn telemetry(&self, since: i64, source: Option<&str>) -> Result<Vec<TelemetryTotal>> {
        Ok(self.store().telemetry(since, source).await?)
    }

    /// Per source: outcomes and throughput.
    pub async fn telemetry_by_source(
        &self,
        since: i64,
        source: Option<&str>,
    ) -> Result<Vec<SourceTelemetry>> {
        let totals = self.telemetry(since, source).await?;
        let mut names: Vec<&str> = totals.iter().map(|t| t.source.as_str()).collect();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|name| {
                let mine: Vec<TelemetryTotal> = totals
                    .iter()
                    .filter(|t| t.source == name)
                    .cloned()
                    .collect();
                let count = |o: &str| {
                    mine.iter()
                        .filter(|t| t.outcome == o)
                        .map(|t| t.samples)
                        .sum()
                };
                SourceTelemetry {
                    source: name.to_string(),
                    ok: count("ok"),
                    failed: count("failed"),
                    quarantined: count("quarantined"),
                    throughput: Throughput::of(&mine),
                }
            })
            .collect())
    }

    /// Deletes the samples older than `days` days (with `dry_run`, counts them); audited
    /// unless a dry run.
    pub async fn telemetry_clean(&self, days: u32, dry_run: bool) -> Result<u64> {
        if days == 0 {
            return Err(EngineError::invalid(
                "older-than-days",
                "must be at least 1 (0 would delete everything)",
            ));
        }
        let before = self
            .now()
            .saturating_sub(i64::from(days).saturating_mul(86_400_000));
        let n = self.store().prune_telemetry(before, dry_run).await?;
        if !dry_run {
            self.audit(
                "telemetry.clean",
                format!("{n} samples older than {days} days"),
                None,
            )
            .await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(files: u64, bytes: u64, ms: u64) -> TelemetryTotal {
        TelemetryTotal {
            source: "s".into(),
            outcome: "ok".into(),
            reason: None,
            samples: 1,
            files,
            bytes,
            duration_ms: ms,
            first_at: 0,
            last_at: 0,
        }
    }

    #[test]
    fn throughput_is_bytes_and_files_over_the_time_spent() {
        let t = Throughput::of(&[total(10, 3 << 20, 1000), total(10, 1 << 20, 1000)]);
        assert_eq!((t.files_processed, t.bytes_processed), (20, 4 << 20));
        assert_eq!(t.duration_seconds, 2.0);
        assert_eq!(t.throughput_files_per_second, 10.0);
        assert_eq!(t.throughput_mbps, 2.0);
        assert_eq!(Throughput::of(&[]).throughput_mbps, 0.0, "no time, no rate");
    }
}
