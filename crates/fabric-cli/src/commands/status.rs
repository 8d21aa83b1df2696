//! `fabric status`: is the daemon running, and what the queue and workers are doing.

use std::process::ExitCode;

use serde::Serialize;

use crate::context::Ctx;
use crate::output::{pairs, print};

#[derive(Serialize)]
struct Status {
    running: bool,
    pid: Option<u32>,
    uptime_seconds: Option<u64>,
    version: &'static str,
    backend: String,
    home: String,
    queue: fabric_store::StateCounts,
    workers: fabric_engine::console::Workers,
    /// Jobs that succeeded in the last hour.
    throughput_last_hour: u64,
    /// Conservative mode: only high-priority work is dispatched.
    conservative: bool,
    /// Shards an operator paused.
    paused_shards: Vec<String>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let console = ctx.console().await?;
    let pid = ctx.home.running_pid();
    let uptime_seconds = pid.and_then(|_| {
        let m = std::fs::metadata(ctx.home.pid_file())
            .ok()?
            .modified()
            .ok()?;
        m.elapsed().ok().map(|d| d.as_secs())
    });
    let queue = console.counts().await?;
    let hour_ago = console.now() - 3_600_000;
    let throughput_last_hour = console.store().succeeded_since(hour_ago).await?;
    let workers = console.workers(pid.is_some()).await?;
    let s = Status {
        running: pid.is_some(),
        pid,
        uptime_seconds,
        version: env!("CARGO_PKG_VERSION"),
        backend: console.store().backend().to_string(),
        home: ctx.home.root().display().to_string(),
        workers,
        queue,
        throughput_last_hour,
        conservative: console.conservative().await?,
        paused_shards: console
            .shards()
            .await?
            .into_iter()
            .filter(|s| s.paused)
            .map(|s| s.name)
            .collect(),
    };
    print(ctx.global.format, &s, || {
        let q = &s.queue;
        pairs(&[
            (
                "daemon",
                match s.pid {
                    Some(pid) => {
                        format!("running (pid {pid}, up {}s)", s.uptime_seconds.unwrap_or(0))
                    }
                    None => "stopped".into(),
                },
            ),
            ("version", s.version.to_string()),
            ("backend", s.backend.clone()),
            ("home", s.home.clone()),
            (
                "queue",
                format!(
                    "pending {}, running {}, succeeded {}, failed {}, quarantined {}, cancelled {}",
                    q.pending, q.running, q.succeeded, q.failed, q.quarantined, q.cancelled
                ),
            ),
            (
                "workers",
                format!(
                    "{} of {} busy ({:.0}%), {} jobs claimed",
                    s.workers.active,
                    s.workers.max,
                    s.workers.utilization * 100.0,
                    s.workers.claimed
                ),
            ),
            (
                "last hour",
                format!("{} jobs succeeded", s.throughput_last_hour),
            ),
            (
                "conservative",
                if s.conservative { "ON" } else { "off" }.to_string(),
            ),
            (
                "paused shards",
                if s.paused_shards.is_empty() {
                    "none".into()
                } else {
                    s.paused_shards.join(", ")
                },
            ),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}
