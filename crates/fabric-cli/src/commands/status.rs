//! `fabric status`: are the daemons of this home running, and what the queue and workers
//! are doing.

use std::process::ExitCode;

use serde::Serialize;

use crate::context::Ctx;
use crate::output::{pairs, print, table};

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
    /// Every ingestion source with its state and last scan.
    sources: Vec<SourceStatus>,
    /// External workers seen over the API, with their kinds and last claim.
    external_workers: Vec<ExternalWorker>,
    /// With `--verbose`: the detail of workers, shards and throughput.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    detail: Option<Detail>,
}

/// An external worker as `status` shows it.
#[derive(Serialize)]
struct ExternalWorker {
    worker: String,
    kinds: Vec<String>,
    /// Milliseconds since its last claim.
    seen_ms_ago: i64,
    /// `healthy` while it claims within `node.timeout_ms`, else `offline`.
    health: fabric_core::NodeHealth,
}

/// A source as `status` shows it.
#[derive(Serialize)]
struct SourceStatus {
    name: String,
    #[serde(rename = "type")]
    source_type: &'static str,
    state: String,
    last_scan: Option<i64>,
    last_outcome: Option<String>,
    next_run: Option<i64>,
    files: u64,
    documents: u64,
    quarantined: u64,
}

/// What `status --verbose` adds.
#[derive(Serialize)]
struct Detail {
    /// Every worker slot of this host's daemon, busy or free, then the jobs it claimed
    /// ahead that wait for a slot.
    slots: Vec<Slot>,
    /// Every shard with its queue depth (pending and failed jobs) and its owner levers.
    shards: Vec<ShardDepth>,
    /// The last hour's throughput as a rate: succeeded jobs per minute.
    throughput_per_minute: f64,
}

#[derive(Serialize)]
struct Slot {
    /// 1.. for worker slots; `null` for a job claimed ahead, waiting for a slot.
    slot: Option<u32>,
    job_id: Option<i64>,
    kind: Option<String>,
    elapsed_seconds: Option<f64>,
}

#[derive(Serialize)]
struct ShardDepth {
    name: String,
    depth: u64,
    paused: bool,
    spillover_limit: u32,
    latency_budget_ms: u64,
}

async fn detail(
    console: &fabric_engine::Console,
    running: bool,
    throughput_last_hour: u64,
) -> anyhow::Result<Detail> {
    let now = console.now();
    let max = console.config().workers.max_workers;
    let jobs = if running {
        console.running_here().await?
    } else {
        Vec::new()
    };
    let mut slots: Vec<Slot> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| Slot {
            slot: u32::try_from(i + 1).ok().filter(|n| *n <= max),
            job_id: Some(j.id),
            kind: Some(j.kind.clone()),
            elapsed_seconds: j
                .started_at
                .map(|t| (now.saturating_sub(t)).max(0) as f64 / 1000.0),
        })
        .collect();
    for n in slots.len() as u32 + 1..=max {
        slots.push(Slot {
            slot: Some(n),
            job_id: None,
            kind: None,
            elapsed_seconds: None,
        });
    }
    let depths = console.store().queue_depths().await?;
    let mut shards: Vec<ShardDepth> = console
        .shards()
        .await?
        .into_iter()
        .map(|s| ShardDepth {
            depth: depths.get(&s.name).copied().unwrap_or(0),
            name: s.name,
            paused: s.paused,
            spillover_limit: s.spillover_limit,
            latency_budget_ms: s.latency_budget_ms,
        })
        .collect();
    // Jobs of a shard without levers (the default shard, say) are queued all the same.
    for (name, depth) in depths {
        if !shards.iter().any(|s| s.name == name) {
            shards.push(ShardDepth {
                name,
                depth,
                paused: false,
                spillover_limit: fabric_core::shard::DEFAULT_SPILLOVER_LIMIT,
                latency_budget_ms: fabric_core::shard::DEFAULT_LATENCY_BUDGET_MS,
            });
        }
    }
    shards.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Detail {
        slots,
        shards,
        throughput_per_minute: throughput_last_hour as f64 / 60.0,
    })
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

pub async fn run(ctx: &Ctx, verbose: bool) -> anyhow::Result<ExitCode> {
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
    let detail = if verbose {
        Some(detail(&console, pid.is_some(), throughput_last_hour).await?)
    } else {
        None
    };
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
        sources: console
            .sources()
            .await?
            .into_iter()
            .map(|r| SourceStatus {
                source_type: r.def.source_type.as_str(),
                name: r.def.name,
                state: r.state,
                last_scan: r.last_scan_at,
                last_outcome: r.last_outcome,
                next_run: r.next_run_at,
                files: r.files,
                documents: r.documents,
                quarantined: r.quarantined,
            })
            .collect(),
        external_workers: console
            .external_workers()
            .await?
            .into_iter()
            .map(|n| ExternalWorker {
                worker: n.node.id[fabric_engine::external::NODE_PREFIX.len()..].to_string(),
                kinds: n.node.specialties,
                seen_ms_ago: n.heartbeat_age_ms,
                health: n.effective_health,
            })
            .collect(),
        detail,
    };
    print(ctx.global.format, &s, || {
        let q = &s.queue;
        let mut out = pairs(&[
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
                    "pending {}, running {}, succeeded {}, failed {}, quarantined {}, cancelled {}, waiting {}, blocked {}",
                    q.pending, q.running, q.succeeded, q.failed, q.quarantined, q.cancelled, q.waiting, q.blocked
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
            (
                "external workers",
                if s.external_workers.is_empty() {
                    "none".into()
                } else {
                    s.external_workers
                        .iter()
                        .map(|w| {
                            format!(
                                "{} ({}; {}, seen {:.1} s ago)",
                                w.worker,
                                w.kinds.join(", "),
                                w.health.as_str(),
                                w.seen_ms_ago as f64 / 1000.0
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ),
            (
                "sources",
                if s.sources.is_empty() {
                    "none".into()
                } else {
                    s.sources
                        .iter()
                        .map(|x| format!("{} ({}, {})", x.name, x.source_type, x.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ),
        ]);
        if let Some(d) = &s.detail {
            out.push_str(&detail_text(d));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

fn detail_text(d: &Detail) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let slots = d
        .slots
        .iter()
        .map(|s| {
            vec![
                s.slot.map_or("claimed ahead".into(), |n| n.to_string()),
                opt(s.job_id.map(|i| i.to_string())),
                s.kind.clone().unwrap_or_else(|| "idle".into()),
                opt(s.elapsed_seconds.map(|e| format!("{e:.1}s"))),
            ]
        })
        .collect();
    let shards = d
        .shards
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.depth.to_string(),
                if s.paused { "yes" } else { "" }.into(),
                s.spillover_limit.to_string(),
                s.latency_budget_ms.to_string(),
            ]
        })
        .collect();
    format!(
        "\nthroughput: {:.2} jobs/min over the last hour\n\n{}\n{}",
        d.throughput_per_minute,
        table(&["slot", "job", "kind", "elapsed"], slots),
        table(
            &[
                "shard",
                "depth",
                "paused",
                "spillover_limit",
                "latency_budget_ms"
            ],
            shards
        )
    )
}
