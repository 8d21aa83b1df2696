//! `fabric bench`: enqueue N no-op jobs one by one (concurrent submitters) and in bulk, drain
//! them with W workers counting only durable completions, measure enqueue-to-completion
//! latency of a trickle, and time crash recovery of orphaned running jobs. Modelled on River's
//! riverbench; runs on a fresh embedded store in a temporary directory. `--events` compares
//! job throughput with lifecycle events published and without (bench_events.rs).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::{Clock, JobId, NewJob, RealClock};
use fabric_engine::{recovery, Engine, EngineOptions, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, ClaimRequest, PostgresStore, SqliteStore, Store};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::cli::{BenchArgs, Format, Global};
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

/// Jobs per bulk submit call.
const BULK_CHUNK: usize = 5_000;

#[derive(Debug, Serialize)]
struct Report {
    #[serde(rename = "N")]
    n: usize,
    conc: usize,
    enqueue_one_rate: f64,
    enqueue_bulk_rate: f64,
    drain_s: f64,
    drain_rate: f64,
    lat_p50_ms: f64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    trickle_jobs: usize,
    trickle_rate: u32,
    recovery_jobs: usize,
    recovery_s: f64,
    synchronous: String,
    backend: &'static str,
    /// Field reports written during the drain and trickle.
    reports: bool,
}

