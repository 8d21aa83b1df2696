//! Job handlers: the [`Handler`] trait, the registry that maps a job kind to its handler, and
//! the built-in kinds `noop`, `sleep`, `shell` and `record`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::Job;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// Bytes of command output kept with a job.
const OUTPUT_TAIL: usize = 2048;

/// Runs jobs of one kind.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Checks a payload at submit time; the message names the bad field.
    fn validate(&self, _payload: &Value) -> Result<(), String> {
        Ok(())
    }

    /// The timeout this payload asks for, if it sets one.
    fn timeout(&self, _payload: &Value) -> Option<Duration> {
        None
    }

    /// Runs one attempt; `Ok` carries an optional result kept with the job.
    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure>;
}

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: BTreeMap<String, Arc<dyn Handler>>,
}

impl Registry {
    /// A registry with the built-in handlers.
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.register("noop", Noop);
        r.register("sleep", Sleep);
        r.register("shell", Shell);
        r.register("record", Record);
        r
    }

    /// Adds or replaces the handler of `kind`.
    pub fn register(&mut self, kind: &str, handler: impl Handler) {
        self.handlers.insert(kind.to_string(), Arc::new(handler));
    }

    /// The handler of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(kind)
    }

    /// Known kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// Does nothing and succeeds.
pub struct Noop;

#[async_trait]
impl Handler for Noop {
    async fn run(&self, _job: &Job) -> Result<Option<Value>, Failure> {
        Ok(None)
    }
}

fn field_u64(payload: &Value, key: &str, required: bool) -> Result<Option<u64>, String> {
    match payload.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("payload.{key} is required")),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("payload.{key} must be a non-negative integer, got {v}")),
    }
}

/// Sleeps `{"ms": N}` milliseconds, then succeeds.
pub struct Sleep;

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        field_u64(payload, "ms", true).map(|_| ())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let ms = field_u64(&job.payload, "ms", true)
            .map_err(|m| Failure::of(ErrorKind::BadInput, m))?
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(None)
    }
}

/// Runs `{"cmd": [program, args...], "timeout_s": N}` without a shell; non-zero exit fails
/// the attempt; the exit code and the tail of the output are kept.
pub struct Shell;

fn shell_cmd(payload: &Value) -> Result<Vec<String>, String> {
    let cmd = payload
        .get("cmd")
        .and_then(Value::as_array)
        .ok_or("payload.cmd must be an array of strings like [\"echo\", \"hi\"]")?;
    let words: Option<Vec<String>> = cmd.iter().map(|v| v.as_str().map(String::from)).collect();
    match words {
        Some(w) if !w.is_empty() && !w[0].is_empty() => Ok(w),
        Some(_) => Err("payload.cmd must name a program".into()),
        None => Err("payload.cmd must contain only strings".into()),
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[async_trait]
impl Handler for Shell {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        shell_cmd(payload)?;
        field_u64(payload, "timeout_s", false).map(|_| ())
    }

    fn timeout(&self, payload: &Value) -> Option<Duration> {
        field_u64(payload, "timeout_s", false)
            .ok()
            .flatten()
            .map(Duration::from_secs)
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let words = shell_cmd(&job.payload).map_err(|m| Failure::of(ErrorKind::BadInput, m))?;
        let child = tokio::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the future on timeout kills the process.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let mut f =
                    Failure::of(ErrorKind::BadInput, format!("cannot run {}: {e}", words[0]));
                f.permanent = e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::PermissionDenied;
                f
            })?;
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Failure::msg(format!("waiting for {}: {e}", words[0])))?;
        let mut all = out.stdout;
        all.extend_from_slice(&out.stderr);
        let output = tail(&all);
        match out.status.code() {
            Some(0) => Ok(Some(json!({"exit_code": 0, "output_tail": output}))),
            Some(code) => Err(Failure::msg(format!(
                "{} exited with code {code}: {}",
                words[0],
                output.trim_end()
            ))),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = out.status.signal().unwrap_or(0);
                Err(Failure::of(
                    ErrorKind::Killed,
                    format!(
                        "{} was killed by signal {sig}: {}",
                        words[0],
                        output.trim_end()
                    ),
                ))
            }
        }
    }
}

/// Test handler: appends `"<id> <attempt> <lease owner>\n"` to `{"path": FILE}`, after
/// sleeping `{"ms": N}` if given, and fsyncs unless `{"fsync": false}`. Proves at-least-once
/// execution across crashes and who ran what.
pub struct Record;

#[async_trait]
impl Handler for Record {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        payload
            .get("path")
            .and_then(Value::as_str)
            .ok_or("payload.path must be a file path")?;
        field_u64(payload, "ms", false).map(|_| ())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let path = job
            .payload
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::of(ErrorKind::BadInput, "payload.path is missing"))?;
        if let Ok(Some(ms)) = field_u64(&job.payload, "ms", false) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| Failure::msg(format!("open {path}: {e}")))?;
        let owner = job.lease_owner.as_deref().unwrap_or("-");
        f.write_all(format!("{} {} {owner}\n", job.id, job.attempt).as_bytes())
            .await
            .map_err(|e| Failure::msg(format!("write {path}: {e}")))?;
        // tokio's `File` hands a write to a background thread: only `flush` says it reached
        // the file, so a job never succeeds with its line still in flight.
        f.flush()
            .await
            .map_err(|e| Failure::msg(format!("write {path}: {e}")))?;
        // A line in the page cache survives the death of this process; `"fsync": true`
        // (the default) also makes it survive the machine's.
        if job.payload.get("fsync").and_then(Value::as_bool) != Some(false) {
            f.sync_data()
                .await
                .map_err(|e| Failure::msg(format!("sync {path}: {e}")))?;
        }
        Ok(None)
    }
}
