//! Engine integration tests on a real SQLite store: execution, failures and their retry and
//! quarantine paths, heartbeats, wake-ups and graceful stop; the `http` kind against a real
//! server.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabric_core::config::Config;
use fabric_core::quarantine::{Failure, QuarantineReason};
use fabric_core::retry::RetryStrategy;
use fabric_core::{Clock, Job, JobState, NewJob, RealClock};
use fabric_engine::{Console, Engine, EngineOptions, Handler, Metrics, Registry};
use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};
use serde_json::{json, Value};

mod fleet;
mod http;
mod measured;
mod outbox;
mod schedules;

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    console: Console,
    engine: Option<Engine>,
    metrics: Metrics,
}

fn config() -> Config {
    let mut c = Config::default();
    c.retry.strategy = RetryStrategy::Immediate;
    c
}

fn rig_with(registry: Registry, tune: impl FnOnce(&mut EngineOptions)) -> Rig {
    rig_config(registry, config(), tune)
}

fn rig_config(registry: Registry, config: Config, tune: impl FnOnce(&mut EngineOptions)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap());
    let config = Arc::new(config);
    let mut options = EngineOptions::from_config(config.clone());
    options.max_workers = 4;
    options.poll_interval = Duration::from_millis(50);
    tune(&mut options);
    let metrics = Metrics::new();
    let engine = Engine::start(
        store.clone(),
        registry.clone(),
        Arc::new(RealClock),
        metrics.clone(),
        options,
    );
    let console = Console::new(store.clone(), registry, config, Arc::new(RealClock), "test")
        .with_engine(engine.waker(), metrics.clone());
    Rig {
        _dir: dir,
        store,
        console,
        engine: Some(engine),
        metrics,
    }
}

fn rig() -> Rig {
    rig_with(Registry::builtin(), |_| {})
}

