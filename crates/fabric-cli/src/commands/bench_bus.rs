//! `fabric bench bus`: the message bus measured on throw-away streams: the publish rate of
//! concurrent publishers, the end-to-end rate (publish → read → ack, consumer running
//! alongside), and the latency of a 1,000 msg/s trickle from publish to read.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_bus::{Bus, BusBackend, BusConfig, InProcBus, Lane, Message, RedisBus};
use serde::Serialize;

use crate::cli::{BenchBusArgs, Format, Global};
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

const GROUP: &str = "bench";
/// Messages of the latency trickle, and its rate.
const TRICKLE: usize = 2_000;
const TRICKLE_RATE: u64 = 1_000;

#[derive(Debug, Serialize)]
struct Report {
    backend: &'static str,
    messages: usize,
    publishers: usize,
    /// Messages per publish call (`publish_many`; one script call on Redis).
    pipeline: usize,
    batch: usize,
    /// Messages published per second by the concurrent publishers.
    publish_rate: f64,
    /// Messages published, read and acknowledged per second, from the first publish to the
    /// last acknowledgement.
    e2e_rate: f64,
    e2e_seconds: f64,
    /// Publish → read of a 1,000 msg/s trickle.
    lat_p50_ms: f64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    /// Normal entries waiting while the emergency lane is measured.
    backlog: usize,
    /// Publish → read of emergency messages at 1,000 msg/s while a consumer works through
    /// the backlog of normal.
    emergency_p50_ms: f64,
    emergency_p99_ms: f64,
    emergency_max_ms: f64,
}

fn say(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("bench bus: {msg}");
    }
}

pub fn run(global: Global, args: BenchBusArgs) -> anyhow::Result<ExitCode> {
    if args.messages == 0 || args.publishers == 0 || args.batch == 0 || args.pipeline == 0 {
        return Err(Usage(
            "--messages, --publishers, --pipeline and --batch must be at least 1".into(),
        )
        .into());
    }
    let quiet = global.format != Format::Table;
    let report = runtime()?.block_on(bench(&args, quiet))?;
    print(global.format, &report, || {
        pairs(&[
            ("bus", report.backend.to_string()),
            (
                "publish",
                format!(
                    "{:.0} msg/s ({} publishers, {} a call)",
                    report.publish_rate, report.publishers, report.pipeline
                ),
            ),
            (
                "end to end",
                format!(
                    "{:.0} msg/s ({} messages in {:.2} s, reads of {})",
                    report.e2e_rate, report.messages, report.e2e_seconds, report.batch
                ),
            ),
            (
                "latency at 1,000 msg/s",
                format!(
                    "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                    report.lat_p50_ms, report.lat_p99_ms, report.lat_max_ms
                ),
            ),
            (
                "emergency lane",
                format!(
                    "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms behind a backlog of {}",
                    report.emergency_p50_ms,
                    report.emergency_p99_ms,
                    report.emergency_max_ms,
                    report.backlog
                ),
            ),
        ])
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A bus with thresholds above the run's size (nothing rerouted or dropped, nothing trimmed).
async fn open(
    args: &BenchBusArgs,
    run: &str,
) -> anyhow::Result<(Arc<dyn Bus>, Option<Arc<RedisBus>>)> {
    let n = (args.messages + TRICKLE + args.backlog) as u64;
    let mut config = BusConfig {
        prefix: format!("fabric-bench-{}-{run}", std::process::id()),
        emergency_threshold: n + 1,
        backpressure_drop_threshold: n + 2,
        max_stream_length: n + 3,
        ..BusConfig::default()
    };
    if args.backend == "redis" {
        config.backend = BusBackend::Redis;
        config.url = args
            .url
            .clone()
            .or_else(|| std::env::var("FABRIC__BUS__URL").ok())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        let bus = Arc::new(RedisBus::connect(config).await?);
        bus.init(GROUP).await?;
        Ok((bus.clone(), Some(bus)))
    } else {
        let bus = Arc::new(InProcBus::new(config)?);
        bus.init(GROUP).await?;
        Ok((bus, None))
    }
}

async fn bench(args: &BenchBusArgs, quiet: bool) -> anyhow::Result<Report> {
    let (bus, redis) = open(args, "e2e").await?;
    let out = throughput(&*bus, args, quiet).await;
    if let Some(r) = &redis {
        r.delete_streams().await?;
    }
    let (publish_rate, e2e_seconds) = out?;
    let (bus, redis) = open(args, "lat").await?;
    say(quiet, "latency of a 1,000 msg/s trickle");
    let lat = latency(bus).await;
    if let Some(r) = &redis {
        r.delete_streams().await?;
    }
    let lat = percentiles(lat?);
    let (bus, redis) = open(args, "em").await?;
    say(
        quiet,
        &format!(
            "emergency lane at 1,000 msg/s behind a backlog of {}",
            args.backlog
        ),
    );
    let em = emergency(bus, args.backlog, args.batch).await;
    if let Some(r) = &redis {
        r.delete_streams().await?;
    }
    let em = percentiles(em?);
    Ok(Report {
        backend: if args.backend == "redis" {
            "redis"
        } else {
            "inproc"
        },
        messages: args.messages,
        publishers: args.publishers,
        pipeline: args.pipeline,
        batch: args.batch,
        publish_rate: args.messages as f64 / publish_rate,
        e2e_rate: args.messages as f64 / e2e_seconds,
        e2e_seconds,
        lat_p50_ms: lat.0,
        lat_p99_ms: lat.1,
        lat_max_ms: lat.2,
        backlog: args.backlog,
        emergency_p50_ms: em.0,
        emergency_p99_ms: em.1,
        emergency_max_ms: em.2,
    })
}

/// p50, p99 and max of `lat`.
fn percentiles(mut lat: Vec<f64>) -> (f64, f64, f64) {
    if lat.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    (pct(0.5), pct(0.99), lat[lat.len() - 1])
}

/// Fills normal with `backlog` entries, then publishes emergency messages at 1,000 msg/s
/// while one consumer reads `batch` at a time (emergency first) and acknowledges as fast as
/// it can (an emergency message waits for at most the batch in hand); returns
/// the publish → read milliseconds of the emergency messages.
async fn emergency(bus: Arc<dyn Bus>, backlog: usize, batch: usize) -> anyhow::Result<Vec<f64>> {
    {
        use futures_util::StreamExt;
        let mut fill = futures_util::stream::iter(0..backlog)
            .map(|i| {
                let bus = bus.clone();
                async move {
                    bus.publish_to(Lane::Normal, &format!("{{\"b\":{i}}}"))
                        .await
                }
            })
            .buffer_unordered(64);
        while let Some(r) = fill.next().await {
            r?;
        }
    }
    let t0 = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let consumer = {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(TRICKLE);
            while lat.len() < TRICKLE && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = bus
                    .read(GROUP, "c1", batch, Duration::from_millis(100))
                    .await?;
                let now = t0.elapsed().as_secs_f64() * 1000.0;
                let mut by_lane: std::collections::BTreeMap<Lane, Vec<String>> = Default::default();
                for d in &got {
                    if d.lane == Lane::Emergency {
                        let sent: f64 = d.payload.parse().unwrap_or(now);
                        lat.push(now - sent);
                    }
                    by_lane.entry(d.lane).or_default().push(d.id.clone());
                }
                for (lane, ids) in by_lane {
                    bus.ack(GROUP, lane, &ids).await?;
                }
            }
            anyhow::Ok(lat)
        })
    };
    trickle(bus.as_ref(), t0, true).await?;
    let out = tokio::time::timeout(Duration::from_secs(60), consumer).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    out.map_err(|_| anyhow::anyhow!("emergency messages not all read within 60 s"))??
}

