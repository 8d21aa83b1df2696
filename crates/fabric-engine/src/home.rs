//! `$FABRIC_HOME`: where config, the SQLite store, logs, backups, reports and the daemons'
//! pid locks (one per node id, under `run/`) live, created owner-only (directories 0700, files 0600).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use fabric_core::config::{Config, ConfigProblem};

use crate::EngineError;

/// The layout of one Fabric home directory.
#[derive(Debug, Clone)]
pub struct FabricHome {
    root: PathBuf,
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Unreadable(PathBuf, std::io::Error),
    /// The file was read and is invalid: one problem per bad field.
    Invalid(PathBuf, Vec<ConfigProblem>),
}

impl FabricHome {
    /// `explicit`, else `$FABRIC_HOME`, else `~/.fabric`.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        let root = explicit
            .or_else(|| std::env::var_os("FABRIC_HOME").map(PathBuf::from))
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".fabric")
            });
        Self { root }
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the home and its subdirectories with mode 0700.
    pub fn ensure(&self) -> std::io::Result<()> {
        for dir in ["", "config", "logs", "backups", "reports", "audit", "run"] {
            let p = self.root.join(dir);
            std::fs::create_dir_all(&p)?;
            set_mode(&p, 0o700)?;
        }
        Ok(())
    }

    /// Default config file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config").join("fabric.yaml")
    }

    /// Source definitions, kept beyond the store (`fabric sources add`).
    pub fn sources_file(&self) -> PathBuf {
        self.root.join("config").join("sources.yaml")
    }

    /// Where the daemons' pid files, locks, stop requests and recovery markers live.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Pid file of the daemon of node `node`, also its single-instance lock.
    pub fn pid_file(&self, node: &str) -> PathBuf {
        self.run_dir().join(format!("{node}.pid"))
    }

    /// Readiness marker of the daemon of node `node`: present once it serves (its pid file
    /// holds the pid alone, so that `kill $(cat run/<node>.pid)` works).
    pub fn ready_file(&self, node: &str) -> PathBuf {
        self.run_dir().join(format!("{node}.ready"))
    }

    /// Log file of the background daemon of node `node`.
    pub fn log_file(&self, node: &str) -> PathBuf {
        self.root.join("logs").join(format!("fabric-{node}.log"))
    }

    /// Present while the daemon of node `node` runs; found at its start it means that node's
    /// last daemon crashed.
    pub fn recovery_marker(&self, node: &str) -> PathBuf {
        self.run_dir().join(format!("{node}.recovery"))
    }

    /// Where `fabric stop` leaves the stop timeout for the daemon of node `node`.
    pub fn stop_request(&self, node: &str) -> PathBuf {
        self.run_dir().join(format!("{node}.stop"))
    }

    /// Held shared by every daemon of the home, exclusively by `db restore`.
    fn home_lock(&self) -> PathBuf {
        self.run_dir().join("home.lock")
    }

    /// Reports directory (recovery reports, scenario exports).
    pub fn reports(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// Backups directory.
    pub fn backups(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// The SQLite file of `config` (relative paths are under the home).
    pub fn db_path(&self, config: &Config) -> PathBuf {
        let p = PathBuf::from(&config.store.path);
        if p.is_absolute() {
            p
        } else {
            self.root.join(p)
        }
    }

    /// Loads `explicit`, or the home's config file if it exists, or defaults; then applies
    /// `FABRIC__SECTION__KEY` environment overrides and validates.
    pub fn load_config(&self, explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => load_config_file(path, true),
            None => load_config_file(&self.config_file(), false),
        }
    }

    /// Every daemon of this home, by node id: those holding the lock of their pid file.
    pub fn daemons(&self) -> Vec<Daemon> {
        let Ok(entries) = std::fs::read_dir(self.run_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<Daemon> = entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                self.daemon(name.strip_suffix(".pid")?)
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// The daemon of node `node`, if one holds its lock.
    pub fn daemon(&self, node: &str) -> Option<Daemon> {
        let path = self.pid_file(node);
        let mut f = OpenOptions::new().read(true).open(&path).ok()?;
        if f.try_lock_shared().is_ok() {
            return None;
        }
        let mut s = String::new();
        f.read_to_string(&mut s).ok()?;
        // Empty for the moment between taking the lock and writing the pid.
        let pid = s
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        Some(Daemon {
            node: node.to_string(),
            pid,
            // A daemon removes a marker left by a killed one before it writes its pid, so a
            // marker seen beside this pid is this daemon's.
            ready: pid > 0 && self.ready_file(node).exists(),
            since: f.metadata().and_then(|m| m.modified()).ok(),
        })
    }

    /// The pid of a running daemon of this home (the first by node id), if any; 0 while it
    /// is starting up.
    pub fn running_pid(&self) -> Option<u32> {
        self.daemons()
            .first()
            .map(|d| if d.ready { d.pid } else { 0 })
    }

    /// Takes the lock of node `node`'s daemon and writes our pid (not yet ready: see
    /// [`DaemonLock::ready`]); also takes the home's shared lock, which `db restore` needs
    /// exclusively. The locks last as long as the returned value (the OS drops them if the
    /// process dies, even by `kill -9`). A daemon of the same node is a conflict naming its
    /// pid; daemons of other nodes may run beside it.
    pub fn lock_daemon(&self, node: &str) -> Result<DaemonLock, EngineError> {
        std::fs::create_dir_all(self.run_dir())?;
        set_mode(&self.run_dir(), 0o700)?;
        let home = open_lock_file(&self.home_lock())?;
        if home.try_lock_shared().is_err() {
            return Err(EngineError::Conflict(
                "a `fabric db restore` is replacing the store; start again when it is done".into(),
            ));
        }
        let path = self.pid_file(node);
        let mut pid = open_lock_file(&path)?;
        // A reader (`fabric status`) holds the lock for an instant: try for a moment.
        let mut tries = 0;
        while pid.try_lock().is_err() {
            tries += 1;
            if tries > 50 {
                let holder = self
                    .daemon(node)
                    .filter(|d| d.pid > 0)
                    .map_or("starting up".to_string(), |d| d.pid.to_string());
                return Err(EngineError::Conflict(format!(
                    "fabric is already running (pid {holder}) as node '{node}'; stop it \
                     first with `fabric stop --node {node}`, or give this daemon another node.id"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        pid.set_len(0)?;
        let ready = self.ready_file(node);
        match std::fs::remove_file(&ready) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        pid.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        pid.sync_all()?;
        Ok(DaemonLock {
            _home: home,
            pid,
            ready,
        })
    }

    /// Takes the home's lock exclusively: no daemon of this home runs, and none can start
    /// while the returned file is open. Refused (a conflict listing them) while any runs.
    pub fn lock_exclusive(&self) -> Result<File, EngineError> {
        std::fs::create_dir_all(self.run_dir())?;
        set_mode(&self.run_dir(), 0o700)?;
        let home = open_lock_file(&self.home_lock())?;
        let daemons = self.daemons();
        if home.try_lock().is_err() || !daemons.is_empty() {
            let list: Vec<String> = daemons
                .iter()
                .map(|d| format!("node '{}' (pid {})", d.node, d.pid))
                .collect();
            return Err(EngineError::Conflict(format!(
                "daemons of this home are running: {}",
                if list.is_empty() {
                    "one is starting up".to_string()
                } else {
                    list.join(", ")
                }
            )));
        }
        Ok(home)
    }

    /// Asks the daemon `pid` of node `node` to stop within `timeout` (read by the daemon when
    /// it gets SIGTERM; see [`FabricHome::take_stop_request`]).
    pub fn request_stop(
        &self,
        node: &str,
        pid: u32,
        timeout: std::time::Duration,
    ) -> std::io::Result<()> {
        let path = self.stop_request(node);
        let tmp = path.with_extension("stop-tmp");
        std::fs::write(&tmp, format!("{pid} {}\n", timeout.as_millis()))?;
        set_mode(&tmp, 0o600)?;
        std::fs::rename(&tmp, &path)
    }

    /// The stop timeout `fabric stop --timeout` left for this process as the daemon of node
    /// `node`, if any; the request is consumed. A request for another pid (left by a stop
    /// that never reached its daemon) is dropped.
    pub fn take_stop_request(&self, node: &str) -> Option<std::time::Duration> {
        let path = self.stop_request(node);
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let mut it = text.split_whitespace();
        let pid: u32 = it.next()?.parse().ok()?;
        let ms: u64 = it.next()?.parse().ok()?;
        (pid == std::process::id()).then(|| std::time::Duration::from_millis(ms))
    }
}

/// A daemon of one home, found by the lock on its pid file.
#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    /// Its node id.
    pub node: String,
    /// Its pid (0 for the instant between taking the lock and writing it).
    pub pid: u32,
    /// It finished starting (recovery done, API listening, engine running).
    pub ready: bool,
    /// When its pid file was last written (when it became ready, once it is).
    pub since: Option<std::time::SystemTime>,
}

/// The locks a running daemon holds; dropping it releases them.
pub struct DaemonLock {
    _home: File,
    pid: File,
    ready: PathBuf,
}

impl DaemonLock {
    /// Marks the daemon ready (`fabric start` waits for it).
    pub fn ready(&mut self) -> std::io::Result<()> {
        open_private(&self.ready)?;
        // The pid file's time says since when the daemon serves (`status`).
        self.pid.rewind()?;
        self.pid
            .write_all(format!("{}\n", std::process::id()).as_bytes())?;
        self.pid.sync_all()
    }

    /// Empties the pid file and releases the locks (a clean stop). The file stays: a
    /// daemon starting at this moment may have it open already, and must lock the file
    /// every other process finds.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.ready);
        let _ = self.pid.set_len(0);
    }
}

fn open_lock_file(path: &Path) -> Result<File, EngineError> {
    Ok(open_private(path)?)
}

/// Opens (creating it 0600 if missing) a lock or pid file for reading and writing, leaving
/// what it holds.
fn open_private(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    set_mode(path, 0o600)?;
    Ok(f)
}

// Pid files of other single-instance processes (a scenario run's `run.pid`).

/// The process holding a pid file's lock: its pid, or "starting up" while the file is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidHolder(pub Option<u32>);

impl std::fmt::Display for PidHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "{pid}"),
            None => f.write_str("starting up"),
        }
    }
}

/// Takes the exclusive lock of the pid file at `path` (created 0600 if missing) and empties
/// it, or says who holds it. The lock lasts as long as the returned file is open (the OS
/// drops it if the process dies, even by `kill -9`); [`write_pid`] publishes the pid.
pub fn lock_pid_file(path: &Path) -> std::io::Result<Result<File, PidHolder>> {
    let mut f = open_private(path)?;
    if f.try_lock().is_err() {
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        return Ok(Err(PidHolder(s.trim().parse().ok())));
    }
    f.set_len(0)?;
    Ok(Ok(f))
}

/// The pid in the pid file at `path` if a live process holds its lock (`Some(0)` while that
/// process is starting up); `None` when no one holds it, whatever the file says (a pid
/// left behind may belong to an unrelated process by now).
pub fn locked_pid(path: &Path) -> Option<u32> {
    let mut f = OpenOptions::new().read(true).open(path).ok()?;
    match f.try_lock() {
        Ok(()) => None,
        Err(_) => {
            let mut s = String::new();
            f.read_to_string(&mut s).ok()?;
            // Locked but empty: the holder is starting up (pid 0 until it is ready).
            s.trim().parse().ok().or(Some(0))
        }
    }
}

/// Writes our pid into the locked pid file: the daemon is ready.
pub fn write_pid(f: &mut File) -> std::io::Result<()> {
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    f.sync_all()
}

/// Loads the config file at `path` (a missing file gives the defaults unless it was `named`),
/// applies `FABRIC__SECTION__KEY` environment overrides and validates.
pub fn load_config_file(path: &Path, named: bool) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ConfigError::Unreadable(path.to_path_buf(), e)),
    };
    Config::from_yaml(&text, std::env::vars())
        .map_err(|p| ConfigError::Invalid(path.to_path_buf(), p))
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
