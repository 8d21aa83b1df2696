//! End-to-end tests of the `fabric` binary as an operator runs it: exit codes, messages,
//! JSON output, the daemon's life cycle and crash recovery after `kill -9`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod alerts;
mod batch;
mod bus;
mod console_ui;
mod daemons;
mod demo;
mod deploy;
mod docs;
mod external;
mod extractor;
mod fleet;
mod mailgit;
mod outbox;
mod poison;
mod reports;
mod retention;
mod run;
mod schedules;
mod sources;

struct Home {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// A program (and its arguments) every `fabric` command runs under, such as `setpriv`
    /// to run as another user; empty runs `fabric` directly.
    wrap: Vec<String>,
    /// The `fabric` binary (the one cargo built, unless a test copied it elsewhere).
    bin: PathBuf,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            env: vec![("FABRIC__API__ENABLED".into(), "false".into())],
            wrap: Vec::new(),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_fabric")),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn with(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = match self.wrap.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(args).env("FABRIC_HOME", self.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Runs and expects exit code `code`; returns stdout.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "fabric {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn stderr(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "fabric {args:?}: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        serde_json::from_str(&self.expect(0, &all)).unwrap()
    }

    fn job_count(&self) -> usize {
        self.json(&["jobs", "list", "--limit", "100000"])
            .as_array()
            .unwrap()
            .len()
    }

    fn wait_until(&self, what: &str, f: impl FnMut() -> bool) {
        self.wait_within(what, Duration::from_secs(120), f)
    }

    /// Waits for `f` up to `limit`, a bound far above the time it should take.
    fn wait_within(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < limit, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Never leave a daemon behind.
        let _ = self.run(&["stop", "--all", "--force"]);
    }
}

#[test]
fn invalid_config_exits_2_with_one_line_per_problem() {
    let h = Home::new();
    let cfg = h.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "workers:\n  max_workers: 0\nstore:\n  backend: mongodb\nnot_a_section: 1\n",
    )
    .unwrap();
    let err = h.stderr(
        2,
        &["config", "validate", "--config", cfg.to_str().unwrap()],
    );
    assert!(err.contains("not_a_section"), "{err}");
    let err = {
        std::fs::write(
            &cfg,
            "workers:\n  max_workers: 0\nstore:\n  backend: mongodb\n",
        )
        .unwrap();
        h.stderr(
            2,
            &["config", "validate", "--config", cfg.to_str().unwrap()],
        )
    };
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(": ")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("workers.max_workers") && l.contains('0')),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("store.backend") && l.contains("mongodb")),
        "{err}"
    );
    // Every command refuses to run on it.
    h.stderr(2, &["jobs", "list", "--config", cfg.to_str().unwrap()]);
    // A good file validates.
    std::fs::write(&cfg, "workers:\n  max_workers: 4\n").unwrap();
    let out = h.expect(
        0,
        &["config", "validate", "--config", cfg.to_str().unwrap()],
    );
    assert!(out.contains("config ok"), "{out}");
}

#[test]
fn config_validate_lists_every_problem_at_once() {
    let h = Home::new();
    let cfg = h.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "workers:\n  max_workers: lots\n  hardware_cap_enabled: true\n  job_timeout_seconds: 99999999999\n\
         queue:\n  checkpoint_interval: 500\napi:\n  token: ''\n  colour: red\n\
         retry_policies:\n  mail:\n    preset: email\n",
    )
    .unwrap();
    let err = h.stderr(
        2,
        &["config", "validate", "--config", cfg.to_str().unwrap()],
    );
    for (path, value) in [
        ("workers.max_workers", "lots"),
        ("workers.hardware_cap_enabled", "was removed"),
        ("workers.job_timeout_seconds", "99999999999"),
        ("queue.checkpoint_interval", "was removed"),
        ("api.token", "empty"),
        ("api.colour", "red"),
        ("retry_policies.mail.preset", "email"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{path}: ")) && l.contains(value)),
            "no line for {path} with {value}:\n{err}"
        );
    }
    assert!(err.contains("(7 problems)"), "{err}");
}

