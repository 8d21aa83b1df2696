//! Job handlers: the [`Handler`] trait, the registry that maps a job kind to its handler, and
//! the built-in kinds `noop`, `sleep`, `shell`, `record` and `http` (in [`crate::http_job`]).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabric_core::config::{is_env_name, Config, DEFAULT_SHELL_ENV_ALLOW, MAX_JOB_TIMEOUT_SECONDS};
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::Job;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Bytes of command output kept with a job.
pub(crate) const OUTPUT_TAIL: usize = 2048;

/// Longest accepted `ms` of a `sleep` or `record` payload: 30 days.
const MAX_SLEEP_MS: u64 = MAX_JOB_TIMEOUT_SECONDS * 1000;

/// How long a shell job's processes get between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

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
    /// Shared by clones (every Console clone, one per API request, holds the registry).
    handlers: Arc<BTreeMap<String, Arc<dyn Handler>>>,
}

impl Registry {
    /// A registry with the built-in handlers; `shell` jobs see the default environment
    /// allow-list ([`DEFAULT_SHELL_ENV_ALLOW`]).
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.register("noop", Noop);
        r.register("sleep", Sleep);
        r.register("shell", Shell::default());
        r.register("record", Record);
        r.register("http", crate::http_job::Http::default());
        r
    }

    /// The built-in handlers as `config` sets them up (`workers.shell_env_allow`).
    pub fn for_config(config: &Config) -> Self {
        let mut r = Self::builtin();
        r.register(
            "shell",
            Shell {
                env_allow: config.workers.shell_env_allow.clone(),
            },
        );
        r
    }

    /// Adds or replaces the handler of `kind`.
    pub fn register(&mut self, kind: &str, handler: impl Handler) {
        Arc::make_mut(&mut self.handlers).insert(kind.to_string(), Arc::new(handler));
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

pub(crate) fn field_u64(payload: &Value, key: &str, required: bool) -> Result<Option<u64>, String> {
    if !payload.is_object() {
        return Err(format!(
            "payload must be a JSON object, got {}",
            short(payload)
        ));
    }
    match payload.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("payload.{key} is required")),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            format!(
                "payload.{key} must be a non-negative integer, got {}",
                short(v)
            )
        }),
    }
}

/// Like [`field_u64`], within `lo..=hi`.
pub(crate) fn field_in(
    payload: &Value,
    key: &str,
    required: bool,
    lo: u64,
    hi: u64,
) -> Result<Option<u64>, String> {
    match field_u64(payload, key, required)? {
        Some(n) if n < lo || n > hi => {
            Err(format!("payload.{key} is {n}, out of range {lo}..{hi}"))
        }
        other => Ok(other),
    }
}

/// A value as an error quotes it, cut to 80 characters.
pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// Sleeps `{"ms": N}` milliseconds, then succeeds.
pub struct Sleep;

#[async_trait]
impl Handler for Sleep {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        field_in(payload, "ms", true, 0, MAX_SLEEP_MS).map(|_| ())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let ms = field_in(&job.payload, "ms", true, 0, MAX_SLEEP_MS)
            .map_err(|m| Failure::of(ErrorKind::BadInput, m))?
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(None)
    }
}

/// Runs `{"cmd": [program, args...], "timeout_s": N, "env": {"NAME": "value"}}` without a
/// shell, in a clean environment: only the allow-listed variables of the daemon's
/// (`workers.shell_env_allow`) plus the payload's `env`, so the daemon's secrets
/// (`FABRIC__API__TOKEN`, `FABRIC__STORE__URL`, …) never reach it. The command runs in its own
/// process group, which is terminated when the attempt ends or is abandoned. A non-zero exit
/// fails the attempt; the exit code and the tail of the output are kept.
pub struct Shell {
    /// Names of the daemon's environment variables the command sees.
    pub env_allow: Vec<String>,
}

impl Default for Shell {
    fn default() -> Self {
        Self {
            env_allow: DEFAULT_SHELL_ENV_ALLOW.map(String::from).to_vec(),
        }
    }
}

