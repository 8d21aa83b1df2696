//! `fabric telemetry summary|throughput|failures|by-source|clean`.

use std::process::ExitCode;

use fabric_engine::telemetry::Throughput;
use serde_json::json;

use crate::cli::{TelemetryCmd, TelemetryWindow};
use crate::context::{parse_since, Ctx};
use crate::output::{pairs, print, table, time};

fn window(w: &TelemetryWindow) -> anyhow::Result<i64> {
    Ok(parse_since(Some(&w.since))?.unwrap_or(0))
}

fn rate_pairs(t: &Throughput) -> Vec<(&'static str, String)> {
    vec![
        ("files processed", t.files_processed.to_string()),
        ("bytes processed", t.bytes_processed.to_string()),
        ("duration", format!("{:.1}s", t.duration_seconds)),
        ("files/s", format!("{:.1}", t.throughput_files_per_second)),
        ("MiB/s", format!("{:.2}", t.throughput_mbps)),
    ]
}

pub async fn run(ctx: &Ctx, cmd: TelemetryCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    let console = ctx.console().await?;
    match cmd {
        TelemetryCmd::Throughput(w) => {
            let totals = console.telemetry(window(&w)?, w.source.as_deref()).await?;
            let t = Throughput::of(&totals);
            print(f, &t, || pairs(&rate_pairs(&t)))?;
        }
        TelemetryCmd::Summary(w) => {
            let since = window(&w)?;
            let totals = console.telemetry(since, w.source.as_deref()).await?;
            let count = |o: &str| -> u64 {
                totals
                    .iter()
                    .filter(|t| t.outcome == o)
                    .map(|t| t.samples)
                    .sum()
            };
            let t = Throughput::of(&totals);
            let mut sources: Vec<&str> = totals.iter().map(|t| t.source.as_str()).collect();
            sources.dedup();
            let summary = json!({
                "since": since,
                "sources": sources.len(),
                "jobs": {"ok": count("ok"), "failed": count("failed"),
                         "quarantined": count("quarantined")},
                "throughput": t,
            });
            print(f, &summary, || {
                let mut items = vec![
                    ("since", time(Some(since))),
                    ("sources", sources.len().to_string()),
                    (
                        "ingest jobs",
                        format!(
                            "ok {}, failed {}, quarantined {}",
                            count("ok"),
                            count("failed"),
                            count("quarantined")
                        ),
                    ),
                ];
                items.extend(rate_pairs(&t));
                pairs(&items)
            })?;
        }
        TelemetryCmd::Failures(w) => {
            let failures: Vec<_> = console
                .telemetry(window(&w)?, w.source.as_deref())
                .await?
                .into_iter()
                .filter(|t| t.outcome != "ok")
                .collect();
            print(f, &failures, || {
                table(
                    &["source", "outcome", "reason", "jobs", "files", "last"],
                    failures
                        .iter()
                        .map(|t| {
                            vec![
                                t.source.clone(),
                                t.outcome.clone(),
                                t.reason.clone().unwrap_or_else(|| "-".into()),
                                t.samples.to_string(),
                                t.files.to_string(),
                                time(Some(t.last_at)),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        TelemetryCmd::BySource(w) => {
            let rows = console
                .telemetry_by_source(window(&w)?, w.source.as_deref())
                .await?;
            print(f, &rows, || {
                table(
                    &[
                        "source",
                        "ok",
                        "failed",
                        "quarantined",
                        "files",
                        "MiB",
                        "MiB/s",
                    ],
                    rows.iter()
                        .map(|r| {
                            vec![
                                r.source.clone(),
                                r.ok.to_string(),
                                r.failed.to_string(),
                                r.quarantined.to_string(),
                                r.throughput.files_processed.to_string(),
                                format!("{:.1}", r.throughput.bytes_processed as f64 / 1048576.0),
                                format!("{:.2}", r.throughput.throughput_mbps),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        TelemetryCmd::Clean {
            older_than_days,
            dry_run,
        } => {
            let n = console.telemetry_clean(older_than_days, dry_run).await?;
            let key = if dry_run { "would_delete" } else { "deleted" };
            print(f, &json!({ key: n }), || {
                if dry_run {
                    format!("{n} samples older than {older_than_days} days would be deleted")
                } else {
                    format!("{n} samples older than {older_than_days} days deleted")
                }
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