#[test]
fn config_show_masks_every_connection_string_form_and_shows_new_keys() {
    for url in [
        "postgres://fab:p@ss-123@db/x",
        "postgres://fab@db/x?password=pss-123",
        "host=db password='pss-123' dbname=x",
    ] {
        let h = Home::new()
            .with("FABRIC__STORE__BACKEND", "postgres")
            .with("FABRIC__STORE__URL", url);
        let out = h.expect(0, &["config", "show"]);
        assert!(
            !out.contains("pss-123") && !out.contains("ss-123"),
            "{url}: {out}"
        );
        assert!(out.contains("********"), "{out}");
        assert!(out.contains("shell_env_allow"), "{out}");
        assert!(out.contains("preset: local_files"), "{out}");
    }
    // Not a connection string the driver reads: refused, and masked whole in the error.
    for url in [
        "fab:pss-123@db/x",
        "postgres:/fab:pss-123@db/x",
        "garbage pss-123 =",
        "fab:pss-123@db/x?sslmode=require",
    ] {
        let h = Home::new()
            .with("FABRIC__STORE__BACKEND", "postgres")
            .with("FABRIC__STORE__URL", url);
        for cmd in ["validate", "show"] {
            let err = h.stderr(2, &["config", cmd]);
            assert!(
                err.contains("store.url: ******** is neither a postgres:// URL"),
                "{url}: {err}"
            );
            assert!(!err.contains("ss-123"), "{url}: {err}");
        }
    }
}

