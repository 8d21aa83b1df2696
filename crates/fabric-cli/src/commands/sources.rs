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
    let home = std::env::var("HOME").ok();
    r.def.path = fabric_core::quarantine::redact_paths(&r.def.path, home.as_deref(), &[]);
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
                    "the scan of {name} is queued as job {}, but no daemon runs to execute it:                      start one with `fabric start`",
                    scan.id
                );
            }
            return wait_for(ctx, &console, &name, scan.id).await;
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

/// Waits for a triggered scan and the ingest jobs it enqueued; shows progress once a second
/// (not with `--format json`), then a summary. Exit 1 when the scan failed or any file was
/// quarantined or is still failing.
async fn wait_for(
    ctx: &Ctx,
    console: &fabric_engine::Console,
    name: &str,
    scan_id: i64,
) -> anyhow::Result<ExitCode> {
    use fabric_core::JobState;
    let t0 = std::time::Instant::now();
    let mut shown = t0;
    let quiet = ctx.global.format != crate::cli::Format::Table;
    let (scan, counts) = loop {
        let scan = console.job(scan_id).await?.job;
        let counts = console.store().counts_of(name, "ingest", scan_id).await?;
        let open = counts.pending + counts.running;
        // A scan that failed (a root gone away) is reported, not waited through its retries.
        let scan_done = !matches!(scan.state, JobState::Pending | JobState::Running);
        if scan_done && open == 0 {
            break (scan, counts);
        }
        if !quiet && shown.elapsed() >= std::time::Duration::from_secs(1) {
            shown = std::time::Instant::now();
            eprintln!(
                "{name}: scan {}; {} of {} files ingested, {open} to go ({:.0}s)",
                scan.state,
                counts.total() - open,
                counts.total(),
                t0.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let (ingested, quarantined, failed) = (counts.succeeded, counts.quarantined, counts.failed);
    let result = scan.result.clone().unwrap_or(serde_json::Value::Null);
    let summary = json!({
        "source": name,
        "scan_job": scan_id,
        "scan_state": scan.state,
        "scan": result,
        "ingested": ingested,
        "quarantined": quarantined,
        "failed": failed,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    print(ctx.global.format, &summary, || {
        format!(
            "{name}: scan {} ({} changed, {} vanished); {ingested} files ingested, \
             {quarantined} quarantined, {failed} failing, in {:.1}s",
            scan.state,
            result["changed"],
            result["vanished"],
            t0.elapsed().as_secs_f64()
        )
    })?;
    if scan.state != JobState::Succeeded {
        eprintln!(
            "the scan did not succeed: see `fabric jobs show {scan_id}`{}",
            scan.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    if quarantined + failed > 0 {
        eprintln!(
            "{} of the files of {name} were not ingested: see `fabric quarantine list` and \
             `fabric jobs list --source {name} --status failed`",
            quarantined + failed
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
