//! Extraction in isolation: the [`ExtractorPool`] of extractor child processes that parse the
//! untrusted formats ([`crate::untrusted`]) for the daemon, so that a hostile file can cost
//! a child, never the daemon.
//!
//! Each child (by default this executable's hidden `__extractor` subcommand, which calls
//! [`child_main`]) runs under an address-space cap (`RLIMIT_AS`), answers one request at a
//! time over its pipes ([`wire`]) and is reused while it behaves. Per request the pool
//! enforces a wall-clock timeout and an output cap. A child that overruns is killed and
//! reaped; one that dies is reaped; either way the next request gets a fresh child, and the
//! file gets a reason:
//!
//! | what happened | error | quarantine reason |
//! | --- | --- | --- |
//! | over the timeout (killed) | [`ExtractError::Timeout`] | `timeout` |
//! | aborted after a failed allocation (the memory cap) | [`ExtractError::ResourceExhausted`] | `resource_exhausted` |
//! | stack overflow (Rust's handler aborts), or SIGSEGV / SIGBUS | `ResourceExhausted` | `resource_exhausted` |
//! | killed by SIGKILL not sent by the pool (the kernel's OOM killer) | `ResourceExhausted` | `resource_exhausted` |
//! | answer over the output cap | `ResourceExhausted` | `resource_exhausted` |
//! | parser panic (caught in the child, which lives on) | [`ExtractError::Parse`] | `parse_error` |
//! | any other death (another signal, an exit) | `Parse` | `parse_error` |
//! | no child can be started or it does not greet | [`ExtractError::ExtractorUnavailable`] | retried, not the file's fault |
//!
//! A child's standard error is forwarded to the daemon's log (the first lines of each) and its
//! tail is kept to classify its death. Children get a minimal environment (no secrets of the
//! daemon's): `PATH`, `LANG`, `LC_ALL`, `TZ`, `FABRIC_LOG`, `RUST_BACKTRACE` and
//! [`TEST_HOOKS_ENV`], plus `MIMALLOC_ARENA_RESERVE=0` so that the cap counts what the
//! child really maps (the memory cap is on the whole address space, the executable's
//! ~100 MiB included).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use fabric_core::doc::NewDocument;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::error::ExtractError;
use crate::{extract, read_capped, untrusted, FileMeta, Limits};

mod child;
pub mod wire;

pub use child::{child_main, ChildOptions, TEST_HOOKS_ENV, TEST_HOOK_MARK};
pub use wire::ExtractRequest;

/// The hidden subcommand of the `fabric` binary that runs [`child_main`].
pub const CHILD_SUBCOMMAND: &str = "__extractor";

/// Variables a child inherits from the daemon; nothing else.
const CHILD_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "FABRIC_LOG",
    "RUST_BACKTRACE",
    TEST_HOOKS_ENV,
];

/// Lines of a child's standard error forwarded to the log, and lines kept to classify its death.
const STDERR_LOG_LINES: usize = 50;
const STDERR_TAIL_LINES: usize = 8;
const STDERR_LINE_BYTES: usize = 500;

/// How the pool runs its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractorConfig {
    /// Children at most, each parsing one file at a time (default: the number of CPUs, at
    /// least 1).
    pub workers: usize,
    /// Wall-clock time a child has for one file (default 30 s); over it the child is
    /// killed and the file times out.
    pub timeout: Duration,
    /// Each child's address-space cap, `RLIMIT_AS` (default 1 GiB; 0 for none).
    pub memory_bytes: u64,
    /// Largest answer (the extracted document as JSON) taken from a child (default 64 MiB).
    pub output_cap_bytes: u64,
    /// The child's program and arguments; the pool appends `--memory-bytes N
    /// --output-cap-bytes N`.
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl ExtractorConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;
    pub const DEFAULT_OUTPUT_CAP_BYTES: u64 = 64 << 20;

    /// The defaults, with `program args` as the child (it must speak [`wire`], as
    /// `fabric __extractor` does).
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            timeout: Self::DEFAULT_TIMEOUT,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            output_cap_bytes: Self::DEFAULT_OUTPUT_CAP_BYTES,
            program: program.into(),
            args,
        }
    }

    /// The defaults, with this executable's `__extractor` subcommand as the child (right
    /// for the `fabric` binary).
    pub fn current_exe() -> Self {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("fabric"));
        Self::new(exe, vec![CHILD_SUBCOMMAND.into()])
    }
}

/// A running child.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Forwards standard error; yields its last lines at the end.
    stderr: JoinHandle<String>,
}

impl Worker {
    /// Reaps the child (killing it first with `kill`, or when it has not exited 2 s after
    /// its pipe closed) and returns how it ended and its standard error's tail.
    async fn end(mut self, kill: bool) -> (Option<ExitStatus>, String) {
        if kill {
            let _ = self.child.start_kill();
        }
        drop(self.stdin);
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        };
        let tail = tokio::time::timeout(Duration::from_secs(2), self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        (status, tail)
    }
}

