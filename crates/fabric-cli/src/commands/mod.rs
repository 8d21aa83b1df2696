//! One module per command group; each parses its arguments and calls the Console.

mod alerts;
pub mod batch;
mod bench;
mod bench_alerts;
pub mod bench_batch;
mod bench_bus;
mod bench_events;
mod bench_ingest;
pub mod bench_workers;
mod bus;
mod checkpoint;
mod config;
mod corpus;
mod daemon;
mod db;
mod demo;
mod docs;
mod drill;
mod health;
mod jobs;
mod nodes;
mod quarantine;
mod reports;
mod run;
pub mod schedules;
mod shards;
mod sources;
mod status;
mod telemetry;
mod telemetry_feed;
mod trigger_wait;

use std::process::ExitCode;

use crate::cli::{AuditCmd, BenchArgs, BenchCmd, Cli, Command};
use crate::context::{parse_since, runtime, Ctx};
use crate::output::{print, table, time};

/// Runs one command and returns its exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        // Commands that must work on a broken config handle loading themselves.
        Command::Config(cmd) => config::run(global, cmd),
        Command::Bench(BenchArgs {
            what: Some(BenchCmd::Ingest(args)),
            ..
        }) => bench_ingest::run(global, args),
        Command::Bench(BenchArgs {
            what: Some(BenchCmd::Bus(args)),
            ..
        }) => bench_bus::run(global, args),
        Command::Bench(BenchArgs {
            what: Some(BenchCmd::Alerts(args)),
            ..
        }) => bench_alerts::run(global, args),
        Command::Bench(BenchArgs {
            what: Some(BenchCmd::Batch(args)),
            ..
        }) => bench_batch::run(global, args),
        Command::Bench(BenchArgs {
            what: Some(BenchCmd::Workers(args)),
            ..
        }) => bench_workers::run(global, args),
        Command::Bench(args) => bench::run(global, args),
        Command::Extractor {
            memory_bytes,
            output_cap_bytes,
        } => Ok(fabric_ingest::isolate::child_main(
            fabric_ingest::isolate::ChildOptions {
                memory_bytes,
                output_cap_bytes,
            },
        )),
        Command::Run(args) => run::run(global, args),
        Command::Checkpoint(cmd) => checkpoint::run(global, cmd),
        Command::Start { foreground } => daemon::start(Ctx::load(global)?, foreground),
        Command::Stop {
            timeout,
            node,
            all,
            force,
        } => daemon::stop(
            Ctx::load(global)?,
            daemon::Targets { node, all },
            timeout,
            force,
        ),
        command => {
            let ctx = Ctx::load(global)?;
            runtime()?.block_on(async move {
                match command {
                    Command::Status { verbose } => status::run(&ctx, verbose).await,
                    Command::Jobs(cmd) => jobs::run(&ctx, cmd).await,
                    Command::Batch(cmd) => batch::run(&ctx, cmd).await,
                    Command::Schedules(cmd) => schedules::run(&ctx, cmd).await,
                    Command::Quarantine(cmd) => quarantine::run(&ctx, cmd).await,
                    Command::Sources(cmd) => sources::run(&ctx, cmd).await,
                    Command::Telemetry(cmd) => telemetry::run(&ctx, cmd).await,
                    Command::Reports(cmd) => reports::run(&ctx, cmd).await,
                    Command::Alerts(cmd) => alerts::run(&ctx, cmd).await,
                    Command::Bus(cmd) => bus::run(&ctx, cmd).await,
                    Command::Drill { kind, dry_run } => drill::run(&ctx, kind, dry_run).await,
                    Command::Demo(crate::cli::DemoCmd::ControlLoop {
                        bus,
                        epochs,
                        epoch_ms,
                        dir,
                    }) => {
                        let o = demo::Options {
                            bus,
                            epochs,
                            epoch_ms,
                            dir,
                        };
                        demo::control_loop(&ctx, o).await
                    }
                    Command::Db(cmd) => db::run(&ctx, cmd).await,
                    Command::Health { verbose, one } => health::run(&ctx, verbose, one).await,
                    Command::Nodes(cmd) => nodes::run(&ctx, cmd).await,
                    Command::Docs(cmd) => docs::run(&ctx, cmd).await,
                    Command::Shards(cmd) => shards::run(&ctx, cmd).await,
                    Command::Conservative { state, reason } => {
                        shards::conservative(&ctx, state == "on", reason.as_deref()).await
                    }
                    Command::Audit(AuditCmd::List { since, limit }) => {
                        let since = parse_since(since.as_deref())?;
                        let log = ctx.console().await?.audit_log(since, limit).await?;
                        print(ctx.global.format, &log, || {
                            table(
                                &["at", "actor", "action", "target", "reason"],
                                log.iter()
                                    .map(|e| {
                                        vec![
                                            time(Some(e.at)),
                                            e.actor.clone(),
                                            e.action.clone(),
                                            e.target.clone(),
                                            e.reason.clone().unwrap_or_default(),
                                        ]
                                    })
                                    .collect(),
                            )
                        })?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::Recovery => {
                        let r = ctx.console().await?.last_recovery().await?;
                        print(ctx.global.format, &r, || match &r {
                            None => "no crash recovery has run".into(),
                            Some(r) => crate::output::pairs(&[
                                ("at", time(Some(r.at))),
                                ("jobs_reset_to_pending", r.jobs_reset_to_pending.to_string()),
                                ("jobs_quarantined", r.jobs_quarantined.to_string()),
                                ("duration_ms", format!("{:.1}", r.duration_ms)),
                                ("wal_checkpointed", r.wal_checkpointed.to_string()),
                                ("integrity", r.integrity.clone()),
                                ("errors", r.errors.join("; ")),
                            ]),
                        })?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Command::Config(_)
                    | Command::Bench(_)
                    | Command::Extractor { .. }
                    | Command::Run(_)
                    | Command::Checkpoint(_)
                    | Command::Start { .. }
                    | Command::Stop { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    }
}
