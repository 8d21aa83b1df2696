//! `fabric bench --events`: job throughput with lifecycle events published (`bus.events:
//! true`: capture triggers in the store, the outbox publisher sending to the in-process bus)
//! against the same run without. Each run gets a fresh store: N no-op jobs enqueued in bulk,
//! then drained by W workers; with events, also the time until the outbox is empty. Runs
//! alternate (off, on, off, on, …) and the best of each kind is kept, so a noisy neighbour
//! on the machine weighs on both alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_bus::{Bus, BusConfig, InProcBus};
use fabric_core::config::Config;
use fabric_core::{Clock, NewJob, RealClock};
use fabric_engine::{Engine, EngineOptions, Metrics, OutboxOptions, Registry};
use serde::Serialize;
use tokio::sync::mpsc;

use super::bench::Target;
use crate::cli::BenchArgs;

/// Jobs per bulk submit call.
const BULK_CHUNK: usize = 5_000;
/// Rounds of each kind.
const ROUNDS: usize = 3;

/// One run.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Run {
    /// Jobs per second through the bulk enqueue.
    pub enqueue_rate: f64,
    /// Jobs per second from the engine's start to the last durable completion.
    pub drain_rate: f64,
    /// With events: seconds after the last completion until the outbox was empty.
    pub outbox_empty_after_s: f64,
    /// With events: lifecycle events the bus took (in messages of up to 1,000).
    pub events: u64,
}

/// The comparison `fabric bench --events` prints.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    #[serde(rename = "N")]
    pub n: usize,
    pub workers: usize,
    pub rounds: usize,
    /// Best run without events (by drain rate).
    pub off: Run,
    /// Best run with events.
    pub on: Run,
    /// `on.drain_rate / off.drain_rate` (target ≥ 0.90).
    pub drain_ratio: f64,
    /// Enqueue and drain, end to end, with events over without.
    pub end_to_end_ratio: f64,
    pub backend: &'static str,
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("bench: {msg}");
    }
}

pub(super) async fn bench(
    args: &BenchArgs,
    quiet: bool,
    target: &mut Target,
) -> anyhow::Result<Report> {
    let (mut off, mut on): (Option<Run>, Option<Run>) = (None, None);
    for round in 0..ROUNDS {
        for events in [false, true] {
            let label = if events { "on" } else { "off" };
            say(
                quiet,
                format!(
                    "round {}/{ROUNDS}, events {label}: enqueue and drain {} jobs with {} workers",
                    round + 1,
                    args.jobs,
                    args.workers
                ),
            );
            let name = format!("events_{label}_{round}");
            let run = one(args, target, &name, events).await?;
            say(
                quiet,
                format!(
                    "  drain {:.0} jobs/s, enqueue {:.0} jobs/s{}",
                    run.drain_rate,
                    run.enqueue_rate,
                    if events {
                        format!(
                            ", {} events, outbox empty {:.3} s after the last job",
                            run.events, run.outbox_empty_after_s
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            let best = if events { &mut on } else { &mut off };
            if best.is_none_or(|b| run.drain_rate > b.drain_rate) {
                *best = Some(run);
            }
        }
    }
    let (off, on) = match (off, on) {
        (Some(off), Some(on)) => (off, on),
        _ => anyhow::bail!("no run finished"),
    };
    let total = |r: &Run| {
        let n = args.jobs as f64;
        1.0 / (1.0 / r.enqueue_rate + 1.0 / r.drain_rate + r.outbox_empty_after_s / n)
    };
    Ok(Report {
        n: args.jobs,
        workers: args.workers,
        rounds: ROUNDS,
        drain_ratio: on.drain_rate / off.drain_rate,
        end_to_end_ratio: total(&on) / total(&off),
        off,
        on,
        backend: target.backend(),
    })
}

/// One run on a fresh store called `name`, with events or without.
async fn one(
    args: &BenchArgs,
    target: &mut Target,
    name: &str,
    events: bool,
) -> anyhow::Result<Run> {
    let store = target.open(name, args.synchronous == "full").await?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    fabric_engine::outbox::set_capture(&*store, events).await?;
    let n = args.jobs;
    let jobs: Vec<NewJob> = (0..n).map(|_| NewJob::new("noop")).collect();
    let t = Instant::now();
    for chunk in jobs.chunks(BULK_CHUNK) {
        store.submit(chunk.to_vec(), clock.now_ms()).await?;
    }
    let enqueue_rate = n as f64 / t.elapsed().as_secs_f64();

    // No consumer group: the streams are trimmed to their length limit, well below the
    // thresholds, so nothing is rerouted or dropped (the daemon's cost, not a consumer's).
    let bus: Arc<dyn Bus> = Arc::new(InProcBus::new(BusConfig {
        max_stream_length: 10_000,
        emergency_threshold: 1_000_000,
        backpressure_drop_threshold: 2_000_000,
        ..BusConfig::default()
    })?);
    let config = Config::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opts = EngineOptions::from_config(Arc::new(config.clone()));
    opts.node_id = "bench".into();
    opts.max_workers = args.workers;
    opts.poll_interval = Duration::from_millis(100);
    opts.listener = Some(tx);
    if events {
        opts.outbox = Some(OutboxOptions {
            events: true,
            telemetry_every: None,
            ..OutboxOptions::from_config(&config, bus.clone())
        });
    }
    let metrics = Metrics::new();
    let t = Instant::now();
    let engine = Engine::start(
        store.clone(),
        Registry::builtin(),
        clock,
        metrics.clone(),
        opts,
    );
    let mut done = 0u64;
    while done < n as u64 {
        let Some((_, report)) = rx.recv().await else {
            anyhow::bail!("the engine stopped during the drain");
        };
        done += report.applied();
    }
    let drain_rate = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut outbox_empty_after_s = 0.0;
    if events {
        let deadline = t + Duration::from_secs(600);
        while store.outbox().outbox_stats().await?.pending > 0 {
            if Instant::now() > deadline {
                anyhow::bail!("the outbox did not empty within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outbox_empty_after_s = t.elapsed().as_secs_f64();
    }
    engine.shutdown().await;
    // Each job's submitted and succeeded.
    let events_sent = metrics.outbox_events.get();
    if events && events_sent != 2 * n as u64 {
        anyhow::bail!(
            "the bus took {events_sent} events for {n} jobs (expected {})",
            2 * n
        );
    }
    Ok(Run {
        enqueue_rate,
        drain_rate,
        outbox_empty_after_s,
        events: events_sent,
    })
}
