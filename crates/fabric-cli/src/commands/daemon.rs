//! `fabric start` and `fabric stop`: the daemon's life cycle. Each daemon holds the pid-file
//! lock of its node id (several nodes may run from one home), recovers after its own crash,
//! runs the engine (with the outbox publisher on the configured bus) and the HTTP API, and
//! stops gracefully on SIGTERM or SIGINT, within the timeout `fabric stop --timeout` left
//! for it.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fabric_core::{Clock, RealClock};
use fabric_engine::home::Daemon;
use fabric_engine::{recovery, Console, Engine, EngineOptions, Metrics};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::context::{runtime, Ctx, Usage};

/// How long `start` waits for a background daemon to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What `stop` waits beyond the daemon's own stop timeout: writing the last completions,
/// leaving the fleet, the final checkpoint.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub fn start(ctx: Ctx, foreground: bool) -> anyhow::Result<ExitCode> {
    let node = ctx.config.node.id.clone();
    if let Some(d) = ctx.home.daemon(&node) {
        let pid = if d.pid == 0 {
            "starting up".to_string()
        } else {
            d.pid.to_string()
        };
        bail!(
            "fabric is already running (pid {pid}) as node '{node}'; stop it first with \
             `fabric stop`, or give this daemon another node.id"
        );
    }
    ctx.ensure_home()?;
    if foreground {
        if std::env::var_os(crate::logging::BACKGROUND_ENV).is_some() {
            crate::logging::to_file(&ctx.home.log_file(&node), &ctx.config.logs)?;
        }
        return runtime()?.block_on(run_daemon(ctx));
    }
    let exe = std::env::current_exe().context("cannot find the fabric executable")?;
    let log_path = ctx.home.log_file(&node);
    // The daemon logs to its fabric-<node>.log itself (rotated); its raw stdout/stderr
    // (panics, a start-up error) go here, set aside as `.1` once past logs.max_bytes.
    let stderr_path = log_path.with_file_name(format!("daemon-{node}.stderr"));
    if std::fs::metadata(&stderr_path).is_ok_and(|m| m.len() > ctx.config.logs.max_bytes) {
        let _ = std::fs::rename(
            &stderr_path,
            log_path.with_file_name(format!("daemon-{node}.stderr.1")),
        );
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
        if ctx
            .home
            .daemon(&node)
            .is_some_and(|d| d.pid == pid && d.ready)
        {
            println!(
                "fabric started (pid {pid}, node '{node}'); log: {}{}",
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
    let node = config.node.id.clone();
    let mut lock = home.lock_daemon(&node)?;
    // A request left by a `fabric stop` that never reached its daemon is not ours.
    let _ = std::fs::remove_file(home.stop_request(&node));
    // Handlers first: once the pid is published, `fabric stop` may send SIGTERM and
    // `fabric jobs submit` SIGUSR1 (new work is due now) at any moment.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut nudge = signal(SignalKind::user_defined1())?;
    let marker = home.recovery_marker(&node);
    let crashed = recovery::crashed(&marker);
    let store = fabric_engine::open_store(&config, &home).await?;
    // Events are captured from here on (recovery's resets too); the bus may still be away
    // (Redis down): they wait in the outbox until it is reachable.
    fabric_engine::outbox::set_capture(&*store, config.bus.events).await?;
    // The daemon's one bus, shared by its parts (the outbox publisher; alerts, the API).
    let bus: Arc<dyn fabric_bus::Bus> = fabric_bus::open_lazy(config.bus.clone())
        .await
        .context("bus")?;
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let mut options = EngineOptions::from_config(config.clone());
    options.outbox = Some(fabric_engine::OutboxOptions::from_config(
        &config,
        bus.clone(),
    ));
    if config.reports.enabled {
        options.reports = Some(fabric_engine::reports::ReportsOptions {
            dir: fabric_engine::reports::dir_of(home.root()),
            retention_days: config.reports.retention_days,
        });
    }
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
    let tokens = api_tokens(&config)?;
    std::fs::write(&marker, std::process::id().to_string())
        .with_context(|| format!("cannot write {}", marker.display()))?;

    let metrics = Metrics::new();
    let registry = crate::context::registry(&config, store.clone(), metrics.clone());
    let engine = Engine::start(
        store.clone(),
        registry.clone(),
        clock.clone(),
        metrics.clone(),
        options,
    );
    // Alerts: evaluated and delivered while this daemon leads the fleet.
    let alerts = config.alerts.enabled.then(|| {
        let m = metrics.clone();
        fabric_alerts::AlertsRuntime::start(
            store.clone(),
            Arc::new(config.alerts.clone()),
            clock.clone(),
            format!("{}:alerts", engine.owner()),
            Arc::new(move || m.leader.get() == 1),
        )
    });
    // Samples other producers publish on the bus's telemetry stream go to the same rules.
    let feed = alerts.as_ref().map(|a| {
        let m = metrics.clone();
        super::telemetry_feed::start(
            bus.clone(),
            a.engine(),
            format!("{}:feed", config.node.id),
            Arc::new(move || m.leader.get() == 1),
        )
    });
    let console = Console::new(store.clone(), registry, config.clone(), clock, "daemon")
        .with_sources_file(home.sources_file())
        .with_engine(engine.waker(), metrics.clone());
    let (api_stop, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api = listener.map(|listener| {
        let state = fabric_api::ApiState {
            console: console.clone(),
            metrics: metrics.clone(),
            access: fabric_api::Access::new(token, tokens),
            max_body_bytes: config.api.max_body_bytes,
            home: home.root().to_path_buf(),
            config_file: ctx
                .global
                .config
                .clone()
                .unwrap_or_else(|| home.config_file()),
            config_named: ctx.global.config.is_some(),
            listen: None,
            alerts: Some(alerts_view(store.clone())),
            bus: Some(bus.clone()),
        };
        tokio::spawn(fabric_api::serve(listener, state, async move {
            let _ = api_stop_rx.await;
        }))
    });
    console
        .record("daemon.start", &format!("pid {}", std::process::id()), None)
        .await?;
    lock.ready()?;
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
    let timeout = home
        .take_stop_request(&node)
        .unwrap_or(Duration::from_secs(config.workers.shutdown_timeout_seconds));
    tracing::info!(
        timeout_seconds = timeout.as_secs_f64(),
        "stopping: no new claims, waiting for in-flight jobs"
    );
    let abandoned = engine.shutdown_within(timeout).await;
    if let Some(feed) = feed {
        feed.abort();
    }
    if let Some(alerts) = alerts {
        // A send under way ends within its route's timeout; a stuck one is not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(10), alerts.shutdown()).await;
    }
    let _ = api_stop.send(());
    if let Some(api) = api {
        let _ = tokio::time::timeout(Duration::from_secs(5), api).await;
    }
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "jobs still running at the stop timeout were cut off and returned to pending"
        );
    }
    if let Err(e) = store.checkpoint().await {
        tracing::warn!(error = %e, "final WAL checkpoint failed");
    }
    let _ = std::fs::remove_file(&marker);
    tracing::info!("fabric daemon stopped");
    lock.release();
    Ok(ExitCode::SUCCESS)
}

/// The firing alerts as `/metrics/summary` shows them, read from the store (so every
/// daemon of the fleet shows them, not only the leader that evaluates them).
fn alerts_view(store: Arc<dyn fabric_store::Store>) -> fabric_api::AlertsView {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            let active = fabric_alerts::active_summary(&*store)
                .await
                .map_err(|e| fabric_engine::EngineError::Unavailable(e.to_string()))?;
            serde_json::to_value(active)
                .map_err(|e| fabric_engine::EngineError::Failed(e.to_string()))
        })
    })
}

