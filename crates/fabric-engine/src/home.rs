//! `$FABRIC_HOME`: where config, the SQLite store, logs, backups, reports and the daemon's
//! pid lock live, created owner-only (directories 0700, files 0600).

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
        for dir in ["", "config", "logs", "backups", "reports", "audit"] {
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

    /// Daemon pid file, also the single-instance lock.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("fabric.pid")
    }

    /// Daemon log file.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("logs").join("fabric.log")
    }

    /// Present while a daemon runs; found at start it means the last one crashed.
    pub fn recovery_marker(&self) -> PathBuf {
        self.root.join(".recovery")
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
        let path = explicit
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.config_file());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if explicit.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
                String::new()
            }
            Err(e) => return Err(ConfigError::Unreadable(path, e)),
        };
        Config::from_yaml(&text, std::env::vars()).map_err(|p| ConfigError::Invalid(path, p))
    }

    /// The pid of a running daemon, if one holds the lock.
    pub fn running_pid(&self) -> Option<u32> {
        locked_pid(&self.pid_file())
    }

    /// Takes the single-instance lock, leaving the pid file empty until [`write_pid`] says
    /// the daemon is ready; the lock lasts as long as the returned file is open (the OS drops
    /// it if the process dies, even by `kill -9`).
    pub fn lock_pid(&self) -> Result<File, EngineError> {
        lock_pid_file(&self.pid_file())?.map_err(|holder| {
            EngineError::Conflict(format!(
                "fabric is already running (pid {holder}); stop it first with `fabric stop`"
            ))
        })
    }
}

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
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    set_mode(path, 0o600)?;
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

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
