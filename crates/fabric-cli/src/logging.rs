//! Where the `fabric` binary's `tracing` output goes: standard error, except in a daemon
//! started in the background by `fabric start`, which writes `logs/fabric-<node>.log` through
//! a size-rotating writer (`logs.max_bytes`, `logs.keep`). That daemon's own stdout and stderr
//! go to `logs/daemon-<node>.stderr`, so that a panic or a start-up error is still captured; a
//! panic is also logged to its log file.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use fabric_core::config::LogsConfig;
use fabric_engine::logfile::RotatingFile;
use tracing_subscriber::fmt::MakeWriter;

/// Set by `fabric start` for the daemon it starts in the background: log to the file.
pub const BACKGROUND_ENV: &str = "FABRIC_DAEMON_LOG_FILE";

/// The rotating log file, once the daemon has switched to it.
static FILE: OnceLock<Mutex<RotatingFile>> = OnceLock::new();

/// Installs the subscriber: `FABRIC_LOG` filter (default `warn`), standard error until
/// [`to_file`] switches the process to the log file.
pub fn init() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FABRIC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(Sink)
        .init();
}

/// From now on, logs go to `path`, rotated as `logs` says; a panic is logged there too
/// (and still printed to standard error by the default hook).
pub fn to_file(path: &Path, logs: &LogsConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let file = RotatingFile::open(path, logs.max_bytes, logs.keep)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    if FILE.set(Mutex::new(file)).is_ok() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!(panic = %info, "panic");
            previous(info);
        }));
    }
    Ok(())
}

/// Makes the writer of one event: the log file once set, else standard error.
struct Sink;

enum SinkWriter {
    Stderr(std::io::Stderr),
    File(MutexGuard<'static, RotatingFile>),
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        match FILE.get() {
            Some(f) => SinkWriter::File(f.lock().unwrap_or_else(|p| p.into_inner())),
            None => SinkWriter::Stderr(std::io::stderr()),
        }
    }
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            SinkWriter::Stderr(e) => e.write(buf),
            SinkWriter::File(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            SinkWriter::Stderr(e) => e.write_all(buf),
            SinkWriter::File(f) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            SinkWriter::Stderr(e) => e.flush(),
            SinkWriter::File(f) => f.flush(),
        }
    }
}
