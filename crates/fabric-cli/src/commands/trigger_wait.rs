//! `fabric sources trigger --wait`: follows a triggered scan and the ingest jobs it enqueued
//! to the end, with live progress (files, MB, MB/s, quarantined) on a terminal, one line a
//! second otherwise, nothing but the final summary with `--format json`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fabric_core::{Clock, JobState, RealClock};
use fabric_store::TelemetryTotal;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::cli::Format;
use crate::context::Ctx;
use crate::output::print;

/// How often the store is polled.
const POLL: Duration = Duration::from_millis(200);

/// Files and bytes the ingest jobs of one trigger got through, from their telemetry.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// Files stored (new, changed or unchanged documents).
    ingested: u64,
    /// Files of no format Fabric reads (binary), left out.
    skipped: u64,
    bytes: u64,
}

impl Progress {
    fn of(totals: &[TelemetryTotal]) -> Self {
        let mut p = Progress::default();
        for t in totals {
            match t.outcome.as_str() {
                "ok" => {
                    p.ingested += t.files;
                    p.bytes += t.bytes;
                }
                "skipped" => p.skipped += t.files,
                _ => {}
            }
        }
        p
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// How progress is shown.
enum Display {
    Bar(ProgressBar),
    Lines(Instant),
    Quiet,
}

impl Display {
    fn new(format: Format) -> Self {
        if format != Format::Table {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            Display::Bar(bar)
        } else {
            Display::Lines(Instant::now())
        }
    }

    fn show(&mut self, name: &str, line: String) {
        match self {
            Display::Bar(bar) => {
                bar.set_prefix(name.to_string());
                bar.set_message(line);
            }
            Display::Lines(last) if last.elapsed() >= Duration::from_secs(1) => {
                *last = Instant::now();
                eprintln!("{name}: {line}");
            }
            _ => {}
        }
    }

    fn finish(self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Waits for scan job `scan_id` of source `name` and the ingest jobs it enqueued. Exit 1
/// when the scan failed or any file was quarantined or is still failing.
pub async fn wait_for(
    ctx: &Ctx,
    console: &fabric_engine::Console,
    name: &str,
    scan_id: i64,
) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    // Telemetry of this trigger's jobs: the samples of the source recorded from now on
    // (their jobs start after the scan; nodes' clocks are taken to agree within the time a
    // scan takes to be claimed).
    let since = RealClock.now_ms();
    let store = console.store();
    let mut display = Display::new(ctx.global.format);
    let (scan, counts, progress) = loop {
        let scan = console.job(scan_id).await?.job;
        let counts = store.counts_of(name, "ingest", scan_id).await?;
        let progress = Progress::of(&store.telemetry(since, Some(name)).await?);
        let open = counts.pending + counts.running;
        // A scan that failed (a root gone away) is reported, not waited through its retries.
        let scan_done = !matches!(scan.state, JobState::Pending | JobState::Running);
        if scan_done && open == 0 {
            break (scan, counts, progress);
        }
        let secs = t0.elapsed().as_secs_f64().max(0.001);
        // The scan's result says how many files it handed on, once it is done.
        let of = scan
            .result
            .as_ref()
            .and_then(|r| r["changed"].as_u64())
            .map(|changed| format!(" of {changed}"))
            .unwrap_or_default();
        display.show(
            name,
            format!(
                "scan {}; {} files{of} ingested, {:.1} MB, {:.1} MB/s, {} quarantined, \
                 {} jobs to go",
                scan.state,
                progress.ingested,
                mib(progress.bytes),
                mib(progress.bytes) / secs,
                counts.quarantined,
                open
            ),
        );
        tokio::time::sleep(POLL).await;
    };
    display.finish();
    let secs = t0.elapsed().as_secs_f64();
    let (quarantined, failed) = (counts.quarantined, counts.failed);
    let result = scan.result.clone().unwrap_or(serde_json::Value::Null);
    let summary = json!({
        "source": name,
        "scan_job": scan_id,
        "scan_state": scan.state,
        "scan": result,
        "ingested": progress.ingested,
        "skipped": progress.skipped,
        "bytes": progress.bytes,
        "quarantined": quarantined,
        "failed": failed,
        "seconds": secs,
    });
    print(ctx.global.format, &summary, || {
        // A scan that failed has no counts: say so rather than print `null`.
        let counts = match (result["changed"].as_u64(), result["vanished"].as_u64()) {
            (Some(c), Some(v)) => format!("{c} changed, {v} vanished"),
            _ => "no files read".to_string(),
        };
        format!(
            "{name}: scan {} ({counts}); {} files ingested ({:.1} MB, \
             {:.1} MB/s), {} skipped, {quarantined} quarantined, {failed} failing, in {secs:.1}s",
            scan.state,
            progress.ingested,
            mib(progress.bytes),
            mib(progress.bytes) / secs.max(0.001),
            progress.skipped,
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
