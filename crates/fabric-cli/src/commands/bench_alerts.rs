//! `fabric bench alerts`: alert latency, from the breaching sample that fires a rule to the
//! receiver holding the notification, through the daemon's own alerting (the evaluator and
//! the delivery worker of `AlertsRuntime`, a fresh SQLite store per round) and a real
//! webhook receiver on a loopback port. The bound is `group_wait` + 1 s.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_alerts::{AlertsRuntime, Sample};
use fabric_core::config::Config;
use fabric_core::RealClock;
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::cli::{BenchAlertsArgs, Global};
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

#[derive(Debug, Serialize)]
struct Report {
    rounds: usize,
    group_wait_ms: u64,
    /// Breaching sample (the one that fires) → the receiver has the request body.
    latency_p50_ms: f64,
    latency_max_ms: f64,
    /// latency − group_wait: what the evaluation, queue and delivery add.
    overhead_max_ms: f64,
    /// The bound: group_wait + 1 s.
    bound_ms: f64,
    within_bound: bool,
}

/// A webhook receiver: sends the arrival instant of each request, answers 200.
async fn receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Instant>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).await.is_ok() {
                    let _ = tx.send(Instant::now());
                }
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((url, rx))
}

pub fn run(global: Global, args: BenchAlertsArgs) -> anyhow::Result<ExitCode> {
    if !(1..=1000).contains(&args.rounds) {
        return Err(Usage(format!("--rounds {} is out of range 1..1000", args.rounds)).into());
    }
    if args.group_wait_ms > 600_000 {
        return Err(Usage(format!(
            "--group-wait-ms {} is out of range 0..600000",
            args.group_wait_ms
        ))
        .into());
    }
    let report = runtime()?.block_on(measure(&args))?;
    print(global.format, &report, || {
        pairs(&[
            ("rounds", report.rounds.to_string()),
            ("group_wait", format!("{} ms", report.group_wait_ms)),
            (
                "alert latency p50",
                format!("{:.1} ms", report.latency_p50_ms),
            ),
            (
                "alert latency max",
                format!("{:.1} ms", report.latency_max_ms),
            ),
            ("overhead max", format!("{:.1} ms", report.overhead_max_ms)),
            (
                "bound (group_wait + 1 s)",
                format!(
                    "{:.0} ms: {}",
                    report.bound_ms,
                    if report.within_bound { "met" } else { "MISSED" }
                ),
            ),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn measure(args: &BenchAlertsArgs) -> anyhow::Result<Report> {
    let (url, mut arrivals) = receiver().await?;
    let yaml = format!(
        "alerts:\n  interval_ms: 3600000\n  group_wait_ms: {}\n  default_rules: false\n  \
         routes:\n    hook: {{type: webhook, url: \"{url}\"}}\n  rules:\n    \
         - {{name: bench_high, metric: bench_value, comparator: \">\", threshold: 10, \
         for_count: 2, routes: [hook]}}\n",
        args.group_wait_ms
    );
    let config = Config::from_yaml(&yaml, std::iter::empty::<(String, String)>())
        .map_err(|p| anyhow::anyhow!("bench config: {p:?}"))?;
    let mut latencies = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            dir.path().join("alerts.db"),
            SqliteOptions::default(),
        )?);
        let rt = AlertsRuntime::start(
            store,
            Arc::new(config.alerts.clone()),
            Arc::new(RealClock),
            format!("bench-{round}"),
            Arc::new(|| true),
        );
        let engine = rt.engine();
        engine
            .observe(vec![Sample::new("bench_value", 20.0)])
            .await?;
        let t0 = Instant::now();
        engine
            .observe(vec![Sample::new("bench_value", 21.0)])
            .await?;
        let limit = Duration::from_millis(args.group_wait_ms) + Duration::from_secs(30);
        let at = tokio::time::timeout(limit, arrivals.recv())
            .await
            .map_err(|_| anyhow::anyhow!("round {round}: no notification within {limit:?}"))?
            .ok_or_else(|| anyhow::anyhow!("the receiver stopped"))?;
        latencies.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        rt.shutdown().await;
    }
    latencies.sort_by(f64::total_cmp);
    let max = latencies.last().copied().unwrap_or(0.0);
    let bound = args.group_wait_ms as f64 + 1000.0;
    Ok(Report {
        rounds: args.rounds,
        group_wait_ms: args.group_wait_ms,
        latency_p50_ms: latencies[latencies.len() / 2],
        latency_max_ms: max,
        overhead_max_ms: max - args.group_wait_ms as f64,
        bound_ms: bound,
        within_bound: max <= bound,
    })
}