#[test]
fn config_show_masks_secrets() {
    let h = Home::new().with("FABRIC__API__TOKEN", "s3cret-token");
    let out = h.expect(0, &["config", "show"]);
    assert!(!out.contains("s3cret-token"), "{out}");
    assert!(out.contains("********"), "{out}");
    // An empty token from the environment is refused, as an empty one in the file is.
    let h = Home::new().with("FABRIC__API__TOKEN", "");
    let err = h.stderr(2, &["config", "validate"]);
    assert!(err.contains("api.token: "), "{err}");
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let h = Home::new();
    let cases: &[(&[&str], &str)] = &[
        (&["jobs", "show", "4242"], "job 4242 not found"),
        (&["jobs", "show", "abc"], "invalid job id"),
        (&["jobs", "list", "--since", "yesterday"], "since"),
        (
            &["jobs", "submit", "--kind", "noop", "--payload", "{bad"],
            "malformed JSON",
        ),
        (
            &["jobs", "submit", "--kind", "nope"],
            "unknown handler kind 'nope'",
        ),
        (
            &[
                "jobs",
                "submit",
                "--kind",
                "sleep",
                "--payload",
                "{\"ms\": -1}",
            ],
            "payload.ms",
        ),
        (
            &["jobs", "submit", "--kind", "noop", "--priority", "urgent"],
            "priority",
        ),
        (&["jobs", "cancel", "4242", "--reason", "x"], "not found"),
        (&["quarantine", "list", "--reason", "gremlins"], "gremlins"),
    ];
    for (args, msg) in cases {
        let err = h.stderr(2, args);
        assert!(
            err.contains(msg),
            "fabric {args:?}: expected '{msg}' in: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
    }
    let big = h.path().join("big.json");
    let blob = "x".repeat((1 << 20) + 10);
    std::fs::write(&big, format!("{{\"blob\": \"{blob}\"}}")).unwrap();
    let arg = format!("@{}", big.display());
    let err = h.stderr(2, &["jobs", "submit", "--kind", "noop", "--payload", &arg]);
    assert!(err.contains("over the limit"), "{err}");
    // An explicit `max_attempts: 0` in a file is refused as `--max-attempts 0` is (an omitted
    // one takes the retry policy's).
    let file = h.path().join("zero.jsonl");
    std::fs::write(
        &file,
        "{\"kind\": \"noop\"}\n{\"kind\": \"noop\", \"max_attempts\": 0}\n",
    )
    .unwrap();
    let err = h.stderr(2, &["jobs", "submit", "--file", file.to_str().unwrap()]);
    assert!(
        err.contains("line 2: invalid max_attempts: 0 is out of range 1..100"),
        "{err}"
    );
    assert_eq!(h.job_count(), 0);
}

#[test]
fn submit_list_show_cancel_and_audit() {
    let h = Home::new();
    let id = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "sleep",
        "--payload",
        "{\"ms\": 5}",
    ])["id"]
        .as_i64()
        .unwrap();
    let again = h.json(&["jobs", "submit", "--kind", "noop", "--unique-key", "k1"]);
    let dup = h.json(&["jobs", "submit", "--kind", "noop", "--unique-key", "k1"]);
    assert_eq!(again["id"], dup["id"]);
    assert_eq!(dup["created"], false);
    let list = h.json(&["jobs", "list", "--status", "pending"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let show = h.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(show["payload"]["ms"], 5);
    assert_eq!(show["state"], "pending");
    h.expect(
        0,
        &["jobs", "cancel", &id.to_string(), "--reason", "not needed"],
    );
    let show = h.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(show["state"], "cancelled");
    // Cancelling twice is an illegal move: the operation fails (exit 1).
    let err = h.stderr(1, &["jobs", "cancel", &id.to_string(), "--reason", "again"]);
    assert!(err.contains("cancelled"), "{err}");
    let audit = h.json(&["audit", "list"]);
    let first = &audit.as_array().unwrap()[0];
    assert_eq!(first["action"], "jobs.cancel");
    assert_eq!(first["reason"], "not needed");
    assert!(first["actor"].as_str().unwrap().starts_with("cli:"));
    let yaml = h.expect(0, &["jobs", "list", "--format", "yaml"]);
    assert!(yaml.contains("kind: noop"), "{yaml}");
}

#[cfg(unix)]
#[test]
fn home_and_store_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    let home = h.path().join("h");
    let h = h.with("FABRIC_HOME", home.to_str().unwrap());
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(home.clone()), 0o700);
    assert_eq!(mode(home.join("queue.db")), 0o600);
    assert_eq!(mode(home.join("queue.db-wal")), 0o600);
}

