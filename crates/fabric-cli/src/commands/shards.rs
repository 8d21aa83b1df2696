//! `fabric shards list|add|remove|pause|resume|resume-all|set-spillover|set-latency-budget`
//! and `fabric conservative on|off`: the owner levers, persisted and audited. While a
//! `fabric run` of the current directory is live, they steer that run (its store).

use std::process::ExitCode;

use std::sync::Arc;

use fabric_core::Shard;
use fabric_engine::Console;
use serde_json::json;

use crate::cli::ShardsCmd;
use crate::context::Ctx;
use crate::output::{print, table};

fn shard_table(shards: &[Shard]) -> String {
    table(
        &["shard", "paused", "spillover_limit", "latency_budget_ms"],
        shards
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    if s.paused { "yes" } else { "" }.into(),
                    s.spillover_limit.to_string(),
                    s.latency_budget_ms.to_string(),
                ]
            })
            .collect(),
    )
}

/// A Console on the store the levers act on: a live run's (saying so on stderr), else the
/// configured one.
async fn lever_console(ctx: &Ctx) -> anyhow::Result<Console> {
    let Some((pid, store)) = super::run::live_run()? else {
        return ctx.console().await;
    };
    eprintln!(
        "steering the running scenario (pid {pid}): {}",
        store.display()
    );
    let mut config = (*ctx.config).clone();
    config.store.backend = "sqlite".into();
    config.store.path = store.display().to_string();
    Ctx {
        home: ctx.home.clone(),
        config: Arc::new(config),
        global: ctx.global.clone(),
    }
    .console()
    .await
}

pub async fn run(ctx: &Ctx, cmd: ShardsCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    let c = lever_console(ctx).await?;
    let changed = match cmd {
        ShardsCmd::List => {
            let shards = c.shards().await?;
            print(f, &shards, || shard_table(&shards))?;
            return Ok(ExitCode::SUCCESS);
        }
        ShardsCmd::ResumeAll { reason } => {
            let shards = c.resume_all(reason.as_deref()).await?;
            print(f, &shards, || format!("resumed {} shards", shards.len()))?;
            return Ok(ExitCode::SUCCESS);
        }
        ShardsCmd::Remove { name, reason } => {
            c.remove_shard(&name, reason.as_deref()).await?;
            print(f, &json!({"removed": name}), || {
                format!("shard {name} removed")
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        ShardsCmd::Add { name, reason } => c.add_shard(&name, reason.as_deref()).await?,
        ShardsCmd::Pause { name, reason } => c.pause_shard(&name, reason.as_deref()).await?,
        ShardsCmd::Resume { name, reason } => c.resume_shard(&name, reason.as_deref()).await?,
        ShardsCmd::SetSpillover {
            name,
            limit,
            reason,
        } => {
            c.update_spillover_limit(&name, limit, reason.as_deref())
                .await?
        }
        ShardsCmd::SetLatencyBudget { name, ms, reason } => {
            c.update_latency_budget(&name, ms, reason.as_deref())
                .await?
        }
    };
    print(f, &changed, || shard_table(std::slice::from_ref(&changed)))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn conservative(ctx: &Ctx, on: bool, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    lever_console(ctx)
        .await?
        .set_conservative(on, reason)
        .await?;
    print(ctx.global.format, &json!({"conservative": on}), || {
        if on {
            "conservative mode on: only high-priority work is dispatched".into()
        } else {
            "conservative mode off".into()
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