/// Waits (up to 20 s) until job `id` reaches `state`.
async fn wait_state(store: &dyn Store, id: i64, state: JobState) -> Job {
    for _ in 0..2000 {
        let job = store.job(id).await.unwrap().job;
        if job.state == state {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "job {id} never became {state}: {:?}",
        store.job(id).await.unwrap()
    );
}

fn job(kind: &str, payload: Value, max_attempts: u32) -> NewJob {
    let mut j = NewJob::new(kind).payload(payload);
    j.max_attempts = max_attempts;
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_every_submitted_job_once() {
    let r = rig();
    let jobs: Vec<_> = (0..300).map(|_| NewJob::new("noop")).collect();
    let ids = r.console.submit_many(jobs).await.unwrap();
    wait_state(&*r.store, ids.last().unwrap().id, JobState::Succeeded).await;
    for _ in 0..500 {
        if r.store.counts().await.unwrap().succeeded == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = r.store.counts().await.unwrap();
    assert_eq!(c.succeeded, 300);
    assert_eq!(c.total(), 300);
    let one = r.store.job(ids[0].id).await.unwrap().job;
    assert_eq!(one.attempt, 1);
    assert!(r
        .metrics
        .render()
        .contains("fabric_jobs_completed_total 300"));
}

struct Panicky;
#[async_trait]
impl Handler for Panicky {
    async fn run(&self, _job: &Job) -> Result<Option<Value>, Failure> {
        panic!("the handler blew up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_the_job_and_the_pool_lives_on() {
    let mut reg = Registry::builtin();
    reg.register("panicky", Panicky);
    let r = rig_with(reg, |_| {});
    let p = r
        .console
        .submit(job("panicky", json!({}), 2))
        .await
        .unwrap();
    let j = wait_state(&*r.store, p.id, JobState::Quarantined).await;
    assert!(j.last_error.unwrap().contains("the handler blew up"));
    let d = r.store.job(p.id).await.unwrap();
    assert_eq!(d.errors.len(), 2, "retried once, then quarantined");
    assert_eq!(d.errors[0].failure, "panic");
    let ok = r.console.submit(NewJob::new("noop")).await.unwrap();
    wait_state(&*r.store, ok.id, JobState::Succeeded).await;
}

/// Fails every attempt with a transient error.
struct AlwaysFails;
#[async_trait]
impl Handler for AlwaysFails {
    async fn run(&self, _job: &Job) -> Result<Option<Value>, Failure> {
        Err(Failure::msg("still broken"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_max_attempts_gets_its_policys_and_is_quarantined_after_them() {
    let mut reg = Registry::builtin();
    reg.register("flaky", AlwaysFails);
    let yaml = "retry:\n  strategy: immediate\n\
                retry_policies:\n  flaky:\n    strategy: immediate\n    max_attempts: 5\n\
                \x20 mail:\n    strategy: immediate\n";
    let config = Config::from_yaml(yaml, [("", "")]).unwrap();
    let r = rig_config(reg, config, |_| {});
    // By kind: the `flaky` policy's 5 attempts.
    let mut by_kind = NewJob::new("flaky");
    by_kind.max_attempts = NewJob::POLICY_ATTEMPTS;
    let k = r.console.submit(by_kind).await.unwrap();
    // By source, which wins over the kind: the mail preset's 5 attempts and 7 for transient
    // failures (this one's are unknown, so 5).
    let mut by_source = NewJob::new("flaky");
    by_source.max_attempts = NewJob::POLICY_ATTEMPTS;
    by_source.source = Some("mail".into());
    let m = r.console.submit(by_source).await.unwrap();
    // Neither: the default policy's 3.
    let mut plain = NewJob::new("noop");
    plain.max_attempts = NewJob::POLICY_ATTEMPTS;
    let p = r.console.submit(plain).await.unwrap();
    for id in [k.id, m.id] {
        let j = wait_state(&*r.store, id, JobState::Quarantined).await;
        assert_eq!(j.max_attempts, 5);
        assert_eq!(j.attempt, 5, "quarantined after 5 attempts");
        assert_eq!(r.store.job(id).await.unwrap().errors.len(), 5);
    }
    assert_eq!(r.store.job(p.id).await.unwrap().job.max_attempts, 3);
}

/// Lists the live (not zombie) processes of process group `pgid`, from /proc.
fn live_members(pgid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            out.push(stat);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_shell_job_leaves_no_process_of_its_group() {
    let r = rig();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; sleep 60 & sleep 60", pid_file.display());
    let s = r
        .console
        .submit(job(
            "shell",
            json!({"cmd": ["sh", "-c", script], "timeout_s": 1}),
            1,
        ))
        .await
        .unwrap();
    wait_state(&*r.store, s.id, JobState::Quarantined).await;
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGTERM at once, SIGKILL after the grace period: wait (up to 20 s) for the group to go.
    let mut left = live_members(pgid);
    for _ in 0..200 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = live_members(pgid);
    }
    assert!(left.is_empty(), "still alive in group {pgid}: {left:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_job_sees_only_allowed_variables_and_its_payload_env() {
    let mut config = config();
    config.workers.shell_env_allow = vec!["PATH".into(), "FABRIC_TEST_ALLOWED".into()];
    // The daemon's environment holds secrets the job must not see. Set once, read by the
    // spawned child only; the names are unique to this test.
    std::env::set_var("FABRIC__API__TOKEN", "daemon-secret");
    std::env::set_var("FABRIC_TEST_ALLOWED", "yes");
    let r = rig_config(Registry::for_config(&config), config, |_| {});
    let s = r
        .console
        .submit(job(
            "shell",
            json!({"cmd": ["sh", "-c", "env | sort"], "env": {"GREETING": "hi"}}),
            1,
        ))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Succeeded).await;
    let out = j.result.unwrap()["output_tail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!out.contains("daemon-secret"), "{out}");
    assert!(!out.contains("FABRIC__"), "{out}");
    assert!(out.contains("GREETING=hi"), "{out}");
    assert!(out.contains("FABRIC_TEST_ALLOWED=yes"), "{out}");
    assert!(out.contains("PATH="), "{out}");
    assert!(
        !out.contains("HOME="),
        "HOME is not on this allow-list: {out}"
    );
    // A bad env is refused at submit, naming the field.
    let err = r
        .console
        .submit(job("shell", json!({"cmd": ["true"], "env": {"N": 1}}), 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("payload.env.N"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_timeout_is_killed_and_quarantined_as_timeout() {
    let r = rig();
    let s = r
        .console
        .submit(job(
            "shell",
            json!({"cmd": ["sleep", "30"], "timeout_s": 1}),
            1,
        ))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Quarantined).await;
    assert!(j.last_error.unwrap().contains("timed out after 1s"));
    let q = r.store.quarantine_entry(s.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_command_fails_with_its_signal() {
    let r = rig();
    let s = r
        .console
        .submit(job(
            "shell",
            json!({"cmd": ["sh", "-c", "echo dying; kill -9 $$"]}),
            1,
        ))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Quarantined).await;
    let err = j.last_error.unwrap();
    assert!(err.contains("killed by signal 9"), "{err}");
    assert!(err.contains("dying"), "{err}");
    assert_eq!(r.store.job(s.id).await.unwrap().errors[0].failure, "killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_keeps_exit_code_and_output_tail() {
    let r = rig();
    let ok = r
        .console
        .submit(job("shell", json!({"cmd": ["echo", "hello"]}), 1))
        .await
        .unwrap();
    let j = wait_state(&*r.store, ok.id, JobState::Succeeded).await;
    assert_eq!(
        j.result,
        Some(json!({"exit_code": 0, "output_tail": "hello\n"}))
    );
    let bad = r
        .console
        .submit(job(
            "shell",
            json!({"cmd": ["sh", "-c", "echo oops >&2; exit 3"]}),
            1,
        ))
        .await
        .unwrap();
    let j = wait_state(&*r.store, bad.id, JobState::Quarantined).await;
    assert_eq!(j.last_error.as_deref(), Some("sh exited with code 3: oops"));
}

/// Fails with a transient error while `fail_until` is above the call count.
struct Flaky {
    calls: AtomicU32,
    fail_until: u32,
}
#[async_trait]
impl Handler for Flaky {
    async fn run(&self, _job: &Job) -> Result<Option<Value>, Failure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.fail_until {
            Err(Failure::msg(format!("connection refused (call {n})")))
        } else {
            Ok(None)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_quarantine_and_an_operator_retry_succeeds() {
    let mut reg = Registry::builtin();
    reg.register(
        "flaky",
        Flaky {
            calls: AtomicU32::new(0),
            fail_until: 2,
        },
    );
    let r = rig_with(reg, |_| {});
    let s = r.console.submit(job("flaky", json!({}), 2)).await.unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Quarantined).await;
    assert_eq!(j.attempt, 2);
    let q = r.console.quarantine_entry(s.id).await.unwrap();
    assert_eq!(q.reason, QuarantineReason::ConnectorError);
    assert_eq!(q.error, "connection refused (call 2)");
    r.console
        .quarantine_retry(s.id, Some("upstream is back"))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Succeeded).await;
    assert_eq!(
        j.attempt, 3,
        "attempt numbers go on after an operator retry"
    );
    assert_eq!(j.max_attempts, 4, "with a fresh set of attempts");
    let audit = r.console.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[0].action, "quarantine.retry");
    assert_eq!(audit[0].reason.as_deref(), Some("upstream is back"));
}

/// Submitting a job whose unique key is taken is audited as what it was: no second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_submit_is_audited_as_already_submitted() {
    let r = rig();
    let keyed = || {
        let mut j = NewJob::new("noop");
        j.unique_key = Some("report-42".into());
        j
    };
    let first = r.console.submit(keyed()).await.unwrap();
    let again = r.console.submit(keyed()).await.unwrap();
    assert_eq!((again.id, again.created), (first.id, false));
    let audit = r.console.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[0].action, "jobs.submit");
    assert_eq!(
        audit[0].reason.as_deref(),
        Some("already submitted (unique key)")
    );
    assert_eq!(audit[1].reason, None, "the first submit: {audit:?}");
    r.console
        .submit_many(vec![keyed(), NewJob::new("noop")])
        .await
        .unwrap();
    let audit = r.console.audit_log(None, 1).await.unwrap();
    assert_eq!(
        audit[0].reason.as_deref(),
        Some("1 already submitted (unique key)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_quarantined_at_once() {
    let r = rig();
    let s = r
        .console
        .submit(job("shell", json!({"cmd": ["/nonexistent/program"]}), 5))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Quarantined).await;
    assert_eq!(j.attempt, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_long_job_leased() {
    let r = rig_with(Registry::builtin(), |o| {
        o.lease = Duration::from_millis(600);
        o.rescue_interval = Duration::from_millis(100);
    });
    let s = r
        .console
        .submit(job("sleep", json!({"ms": 2000}), 1))
        .await
        .unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Succeeded).await;
    assert_eq!(j.attempt, 1, "never rescued while its worker was alive");
    assert_eq!(r.metrics.rescued.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_wakes_idle_workers_without_waiting_for_the_poll() {
    let r = rig_with(Registry::builtin(), |o| {
        o.poll_interval = Duration::from_secs(3600)
    });
    // Let the dispatcher go idle first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = r.console.submit(NewJob::new("noop")).await.unwrap();
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        wait_state(&*r.store, s.id, JobState::Succeeded),
    )
    .await;
    assert!(waited.is_ok(), "the job ran only after a poll");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_written_while_the_workers_idle_runs_without_waiting_for_the_poll() {
    // Retries are due at once (the rig's policy); the poll would come after an hour.
    let r = rig_with(Registry::builtin(), |o| {
        o.poll_interval = Duration::from_secs(3600)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = r
        .console
        .submit(job("shell", json!({"cmd": ["false"]}), 2))
        .await
        .unwrap();
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        wait_state(&*r.store, s.id, JobState::Quarantined),
    )
    .await;
    assert!(waited.is_ok(), "the retry ran only after a poll");
    assert_eq!(r.store.job(s.id).await.unwrap().job.attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_and_bad_payloads_are_refused_and_nothing_is_written() {
    let r = rig();
    let e = r.console.submit(NewJob::new("nope")).await.unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("unknown handler kind 'nope'"), "{e}");
    let e = r
        .console
        .submit(job("sleep", json!({"ms": "x"}), 1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("payload.ms"), "{e}");
    let big = json!({"blob": "x".repeat(fabric_core::job::MAX_PAYLOAD_BYTES + 1)});
    let e = r.console.submit(job("noop", big, 1)).await.unwrap_err();
    assert!(e.to_string().contains("over the limit"), "{e}");
    assert_eq!(r.store.counts().await.unwrap().total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_waits_for_in_flight_jobs() {
    let mut r = rig();
    let s = r
        .console
        .submit(job("sleep", json!({"ms": 500}), 1))
        .await
        .unwrap();
    wait_state(&*r.store, s.id, JobState::Running).await;
    let abandoned = r.engine.take().unwrap().shutdown().await;
    assert_eq!(abandoned, 0);
    assert_eq!(
        r.store.job(s.id).await.unwrap().job.state,
        JobState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_waiting_for_its_retry_is_failed_and_counted() {
    let mut reg = Registry::builtin();
    reg.register(
        "flaky",
        Flaky {
            calls: AtomicU32::new(0),
            fail_until: 1,
        },
    );
    let r = rig_with(reg, |o| {
        let mut c = config();
        c.retry.strategy = RetryStrategy::Fixed;
        c.retry.base_delay_seconds = 3600.0;
        c.retry.max_delay_seconds = 7200.0;
        o.config = Arc::new(c);
    });
    let s = r.console.submit(job("flaky", json!({}), 3)).await.unwrap();
    let j = wait_state(&*r.store, s.id, JobState::Failed).await;
    assert_eq!(j.attempt, 1);
    assert!(
        j.run_at > RealClock.now_ms() + 3_000_000,
        "waits for its retry"
    );
    let counts = r.console.counts().await.unwrap();
    assert_eq!((counts.failed, counts.pending), (1, 0));
    r.metrics.set_counts(&counts);
    let text = r.metrics.render();
    assert!(text.contains("fabric_jobs{state=\"failed\"} 1"), "{text}");
    assert!(text.contains("fabric_queue_depth 1"), "{text}");
}