/// The named API tokens of `api.tokens`, each secret read from its `token_file` if need be.
fn api_tokens(config: &fabric_core::config::Config) -> anyhow::Result<Vec<fabric_api::Credential>> {
    let mut out = Vec::with_capacity(config.api.tokens.len());
    for (i, t) in config.api.tokens.iter().enumerate() {
        let Some(secret) = secret(
            t.token.as_ref(),
            t.token_file.as_ref(),
            &format!("api.tokens[{i}]"),
        )?
        else {
            bail!("api.tokens[{i}]: token or token_file is required");
        };
        out.push(fabric_api::Credential {
            name: t.name.clone(),
            secret,
            role: t.role,
        });
    }
    Ok(out)
}

/// The API token from `api.token` or `api.token_file`.
fn api_token(config: &fabric_core::config::Config) -> anyhow::Result<Option<String>> {
    secret(
        config.api.token.as_ref(),
        config.api.token_file.as_ref(),
        "api",
    )
}

/// A secret given inline, else read from a file (trimmed; an empty file is an error naming
/// `<field>.token_file`); None when neither is set.
fn secret(
    inline: Option<&String>,
    file: Option<&String>,
    field: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(t) = inline {
        return Ok(Some(t.clone()));
    }
    let Some(p) = file else { return Ok(None) };
    let t = std::fs::read_to_string(p)
        .with_context(|| format!("{field}.token_file: cannot read {p}"))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("{field}.token_file: {p} is empty");
    }
    Ok(Some(t))
}