fn shell_cmd(payload: &Value) -> Result<Vec<String>, String> {
    let cmd = payload
        .get("cmd")
        .and_then(Value::as_array)
        .ok_or("payload.cmd must be an array of strings like [\"echo\", \"hi\"]")?;
    let mut words = Vec::with_capacity(cmd.len());
    for (i, v) in cmd.iter().enumerate() {
        match v.as_str() {
            Some(w) if w.contains('\0') => {
                return Err(format!("payload.cmd[{i}] contains a NUL byte"))
            }
            Some(w) => words.push(w.to_string()),
            None => {
                return Err(format!(
                    "payload.cmd[{i}] must be a string, got {}",
                    short(v)
                ))
            }
        }
    }
    match words.first() {
        Some(w) if !w.is_empty() => Ok(words),
        _ => Err("payload.cmd must name a program".into()),
    }
}

/// The payload's `env`: an object of strings with valid names.
fn shell_env(payload: &Value) -> Result<Vec<(String, String)>, String> {
    let env = match payload.get("env") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "payload.env must be an object of strings, got {}",
                short(other)
            ))
        }
    };
    let mut out = Vec::with_capacity(env.len());
    for (name, value) in env {
        if !is_env_name(name) {
            return Err(format!(
                "payload.env key '{}' is not an environment variable name",
                name.escape_debug()
            ));
        }
        match value.as_str() {
            Some(v) if v.contains('\0') => {
                return Err(format!("payload.env.{name} contains a NUL byte"))
            }
            Some(v) => out.push((name.clone(), v.to_string())),
            None => {
                return Err(format!(
                    "payload.env.{name} must be a string, got {}",
                    short(value)
                ))
            }
        }
    }
    Ok(out)
}

/// Reads a pipe to its end, keeping only the last [`OUTPUT_TAIL`] bytes.
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut pipe) = pipe else {
        return tail;
    };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > OUTPUT_TAIL {
                    tail.drain(..tail.len() - OUTPUT_TAIL);
                }
            }
        }
    }
    tail
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Owns a shell job's child, the leader of its own process group, and makes sure no process
/// of the group outlives the attempt. Dropped before the child was reaped (timeout or
/// cancel), it sends SIGTERM to the group at once and SIGKILL after [`KILL_GRACE`] from a
/// detached thread, so the drop never blocks; the unreaped child keeps the group id reserved
/// until then, so the second signal cannot reach a stranger's group.
struct ProcessGroupGuard {
    child: Option<tokio::process::Child>,
    pgid: Option<nix::unistd::Pid>,
}

impl ProcessGroupGuard {
    fn new(child: tokio::process::Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(nix::unistd::Pid::from_raw);
        Self {
            child: Some(child),
            pgid,
        }
    }

    fn child(&mut self) -> Option<&mut tokio::process::Child> {
        self.child.as_mut()
    }