/// What in a child's standard error tells how it died (kept wherever it appears, even before
/// a long backtrace).
const DEATH_MARKS: [&str; 2] = ["memory allocation of", "has overflowed its stack"];

/// Reads a child's standard error: the first lines go to the log; the lines naming a cause of
/// death ([`DEATH_MARKS`]) and the last lines are returned.
async fn forward_stderr(pid: u32, stderr: tokio::process::ChildStderr) -> String {
    let mut r = BufReader::new(stderr);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut marks: Vec<String> = Vec::new();
    let mut logged = 0;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < STDERR_LINE_BYTES {
                    line.push(b);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            line.clear();
            if logged < STDERR_LOG_LINES {
                tracing::warn!(target: "fabric_ingest::extractor", pid, "{text}");
                logged += 1;
            }
            if marks.len() < 2 && DEATH_MARKS.iter().any(|m| text.contains(m)) {
                marks.push(text.clone());
            }
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(text);
        }
    }
    if !line.is_empty() {
        tail.push_back(String::from_utf8_lossy(&line).into_owned());
    }
    marks.extend(tail);
    marks.join("\n")
}

/// The error a child's death gives its file (see the module doc's table).
pub fn classify_death(
    status: Option<ExitStatus>,
    stderr_tail: &str,
    memory_bytes: u64,
) -> ExtractError {
    let last = stderr_tail.lines().last().unwrap_or("").trim();
    let with_last = |m: String| {
        if last.is_empty() {
            m
        } else {
            format!("{m}: {last}")
        }
    };
    if stderr_tail.contains(DEATH_MARKS[0]) {
        return ExtractError::ResourceExhausted(format!(
            "the extractor ran out of memory (cap {} MiB)",
            memory_bytes >> 20
        ));
    }
    if stderr_tail.contains(DEATH_MARKS[1]) {
        return ExtractError::ResourceExhausted("the extractor overflowed its stack".into());
    }
    match status {
        Some(s) => match s.signal() {
            Some(9) => ExtractError::ResourceExhausted(
                "the extractor was killed (SIGKILL: the kernel's OOM killer or an operator)".into(),
            ),
            Some(sig @ (7 | 11)) => ExtractError::ResourceExhausted(format!(
                "the extractor crashed with {} (a stack overflow or memory exhaustion)",
                if sig == 7 { "SIGBUS" } else { "SIGSEGV" }
            )),
            Some(sig) => ExtractError::Parse(with_last(format!(
                "the extractor died of signal {sig} on this file"
            ))),
            None => ExtractError::Parse(with_last(format!(
                "the extractor exited ({}) on this file",
                s.code().unwrap_or(-1)
            ))),
        },
        None => ExtractError::Parse(with_last("the extractor died on this file".into())),
    }
}

/// The pool of extractor children (see the module doc). Cheap to create: children start
/// when the first file needs one.
pub struct ExtractorPool {
    config: ExtractorConfig,
    permits: tokio::sync::Semaphore,
    idle: Mutex<Vec<Worker>>,
    spawned: AtomicU64,
}

impl std::fmt::Debug for ExtractorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractorPool")
            .field("config", &self.config)
            .field("spawned", &self.spawned())
            .finish()
    }
}

