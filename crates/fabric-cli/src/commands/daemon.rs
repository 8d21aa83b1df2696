//! `fabric start` and `fabric stop`: the daemon's life cycle. The daemon holds the pid-file
//! lock, recovers after a crash, runs the engine and the HTTP API, and stops gracefully on
//! SIGTERM or SIGINT.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fabric_core::{Clock, RealClock};
use fabric_engine::{recovery, Console, Engine, EngineOptions, Metrics, Registry};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::context::{runtime, Ctx};

/// How long `start` waits for a background daemon to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn start(ctx: Ctx, foreground: bool) -> anyhow::Result<ExitCode> {
    if let Some(pid) = ctx.home.running_pid() {
        let pid = if pid == 0 {
            "starting up".to_string()
        } else {
            pid.to_string()
        };
        bail!("fabric is already running (pid {pid}); stop it first with `fabric stop`");
    }
    ctx.ensure_home()?;
    if foreground {
        if std::env::var_os(crate::logging::BACKGROUND_ENV).is_some() {
            crate::logging::to_file(&ctx.home.log_file(), &ctx.config.logs)?;
        }
        return runtime()?.block_on(run_daemon(ctx));
    }
    let exe = std::env::current_exe().context("cannot find the fabric executable")?;
    let log_path = ctx.home.log_file();
    // The daemon logs to fabric.log itself (rotated); its raw stdout/stderr (panics, a
    // start-up error) go here, set aside as `.1` once past logs.max_bytes.
    let stderr_path = log_path.with_file_name("daemon.stderr");
    if std::fs::metadata(&stderr_path).is_ok_and(|m| m.len() > ctx.config.logs.max_bytes) {
        let _ = std::fs::rename(&stderr_path, log_path.with_file_name("daemon.stderr.1"));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_path)
        .with_context(|| format!("cannot open {}", stderr_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("start").arg("--foreground");
    if let Some(c) = &ctx.global.config {
        cmd.arg("--config").arg(std::path::absolute(c)?);
    }
    if std::env::var_os("FABRIC_LOG").is_none() {
        cmd.env("FABRIC_LOG", "info");
    }
    use std::os::unix::process::CommandExt;
    cmd.env("FABRIC_HOME", ctx.home.root())
        .env(crate::logging::BACKGROUND_ENV, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal does not reach the daemon.
        .process_group(0);
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let pid = child.id();
    let t0 = Instant::now();
    while t0.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the daemon exited during start-up ({status}); last log lines:\n{}\n{}",
                log_tail(&log_path, 10),
                log_tail(&stderr_path, 10)
            );
        }
        if ctx.home.running_pid() == Some(pid) {
            println!(
                "fabric started (pid {pid}); log: {}{}",
                log_path.display(),
                if ctx.config.api.enabled {
                    format!("; api: http://{}", ctx.config.api.listen)
                } else {
                    String::new()
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "the daemon (pid {pid}) did not become ready within {}s; see {}",
        READY_TIMEOUT.as_secs(),
        log_path.display()
    )
}

fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn run_daemon(ctx: Ctx) -> anyhow::Result<ExitCode> {
    let home = ctx.home.clone();
    let config = ctx.config.clone();
    let mut pid_file = home.lock_pid()?;
    // Handlers first: once the pid is published, `fabric stop` may send SIGTERM and
    // `fabric jobs submit` SIGUSR1 (new work is due now) at any moment.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut nudge = signal(SignalKind::user_defined1())?;
    let marker = home.recovery_marker();
    let crashed = recovery::crashed(&marker);
    let store = fabric_engine::open_store(&config, &home).await?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let options = EngineOptions::from_config(config.clone());
    fabric_engine::fleet::check_node_id(
        &*store,
        &config.node.id,
        clock.now_ms(),
        options.fleet.node_timeout,
    )
    .await?;
    if let Some(report) = recovery::recover(&*store, &*clock, &config.node.id, crashed).await? {
        let path = home
            .root()
            .join("reports")
            .join(format!("recovery-{}.json", report.at));
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        tracing::warn!(report = %path.display(), "recovery report written");
    }
    // recovery.keep and backups.keep in this daemon's home (the leader prunes the store).
    fabric_engine::retention::prune_home(&home, &config);
    let listener = if config.api.enabled {
        Some(
            tokio::net::TcpListener::bind(&config.api.listen)
                .await
                .with_context(|| format!("api.listen: cannot listen on {}", config.api.listen))?,
        )
    } else {
        None
    };
    let token = api_token(&config)?;
    std::fs::write(&marker, std::process::id().to_string())
        .with_context(|| format!("cannot write {}", marker.display()))?;

    let registry = Registry::for_config(&config);
    let metrics = Metrics::new();
    let engine = Engine::start(
        store.clone(),
        registry.clone(),
        clock.clone(),
        metrics.clone(),
        options,
    );
    let console = Console::new(store.clone(), registry, config.clone(), clock, "daemon")
        .with_engine(engine.waker(), metrics.clone());
    let (api_stop, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = listener.map(|listener| {
        let state = fabric_api::ApiState {
            console: console.clone(),
            metrics: metrics.clone(),
            token,
            max_body_bytes: config.api.max_body_bytes,
            home: home.root().to_path_buf(),
            config_file: ctx
                .global
                .config
                .clone()
                .unwrap_or_else(|| home.config_file()),
            config_named: ctx.global.config.is_some(),
            listen: None,
        };
        tokio::spawn(fabric_api::serve(listener, state, async move {
            let _ = api_stop_rx.await;
        }))
    });
    console
        .record("daemon.start", &format!("pid {}", std::process::id()), None)
        .await?;
    fabric_engine::home::write_pid(&mut pid_file)?;
    tracing::info!(
        pid = std::process::id(),
        owner = engine.owner(),
        workers = config.workers.max_workers,
        "fabric daemon ready"
    );

    let waker = engine.waker();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // New work is due, or a job was cancelled (a lease check stops its attempt).
            _ = nudge.recv() => {
                waker.wake();
                waker.check_leases();
            }
        }
    }
    tracing::info!("stopping: no new claims, waiting for in-flight jobs");
    let abandoned = engine.shutdown().await;
    let _ = api_stop.send(());
    if let Some(api) = api {
        let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    }
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "jobs still running at the stop timeout; they are rescued on the next start"
        );
    }
    if let Err(e) = store.checkpoint().await {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_file(home.pid_file());
    tracing::info!("fabric daemon stopped");
    drop(pid_file);
    Ok(ExitCode::SUCCESS)
}