    /// After the leader exited: kills what it left behind in its group.
    fn kill_leftovers(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        use nix::sys::signal::{killpg, Signal};
        let _ = killpg(pgid, Signal::SIGTERM);
        let mut child = self.child.take();
        let spawned = std::thread::Builder::new()
            .name("fabric-shell-kill".into())
            .spawn(move || {
                std::thread::sleep(KILL_GRACE);
                let _ = killpg(pgid, Signal::SIGKILL);
                // Reap the leader, so it does not linger as a zombie.
                if let Some(c) = child.as_mut() {
                    for _ in 0..50 {
                        if !matches!(c.try_wait(), Ok(None)) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        if spawned.is_err() {
            // No thread to wait in: kill at once rather than leave the group running.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl Handler for Shell {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        if !payload.is_object() {
            return Err(format!(
                "payload must be a JSON object like {{\"cmd\": [\"echo\", \"hi\"]}}, got {}",
                short(payload)
            ));
        }
        shell_cmd(payload)?;
        shell_env(payload)?;
        field_in(payload, "timeout_s", false, 1, MAX_JOB_TIMEOUT_SECONDS).map(|_| ())
    }

    fn timeout(&self, payload: &Value) -> Option<Duration> {
        field_in(payload, "timeout_s", false, 1, MAX_JOB_TIMEOUT_SECONDS)
            .ok()
            .flatten()
            .map(Duration::from_secs)
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let bad = |m: String| Failure::of(ErrorKind::BadInput, m);
        let words = shell_cmd(&job.payload).map_err(bad)?;
        let env = shell_env(&job.payload).map_err(bad)?;
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .env_clear()
            .envs(
                self.env_allow
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k.clone(), v))),
            )
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so the whole tree can be signalled (see ProcessGroupGuard).
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            let mut f = Failure::of(ErrorKind::BadInput, format!("cannot run {}: {e}", words[0]));
            f.permanent = e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::PermissionDenied;
            f
        })?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let mut guard = ProcessGroupGuard::new(child);
        let wait = async {
            let status = match guard.child() {
                Some(c) => c.wait().await,
                None => Err(std::io::Error::other("no child")),
            };
            // Background processes it left would hold the pipes open: end them with it.
            guard.kill_leftovers();
            status
        };
        let (status, out, err) = tokio::join!(wait, read_tail(stdout), read_tail(stderr));
        let status = status.map_err(|e| Failure::msg(format!("waiting for {}: {e}", words[0])))?;
        let mut all = out;
        all.extend_from_slice(&err);
        let output = tail(&all);
        match status.code() {
            Some(0) => Ok(Some(json!({"exit_code": 0, "output_tail": output}))),
            Some(code) => Err(Failure::msg(format!(
                "{} exited with code {code}: {}",
                words[0],
                output.trim_end()
            ))),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = status.signal().unwrap_or(0);
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
        field_in(payload, "ms", false, 0, MAX_SLEEP_MS).map(|_| ())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let path = job
            .payload
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::of(ErrorKind::BadInput, "payload.path is missing"))?;
        if let Ok(Some(ms)) = field_in(&job.payload, "ms", false, 0, MAX_SLEEP_MS) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
            Just(json!("\u{0}")),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("cmd".to_string()),
                        Just("env".to_string()),
                        Just("timeout_s".to_string()),
                        Just("ms".to_string()),
                        Just("path".to_string()),
                        Just("url".to_string()),
                        Just("method".to_string()),
                        Just("headers".to_string()),
                        Just("expect_status".to_string()),
                        "\\PC{0,6}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any payload is accepted or refused with a message naming the payload or its field.
        #[test]
        fn validate_never_panics_and_names_the_field(payload in any_json()) {
            let registry = Registry::builtin();
            for kind in registry.kinds() {
                if let Some(h) = registry.get(&kind) {
                    if let Err(m) = h.validate(&payload) {
                        prop_assert!(m.starts_with("payload"), "{kind}: {m}");
                    } else {
                        let _ = h.timeout(&payload);
                    }
                }
            }
        }
    }

    #[test]
    fn shell_payloads_name_the_bad_field() {
        let s = Shell::default();
        let cases = [
            (json!({"cmd": ["true"], "env": {"A": 1}}), "payload.env.A"),
            (json!({"cmd": ["true"], "env": ["A"]}), "payload.env"),
            (
                json!({"cmd": ["true"], "env": {"A=B": "x"}}),
                "payload.env key",
            ),
            (json!({"cmd": ["true", 3]}), "payload.cmd[1]"),
            (
                json!({"cmd": ["true"], "timeout_s": u64::MAX}),
                "payload.timeout_s",
            ),
            (
                json!({"cmd": ["true"], "timeout_s": 0}),
                "payload.timeout_s",
            ),
            (json!("echo"), "payload must be"),
        ];
        for (payload, want) in cases {
            let err = s.validate(&payload).unwrap_err();
            assert!(err.contains(want), "{payload}: {err}");
        }
        assert!(s
            .validate(&json!({"cmd": ["true"], "env": {"A": "1"}, "timeout_s": 5}))
            .is_ok());
    }
}
