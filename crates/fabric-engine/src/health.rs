//! Health checks: `store`, `disk`, `config` and `workers`, as `fabric health` and `/healthz`
//! run them (the `api` check, an HTTP probe, lives with the API). Each check can run alone,
//! and a probe every second stays cheap: it reads the last full integrity check instead of
//! running one.

use std::path::Path;
use std::sync::Mutex;

use fabric_core::NodeHealth;
use serde::Serialize;

use crate::Console;

/// Disk space under which the `disk` health check warns.
const LOW_DISK_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// A due job unclaimed this long while slots are free means a stalled dispatcher (it claims
/// on every enqueue and at least every poll interval).
const STALL_AFTER_MS: i64 = 30_000;

/// A probe's integrity result older than this starts a new full check in the background.
const INTEGRITY_MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// The checks the Console runs, in order (`api` is the caller's).
pub const CONSOLE_CHECKS: [&str; 4] = ["store", "disk", "config", "workers"];

/// One health check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: String,
    /// `ok`, `warning` or `error`.
    pub status: String,
    pub detail: String,
}

impl Check {
    /// A check result.
    pub fn new(name: &str, status: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: status.into(),
            detail: detail.into(),
        }
    }
}

/// The overall health: the worst status of its checks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    pub status: String,
    pub checks: Vec<Check>,
}

impl Health {
    /// Health from checks; the worst status wins.
    pub fn from_checks(checks: Vec<Check>) -> Self {
        let rank = |s: &str| match s {
            "error" => 2,
            "warning" => 1,
            _ => 0,
        };
        let worst = checks.iter().map(|c| rank(&c.status)).max().unwrap_or(0);
        let status = ["ok", "warning", "error"][worst].to_string();
        Self { status, checks }
    }
}

/// What the caller knows that the checks need.
#[derive(Debug, Clone)]
pub struct HealthInput<'a> {
    /// `$FABRIC_HOME` (the disk check).
    pub home: &'a Path,
    /// The config file the next start loads.
    pub config_file: &'a Path,
    /// Whether that file was named (`--config`): then a missing file is an error, else the
    /// defaults apply.
    pub config_named: bool,
    /// The daemon's pid, when it runs.
    pub daemon_pid: Option<u32>,
    /// Busy worker slots, where the caller knows them (the daemon itself); else read from
    /// the store.
    pub busy: Option<u64>,
    /// Read the last full integrity check (a probe) instead of running one.
    pub cached_integrity: bool,
}

/// When a full integrity check ran (epoch ms) and what it found.
type IntegrityResult = (i64, Result<Vec<String>, String>);

/// The last full integrity check of each checked part (`store`, `docs`) of a store.
#[derive(Default)]
pub struct IntegrityCache {
    last: Mutex<std::collections::BTreeMap<&'static str, IntegrityResult>>,
    running: Mutex<std::collections::BTreeSet<&'static str>>,
}

/// Runs the full check of `part` (`store`: the database; `docs`: the search index).
async fn full_check(
    store: &std::sync::Arc<dyn fabric_store::Store>,
    part: &str,
) -> Result<Vec<String>, String> {
    let out = match part {
        "docs" => store.docs().doc_integrity_check().await,
        _ => store.integrity_check().await,
    };
    out.map_err(|e| e.to_string())
}

impl Console {
    /// Runs check `name`: one of [`CONSOLE_CHECKS`], `docs` (the search index), or a source
    /// by its name; `None` for any other name.
    pub async fn health_check(&self, name: &str, input: &HealthInput<'_>) -> Option<Check> {
        Some(match name {
            "store" => self.integrity("store", input.cached_integrity).await,
            "docs" => self.integrity("docs", input.cached_integrity).await,
            "disk" => disk_check(input.home),
            "config" => config_check(input.config_file, input.config_named),
            "workers" => self.workers_check(input).await,
            _ => return self.source_check(name).await,
        })
    }

    /// The names of every check the Console runs: [`CONSOLE_CHECKS`], `docs`, then each
    /// source by its name.
    pub async fn health_names(&self) -> Vec<String> {
        let mut names: Vec<String> = CONSOLE_CHECKS.iter().map(|n| n.to_string()).collect();
        names.push("docs".into());
        if let Ok(sources) = self.store().sources().await {
            names.extend(sources.into_iter().map(|s| s.def.name));
        }
        names
    }

    /// Every check of [`Console::health_names`].
    pub async fn health_checks(&self, input: &HealthInput<'_>) -> Vec<Check> {
        let mut out = Vec::new();
        for name in self.health_names().await {
            out.extend(self.health_check(&name, input).await);
        }
        out
    }

