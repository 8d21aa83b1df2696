//! `fabric run [SCENARIO]`: a scenario on the simulated fleet, with the live scoreboard, a
//! checkpoint and the JSON report. Exit 0 when every job is final, 3 when `--duration` ended
//! the run first, 2 on bad input (nothing is written then), 1 when another run holds the
//! checkpoint's directory.

use std::process::ExitCode;

use anyhow::Context as _;
use fabric_sim::runner::{drive, start, RunOptions, Stop, MAX_SPEED, MAX_TICK_MS, MIN_SPEED};
use fabric_sim::scenario::MAX_DURATION_SECONDS;
use fabric_sim::scoreboard::Scoreboard;
use fabric_sim::{load_checkpoint, Scenario};

use crate::cli::{Format, Global, RunArgs};
use crate::context::Usage;

/// The file holding the pid of the run that writes `checkpoint`, locked while it runs.
pub fn pid_file(checkpoint: &std::path::Path) -> std::path::PathBuf {
    checkpoint.with_file_name("run.pid")
}

/// The store of the run that writes `checkpoint`.
pub fn store_file(checkpoint: &std::path::Path) -> std::path::PathBuf {
    checkpoint
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("run.db"))
        .unwrap_or_else(|| "run.db".into())
}

/// Where `fabric run` writes its checkpoint unless told otherwise (under the current
/// directory).
pub const DEFAULT_CHECKPOINT: &str = "reports/planetary-fabric/checkpoint.json";

/// The pid and store of the live run of [`DEFAULT_CHECKPOINT`], if one holds its `run.pid`:
/// the owner levers (`fabric shards …`, `fabric conservative …`) steer that run.
pub fn live_run() -> anyhow::Result<Option<(u32, std::path::PathBuf)>> {
    let cp = std::path::Path::new(DEFAULT_CHECKPOINT);
    match fabric_engine::home::locked_pid(&pid_file(cp)) {
        None => Ok(None),
        Some(0) => anyhow::bail!(
            "a run is starting up in {}; ask again in a moment",
            cp.parent().unwrap_or(cp).display()
        ),
        Some(pid) => {
            let store = store_file(cp);
            let store = std::fs::canonicalize(&store)
                .with_context(|| format!("the run (pid {pid}) has no store {}", store.display()))?;
            Ok(Some((pid, store)))
        }
    }
}

/// Checks the flags that are plain numbers, naming the flag.
fn check_numbers(args: &RunArgs) -> Result<(), Usage> {
    if !(1..=MAX_TICK_MS).contains(&args.tick_ms) {
        return Err(Usage(format!(
            "--tick-ms {} must be 1..{MAX_TICK_MS}",
            args.tick_ms
        )));
    }
    if let Some(d) = args.duration {
        if !(d > 0.0 && d <= MAX_DURATION_SECONDS) {
            return Err(Usage(format!(
                "--duration {d} must be a number of seconds above 0 and at most {MAX_DURATION_SECONDS}"
            )));
        }
    }
    if let Some(x) = args.speed {
        if !(MIN_SPEED..=MAX_SPEED).contains(&x) {
            return Err(Usage(format!(
                "--speed {x} must be within {MIN_SPEED}..{MAX_SPEED} (times the wall clock)"
            )));
        }
    }
    Ok(())
}

/// Exit code of a run that a virtual `--duration` ended with jobs left.
const EXIT_INCOMPLETE: u8 = 3;

pub fn run(global: Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Everything is checked before anything is written.
    check_numbers(&args)?;
    if args.custom.is_some() && args.scenario.is_some() {
        return Err(Usage("give a scenario name or --custom FILE, not both".into()).into());
    }
    if let Some(p) = &args.export {
        if p.is_dir() {
            return Err(Usage(format!("--export {}: is a directory", p.display())).into());
        }
    }
    let (scenario, resume) = if args.resume {
        if args.custom.is_some() || args.jobs.is_some() || args.completion.is_some() {
            return Err(Usage(
                "--resume continues the checkpoint's scenario; drop --custom, --jobs and --completion"
                    .into(),
            )
            .into());
        }
        let cp = load_checkpoint(&args.checkpoint)?;
        (cp.state.orchestrator.scenario.clone(), Some(cp))
    } else {
        let base = match &args.custom {
            Some(f) => Scenario::from_custom_json(f)?,
            None => Scenario::builtin(args.scenario.as_deref().unwrap_or("edge-relief"))?,
        };
        (base.with_overrides(args.jobs, args.completion)?, None)
    };
    let store_path = store_file(&args.checkpoint);
    // One run per checkpoint directory: its `run.pid` is locked for as long as the run
    // lives, before the run's store is replaced.
    let pid_file = pid_file(&args.checkpoint);
    if let Some(dir) = pid_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut lock = fabric_engine::home::lock_pid_file(&pid_file)
        .with_context(|| format!("cannot open {}", pid_file.display()))?
        .map_err(|holder| {
            anyhow::anyhow!(
                "a run (pid {holder}) is already using {}; wait for it to end, or give this one \
                 another --checkpoint",
                store_path.display()
            )
        })?;
    let opts = RunOptions {
        scenario,
        seed: args.seed,
        duration_cap: args.duration,
        store_path,
        checkpoint_path: args.checkpoint.clone(),
        tick_ms: args.tick_ms,
        speed: args.speed,
        save_requested: Default::default(),
    };
    let json = matches!(global.format, Format::Json);
    let mut board = Scoreboard::stderr(args.quiet);
    // One thread drives the run: every step waits on the store anyway, and a single-thread
    // runtime saves the cross-thread wake-ups of a pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let flag = opts.save_requested.clone();
    let outcome = rt.block_on(async {
        // `fabric checkpoint save` sends SIGUSR1: a checkpoint at the next tick. The handler
        // is in place, and the run's store open, before the pid is published.
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let fabric = match start(&opts, resume).await {
            Ok(f) => f,
            Err(e) => return anyhow::Ok(Err(e)),
        };
        fabric_engine::home::write_pid(&mut lock)
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        anyhow::Ok(drive(&opts, fabric, &mut board).await)
    });
    // The file stays, empty and unlocked: removing it could let a run starting now lock a
    // file that the next one no longer finds.
    let _ = lock.set_len(0);
    drop(lock);
    let outcome = outcome??;
    let report = &outcome.report;
    if let Some(p) = &args.export {
        let tmp = p.with_extension("json.tmp");
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&tmp, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", report.summary());
        println!("checkpoint: {}", opts.checkpoint_path.display());
        if let Some(p) = &args.export {
            println!("report: {}", p.display());
        }
    }
    Ok(match outcome.stop {
        Stop::Complete => ExitCode::SUCCESS,
        Stop::Cut => ExitCode::from(EXIT_INCOMPLETE),
    })
}