/// Which daemons `fabric stop` stops.
pub struct Targets {
    /// `--node ID`: that node's daemon.
    pub node: Option<String>,
    /// `--all`: every daemon of the home.
    pub all: bool,
}

/// Stops daemons of this home. Without `--node` or `--all`, the one daemon that runs; with
/// several running it refuses (exit 2) and lists them.
pub fn stop(
    ctx: Ctx,
    targets: Targets,
    timeout: Option<u64>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let running = ctx.home.daemons();
    let chosen: Vec<Daemon> = match &targets.node {
        Some(node) => {
            fabric_core::job::validate_name("--node", node).map_err(|e| Usage(e.to_string()))?;
            running
                .iter()
                .filter(|d| &d.node == node)
                .cloned()
                .collect()
        }
        None if targets.all || running.len() <= 1 => running.clone(),
        None => {
            return Err(Usage(format!(
                "{} daemons run from this home: {}; name one with `fabric stop --node ID`, or \
                 stop them all with `fabric stop --all`",
                running.len(),
                list(&running)
            ))
            .into())
        }
    };
    if chosen.is_empty() {
        match &targets.node {
            Some(node) if !running.is_empty() => {
                println!("node '{node}' is not running (running: {})", list(&running))
            }
            Some(node) => println!("fabric is not running (node '{node}')"),
            None => println!("fabric is not running"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(d) = chosen.iter().find(|d| d.pid == 0 || (!d.ready && !force)) {
        bail!(
            "the daemon of node '{}' is still starting up; try again in a moment",
            d.node
        );
    }
    let timeout = timeout.map(Duration::from_secs);
    for d in &chosen {
        let signal = if force {
            Signal::SIGKILL
        } else {
            if let Some(t) = timeout {
                ctx.home
                    .request_stop(&d.node, d.pid, t)
                    .with_context(|| format!("cannot ask node '{}' to stop", d.node))?;
            }
            Signal::SIGTERM
        };
        kill(Pid::from_raw(d.pid as i32), signal)
            .with_context(|| format!("cannot signal pid {}", d.pid))?;
    }
    let wait = timeout.unwrap_or(Duration::from_secs(
        ctx.config.workers.shutdown_timeout_seconds,
    )) + STOP_GRACE;
    let t0 = Instant::now();
    let gone = |d: &Daemon| ctx.home.daemon(&d.node).is_none_or(|now| now.pid != d.pid);
    while let Some(d) = chosen.iter().find(|d| !gone(d)) {
        if t0.elapsed() > wait {
            bail!(
                "the daemon of node '{}' (pid {}) is still running after {}s; \
                 `fabric stop --node {} --force` kills it",
                d.node,
                d.pid,
                wait.as_secs(),
                d.node
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    runtime()?.block_on(async {
        let console = ctx.console().await?;
        for d in &chosen {
            console
                .record(
                    "daemon.stop",
                    &format!("node {} pid {}", d.node, d.pid),
                    Some(if force {
                        "forced (SIGKILL)"
                    } else {
                        "graceful (SIGTERM)"
                    }),
                )
                .await?;
        }
        anyhow::Ok(())
    })?;
    for d in &chosen {
        println!(
            "fabric stopped (pid {}, node '{}'{})",
            d.pid,
            d.node,
            if force {
                "; killed: its running jobs are rescued on the next start"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `node 'a' (pid 1), node 'b' (pid 2)`.
fn list(daemons: &[Daemon]) -> String {
    daemons
        .iter()
        .map(|d| format!("node '{}' (pid {})", d.node, d.pid))
        .collect::<Vec<_>>()
        .join(", ")
}