    /// The full integrity check of `part`, or (a probe, `cached`) a ping and the last full
    /// check's result with its age, starting a new one in the background when it is old.
    async fn integrity(&self, part: &'static str, cached: bool) -> Check {
        let what = match part {
            "docs" => "search index".to_string(),
            _ => self.store().backend().to_string(),
        };
        let verdict = |lines: &[String]| -> (&'static str, String) {
            if lines == ["ok"] {
                ("ok", "integrity ok".into())
            } else {
                ("error", lines.join("; "))
            }
        };
        if !cached {
            return match full_check(self.store(), part).await {
                Ok(lines) => {
                    let (status, detail) = verdict(&lines);
                    Check::new(part, status, format!("{what} {detail}"))
                }
                Err(e) => Check::new(part, "error", e),
            };
        }
        if let Err(e) = self.store().ping().await {
            return Check::new(part, "error", e.to_string());
        }
        let now = self.now();
        let last = self
            .integrity
            .last
            .lock()
            .map(|l| l.get(part).cloned())
            .unwrap_or(None);
        if last
            .as_ref()
            .is_none_or(|(at, _)| now - at > INTEGRITY_MAX_AGE_MS)
        {
            self.refresh_integrity(part);
        }
        match last {
            None => Check::new(
                part,
                "ok",
                format!("{what} answers; its first full integrity check is running"),
            ),
            Some((at, result)) => {
                let age = (now - at).max(0) / 1000;
                match result {
                    Ok(lines) => {
                        let (status, detail) = verdict(&lines);
                        Check::new(
                            part,
                            status,
                            format!("{what} answers; {detail} (full check {age}s ago)"),
                        )
                    }
                    Err(e) => Check::new(
                        part,
                        "error",
                        format!("{what}: full check {age}s ago failed: {e}"),
                    ),
                }
            }
        }
    }

    /// Starts a full integrity check of `part` in the background unless one runs.
    fn refresh_integrity(&self, part: &'static str) {
        let started = self
            .integrity
            .running
            .lock()
            .map(|mut running| running.insert(part))
            .unwrap_or(false);
        if !started {
            return;
        }
        let (store, cache, clock) = (self.store().clone(), self.integrity.clone(), self.now());
        tokio::spawn(async move {
            let result = full_check(&store, part).await;
            if let Ok(mut last) = cache.last.lock() {
                last.insert(part, (clock, result));
            }
            if let Ok(mut running) = cache.running.lock() {
                running.remove(part);
            }
        });
    }