pub fn run(global: Global, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let format = global.format;
    if args.jobs == 0 {
        return Err(Usage("--jobs must be at least 1".into()).into());
    }
    if args.workers == 0 || args.workers > 1024 {
        return Err(Usage(format!(
            "--workers {} is out of range 1..1024",
            args.workers
        ))
        .into());
    }
    if args.trickle_rate == 0 {
        return Err(Usage("--trickle-rate must be at least 1".into()).into());
    }
    if !matches!(args.synchronous.as_str(), "normal" | "full") {
        return Err(Usage(format!(
            "--synchronous '{}' must be normal or full",
            args.synchronous
        ))
        .into());
    }
    let quiet = format != Format::Table;
    let target = Target::new(&global, &args.backend)?;
    if args.events {
        return events(format, quiet, target, &args);
    }
    let report = runtime()?.block_on(async {
        let mut target = target;
        let out = bench(&args, quiet, &mut target).await;
        target.cleanup().await;
        out
    })?;
    print(format, &report, || {
        pairs(&[
            ("N", report.n.to_string()),
            ("conc", report.conc.to_string()),
            (
                "enqueue_one_rate",
                format!("{:.0} jobs/s", report.enqueue_one_rate),
            ),
            (
                "enqueue_bulk_rate",
                format!("{:.0} jobs/s", report.enqueue_bulk_rate),
            ),
            ("drain_s", format!("{:.3} s", report.drain_s)),
            ("drain_rate", format!("{:.0} jobs/s", report.drain_rate)),
            ("lat_p50_ms", format!("{:.3}", report.lat_p50_ms)),
            ("lat_p99_ms", format!("{:.3}", report.lat_p99_ms)),
            ("lat_max_ms", format!("{:.3}", report.lat_max_ms)),
            (
                "recovery",
                format!(
                    "{} running jobs reset in {:.3} s",
                    report.recovery_jobs, report.recovery_s
                ),
            ),
            (
                "store",
                format!(
                    "{} synchronous={}{}",
                    report.backend,
                    report.synchronous,
                    if report.reports {
                        ", field reports on"
                    } else {
                        ""
                    }
                ),
            ),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `fabric bench --events`: see [`super::bench_events`].
fn events(
    format: Format,
    quiet: bool,
    target: Target,
    args: &BenchArgs,
) -> anyhow::Result<ExitCode> {
    let report = runtime()?.block_on(async {
        let mut target = target;
        let out = super::bench_events::bench(args, quiet, &mut target).await;
        target.cleanup().await;
        out
    })?;
    print(format, &report, || {
        let run = |r: &super::bench_events::Run| {
            format!(
                "drain {:.0} jobs/s, enqueue {:.0} jobs/s",
                r.drain_rate, r.enqueue_rate
            )
        };
        pairs(&[
            ("N", report.n.to_string()),
            ("workers", report.workers.to_string()),
            ("events off", run(&report.off)),
            (
                "events on",
                format!(
                    "{}; {} events, outbox empty {:.3} s after the last job",
                    run(&report.on),
                    report.on.events,
                    report.on.outbox_empty_after_s
                ),
            ),
            (
                "on / off",
                format!(
                    "drain {:.1} %, end to end {:.1} % (best of {} rounds each, {})",
                    report.drain_ratio * 100.0,
                    report.end_to_end_ratio * 100.0,
                    report.rounds,
                    report.backend
                ),
            ),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("bench: {msg}");
    }
}

/// Where the benchmark's throw-away stores live.
pub(super) enum Target {
    Sqlite(tempfile::TempDir),
    /// The stores opened so far, each in its own schema, dropped by `cleanup`.
    Postgres {
        url: String,
        stores: Vec<PostgresStore>,
    },
}

impl Target {
    /// A temporary directory for `sqlite`, the database of the configuration's `store.url`
    /// for `postgres`.
    pub(super) fn new(global: &Global, backend: &str) -> anyhow::Result<Self> {
        Ok(if backend == "postgres" {
            let config =
                crate::context::load_config(&fabric_engine::FabricHome::resolve(None), global)?;
            let url = config.store.url.clone().ok_or_else(|| {
                Usage(
                    "--backend postgres needs store.url (or FABRIC__STORE__URL) to name the \
                     database"
                        .into(),
                )
            })?;
            Target::Postgres {
                url,
                stores: Vec::new(),
            }
        } else {
            Target::Sqlite(tempfile::tempdir()?)
        })
    }

    /// A fresh store called `name` (a file, or a schema of its own).
    pub(super) async fn open(
        &mut self,
        name: &str,
        synchronous_full: bool,
    ) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Target::Sqlite(dir) => {
                let options = SqliteOptions {
                    synchronous_full,
                    ..Default::default()
                };
                Arc::new(SqliteStore::open(
                    dir.path().join(format!("{name}.db")),
                    options,
                )?)
            }
            Target::Postgres { url, stores } => {
                let schema = format!("fabric_bench_{}_{name}", std::process::id());
                let mut store = PostgresStore::open(url, &schema).await?;
                if synchronous_full {
                    store = store.fully_synchronous();
                }
                stores.push(store.clone());
                Arc::new(store)
            }
        })
    }

    pub(super) fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    pub(super) async fn cleanup(&mut self) {
        if let Target::Postgres { stores, .. } = self {
            for store in stores.drain(..) {
                if let Err(e) = store.drop_schema().await {
                    eprintln!("bench: could not drop schema {}: {e}", store.schema());
                }
            }
        }
    }
}

async fn bench(args: &BenchArgs, quiet: bool, target: &mut Target) -> anyhow::Result<Report> {
    let store = target.open("bench", args.synchronous == "full").await?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let n = args.jobs;
    let conc = args.workers;

    say(
        quiet,
        format!("enqueue {n} jobs one by one from {conc} submitters"),
    );
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conc {
        let share = n / conc + usize::from(i < n % conc);
        let store = store.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                store
                    .submit(vec![NewJob::new("noop")], clock.now_ms())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let enqueue_one_rate = n as f64 / t.elapsed().as_secs_f64();

    say(quiet, format!("enqueue {n} jobs in bulk"));
    let jobs: Vec<NewJob> = (0..n).map(|_| NewJob::new("noop")).collect();
    let t = Instant::now();
    for chunk in jobs.chunks(BULK_CHUNK) {
        store.submit(chunk.to_vec(), clock.now_ms()).await?;
    }
    let enqueue_bulk_rate = n as f64 / t.elapsed().as_secs_f64();

    let total = 2 * n;
    say(quiet, format!("drain {total} jobs with {conc} workers"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opts = EngineOptions::from_config(Arc::new(Config::default()));
    opts.node_id = "bench".into();
    opts.max_workers = conc;
    opts.poll_interval = Duration::from_millis(100);
    opts.listener = Some(tx);
    let reports_dir = args.reports.then(tempfile::tempdir).transpose()?;
    opts.reports = reports_dir
        .as_ref()
        .map(|d| fabric_engine::reports::ReportsOptions {
            dir: d.path().to_path_buf(),
            retention_days: 30,
        });
    let t = Instant::now();
    let engine = Engine::start(
        store.clone(),
        Registry::builtin(),
        clock.clone(),
        Metrics::new(),
        opts,
    );
    let mut done = 0u64;
    while done < total as u64 {
        let Some((_, report)) = rx.recv().await else {
            anyhow::bail!("the engine stopped during the drain");
        };
        done += report.applied();
    }
    let drain_s = t.elapsed().as_secs_f64();

    say(
        quiet,
        format!(
            "trickle {} jobs at {}/s",
            args.trickle_jobs, args.trickle_rate
        ),
    );
    let waker = engine.waker();
    let finished: Arc<std::sync::Mutex<HashMap<JobId, Instant>>> = Arc::default();
    let collector = {
        let finished = finished.clone();
        tokio::spawn(async move {
            while let Some((ids, _)) = rx.recv().await {
                let now = Instant::now();
                if let Ok(mut f) = finished.lock() {
                    for id in ids {
                        f.insert(id, now);
                    }
                }
            }
        })
    };
    let mut started: HashMap<JobId, Instant> = HashMap::with_capacity(args.trickle_jobs);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.trickle_rate));
    let t0 = tokio::time::Instant::now();
    for i in 0..args.trickle_jobs {
        tokio::time::sleep_until(t0 + period * i as u32).await;
        let start = Instant::now();
        let id = store
            .submit(vec![NewJob::new("noop")], clock.now_ms())
            .await?[0]
            .id;
        waker.wake();
        started.insert(id, start);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = finished
            .lock()
            .map(|f| started.keys().all(|id| f.contains_key(id)))
            .unwrap_or(false);
        if complete {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("trickle jobs did not complete within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat: Vec<f64> = {
        let f = finished.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        started
            .iter()
            .map(|(id, s)| f[id].duration_since(*s).as_secs_f64() * 1000.0)
            .collect()
    };
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let (lat_p50_ms, lat_p99_ms, lat_max_ms) = if lat.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (pct(0.50), pct(0.99), lat[lat.len() - 1])
    };
    engine.shutdown().await;
    collector.abort();

    let mut recovery_s = 0.0;
    if args.recovery_jobs > 0 {
        say(
            quiet,
            format!(
                "crash recovery of {} orphaned running jobs",
                args.recovery_jobs
            ),
        );
        let rstore = target.open("recovery", args.synchronous == "full").await?;
        let jobs: Vec<NewJob> = (0..args.recovery_jobs)
            .map(|_| NewJob::new("noop"))
            .collect();
        for chunk in jobs.chunks(BULK_CHUNK) {
            rstore.submit(chunk.to_vec(), clock.now_ms()).await?;
        }
        loop {
            let got = rstore
                .claim(ClaimRequest {
                    owner: "bench/1/0".into(),
                    limit: 10_000,
                    lease_ms: 3_600_000,
                    now: clock.now_ms(),
                    ..ClaimRequest::default()
                })
                .await?;
            if got.is_empty() {
                break;
            }
        }
        let t = Instant::now();
        let report = recovery::recover(&*rstore, &*clock, "bench", true).await?;
        recovery_s = t.elapsed().as_secs_f64();
        let reset = report.map(|r| r.jobs_reset_to_pending).unwrap_or(0);
        if reset != args.recovery_jobs as u64 {
            anyhow::bail!(
                "recovery reset {reset} jobs, expected {}",
                args.recovery_jobs
            );
        }
    }

    Ok(Report {
        n,
        conc,
        enqueue_one_rate,
        enqueue_bulk_rate,
        drain_s,
        drain_rate: total as f64 / drain_s,
        lat_p50_ms,
        lat_p99_ms,
        lat_max_ms,
        trickle_jobs: args.trickle_jobs,
        trickle_rate: args.trickle_rate,
        recovery_jobs: args.recovery_jobs,
        recovery_s,
        synchronous: args.synchronous.clone(),
        backend: target.backend(),
        reports: args.reports,
    })
}