/// The API token from `api.token` or `api.token_file`.
fn api_token(config: &fabric_core::config::Config) -> anyhow::Result<Option<String>> {
    if let Some(t) = &config.api.token {
        return Ok(Some(t.clone()));
    }
    match &config.api.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("api.token_file: cannot read {p}"))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("api.token_file: {p} is empty");
            }
            Ok(Some(t))
        }
        None => Ok(None),
    }
}

pub fn stop(ctx: Ctx, timeout: Option<u64>, force: bool) -> anyhow::Result<ExitCode> {
    let Some(pid) = ctx.home.running_pid() else {
        println!("fabric is not running");
        return Ok(ExitCode::SUCCESS);
    };
    if pid == 0 {
        bail!("the daemon is still starting up; try again in a moment");
    }
    let signal = if force {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("cannot signal pid {pid}"))?;
    let wait =
        Duration::from_secs(timeout.unwrap_or(ctx.config.workers.shutdown_timeout_seconds + 5));
    let t0 = Instant::now();
    while ctx.home.running_pid().is_some() {
        if t0.elapsed() > wait {
            bail!(
                "the daemon (pid {pid}) is still running after {}s; `fabric stop --force` kills it",
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime()?.block_on(async {
        ctx.console()
            .await?
            .record(
                "daemon.stop",
                &format!("pid {pid}"),
                Some(if force {
                    "forced (SIGKILL)"
                } else {
                    "graceful (SIGTERM)"
                }),
            )
            .await?;
        anyhow::Ok(())
    })?;
    println!(
        "fabric stopped (pid {pid}{})",
        if force {
            "; killed: its running jobs are rescued on the next start"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