/// Publishers and one consumer at once; returns the publishers' seconds and the seconds to
/// the last acknowledgement.
async fn throughput(bus: &dyn Bus, args: &BenchBusArgs, quiet: bool) -> anyhow::Result<(f64, f64)> {
    say(
        quiet,
        &format!(
            "{} messages: {} publishers, one consumer reading {} at a time",
            args.messages, args.publishers, args.batch
        ),
    );
    let t0 = Instant::now();
    let publish = async {
        let per = args.messages / args.publishers;
        let extra = args.messages % args.publishers;
        let mut tasks = futures_util::stream::FuturesUnordered::new();
        for p in 0..args.publishers {
            let share = per + usize::from(p < extra);
            let pipeline = args.pipeline;
            tasks.push(async move {
                let mut i = 0;
                while i < share {
                    let n = pipeline.min(share - i);
                    let batch = (i..i + n)
                        .map(|i| Message::normal(format!("{{\"p\":{p},\"i\":{i}}}")))
                        .collect();
                    bus.publish_many(batch).await?;
                    i += n;
                }
                anyhow::Ok(())
            });
        }
        use futures_util::StreamExt;
        while let Some(r) = tasks.next().await {
            r?;
        }
        anyhow::Ok(t0.elapsed().as_secs_f64())
    };
    let consume = async {
        let mut got = 0usize;
        while got < args.messages {
            let batch = bus
                .read(GROUP, "c1", args.batch, Duration::from_millis(100))
                .await?;
            let ids: Vec<String> = batch.iter().map(|d| d.id.clone()).collect();
            if !ids.is_empty() {
                bus.ack(GROUP, Lane::Normal, &ids).await?;
            }
            got += ids.len();
        }
        anyhow::Ok(t0.elapsed().as_secs_f64())
    };
    let (p, c) = tokio::join!(publish, consume);
    Ok((p?, c?))
}

/// Publishes `TRICKLE` messages at `TRICKLE_RATE`, each carrying its send time (ms since
/// `t0`).
async fn trickle(bus: &dyn Bus, t0: Instant, emergency: bool) -> anyhow::Result<()> {
    let period = Duration::from_micros(1_000_000 / TRICKLE_RATE);
    let start = tokio::time::Instant::now();
    for i in 0..TRICKLE {
        tokio::time::sleep_until(start + period * i as u32).await;
        let sent = format!("{}", t0.elapsed().as_secs_f64() * 1000.0);
        bus.publish(Message {
            payload: sent,
            emergency,
        })
        .await?;
    }
    Ok(())
}

/// Milliseconds from publish to read of each message of a 1,000 msg/s trickle.
async fn latency(bus: Arc<dyn Bus>) -> anyhow::Result<Vec<f64>> {
    let t0 = Instant::now();
    let consumer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(TRICKLE);
            while lat.len() < TRICKLE {
                let got = bus
                    .read(GROUP, "c1", 100, Duration::from_millis(100))
                    .await?;
                let now = t0.elapsed().as_secs_f64() * 1000.0;
                let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
                for d in &got {
                    let sent: f64 = d.payload.parse().unwrap_or(now);
                    lat.push(now - sent);
                }
                if !ids.is_empty() {
                    bus.ack(GROUP, Lane::Normal, &ids).await?;
                }
            }
            anyhow::Ok(lat)
        })
    };
    trickle(bus.as_ref(), t0, false).await?;
    consumer.await?
}
