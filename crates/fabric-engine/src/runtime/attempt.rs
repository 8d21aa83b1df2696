//! One attempt of a job in this engine: its handler run under the job's timeout with panics
//! caught, and the outcome it leads to (success, a retry at the policy's time, quarantine).

use std::sync::atomic::Ordering;
use std::time::Instant;

use fabric_core::quarantine::{redact_paths, ErrorKind, Failure};
use fabric_core::retry::RetryDecision;
use fabric_core::Job;
use fabric_store::{Completion, Outcome};
use futures_util::FutureExt;

use super::Shared;

/// Runs one attempt and decides what becomes of the job.
pub(super) async fn execute(shared: &Shared, job: Job) -> Completion {
    let started = Instant::now();
    let started_at = shared.clock.now_ms();
    let due = job.run_at.max(job.created_at);
    shared
        .metrics
        .latency
        .observe(((started_at - due).max(0) as f64) / 1000.0);
    let result = match shared.registry.get(&job.kind).cloned() {
        None => Err({
            let mut f = Failure::of(
                ErrorKind::BadInput,
                format!("no handler for kind '{}'", job.kind),
            );
            f.permanent = true;
            f
        }),
        Some(handler) => {
            let timeout = handler
                .timeout(&job.payload)
                .unwrap_or(shared.options.job_timeout);
            // A panic is caught and fails the attempt; the pool lives on. On timeout the
            // handler's future is dropped, which cancels it (and kills a shell command).
            let run = std::panic::AssertUnwindSafe(handler.run(&job)).catch_unwind();
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(r)) => r,
                Ok(Err(panic)) => Err(Failure::of(
                    ErrorKind::Panic,
                    format!("handler panicked: {}", panic_message(panic)),
                )),
                Err(_) => Err(Failure::of(
                    ErrorKind::Timeout,
                    format!("timed out after {}s", timeout.as_secs_f64()),
                )),
            }
        }
    };
    let took = started.elapsed().as_secs_f64();
    shared.metrics.duration.observe(took);
    // Exponentially weighted mean run time, for prefetch sizing (races only blur it).
    let old = f64::from_bits(shared.avg_run_secs.load(Ordering::Relaxed));
    let avg = if old.is_finite() {
        old * 0.9 + took * 0.1
    } else {
        took
    };
    shared.avg_run_secs.store(avg.to_bits(), Ordering::Relaxed);
    let finished_at = shared.clock.now_ms();
    if let Ok(mut map) = shared.in_flight.lock() {
        map.remove(&job.id);
    }
    let outcome = match result {
        Ok(result) => Outcome::Succeeded { result },
        Err(failure) => decide(shared, &job, &failure, finished_at),
    };
    Completion {
        id: job.id,
        attempt: job.attempt,
        owner: shared.owner.clone(),
        started_at,
        finished_at,
        outcome,
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// Applies the retry policy of the job's source (or kind) to a failed attempt.
fn decide(shared: &Shared, job: &Job, failure: &Failure, now: i64) -> Outcome {
    decide_with(
        &shared.options.config,
        shared.home.as_deref(),
        job,
        failure,
        now,
    )
}

/// [`decide`] with the configuration and home given (an external worker's failure).
pub(crate) fn decide_with(
    config: &fabric_core::config::Config,
    home: Option<&str>,
    job: &Job,
    failure: &Failure,
    now: i64,
) -> Outcome {
    let error = if config.security.path_redaction {
        redact_paths(&failure.message, home, &config.security.redact_roots)
    } else {
        failure.message.clone()
    };
    let ftype = failure.failure_type();
    let policy = config.retry_policy_of(job.source.as_deref(), &job.kind);
    let jitter = rand::random::<f64>() * 2.0 - 1.0;
    let failure_name = match failure.kind {
        Some(ErrorKind::Panic) => "panic".to_string(),
        Some(ErrorKind::Timeout) => "timeout".to_string(),
        Some(ErrorKind::Killed) => "killed".to_string(),
        _ => ftype.as_str().to_string(),
    };
    // A service's `Retry-After` (carried by the failure) wins over the policy's backoff.
    match policy
        .decide(ftype, job.attempt, job.max_attempts, jitter)
        .with_retry_after(failure.retry_after_ms)
    {
        RetryDecision::RetryAfterMs(ms) => Outcome::Retry {
            run_at: now.saturating_add(ms),
            error,
            failure: failure_name,
        },
        RetryDecision::Quarantine => Outcome::Quarantine {
            reason: failure.reason(),
            error,
            failure: failure_name,
        },
    }
}
