//! `fabric run [SCENARIO]`: a scenario on the simulated fleet, with the live scoreboard, a
//! checkpoint and the JSON report. Exit 0 when every job is final, 3 when `--duration` ended
//! the run first, 2 on bad input (nothing is written then).

use std::process::ExitCode;

use anyhow::Context as _;
use fabric_sim::runner::{execute, RunOptions, Stop};
use fabric_sim::scoreboard::Scoreboard;
use fabric_sim::{load_checkpoint, Scenario};

use crate::cli::{Format, Global, RunArgs};
use crate::context::Usage;

/// The file holding the pid of the run that writes `checkpoint`.
pub fn pid_file(checkpoint: &std::path::Path) -> std::path::PathBuf {
    checkpoint.with_file_name("run.pid")
}

/// Exit code of a run that a virtual `--duration` ended with jobs left.
const EXIT_INCOMPLETE: u8 = 3;

pub fn run(global: Global, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Everything is checked before anything is written.
    if args.tick_ms == 0 {
        return Err(Usage("--tick-ms 0 must be at least 1".into()).into());
    }
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            return Err(Usage(format!(
                "--duration {d} must be a number of seconds above 0"
            ))
            .into());
        }
    }
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
    let store_path = args
        .checkpoint
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join("run.db"))
        .unwrap_or_else(|| "run.db".into());
    let opts = RunOptions {
        scenario,
        seed: args.seed,
        duration_cap: args.duration,
        store_path,
        checkpoint_path: args.checkpoint.clone(),
        tick_ms: args.tick_ms,
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
    let pid_file = pid_file(&opts.checkpoint_path);
    let flag = opts.save_requested.clone();
    let outcome = rt.block_on(async {
        // `fabric checkpoint save` sends SIGUSR1: a checkpoint at the next tick. The handler
        // is in place before the pid is published.
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        if let Some(dir) = pid_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&pid_file, std::process::id().to_string())
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        anyhow::Ok(execute(&opts, resume, &mut board).await)
    });
    let _ = std::fs::remove_file(&pid_file);
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