    /// A source: its path is there and readable, its last scan went well and is as recent
    /// as its schedule wants, and few of its files are quarantined. `None` for no source of
    /// that name.
    async fn source_check(&self, name: &str) -> Option<Check> {
        let s = self.store().source(name).await.ok()?;
        let path = std::path::Path::new(&s.def.path);
        let readable = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path).map(|_| ()),
            Ok(_) => std::fs::File::open(path).map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = readable {
            return Some(Check::new(
                name,
                "error",
                format!("its path cannot be read: {e}"),
            ));
        }
        let now = self.now();
        let mut warnings = Vec::new();
        if s.state == "paused" {
            warnings.push(format!(
                "paused: {}",
                s.pause_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        if let Some(outcome) = s.last_outcome.as_deref().filter(|o| *o != "ok") {
            warnings.push(format!("last scan: {outcome}"));
        }
        // Late: no scan within two intervals of its schedule.
        if let Ok(Some(schedule)) = s.def.schedule() {
            let since = s.last_scan_at.unwrap_or(s.created_at);
            if let Some(next) = schedule.next_after(since) {
                let interval = (next - since).max(1);
                if s.state != "paused" && now - since > 2 * interval {
                    warnings.push(format!(
                        "last scan {} ago, its schedule ({}) wants one every {}s",
                        s.last_scan_at
                            .map_or("never".into(), |t| format!("{}s", (now - t) / 1000)),
                        s.def.schedule.as_deref().unwrap_or("-"),
                        interval / 1000
                    ));
                }
            }
        }
        if s.quarantined > 0 && s.quarantined * 10 > s.files.max(1) {
            warnings.push(format!(
                "{} of its {} files are quarantined (over 10 %): `fabric quarantine list`",
                s.quarantined, s.files
            ));
        }
        Some(if warnings.is_empty() {
            Check::new(
                name,
                "ok",
                format!(
                    "{} files, {} documents; last scan {}",
                    s.files,
                    s.documents,
                    s.last_scan_at
                        .map_or("never".into(), |t| format!("{}s ago", (now - t) / 1000))
                ),
            )
        } else {
            Check::new(name, "warning", warnings.join("; "))
        })
    }

    async fn workers_check(&self, input: &HealthInput<'_>) -> Check {
        let Some(pid) = input.daemon_pid else {
            return Check::new(
                "workers",
                "warning",
                "the daemon is not running: no jobs are executed",
            );
        };
        let config = self.config();
        let id = &config.node.id;
        let nodes = match self.nodes().await {
            Ok(n) => n,
            Err(e) => return Check::new("workers", "error", format!("cannot read nodes: {e}")),
        };
        if let Some(node) = nodes.iter().find(|n| &n.node.id == id) {
            if node.node.health == NodeHealth::Offline {
                return Check::new(
                    "workers",
                    "error",
                    format!("node {id} is offline: it claims nothing (`fabric nodes online {id}`)"),
                );
            }
            if node.effective_health == NodeHealth::Offline {
                return Check::new(
                    "workers",
                    "error",
                    format!(
                        "node {id} has sent no heartbeat for {}s: its daemon (pid {pid}) is hung \
                         or cut off from the store",
                        node.heartbeat_age_ms / 1000
                    ),
                );
            }
            if node.node.draining {
                return Check::new(
                    "workers",
                    "warning",
                    format!("node {id} is draining: it claims nothing new"),
                );
            }
        }
        let max = u64::from(config.workers.max_workers);
        let busy = match input.busy {
            Some(b) => b,
            None => match self.running_here().await {
                Ok(jobs) => jobs.len() as u64,
                Err(e) => return Check::new("workers", "error", e.to_string()),
            },
        }
        .min(max);
        let free = max - busy;
        if free > 0 {
            match self.overdue_work().await {
                Ok(Some(o)) => {
                    let waited = (self.now() - o.run_at).max(0) / 1000;
                    return Check::new(
                        "workers",
                        "error",
                        format!(
                            "dispatcher stalled: job {} (shard {}) has been due for {waited}s \
                             while {free} of {max} worker slots are free",
                            o.id, o.shard
                        ),
                    );
                }
                Ok(None) => {}
                Err(e) => return Check::new("workers", "error", e.to_string()),
            }
        }
        Check::new(
            "workers",
            "ok",
            format!("daemon pid {pid}; {busy} of {max} worker slots busy"),
        )
    }

    /// A job this node should have claimed long ago: due for [`STALL_AFTER_MS`] in a shard it
    /// serves that no operator paused. Conservative mode holds low-priority work back on
    /// purpose, so then nothing counts as overdue.
    async fn overdue_work(&self) -> crate::console::Result<Option<fabric_store::Overdue>> {
        let levers = crate::fleet::read_governance(&**self.store()).await?;
        if levers.conservative {
            return Ok(None);
        }
        let cutoff = self.now() - STALL_AFTER_MS;
        Ok(self
            .store()
            .overdue(
                cutoff,
                &self.config().node.shards,
                &levers.paused_shards,
                &self.config().workers.external_kinds,
            )
            .await?)
    }
}

fn disk_check(home: &Path) -> Check {
    match nix::sys::statvfs::statvfs(home) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            let gib = free as f64 / (1u64 << 30) as f64;
            if free < LOW_DISK_BYTES {
                Check::new(
                    "disk",
                    "warning",
                    format!("{gib:.1} GiB free (under 5 GiB)"),
                )
            } else {
                Check::new("disk", "ok", format!("{gib:.1} GiB free"))
            }
        }
        Err(e) => Check::new(
            "disk",
            "error",
            format!("cannot stat {}: {e}", home.display()),
        ),
    }
}

/// The file the next start loads: readable, valid (with today's environment overrides), and
/// private (it may hold the API token and the database password).
fn config_check(path: &Path, named: bool) -> Check {
    use crate::home::ConfigError;
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    match crate::home::load_config_file(path, named) {
        Ok(_) => {}
        Err(ConfigError::Unreadable(_, e)) => {
            return Check::new("config", "error", format!("cannot read {shown}: {e}"))
        }
        Err(ConfigError::Invalid(_, problems)) => {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Check::new("config", "error", format!("{shown}: {}", list.join("; ")));
        }
    }
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
    match mode {
        Ok(m) if m & 0o077 != 0 => Check::new(
            "config",
            "warning",
            format!(
                "{shown} is readable by group or others (mode {m:04o}); it may hold secrets: \
                 chmod 600 {shown}"
            ),
        ),
        Ok(_) => Check::new("config", "ok", format!("{shown} is valid")),
        Err(_) => Check::new("config", "ok", "no config file: the defaults apply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_check_reads_the_file_on_disk_and_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fabric.yaml");
        assert_eq!(config_check(&path, false).status, "ok", "defaults apply");
        assert_eq!(
            config_check(&path, true).status,
            "error",
            "named but missing"
        );
        std::fs::write(&path, "workers:\n  max_workers: 4\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(config_check(&path, false).status, "ok");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let c = config_check(&path, false);
        assert_eq!(c.status, "warning");
        assert!(c.detail.contains("mode 0644"), "{}", c.detail);
        std::fs::write(&path, "workers:\n  max_workers: lots\n").expect("write");
        let c = config_check(&path, false);
        assert_eq!(c.status, "error");
        assert!(c.detail.contains("workers.max_workers"), "{}", c.detail);
    }
}
