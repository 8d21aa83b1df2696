//! `fabric quarantine list|show|retry|purge|stats`.

use std::process::ExitCode;

use fabric_core::quarantine::QuarantineReason;
use fabric_store::QuarantineFilter;
use serde_json::json;

use crate::cli::QuarantineCmd;
use crate::context::{parse_id, parse_since, Ctx};
use crate::output::{pairs, print, short, table, time};

pub async fn run(ctx: &Ctx, cmd: QuarantineCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    match cmd {
        QuarantineCmd::List {
            reason,
            since,
            limit,
        } => {
            let reason = reason.as_deref().map(QuarantineReason::parse).transpose()?;
            let since = parse_since(since.as_deref())?;
            let console = ctx.console().await?;
            let list = console
                .quarantine(QuarantineFilter {
                    reason,
                    since,
                    limit,
                })
                .await?;
            print(f, &list, || {
                table(
                    &[
                        "id",
                        "kind",
                        "reason",
                        "attempts",
                        "retries",
                        "quarantined",
                        "error",
                    ],
                    list.iter()
                        .map(|q| {
                            vec![
                                q.id.to_string(),
                                q.kind.clone(),
                                q.reason.to_string(),
                                q.attempts.to_string(),
                                q.retries.to_string(),
                                time(Some(q.quarantined_at)),
                                short(&q.error, 50),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        QuarantineCmd::Show { id } => {
            let console = ctx.console().await?;
            let q = console.quarantine_entry(parse_id(&id)?).await?;
            print(f, &q, || {
                pairs(&[
                    ("id", q.id.to_string()),
                    ("kind", q.kind.clone()),
                    ("state", q.state.to_string()),
                    ("reason", q.reason.to_string()),
                    ("failure", q.failure.clone()),
                    ("error", q.error.clone()),
                    ("attempts", q.attempts.to_string()),
                    ("retries", q.retries.to_string()),
                    ("quarantined", time(Some(q.quarantined_at))),
                    ("payload", q.payload.to_string()),
                    (
                        "notes",
                        q.notes
                            .iter()
                            .map(|n| format!("{} {}", time(Some(n.at)), n.note))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                ])
            })?;
        }
        QuarantineCmd::Retry { id, note } => {
            let job = ctx
                .console()
                .await?
                .quarantine_retry(parse_id(&id)?, note.as_deref())
                .await?;
            ctx.nudge_daemon();
            print(f, &job, || format!("job {} is pending again", job.id))?;
        }
        QuarantineCmd::Purge {
            older_than_days,
            reason,
            dry_run,
        } => {
            let reason = reason.as_deref().map(QuarantineReason::parse).transpose()?;
            let ids = ctx
                .console()
                .await?
                .quarantine_purge(older_than_days, reason, dry_run)
                .await?;
            print(
                f,
                &json!({"ids": ids, "count": ids.len(), "dry_run": dry_run}),
                || {
                    if dry_run {
                        format!("would purge {} jobs: {:?}", ids.len(), ids)
                    } else {
                        format!("purged {} jobs", ids.len())
                    }
                },
            )?;
        }
        QuarantineCmd::Stats => {
            let s = ctx.console().await?.quarantine_stats().await?;
            print(f, &s, || {
                let mut rows: Vec<(&str, String)> = vec![("total", s.total.to_string())];
                for (r, n) in &s.by_reason {
                    rows.push((r.as_str(), n.to_string()));
                }
                rows.push(("retries", s.retries.to_string()));
                rows.push(("oldest", time(s.oldest_at)));
                rows.push(("newest", time(s.newest_at)));
                pairs(&rows)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
