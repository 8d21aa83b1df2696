//! What every command needs: the home directory, the validated configuration, a Console on
//! the configured store, and the mapping of errors to exit codes.

use std::sync::Arc;

use anyhow::Context as _;
use fabric_core::config::Config;
use fabric_core::RealClock;
use fabric_engine::home::ConfigError;
use fabric_engine::{Console, EngineError, FabricHome, Registry};

use crate::cli::Global;

/// Bad usage or invalid input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Exit code for an error: 2 for bad input, 1 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return 2;
    }
    if let Some(se) = e.downcast_ref::<fabric_sim::SimError>() {
        return if se.is_usage() { 2 } else { 1 };
    }
    if let Some(ae) = e.downcast_ref::<fabric_alerts::AlertsError>() {
        return if ae.is_usage() { 2 } else { 1 };
    }
    if let Some(ee) = e.downcast_ref::<EngineError>() {
        return if ee.is_usage() { 2 } else { 1 };
    }
    if e.downcast_ref::<fabric_core::CoreError>()
        .is_some_and(|c| matches!(c, fabric_core::CoreError::InvalidInput { .. }))
    {
        return 2;
    }
    1
}

/// Home + configuration of one invocation.
pub struct Ctx {
    pub home: FabricHome,
    pub config: Arc<Config>,
    pub global: Global,
}

impl Ctx {
    /// Resolves the home and loads the configuration; invalid configuration is a usage error
    /// listing every problem with its path.
    pub fn load(global: Global) -> anyhow::Result<Self> {
        let home = FabricHome::resolve(None);
        let config = load_config(&home, &global)?;
        Ok(Self {
            home,
            config: Arc::new(config),
            global,
        })
    }

    /// Who is acting, for the audit log.
    pub fn actor() -> String {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .or_else(|| {
                let uid = nix::unistd::getuid();
                nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .or(Some(format!("uid {uid}")))
            })
            .unwrap_or_default();
        format!("cli:{user}")
    }

    /// Creates `$FABRIC_HOME` (0700) if it is missing.
    pub fn ensure_home(&self) -> anyhow::Result<()> {
        self.home
            .ensure()
            .with_context(|| format!("cannot create {}", self.home.root().display()))
    }

    /// A Console on the configured store (creating the home if needed).
    pub async fn console(&self) -> anyhow::Result<Console> {
        self.ensure_home()?;
        let store = fabric_engine::open_store(&self.config, &self.home).await?;
        Ok(Console::new(
            store.clone(),
            registry(&self.config, store, fabric_engine::Metrics::new()),
            self.config.clone(),
            Arc::new(RealClock),
            Self::actor(),
        )
        .with_sources_file(self.home.sources_file()))
    }
}

impl Ctx {
    /// Tells the running daemons of this home that new work is due or a job was cancelled
    /// (SIGUSR1: they claim, and check their leases), so they need not wait for their poll. Best effort: without a daemon, or if the signal fails, the
    /// poll picks it up.
    pub fn nudge_daemon(&self) {
        for d in self.home.daemons().iter().filter(|d| d.ready && d.pid > 0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.pid as i32),
                nix::sys::signal::Signal::SIGUSR1,
            );
        }
    }
}

/// Every job kind this fabric runs: the built-in handlers and ingestion's `scan` and
/// `ingest` on `store`, the latter parsing HTML and PDF in extractor children of this
/// executable (`fabric __extractor`, started when the first such file comes).
pub fn registry(
    config: &Arc<fabric_core::config::Config>,
    store: Arc<dyn fabric_store::Store>,
    metrics: fabric_engine::Metrics,
) -> Registry {
    let mut r = Registry::for_config(config);
    fabric_engine::bulk::register(
        &mut r,
        store.clone(),
        Arc::new(fabric_core::clock::RealClock),
    );
    fabric_ingest::handlers::register(
        &mut r,
        store,
        fabric_ingest::Limits::default(),
        config.clone(),
        metrics,
        Arc::new(fabric_ingest::isolate::ExtractorPool::new(
            fabric_ingest::isolate::ExtractorConfig::current_exe(),
        )),
    );
    r
}

/// Loads and validates the configuration of `global.config` or the home.
pub fn load_config(home: &FabricHome, global: &Global) -> anyhow::Result<Config> {
    match home.load_config(global.config.as_deref()) {
        Ok(c) => Ok(c),
        Err(ConfigError::Unreadable(path, e)) => {
            Err(Usage(format!("cannot read config {}: {e}", path.display())).into())
        }
        Err(ConfigError::Invalid(path, problems)) => {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Err(Usage(format!(
                "invalid config {} ({} problem{}):\n{}",
                path.display(),
                lines.len(),
                if lines.len() == 1 { "" } else { "s" },
                lines.join("\n")
            ))
            .into())
        }
    }
}

/// Parses a job id argument.
pub fn parse_id(s: &str) -> anyhow::Result<i64> {
    parse_id_of(s, "job")
}

/// Parses the id of a `what` (job, batch): a positive integer.
pub fn parse_id_of(s: &str, what: &str) -> anyhow::Result<i64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Usage(format!(
                "invalid {what} id '{s}': expected a positive integer"
            ))
            .into()
        })
}

/// Parses `--since`.
pub fn parse_since(s: Option<&str>) -> anyhow::Result<Option<i64>> {
    s.map(|s| {
        fabric_core::time::parse_since(s, chrono::Utc::now().timestamp_millis())
            .map_err(|e| Usage(e.to_string()).into())
    })
    .transpose()
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
