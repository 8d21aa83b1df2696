//! `fabric health [--verbose]` and `fabric health check NAME`.

use std::process::ExitCode;
use std::time::Duration;

use fabric_engine::console::{Check, Health};

use crate::cli::HealthCmd;
use crate::context::{Ctx, Usage};
use crate::output::{print, table};

/// Every check: the Console's (store, disk, config) plus the daemon's (workers, api).
pub async fn checks(ctx: &Ctx) -> anyhow::Result<Vec<Check>> {
    let console = ctx.console().await?;
    let mut checks = console.health_checks(ctx.home.root()).await;
    let pid = ctx.home.running_pid();
    checks.push(match pid {
        Some(pid) => {
            let max = ctx.config.workers.max_workers;
            let busy = console.workers(true).await.map_or(0, |w| w.active);
            Check::new(
                "workers",
                "ok",
                format!("daemon pid {pid}; {busy} of {max} worker slots busy"),
            )
        }
        None => Check::new(
            "workers",
            "warning",
            "the daemon is not running: no jobs are executed",
        ),
    });
    let api = &ctx.config.api;
    checks.push(if !api.enabled {
        Check::new("api", "ok", "disabled in config")
    } else if pid.is_none() {
        Check::new(
            "api",
            "warning",
            format!("not serving: the daemon is not running ({})", api.listen),
        )
    } else {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(api.listen.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => Check::new("api", "ok", format!("listening on {}", api.listen)),
            Ok(Err(e)) => Check::new("api", "error", format!("{}: {e}", api.listen)),
            Err(_) => Check::new("api", "error", format!("{}: no answer in 2 s", api.listen)),
        }
    });
    Ok(checks)
}

pub async fn run(ctx: &Ctx, verbose: bool, one: Option<HealthCmd>) -> anyhow::Result<ExitCode> {
    let mut all = checks(ctx).await?;
    if let Some(HealthCmd::Check { name }) = one {
        let names: Vec<String> = all.iter().map(|c| c.name.clone()).collect();
        all.retain(|c| c.name == name);
        if all.is_empty() {
            return Err(Usage(format!(
                "unknown check '{name}' (one of {})",
                names.join(", ")
            ))
            .into());
        }
    }
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