#[test]
fn db_check_backup_restore() {
    let h = Home::new();
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    assert_eq!(h.json(&["db", "check"])["ok"], true);
    let backup = h.json(&["db", "backup"]);
    let path = backup["path"].as_str().unwrap().to_string();
    assert!(Path::new(&path).exists());
    let listed = h.json(&["db", "list-backups"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    h.expect(0, &["jobs", "submit", "--kind", "noop"]);
    assert_eq!(h.job_count(), 2);
    h.expect(0, &["db", "restore", &path]);
    assert_eq!(h.job_count(), 1);
    h.expect(0, &["db", "vacuum"]);
    h.stderr(2, &["db", "restore", "/nonexistent/backup.db"]);
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn daemon_runs_jobs_refuses_a_second_start_and_stops() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen)
        .with("FABRIC__API__TOKEN", "t0ken");
    assert_eq!(h.json(&["status"])["running"], false);
    h.expect(0, &["start"]);
    let status = h.json(&["status"]);
    assert_eq!(status["running"], true);
    let pid = status["pid"].as_u64().unwrap();
    let err = h.stderr(1, &["start"]);
    assert!(
        err.contains(&format!("already running (pid {pid})")),
        "{err}"
    );

    let id = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "shell",
        "--payload",
        "{\"cmd\": [\"echo\", \"hi\"]}",
    ])["id"]
        .as_i64()
        .unwrap();
    h.wait_until("the shell job succeeds", || {
        h.json(&["jobs", "show", &id.to_string()])["state"] == "succeeded"
    });
    let show = h.json(&["jobs", "show", &id.to_string()]);
    assert_eq!(show["result"]["exit_code"], 0);
    assert_eq!(show["result"]["output_tail"], "hi\n");

    // The daemon's HTTP API: mutations need the token; with it, a job runs at once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (unauth, created) = rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("http://{listen}/api/v1/jobs");
        let body = r#"{"kind": "noop"}"#;
        let unauth = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        let created: Value = http
            .post(&url)
            .bearer_auth("t0ken")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (unauth, created)
    });
    assert_eq!(unauth.as_u16(), 401);
    let api_id = created["id"].as_i64().unwrap().to_string();
    h.wait_until("the API job succeeds", || {
        h.json(&["jobs", "show", &api_id])["state"] == "succeeded"
    });
    assert_eq!(h.job_count(), 2, "the unauthorized call wrote nothing");

    let health = h.json(&["health", "--verbose"]);
    assert_eq!(health["status"], "ok", "{health}");
    let names: Vec<&str> = health["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in ["store", "disk", "config", "workers", "api"] {
        assert!(names.contains(&n), "{names:?}");
    }
    h.expect(0, &["stop"]);
    assert_eq!(h.json(&["status"])["running"], false);
    assert!(!h.path().join("run/local.recovery").exists());
    let audit = h.json(&["audit", "list"]);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "daemon.stop"));
    // No crash, no recovery report.
    assert_eq!(h.json(&["recovery"]), Value::Null);
}

#[test]
fn kill_9_loses_no_job_and_runs_each_at_least_once() {
    let h = Home::new().with("FABRIC__WORKERS__MAX_WORKERS", "32");
    let record = h.path().join("executions.log");
    let jobs: String = (0..2000)
        .map(|_| {
            format!(
                "{{\"kind\": \"record\", \"payload\": {{\"path\": \"{}\", \"ms\": 20}}}}\n",
                record.display()
            )
        })
        .collect();
    let file = h.path().join("jobs.jsonl");
    std::fs::write(&file, jobs).unwrap();
    assert_eq!(
        h.json(&["jobs", "submit", "--file", file.to_str().unwrap()])["count"],
        2000
    );

    h.expect(0, &["start"]);
    let pid = h.json(&["status"])["pid"].as_u64().unwrap();
    // The pid file holds the pid alone, for `kill $(cat run/local.pid)`.
    let pid_file = std::fs::read_to_string(h.path().join("run/local.pid")).unwrap();
    assert_eq!(pid_file, format!("{pid}\n"));
    h.wait_until("some jobs ran", || {
        std::fs::read_to_string(&record)
            .map(|t| t.lines().count() > 200)
            .unwrap_or(false)
    });
    let running = h.json(&["status"])["queue"]["running"].as_u64().unwrap();
    assert!(running > 0, "jobs must be in flight at the kill");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    h.wait_until("the daemon is gone", || {
        h.json(&["status"])["running"] == false
    });
    assert!(
        h.path().join("run/local.recovery").exists(),
        "the crash leaves the marker"
    );

    h.expect(0, &["start"]);
    h.wait_until("every job succeeded", || {
        h.json(&["status"])["queue"]["succeeded"].as_u64().unwrap() == 2000
    });
    h.expect(0, &["stop"]);

    let report = h.json(&["recovery"]);
    let reset = report["jobs_reset_to_pending"].as_u64().unwrap();
    assert!(reset > 0, "{report}");
    assert_eq!(report["integrity"], "ok");
    assert_eq!(h.json(&["db", "check"])["ok"], true);

    // At least once; more than once only for jobs whose attempt was rescued, and never
    // twice within one attempt.
    let jobs = h.json(&["jobs", "list", "--limit", "5000"]);
    let attempts: HashMap<i64, u64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["id"].as_i64().unwrap(), j["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(attempts.len(), 2000);
    let mut runs: HashMap<i64, Vec<u64>> = HashMap::new();
    for line in std::fs::read_to_string(&record).unwrap().lines() {
        let mut it = line.split(' ');
        let id: i64 = it.next().unwrap().parse().unwrap();
        let attempt: u64 = it.next().unwrap().parse().unwrap();
        runs.entry(id).or_default().push(attempt);
    }
    let mut rescued_runs = 0;
    for (id, attempt) in &attempts {
        let r = runs.get(id).unwrap_or_else(|| panic!("job {id} never ran"));
        let mut distinct = r.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            r.len(),
            "job {id} ran twice in one attempt: {r:?}"
        );
        if r.len() > 1 {
            assert!(*attempt > 1, "job {id} ran {r:?} but was never rescued");
            rescued_runs += 1;
        }
    }
    assert!(rescued_runs as u64 <= reset);
}

