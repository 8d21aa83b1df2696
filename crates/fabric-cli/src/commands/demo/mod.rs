//! `fabric demo control-loop [--bus inproc|redis]`: Esper's control loop (seed 002 §3.1) as a
//! Fabric workload, through the real engine, bus, alert and field-report paths, in a home of
//! its own: a training job streams per-epoch telemetry over the bus; a risk engine consumes
//! it, feeds the alert rules (`training_latency_high` fires after three epochs over 18 ms and
//! clears after) and turns conservative mode on or quarantines a blueprint, writing field
//! reports; each step prints what an operator would check.

mod risk;
mod train;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fabric_alerts::drill::Drill;
use fabric_alerts::{Sample, Sent, Transition, TransitionKind};
use fabric_bus::{Bus, BusBackend, BusConfig, Lane};
use fabric_core::{Clock, JobState, NewJob, Priority, RealClock};
use fabric_engine::reports::ReportsOptions;
use fabric_engine::{Console, Engine, EngineOptions, FabricHome, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use serde::Serialize;
use serde_json::json;

use crate::cli::{DemoBus, Format};
use crate::context::{Ctx, Usage};
use crate::output::emit;

/// The risk engine's consumer group.
const GROUP: &str = "tamiyo";

/// Arguments of `demo control-loop`.
pub struct Options {
    pub bus: DemoBus,
    pub epochs: u32,
    pub epoch_ms: u64,
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct EpochReport {
    #[serde(flatten)]
    epoch: train::Epoch,
    alerts: Vec<Transition>,
    sent: Vec<Sent>,
    risk: Vec<risk::RiskEvent>,
}

/// Prints for people (nothing in JSON mode, which prints one document at the end).
struct Say(bool);

impl Say {
    fn line(&self, text: impl AsRef<str>) -> anyhow::Result<()> {
        if self.0 {
            emit(&format!("{}\n", text.as_ref()))?;
        }
        Ok(())
    }
}

pub async fn control_loop(ctx: &Ctx, o: Options) -> anyhow::Result<ExitCode> {
    if !(6..=1000).contains(&o.epochs) {
        return Err(Usage(format!(
            "--epochs {} is out of range 6..1000 (the story needs six)",
            o.epochs
        ))
        .into());
    }
    if o.epoch_ms > 60_000 {
        return Err(Usage(format!(
            "--epoch-ms {} is out of range 0..60000",
            o.epoch_ms
        ))
        .into());
    }
    let say = Say(ctx.global.format == Format::Table);
    let run = format!("fabric-demo-{}", RealClock.now_ms());
    // A home of the demo's own: its store, reports and config, kept for the checks.
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("fabric-demo-")
            .tempdir()?
            .keep(),
    };
    let home = FabricHome::resolve(Some(dir.clone()));
    home.ensure()
        .with_context(|| format!("cannot create the demo home {}", dir.display()))?;
    let bus_config = match o.bus {
        DemoBus::Inproc => BusConfig::default(),
        DemoBus::Redis => BusConfig {
            backend: BusBackend::Redis,
            url: ctx.config.bus.url.clone(),
            prefix: run.clone(),
            ..BusConfig::default()
        },
    };
    if o.bus == DemoBus::Redis {
        // The demo home's config names the same streams, so `fabric bus …` there sees them.
        let yaml = format!(
            "bus:\n  backend: redis\n  url: {:?}\n  prefix: {:?}\n",
            bus_config.url, bus_config.prefix
        );
        std::fs::write(home.config_file(), yaml)?;
    }
    let bus_url = fabric_core::config::redact_conn_string(&bus_config.url);
    let bus: Arc<dyn Bus> = fabric_bus::open(bus_config)
        .await
        .with_context(|| format!("cannot open the {:?} bus at {bus_url}", o.bus))?;
    bus.init(GROUP).await?;

    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        dir.join("queue.db"),
        SqliteOptions::default(),
    )?);
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let mut registry = Registry::builtin();
    registry.register(train::KIND, train::Train { bus: bus.clone() });
    let console = Console::new(
        store.clone(),
        registry.clone(),
        ctx.config.clone(),
        clock.clone(),
        "demo:tamiyo",
    );
    let mut options = EngineOptions::from_config(ctx.config.clone());
    options.node_id = "demo".into();
    options.max_workers = 2;
    options.poll_interval = Duration::from_millis(50);
    let reports_dir = fabric_engine::reports::dir_of(&dir);
    options.reports = Some(ReportsOptions {
        dir: reports_dir.clone(),
        retention_days: 30,
    });
    let engine = Engine::start(
        store.clone(),
        registry,
        clock.clone(),
        Metrics::new(),
        options,
    );
    let check = |cmd: &str| format!("FABRIC_HOME={} fabric {cmd}", dir.display());

    say.line(format!(
        "control loop: {} epochs on the {} bus; demo home {}",
        o.epochs,
        match o.bus {
            DemoBus::Inproc => "in-process".to_string(),
            DemoBus::Redis => format!("Redis ({bus_url}, prefix {run})"),
        },
        dir.display()
    ))?;
    let mut job = NewJob::new(train::KIND)
        .payload(json!({"run": run, "epochs": o.epochs, "epoch_ms": o.epoch_ms}));
    job.priority = Priority::HIGH;
    let id = console.submit(job).await?.id;
    engine.waker().wake();
    say.line(format!(
        "submitted training job {id} ({}, priority high: it keeps running in conservative \
         mode)\n  check: {}",
        train::KIND,
        check(&format!("jobs show {id}"))
    ))?;

    let mut drill = Drill::new(store.clone(), &ctx.config.alerts, clock.clone(), false);
    let mut risk = risk::Risk::new(console.clone(), bus.clone(), "demo".into(), reports_dir);
    let mut epochs = Vec::new();
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(o.epoch_ms.saturating_mul(u64::from(o.epochs)))
        + Duration::from_secs(60);
    let mut done = false;
    while !done {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the training job's telemetry stopped arriving (job {id}; {})",
            check(&format!("jobs show {id}"))
        );
        let got = bus
            .read_lane(
                Lane::Telemetry,
                GROUP,
                "risk-1",
                16,
                Duration::from_millis(500),
            )
            .await?;
        for d in &got {
            let value: serde_json::Value = serde_json::from_str(&d.payload)
                .with_context(|| format!("telemetry entry {} is not JSON", d.id))?;
            if value["done"] == true {
                done = true;
                continue;
            }
            let e: train::Epoch = serde_json::from_value(value)
                .with_context(|| format!("telemetry entry {} is not an epoch", d.id))?;
            let depth = bus.metrics_snapshot().await?.get("queue_depth_normal");
            let transitions = drill
                .feed(vec![
                    Sample::new("training_latency_ms", e.latency_ms).with_label("run", &run),
                    Sample::new("bus_queue_depth", depth as f64),
                ])
                .await?;
            let sent = if transitions.is_empty() {
                Vec::new()
            } else {
                drill.flush(Duration::from_secs(30)).await?
            };
            let events = risk.on_epoch(&e).await?;
            print_epoch(&say, &e, &transitions, &sent, &events, &check)?;
            epochs.push(EpochReport {
                epoch: e,
                alerts: transitions,
                sent,
                risk: events,
            });
        }
        let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
        bus.ack(GROUP, Lane::Telemetry, &ids).await?;
    }

    // The job's own outcome lands in the store (and its field report) a moment later.
    let t0 = tokio::time::Instant::now();
    let state = loop {
        let s = console.job(id).await?.job.state;
        if s.is_final() || t0.elapsed() > Duration::from_secs(30) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    engine.shutdown().await;
    let snapshot = bus.metrics_snapshot().await?;
    let conservative = console.conservative().await?;
    let fired: Vec<&Transition> = epochs
        .iter()
        .flat_map(|e| &e.alerts)
        .filter(|t| t.kind == TransitionKind::Fired)
        .collect();
    let cleared = epochs
        .iter()
        .flat_map(|e| &e.alerts)
        .any(|t| t.kind == TransitionKind::Cleared);
    let risk_events: Vec<&str> = epochs
        .iter()
        .flat_map(|e| &e.risk)
        .map(|r| r.event)
        .collect();
    let ok = state == JobState::Succeeded
        && fired.iter().any(|t| t.rule == "training_latency_high")
        && cleared
        && risk_events.contains(&"pause_triggered")
        && risk_events.contains(&"bp_quarantine");
    if say.0 {
        say.line(format!(
            "training job {id}: {}\nbus: {} published, {} consumed, {} acked; normal {}, \
             emergency {}\nconservative mode: {}\n\nwhat to check now:",
            state.as_str(),
            snapshot.get("publish_total"),
            snapshot.get("consumed"),
            snapshot.get("acked"),
            snapshot.get("queue_depth_normal"),
            snapshot.get("queue_depth_emergency"),
            if conservative { "on" } else { "off" }
        ))?;
        let mut checks = vec![
            (
                check("reports tail"),
                "pause_triggered, bp_quarantine, job_succeeded",
            ),
            (
                check("status"),
                "conservative: on (the risk engine paused training)",
            ),
            (
                check("alerts history"),
                "training_latency_high firing, then resolved",
            ),
            (
                check("audit list"),
                "conservative.on by demo:tamiyo, with its reason",
            ),
            (check("conservative off"), "resume normal dispatch"),
        ];
        if o.bus == DemoBus::Redis {
            checks.push((
                check("bus streams"),
                "telemetry and policy streams, group tamiyo",
            ));
            checks.push((
                check("bus tail --stream policy"),
                "the risk engine's decisions",
            ));
        }
        for (cmd, what) in checks {
            say.line(format!("  {cmd:<60}  # {what}"))?;
        }
        say.line(if ok {
            "control loop complete: the alert fired and cleared, the risk engine paused \
             training and quarantined a blueprint"
        } else {
            "control loop INCOMPLETE: see above"
        })?;
    } else {
        let doc = json!({
            "home": dir,
            "bus": match o.bus { DemoBus::Inproc => "inproc", DemoBus::Redis => "redis" },
            "run": run,
            "job": {"id": id, "state": state.as_str()},
            "epochs": epochs,
            "risk_events": risk_events,
            "conservative": conservative,
            "bus_snapshot": snapshot,
            "ok": ok,
        });
        crate::output::print(ctx.global.format, &doc, String::new)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_epoch(
    say: &Say,
    e: &train::Epoch,
    transitions: &[Transition],
    sent: &[Sent],
    events: &[risk::RiskEvent],
    check: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    say.line(format!(
        "epoch {}: loss {:.3}  latency {:.1} ms{}  seeds active {}",
        e.epoch,
        e.loss,
        e.latency_ms,
        if e.latency_ms > risk::SLOW_MS {
            format!(" (over {} ms)", risk::SLOW_MS)
        } else {
            String::new()
        },
        e.seeds_active
    ))?;
    for t in transitions {
        let verb = t.kind.shout();
        say.line(format!(
            "  alert {verb} {} (value {}) → {}",
            t.rule,
            t.value,
            if t.routes.is_empty() {
                "no route".into()
            } else {
                t.routes.join(", ")
            }
        ))?;
    }
    for s in sent {
        say.line(format!("    {} {}: {}", s.route, s.outcome, s.body))?;
    }
    if !transitions.is_empty() {
        say.line(format!("    check: {}", check("alerts history")))?;
    }
    for ev in events {
        let what = match ev.event {
            "pause_triggered" => "conservative mode ON: only high-priority work is dispatched",
            "bp_quarantine" => "blueprint quarantined; the policy stream says so",
            _ => "",
        };
        say.line(format!("  risk: {} — {what} ({})", ev.event, ev.detail))?;
        say.line(format!("    check: {}", check("reports tail --limit 5")))?;
    }
    Ok(())
}
