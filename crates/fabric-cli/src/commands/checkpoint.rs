//! `fabric checkpoint save|load|show`: checkpoints of scenario runs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fabric_sim::load_checkpoint;
use serde_json::json;

use crate::cli::{CheckpointCmd, Global, RunArgs};
use crate::output::{pairs, print};

pub fn run(global: Global, cmd: CheckpointCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CheckpointCmd::Show { checkpoint } => {
            let cp = load_checkpoint(&checkpoint)?;
            let o = &cp.state.orchestrator;
            let m = &cp.state.metrics;
            let summary = json!({
                "path": checkpoint,
                "version": cp.version,
                "timestamp": cp.timestamp,
                "scenario": o.scenario.name,
                "seed": o.seed,
                "job_count": o.scenario.job_count,
                "virtual_seconds": o.virtual_ms as f64 / 1000.0,
                "jobs_generated": o.next_index,
                "pending": o.pending.len(),
                "in_flight": o.in_flight.len(),
                "metrics": m,
                "nodes": cp.state.registry.len(),
                "governance": cp.state.governance,
            });
            print(global.format, &summary, || {
                pairs(&[
                    ("path", checkpoint.display().to_string()),
                    ("version", cp.version.to_string()),
                    ("timestamp", cp.timestamp.clone()),
                    ("scenario", format!("{} (seed {})", o.scenario.name, o.seed)),
                    (
                        "progress",
                        format!(
                            "{} completed, {} failed of {} at virtual {:.1} s",
                            m.completed,
                            m.failed,
                            o.scenario.job_count,
                            o.virtual_ms as f64 / 1000.0
                        ),
                    ),
                    (
                        "queued",
                        format!(
                            "{} pending, {} in flight (queued again on load)",
                            o.pending.len(),
                            o.in_flight.len()
                        ),
                    ),
                ])
            })?;
            Ok(ExitCode::SUCCESS)
        }
        CheckpointCmd::Load { checkpoint, quiet } => super::run::run(
            global,
            RunArgs {
                scenario: None,
                jobs: None,
                completion: None,
                duration: None,
                export: None,
                resume: true,
                custom: None,
                seed: 42,
                checkpoint,
                tick_ms: 100,
                speed: None,
                quiet,
            },
        ),
        CheckpointCmd::Save { checkpoint } => {
            // Only a run that holds the lock of `run.pid` is signalled: a pid left in an
            // unlocked file may belong to an unrelated process by now, which SIGUSR1 kills.
            let pid_file = super::run::pid_file(&checkpoint);
            let pid = match fabric_engine::home::locked_pid(&pid_file) {
                None => bail!(
                    "no run is in progress (no live run holds {})",
                    pid_file.display()
                ),
                Some(0) => bail!("the run is starting up; ask again in a moment"),
                Some(p) => i32::try_from(p)
                    .with_context(|| format!("{}: pid {p} is out of range", pid_file.display()))?,
            };
            let before = std::fs::metadata(&checkpoint)
                .and_then(|m| m.modified())
                .ok();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .with_context(|| format!("the run (pid {pid}) is gone"))?;
            let t0 = Instant::now();
            loop {
                let now = std::fs::metadata(&checkpoint)
                    .and_then(|m| m.modified())
                    .ok();
                if now.is_some() && now != before {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("the run (pid {pid}) wrote no checkpoint within 30 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            print(
                global.format,
                &json!({"path": checkpoint, "pid": pid}),
                || format!("checkpoint written: {}", checkpoint.display()),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