#[test]
fn a_cli_submit_wakes_the_running_daemon() {
    // With an hour-long poll, only the submit's wake-up can get the job run.
    let h = Home::new().with("FABRIC__WORKERS__POLL_INTERVAL_MS", "3600000");
    h.expect(0, &["start"]);
    // Let the daemon go idle on its (hour-long) wait first.
    std::thread::sleep(Duration::from_millis(300));
    let id = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("the job runs without waiting for the poll", || {
        h.json(&["jobs", "show", &id])["state"] == "succeeded"
    });
    h.expect(0, &["stop"]);
}

/// Whether process `pid` is alive (a zombie waiting for its reaper is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[test]
fn cancelling_a_running_shell_job_kills_its_process_group_and_stop_does_not_wait() {
    let h = Home::new().with("FABRIC__WORKERS__MAX_WORKERS", "2");
    h.expect(0, &["start"]);
    let child = h.path().join("child.pid");
    // The command's own child: only a kill of the whole process group reaches it.
    let script = format!("sleep 300 & echo $! > {}; wait", child.display());
    let payload = serde_json::json!({ "cmd": ["sh", "-c", script] }).to_string();
    let id = h.json(&["jobs", "submit", "--kind", "shell", "--payload", &payload])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("the shell job starts its child", || {
        std::fs::read_to_string(&child).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    let pid: i32 = std::fs::read_to_string(&child)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    // `status --verbose` shows the busy slot, each shard's depth and levers, and the rate.
    h.expect(0, &["shards", "pause", "luna"]);
    h.expect(
        0,
        &[
            "jobs", "submit", "--kind", "noop", "--shard", "luna", "--run-at", "1h",
        ],
    );
    let v = h.json(&["status", "--verbose"]);
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{v}");
    assert_eq!(slots[0]["job_id"].to_string(), id, "{v}");
    assert_eq!(slots[0]["kind"], "shell");
    assert!(slots[0]["elapsed_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        slots[1]["job_id"],
        Value::Null,
        "the other slot is free: {v}"
    );
    let luna = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "luna")
        .unwrap();
    assert_eq!(
        (luna["depth"].as_u64(), luna["paused"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(v["throughput_per_minute"].is_number(), "{v}");
    assert!(h.expect(0, &["status", "--verbose"]).contains("luna"));
    h.expect(0, &["jobs", "cancel", &id, "--reason", "wrong input"]);
    // Within seconds, not when the child's 300 s are up.
    h.wait_within(
        "the cancelled job's process group is gone",
        Duration::from_secs(30),
        || !alive(pid),
    );
    assert_eq!(h.json(&["jobs", "show", &id])["state"], "cancelled");
    let status = h.json(&["status"]);
    assert_eq!(status["workers"]["active"], 0, "{status}");
    // Nothing left to wait for: a graceful stop ends (it gave up after 35 s before).
    h.expect(0, &["stop"]);
}
