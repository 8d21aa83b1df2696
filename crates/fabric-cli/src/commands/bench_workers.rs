//! `fabric bench workers`: external-worker throughput over HTTP. A real API server (the
//! daemon's router, on 127.0.0.1) over a fresh store holds N jobs of an external kind; W
//! workers, each with its own keep-alive HTTP client, claim up to `--batch` jobs at a time
//! and complete each one with its own call, as `examples/python_worker.py` does (or, with
//! `--ack batch`, all the jobs of a claim in one call). The rate is from the first claim to the
//! last completion.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use fabric_core::config::Config;
use fabric_core::{Clock, NewJob, RealClock};
use fabric_engine::{Console, Metrics, Registry};
use serde::Serialize;
use serde_json::{json, Value};

use super::bench::Target;
use crate::cli::Global;
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

/// The kind the bench's jobs have (declared external).
const KIND: &str = "bench_external";
/// The bench server's admin token.
const TOKEN: &str = "bench-token";

#[derive(Debug, Args, Clone)]
pub struct BenchWorkersArgs {
    /// Jobs to work off.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Concurrent external workers.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Jobs per claim (1..1000).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// How workers acknowledge: `each` (one complete call per job) or `batch` (one call for
    /// all the jobs of a claim, `{"jobs": [...]}`).
    #[arg(long, default_value = "each", value_parser = ["each", "batch"])]
    pub ack: String,
    /// Store to measure: sqlite (a temporary file) or postgres (a temporary schema in the
    /// database of store.url / FABRIC__STORE__URL, dropped at the end).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub backend: String,
}

#[derive(Debug, Serialize)]
struct Report {
    jobs: usize,
    workers: usize,
    batch: usize,
    ack: String,
    /// Claim calls made.
    claims: u64,
    seconds: f64,
    /// Jobs completed per second (target ≥ 20,000 on SQLite).
    rate: f64,
    backend: &'static str,
}

pub fn run(global: Global, args: BenchWorkersArgs) -> anyhow::Result<ExitCode> {
    if args.jobs == 0 || args.workers == 0 || args.workers > 256 {
        return Err(Usage("--jobs must be at least 1 and --workers 1..256".into()).into());
    }
    if args.batch == 0 || args.batch > fabric_engine::external::MAX_CLAIM {
        return Err(Usage(format!("--batch {} is out of range 1..1000", args.batch)).into());
    }
    let format = global.format;
    let target = Target::new(&global, &args.backend)?;
    let report = runtime()?.block_on(async {
        let mut target = target;
        let out = bench(&args, &mut target).await;
        target.cleanup().await;
        out
    })?;
    print(format, &report, || {
        pairs(&[
            ("jobs", report.jobs.to_string()),
            ("workers", report.workers.to_string()),
            ("batch", report.batch.to_string()),
            ("ack", report.ack.clone()),
            ("claims", report.claims.to_string()),
            ("seconds", format!("{:.3}", report.seconds)),
            ("rate", format!("{:.0} jobs/s", report.rate)),
            ("store", report.backend.to_string()),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: &BenchWorkersArgs, target: &mut Target) -> anyhow::Result<Report> {
    let store = target.open("workers", false).await?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let mut config = Config::default();
    config.workers.external_kinds = vec![KIND.into()];
    let console = Console::new(
        store.clone(),
        Registry::builtin(),
        Arc::new(config),
        clock.clone(),
        "bench",
    );
    let jobs: Vec<NewJob> = (0..args.jobs).map(|_| NewJob::new(KIND)).collect();
    for chunk in jobs.chunks(5_000) {
        store.submit(chunk.to_vec(), clock.now_ms()).await?;
    }
    let dir = tempfile::tempdir()?;
    let state = fabric_api::ApiState {
        console,
        metrics: Metrics::new(),
        access: fabric_api::Access::new(Some(TOKEN.into()), Vec::new()),
        max_body_bytes: 2 << 20,
        home: dir.path().to_path_buf(),
        config_file: dir.path().join("fabric.yaml"),
        config_named: false,
        listen: None,
        alerts: None,
        bus: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fabric_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let base = base.clone();
        let batch = args.batch;
        let each = args.ack == "each";
        tasks.push(tokio::spawn(
            async move { worker(&base, w, batch, each).await },
        ));
    }
    let (mut done, mut claims) = (0u64, 0u64);
    for task in tasks {
        let (d, c) = task.await??;
        done += d;
        claims += c;
    }
    let seconds = t.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = server.await;
    if done != args.jobs as u64 {
        anyhow::bail!("{done} of {} jobs completed", args.jobs);
    }
    Ok(Report {
        jobs: args.jobs,
        workers: args.workers,
        batch: args.batch,
        ack: args.ack.clone(),
        claims,
        seconds,
        rate: done as f64 / seconds,
        backend: target.backend(),
    })
}

/// One worker: claims until a claim finds nothing, completing each job; returns the jobs it
/// completed and the claims it made.
async fn worker(base: &str, w: usize, batch: usize, each: bool) -> anyhow::Result<(u64, u64)> {
    let http = reqwest::Client::new();
    // Parsed once: the harness's own per-call work stays out of the server's figure.
    let claim_url = reqwest::Url::parse(&format!("{base}/api/v1/workers/claim"))?;
    let complete_url = reqwest::Url::parse(&format!("{base}/api/v1/workers/complete"))?;
    let post = |url: &reqwest::Url, body: Value| {
        http.post(url.clone()).bearer_auth(TOKEN).json(&body).send()
    };
    let (mut done, mut claims) = (0u64, 0u64);
    loop {
        let claim = json!({"worker": format!("bench-{w}"), "kinds": [KIND], "max": batch});
        let got: Value = post(&claim_url, claim)
            .await?
            .error_for_status()?
            .json()
            .await?;
        claims += 1;
        let jobs = got["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            return Ok((done, claims));
        }
        if !each {
            let acks: Vec<Value> = jobs
                .iter()
                .map(|j| json!({"id": j["id"], "token": j["token"]}))
                .collect();
            let got: Value = post(&complete_url, json!({ "jobs": acks }))
                .await?
                .error_for_status()?
                .json()
                .await?;
            done += got["completed"].as_array().map_or(0, |c| c.len() as u64);
            continue;
        }
        for job in jobs {
            let body = json!({"id": job["id"], "token": job["token"]});
            post(&complete_url, body).await?.error_for_status()?;
            done += 1;
        }
    }
}