impl ExtractorPool {
    /// A pool running `config`'s children (`workers` is raised to at least 1).
    pub fn new(mut config: ExtractorConfig) -> Self {
        config.workers = config.workers.max(1);
        Self {
            permits: tokio::sync::Semaphore::new(config.workers),
            config,
            idle: Mutex::new(Vec::new()),
            spawned: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ExtractorConfig {
        &self.config
    }

    /// Children started so far (each replacement counts).
    pub fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn spawn(&self) -> Result<Worker, ExtractError> {
        let c = &self.config;
        let mut cmd = Command::new(&c.program);
        cmd.args(&c.args)
            .arg("--memory-bytes")
            .arg(c.memory_bytes.to_string())
            .arg("--output-cap-bytes")
            .arg(c.output_cap_bytes.to_string())
            .env_clear()
            .envs(
                CHILD_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            // The `fabric` binary's allocator, mimalloc, would reserve 1 GiB of address space
            // at start-up, before the child sets its cap (which would then mean nothing).
            .env("MIMALLOC_ARENA_RESERVE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let unavailable = |m: String| ExtractError::ExtractorUnavailable(m);
        let mut child = cmd
            .spawn()
            .map_err(|e| unavailable(format!("cannot start {}: {e}", c.program.display())))?;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(unavailable("the extractor's pipes are missing".into()));
        };
        let mut w = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: tokio::spawn(forward_stderr(pid, stderr)),
        };
        let mut hello = [0u8; 8];
        let greeted = tokio::time::timeout(c.timeout, w.stdout.read_exact(&mut hello)).await;
        if matches!(greeted, Ok(Ok(_))) && &hello == wire::HELLO {
            return Ok(w);
        }
        let (status, tail) = w.end(true).await;
        Err(unavailable(format!(
            "{} did not start as an extractor ({}){}",
            c.program.display(),
            status.map_or("no status".into(), |s| s.to_string()),
            tail.lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        )))
    }

    /// An idle child that is still alive, or a new one.
    async fn checkout(&self) -> Result<Worker, ExtractError> {
        loop {
            let Some(mut w) = self.idle().pop() else {
                return self.spawn().await;
            };
            if matches!(w.child.try_wait(), Ok(None)) {
                return Ok(w);
            }
            // Died while idle: not any file's fault.
            let _ = w.end(false).await;
        }
    }

    /// Parses `req` in a child, within the timeout and the caps (see the module doc).
    pub async fn extract(&self, req: &ExtractRequest) -> Result<NewDocument, ExtractError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ExtractError::ExtractorUnavailable("the pool is closed".into()))?;
        let mut w = self.checkout().await?;
        let cap = self.config.output_cap_bytes;
        let exchange = async {
            wire::send_request(&mut w.stdin, req).await?;
            wire::read_response(&mut w.stdout, cap).await
        };
        let outcome = tokio::time::timeout(self.config.timeout, exchange).await;
        match outcome {
            Ok(Ok(wire::Frame::Body(body))) => {
                match serde_json::from_slice::<wire::Response>(&body) {
                    Ok(resp) => {
                        self.idle().push(w);
                        resp
                    }
                    Err(e) => {
                        let _ = w.end(true).await;
                        Err(ExtractError::Parse(format!(
                            "the extractor's answer is garbled: {e}"
                        )))
                    }
                }
            }
            Ok(Ok(wire::Frame::OverCap(len))) => {
                let _ = w.end(true).await;
                Err(ExtractError::ResourceExhausted(format!(
                    "extracted document of {len} bytes exceeds the output cap of {cap} bytes"
                )))
            }
            Ok(Err(_pipe)) => {
                let (status, tail) = w.end(false).await;
                let e = classify_death(status, &tail, self.config.memory_bytes);
                tracing::warn!(path = %req.path, error = %e, "extractor child died; replaced");
                Err(e)
            }
            Err(_elapsed) => {
                let _ = w.end(true).await;
                let seconds = self.config.timeout.as_secs();
                tracing::warn!(path = %req.path, seconds, "extractor child timed out; killed and replaced");
                Err(ExtractError::Timeout { seconds })
            }
        }
    }
}

/// Reads one file of a source and extracts its document: the text-like formats in process (on
/// a blocking thread), the untrusted ones ([`untrusted::parses`]) through `pool`. Returns the
/// document and the bytes read. This is the ingest handler's one call per file.
pub async fn extract_file(
    pool: &ExtractorPool,
    source: &str,
    root: &Path,
    rel_path: &Path,
    meta: FileMeta,
    limits: &Limits,
) -> Result<(NewDocument, u64), ExtractError> {
    let (src, root, rel, lim) = (
        source.to_string(),
        root.to_path_buf(),
        rel_path.to_path_buf(),
        limits.clone(),
    );
    /// What the blocking step yields: a document, or a request for the pool.
    enum Step {
        Done(NewDocument, u64),
        Isolate(ExtractRequest),
    }
    let step = tokio::task::spawn_blocking(move || {
        let bytes = read_capped(&root, &rel, &lim)?;
        match extract(&src, &rel, &bytes, meta.clone(), &lim) {
            Err(ExtractError::Unsupported {
                doc_type: Some(t), ..
            }) if untrusted::parses(t) => Ok(Step::Isolate(ExtractRequest {
                doc_type: t,
                source: src,
                path: crate::extract::rel_string(&rel),
                meta,
                limits: lim,
                bytes,
            })),
            r => r.map(|d| Step::Done(d, bytes.len() as u64)),
        }
    })
    .await
    .map_err(|e| ExtractError::Parse(format!("the parser failed: {e}")))??;
    match step {
        Step::Done(doc, size) => Ok((doc, size)),
        Step::Isolate(req) => {
            let size = req.bytes.len() as u64;
            pool.extract(&req).await.map(|d| (d, size))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(sig: i32) -> Option<ExitStatus> {
        Some(ExitStatus::from_raw(sig))
    }

    #[test]
    fn deaths_map_to_reasons() {
        use fabric_core::quarantine::QuarantineReason as R;
        let r = |s, tail: &str| classify_death(s, tail, 1 << 30).reason();
        let abort = raw(6);
        assert_eq!(
            r(abort, "memory allocation of 16777216 bytes failed"),
            R::ResourceExhausted
        );
        assert_eq!(
            r(
                abort,
                "\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow"
            ),
            R::ResourceExhausted
        );
        assert_eq!(r(abort, "something else"), R::ParseError);
        assert_eq!(r(raw(9), ""), R::ResourceExhausted);
        assert_eq!(r(raw(11), ""), R::ResourceExhausted);
        assert_eq!(r(raw(4), ""), R::ParseError);
        assert_eq!(r(raw(3 << 8), ""), R::ParseError, "exit status 3");
        let m = classify_death(raw(6), "x\nlast words", 1 << 30).to_string();
        assert!(m.contains("signal 6") && m.ends_with("last words"), "{m}");
    }
}
