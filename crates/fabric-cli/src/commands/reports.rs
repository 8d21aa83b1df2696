//! `fabric reports tail [-f] [--since D] [--limit N]`: the field reports of the home's
//! daemons (job outcomes, risk events), read from their day files; damage at a file's end is
//! reported, never fatal.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use fabric_engine::reports::{self, FieldReport, TornTail};
use serde_json::json;

use crate::cli::{Format, ReportsCmd};
use crate::context::{parse_since, Ctx, Usage};
use crate::output::{print, table, time};

/// How often `-f` looks for new reports.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

fn row(r: &FieldReport) -> Vec<String> {
    vec![
        time(Some(r.at)),
        r.node.clone(),
        r.event.clone(),
        r.job_id.map(|j| j.to_string()).unwrap_or_default(),
        r.attempt.map(|a| a.to_string()).unwrap_or_default(),
        if r.detail.is_null() {
            String::new()
        } else {
            r.detail.to_string()
        },
    ]
}

const HEADERS: [&str; 6] = ["at", "node", "event", "job", "attempt", "detail"];

fn warn(torn: &[TornTail]) {
    for t in torn {
        eprintln!(
            "warning: reports/{}: {} at byte {} ({} bytes not read; the records before it are \
             shown)",
            t.file, t.problem, t.offset, t.bytes
        );
    }
}

/// A report's identity, to print each one once while following.
fn key(r: &FieldReport) -> (i64, String, String, Option<i64>, Option<u32>) {
    (r.at, r.node.clone(), r.event.clone(), r.job_id, r.attempt)
}

pub async fn run(ctx: &Ctx, cmd: ReportsCmd) -> anyhow::Result<ExitCode> {
    let ReportsCmd::Tail {
        follow,
        since,
        limit,
    } = cmd;
    if !(1..=100_000).contains(&limit) {
        return Err(Usage(format!("--limit {limit} is out of range 1..100000")).into());
    }
    let since = parse_since(since.as_deref())?.unwrap_or(0);
    let dir = reports::dir_of(ctx.home.root());
    let loaded = reports::read(&dir, since)?;
    let skip = loaded.records.len().saturating_sub(limit);
    let shown: Vec<FieldReport> = loaded.records[skip..].to_vec();
    let format = ctx.global.format;
    if follow {
        // One JSON object a line with --format json (a stream), table rows otherwise.
        warn(&loaded.torn);
        let mut seen: HashSet<_> = loaded.records.iter().map(key).collect();
        let mut last = shown.last().map_or(since, |r| r.at);
        emit(format, &shown)?;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
            let fresh = reports::read(&dir, last)?;
            let new: Vec<FieldReport> = fresh
                .records
                .into_iter()
                .filter(|r| seen.insert(key(r)))
                .collect();
            if let Some(r) = new.last() {
                last = last.max(r.at);
            }
            emit(format, &new)?;
        }
    }
    if format == Format::Table {
        warn(&loaded.torn);
    }
    print(
        format,
        &json!({"records": shown, "torn": loaded.torn}),
        || {
            if shown.is_empty() {
                "no field reports".to_string()
            } else {
                table(&HEADERS, shown.iter().map(row).collect())
            }
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn emit(format: Format, records: &[FieldReport]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for r in records {
        if format == Format::Table {
            writeln!(out, "{}", row(r).join("  "))?;
        } else {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
    }
    out.flush()?;
    Ok(())
}
