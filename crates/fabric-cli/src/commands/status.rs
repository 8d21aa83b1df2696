//! `fabric status`: are the daemons of this home running, and what the queue and workers
//! are doing.

use std::process::ExitCode;

use serde::Serialize;

use crate::context::Ctx;
use crate::output::{pairs, print};

#[derive(Serialize)]
struct Status {
    /// The daemon of the configured node runs (or, when it does not, the home's only one).
    running: bool,
    pid: Option<u32>,
    uptime_seconds: Option<u64>,
    /// The node id of that daemon.
    node: Option<String>,
    /// Every daemon of this home, by node id.
    daemons: Vec<DaemonStatus>,
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

/// One daemon of the home.
#[derive(Serialize)]
struct DaemonStatus {
    node: String,
    /// 0 for the instant between taking its lock and writing its pid.
    pid: u32,
    /// False while it is starting up.
    ready: bool,
    uptime_seconds: Option<u64>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let console = ctx.console().await?;
    let daemons: Vec<DaemonStatus> = ctx
        .home
        .daemons()
        .into_iter()
        .map(|d| DaemonStatus {
            uptime_seconds: d
                .since
                .filter(|_| d.ready)
                .and_then(|t| t.elapsed().ok())
                .map(|e| e.as_secs()),
            node: d.node,
            pid: d.pid,
            ready: d.ready,
        })
        .collect();
    let own = daemons
        .iter()
        .find(|d| d.node == ctx.config.node.id)
        .or(match daemons.as_slice() {
            [only] => Some(only),
            _ => None,
        });
    let pid = own.map(|d| d.pid);
    let uptime_seconds = own.and_then(|d| d.uptime_seconds);
    let node = own.map(|d| d.node.clone());
    let queue = console.counts().await?;
    let hour_ago = console.now() - 3_600_000;
    let throughput_last_hour = console.store().succeeded_since(hour_ago).await?;
    let workers = console.workers(pid.is_some()).await?;
    let s = Status {
        running: pid.is_some(),
        pid,
        uptime_seconds,
        node,
        version: env!("CARGO_PKG_VERSION"),
        backend: console.store().backend().to_string(),
        home: ctx.home.root().display().to_string(),
        workers,
        queue,
        throughput_last_hour,
        daemons,
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
                    Some(pid) => format!(
                        "running (pid {pid}, node {}, up {}s)",
                        s.node.as_deref().unwrap_or("?"),
                        s.uptime_seconds.unwrap_or(0)
                    ),
                    None => "stopped".into(),
                },
            ),
            (
                "daemons",
                if s.daemons.is_empty() {
                    "none".into()
                } else {
                    s.daemons
                        .iter()
                        .map(|d| format!("{} (pid {})", d.node, d.pid))
                        .collect::<Vec<_>>()
                        .join(", ")
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
