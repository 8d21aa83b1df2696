//! `fabric bench batch`: a batch of N no-op items (a chain every `--chain` items) submitted
//! through the Console as `fabric batch submit` does it (parse, validate, one durable write),
//! then drained by W workers; against the same items without dependencies, so the ratio is
//! the cost of releasing dependents. Runs alternate (plain, chained, …) on fresh stores and
//! the best of each kind is kept.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use fabric_core::config::Config;
use fabric_core::{Clock, RealClock};
use fabric_engine::batches::BatchInput;
use fabric_engine::{Console, Engine, EngineOptions, Metrics, Registry};
use serde::Serialize;
use tokio::sync::mpsc;

use super::bench::Target;
use crate::cli::Global;
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

#[derive(Debug, Args, Clone)]
pub struct BenchBatchArgs {
    /// Items in the batch.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// Length of each dependency chain (item i waits for item i-1 unless i is a multiple).
    #[arg(long, default_value_t = 10)]
    pub chain: usize,
    /// Worker slots for the drain.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Rounds of each kind (best kept).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Store to measure: sqlite (a temporary file) or postgres (temporary schemas in the
    /// database of store.url / FABRIC__STORE__URL, dropped at the end).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub backend: String,
}

/// One run.
#[derive(Debug, Clone, Copy, Serialize)]
struct Run {
    /// Seconds of `batch submit` (parse, validate, write).
    submit_s: f64,
    /// Items per second from the engine's start to the last durable completion.
    drain_rate: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    items: usize,
    chain: usize,
    workers: usize,
    rounds: usize,
    /// Best run of the items without dependencies.
    plain: Run,
    /// Best run of the chained items.
    chained: Run,
    /// `chained.drain_rate / plain.drain_rate` (target ≥ 0.80).
    drain_ratio: f64,
    backend: &'static str,
}

pub fn run(global: Global, args: BenchBatchArgs) -> anyhow::Result<ExitCode> {
    if args.items == 0 || args.chain == 0 || args.rounds == 0 {
        return Err(Usage("--items, --chain and --rounds must be at least 1".into()).into());
    }
    if args.workers == 0 || args.workers > 1024 {
        return Err(Usage(format!(
            "--workers {} is out of range 1..1024",
            args.workers
        ))
        .into());
    }
    let format = global.format;
    let quiet = format != crate::cli::Format::Table;
    let target = Target::new(&global, &args.backend)?;
    let report = runtime()?.block_on(async {
        let mut target = target;
        let out = bench(&args, quiet, &mut target).await;
        target.cleanup().await;
        out
    })?;
    print(format, &report, || {
        let run = |r: &Run| {
            format!(
                "submit {:.3} s, drain {:.0} items/s",
                r.submit_s, r.drain_rate
            )
        };
        pairs(&[
            ("items", report.items.to_string()),
            ("chain", report.chain.to_string()),
            ("workers", report.workers.to_string()),
            ("plain", run(&report.plain)),
            ("chained", run(&report.chained)),
            ("drain_ratio", format!("{:.3}", report.drain_ratio)),
            ("store", report.backend.to_string()),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The batch file: `n` no-op items, chained every `chain` when `deps`.
fn batch_file(n: usize, chain: usize, deps: bool) -> String {
    let mut text = String::with_capacity(n * 64);
    for i in 0..n {
        if deps && i % chain != 0 {
            text.push_str(&format!(
                "{{\"key\":\"k{i}\",\"kind\":\"noop\",\"depends_on\":[\"k{}\"]}}\n",
                i - 1
            ));
        } else {
            text.push_str(&format!("{{\"key\":\"k{i}\",\"kind\":\"noop\"}}\n"));
        }
    }
    text
}

async fn bench(args: &BenchBatchArgs, quiet: bool, target: &mut Target) -> anyhow::Result<Report> {
    let (mut plain, mut chained): (Option<Run>, Option<Run>) = (None, None);
    for round in 0..args.rounds {
        for deps in [false, true] {
            let label = if deps { "chained" } else { "plain" };
            if !quiet {
                eprintln!(
                    "bench: round {}/{}, {label}: submit and drain {} items with {} workers",
                    round + 1,
                    args.rounds,
                    args.items,
                    args.workers
                );
            }
            let run = one(args, target, &format!("batch_{label}_{round}"), deps).await?;
            if !quiet {
                eprintln!(
                    "  submit {:.3} s, drain {:.0} items/s",
                    run.submit_s, run.drain_rate
                );
            }
            let best = if deps { &mut chained } else { &mut plain };
            if best.is_none_or(|b| run.drain_rate > b.drain_rate) {
                *best = Some(run);
            }
        }
    }
    let (Some(plain), Some(chained)) = (plain, chained) else {
        anyhow::bail!("no run finished");
    };
    Ok(Report {
        items: args.items,
        chain: args.chain,
        workers: args.workers,
        rounds: args.rounds,
        drain_ratio: chained.drain_rate / plain.drain_rate,
        plain,
        chained,
        backend: target.backend(),
    })
}

async fn one(
    args: &BenchBatchArgs,
    target: &mut Target,
    name: &str,
    deps: bool,
) -> anyhow::Result<Run> {
    let store = target.open(name, false).await?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let config = Arc::new(Config::default());
    let console = Console::new(
        store.clone(),
        Registry::builtin(),
        config.clone(),
        clock.clone(),
        "bench",
    );
    let text = batch_file(args.items, args.chain, deps);
    let t = Instant::now();
    let out = console
        .submit_batch(BatchInput::Lines(&text), None, None)
        .await?;
    let submit_s = t.elapsed().as_secs_f64();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opts = EngineOptions::from_config(config);
    opts.node_id = "bench".into();
    opts.max_workers = args.workers;
    opts.poll_interval = Duration::from_millis(100);
    opts.listener = Some(tx);
    let t = Instant::now();
    let engine = Engine::start(
        store.clone(),
        Registry::builtin(),
        clock,
        Metrics::new(),
        opts,
    );
    let mut done = 0u64;
    while done < args.items as u64 {
        let Some((_, report)) = rx.recv().await else {
            anyhow::bail!("the engine stopped during the drain");
        };
        done += report.applied();
    }
    let drain_rate = args.items as f64 / t.elapsed().as_secs_f64();
    engine.shutdown().await;
    let b = store.batches().batch(out.id).await?;
    if b.batch.counts.succeeded != args.items as u64 {
        anyhow::bail!(
            "batch {}: {} of {} items succeeded",
            out.id,
            b.batch.counts.succeeded,
            args.items
        );
    }
    Ok(Run {
        submit_s,
        drain_rate,
    })
}
