//! `fabric sources add|list|show|pause|resume|remove`: the ingestion sources.

use std::process::ExitCode;

use fabric_core::source::{SourceDef, SourceType};
use fabric_core::Priority;
use fabric_store::SourceRecord;
use serde_json::json;

use crate::cli::SourcesCmd;
use crate::context::Ctx;
use crate::output::{pairs, print, table, time};

/// A source as the CLI shows it: its path with the user's home redacted (`~`).
fn view(mut r: SourceRecord) -> SourceRecord {
    r.def.path = fabric_engine::sources::redact_user_paths(&r.def.path, &[]);
    r
}

fn row(r: &SourceRecord) -> Vec<String> {
    vec![
        r.def.name.clone(),
        r.def.source_type.as_str().into(),
        r.def.path.clone(),
        r.state.clone(),
        r.def.schedule.clone().unwrap_or_else(|| "-".into()),
        time(r.last_scan_at),
        r.last_outcome.clone().unwrap_or_else(|| "-".into()),
        time(r.next_run_at),
        r.files.to_string(),
        r.documents.to_string(),
        r.quarantined.to_string(),
    ]
}

const HEADER: [&str; 11] = [
    "name",
    "type",
    "path",
    "state",
    "schedule",
    "last scan",
    "outcome",
    "next run",
    "files",
    "documents",
    "quarantined",
];

fn detail(r: &SourceRecord) -> String {
    let cells = row(r);
    let mut items: Vec<(&str, String)> = HEADER.iter().copied().zip(cells).collect();
    items.push(("include", r.def.include.join(", ")));
    items.push(("exclude", r.def.exclude.join(", ")));
    items.push(("priority", r.def.priority.label()));
    items.push((
        "retry policy",
        r.def.retry_policy.clone().unwrap_or_else(|| "-".into()),
    ));
    if let Some(reason) = &r.pause_reason {
        items.push(("paused", format!("{} ({reason})", time(r.paused_at))));
    }
    pairs(&items)
}

pub async fn run(ctx: &Ctx, cmd: SourcesCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    let console = ctx.console().await?;
    match cmd {
        SourcesCmd::Add {
            name,
            source_type,
            path,
            include,
            exclude,
            schedule,
            priority,
            retry_policy,
        } => {
            let path = std::path::absolute(&path)?;
            let def = SourceDef {
                name,
                source_type: SourceType::parse(&source_type)?,
                path: path.display().to_string(),
                include,
                exclude,
                schedule,
                priority: Priority::parse(&priority)?,
                retry_policy,
            };
            let v = view(console.add_source(def).await?);
            print(f, &v, || {
                format!("source {} added\n{}", v.def.name, detail(&v))
            })?;
        }
        SourcesCmd::List { limit } => {
            let list: Vec<SourceRecord> = console
                .sources()
                .await?
                .into_iter()
                .take(limit)
                .map(view)
                .collect();
            print(f, &list, || {
                if list.is_empty() {
                    "no sources (add one with `fabric sources add`)".into()
                } else {
                    table(&HEADER, list.iter().map(row).collect())
                }
            })?;
        }
        SourcesCmd::Show { name } => {
            let v = view(console.source(&name).await?);
            print(f, &v, || detail(&v))?;
        }
        SourcesCmd::Pause { name, reason } => {
            let v = view(console.pause_source(&name, &reason).await?);
            print(f, &v, || format!("source {name} paused: {reason}"))?;
        }
        SourcesCmd::Resume { name } => {
            let v = view(console.resume_source(&name).await?);
            print(f, &v, || format!("source {name} resumed"))?;
        }
        SourcesCmd::Trigger {
            name,
            wait,
            full,
            priority,
        } => {
            let priority = priority.as_deref().map(Priority::parse).transpose()?;
            let scan = console.trigger_source(&name, full, priority).await?;
            ctx.nudge_daemon();
            if !wait {
                print(f, &json!({"source": name, "scan_job": scan.id}), || {
                    format!("scan of {name} queued as job {}", scan.id)
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            if console.store().backend() == "sqlite" && ctx.home.daemons().is_empty() {
                anyhow::bail!(
                    "the scan of {name} is queued as job {}, but no daemon runs to execute it: \
                     start one with `fabric start`",
                    scan.id
                );
            }
            return super::trigger_wait::wait_for(ctx, &console, &name, scan.id).await;
        }
        SourcesCmd::Remove { name, purge_docs } => {
            let purged = console.remove_source(&name, purge_docs).await?;
            print(
                f,
                &json!({"removed": name, "documents_deleted": purged}),
                || match purged {
                    Some(n) => format!("source {name} removed with its {n} documents"),
                    None => format!("source {name} removed (its documents stay searchable)"),
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
