//! `fabric health [--verbose]` and `fabric health check NAME`.

use std::process::ExitCode;

use fabric_engine::{Check, Health, HealthInput};

use crate::cli::HealthCmd;
use crate::context::{Ctx, Usage};
use crate::output::{print, table};

/// The checks `names` (every one when empty), in that order: the Console's (store, disk,
/// config, workers, docs, each source) and the API probe.
pub async fn checks(ctx: &Ctx, names: &[&str]) -> anyhow::Result<Vec<Check>> {
    let console = ctx.console().await?;
    let all = fabric_api::check_names(&console).await;
    let pid = ctx.home.running_pid();
    let config_file = ctx
        .global
        .config
        .clone()
        .unwrap_or_else(|| ctx.home.config_file());
    let input = HealthInput {
        home: ctx.home.root(),
        config_file: &config_file,
        config_named: ctx.global.config.is_some(),
        daemon_pid: pid,
        busy: None,
        cached_integrity: false,
    };
    let names: Vec<&str> = if names.is_empty() {
        all.iter().map(String::as_str).collect()
    } else {
        names.to_vec()
    };
    let mut out = Vec::new();
    for name in names {
        if name == "api" {
            let api = &ctx.config.api;
            out.push(if !api.enabled {
                Check::new("api", "ok", "disabled in config")
            } else if pid.is_none() {
                Check::new(
                    "api",
                    "warning",
                    format!("not serving: the daemon is not running ({})", api.listen),
                )
            } else {
                fabric_api::probe(&api.listen).await
            });
        } else {
            out.extend(console.health_check(name, &input).await);
        }
    }
    Ok(out)
}

pub async fn run(ctx: &Ctx, verbose: bool, one: Option<HealthCmd>) -> anyhow::Result<ExitCode> {
    let all = match &one {
        Some(HealthCmd::Check { name }) => {
            let known = fabric_api::check_names(&ctx.console().await?).await;
            if !known.contains(name) {
                return Err(Usage(format!(
                    "unknown check '{name}' (one of {})",
                    known.join(", ")
                ))
                .into());
            }
            checks(ctx, &[name.as_str()]).await?
        }
        None => checks(ctx, &[]).await?,
    };
    // One check asked for by name is shown whatever its status.
    let verbose = verbose || one.is_some();
    let health = Health::from_checks(all);
    print(ctx.global.format, &health, || {
        let mut out = format!("status: {}\n", health.status);
        let rows = health
            .checks
            .iter()
            .filter(|c| verbose || c.status != "ok")
            .map(|c| vec![c.name.clone(), c.status.clone(), c.detail.clone()])
            .collect::<Vec<_>>();
        if !rows.is_empty() {
            out.push_str(&table(&["check", "status", "detail"], rows));
        }
        out
    })?;
    Ok(if health.status == "error" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
