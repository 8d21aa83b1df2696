//! `fabric jobs submit|list|show|cancel|retry`.

use std::process::ExitCode;

use fabric_core::{JobState, NewJob, Priority};
use fabric_store::JobFilter;
use serde_json::json;

use crate::cli::JobsCmd;
use crate::context::{parse_id, parse_since, Ctx, Usage};
use crate::output::{pairs, print, short, table, time};

pub async fn run(ctx: &Ctx, cmd: JobsCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    match cmd {
        JobsCmd::Submit {
            kind,
            payload,
            file,
            shard,
            priority,
            run_at,
            unique_key,
            max_attempts,
            source,
        } => {
            if let Some(file) = file {
                return submit_file(ctx, &file).await;
            }
            let payload = match payload.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| Usage(format!("invalid --payload: cannot read {path}: {e}")))?,
                None => payload,
            };
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| Usage(format!("invalid --payload: malformed JSON: {e}")))?;
            let mut job = NewJob::new(kind.unwrap_or_default()).payload(payload);
            if let Some(s) = shard {
                job.shard = s;
            }
            if let Some(p) = priority {
                job.priority = Priority::parse(&p)?;
            }
            if let Some(t) = run_at {
                let now = chrono::Utc::now().timestamp_millis();
                job.run_at = Some(fabric_core::time::parse_at("run-at", &t, now)?);
            }
            job.unique_key = unique_key;
            // Without --max-attempts the job takes its retry policy's (the Console resolves it).
            job.max_attempts = match max_attempts {
                Some(NewJob::POLICY_ATTEMPTS) => {
                    return Err(
                        Usage("invalid --max-attempts: 0 is out of range 1..100".into()).into(),
                    )
                }
                Some(n) => n,
                None => NewJob::POLICY_ATTEMPTS,
            };
            job.source = source;
            let out = ctx.console().await?.submit(job).await?;
            ctx.nudge_daemon();
            print(f, &json!({"id": out.id, "created": out.created}), || {
                if out.created {
                    out.id.to_string()
                } else {
                    format!("{} (existing job with this unique key)", out.id)
                }
            })?;
        }
        JobsCmd::List {
            status,
            source,
            shard,
            kind,
            since,
            limit,
        } => {
            let state = status.as_deref().map(JobState::parse).transpose()?;
            let since = parse_since(since.as_deref())?;
            let jobs = ctx
                .console()
                .await?
                .jobs(JobFilter {
                    state,
                    shard,
                    source,
                    kind,
                    since,
                    limit,
                    ..JobFilter::default()
                })
                .await?;
            print(f, &jobs, || {
                table(
                    &[
                        "id", "kind", "shard", "state", "priority", "attempt", "updated", "error",
                    ],
                    jobs.iter()
                        .map(|j| {
                            vec![
                                j.id.to_string(),
                                j.kind.clone(),
                                j.shard.clone(),
                                j.state.to_string(),
                                j.priority.label(),
                                format!("{}/{}", j.attempt, j.max_attempts),
                                time(Some(j.updated_at)),
                                short(j.last_error.as_deref().unwrap_or(""), 40),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        JobsCmd::Show { id } => {
            let d = ctx.console().await?.job(parse_id(&id)?).await?;
            print(f, &d, || {
                let j = &d.job;
                let mut out = pairs(&[
                    ("id", j.id.to_string()),
                    ("kind", j.kind.clone()),
                    ("shard", j.shard.clone()),
                    ("state", j.state.to_string()),
                    ("priority", j.priority.label()),
                    ("attempt", format!("{} of {}", j.attempt, j.max_attempts)),
                    ("payload", j.payload.to_string()),
                    ("source", j.source.clone().unwrap_or_else(|| "-".into())),
                    (
                        "unique_key",
                        j.unique_key.clone().unwrap_or_else(|| "-".into()),
                    ),
                    ("created", time(Some(j.created_at))),
                    ("run_at", time(Some(j.run_at))),
                    ("started", time(j.started_at)),
                    ("finished", time(j.finished_at)),
                    (
                        "lease_owner",
                        j.lease_owner.clone().unwrap_or_else(|| "-".into()),
                    ),
                    ("lease_expires", time(j.lease_expires_at)),
                    (
                        "last_error",
                        j.last_error.clone().unwrap_or_else(|| "-".into()),
                    ),
                    (
                        "cancel_reason",
                        j.cancel_reason.clone().unwrap_or_else(|| "-".into()),
                    ),
                    (
                        "result",
                        j.result
                            .as_ref()
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ),
                ]);
                if !d.errors.is_empty() {
                    out.push_str("attempts:\n");
                    out.push_str(&table(
                        &["attempt", "failure", "duration_ms", "error"],
                        d.errors
                            .iter()
                            .map(|e| {
                                vec![
                                    e.attempt.to_string(),
                                    e.failure.clone(),
                                    (e.finished_at - e.started_at).to_string(),
                                    short(&e.error, 60),
                                ]
                            })
                            .collect(),
                    ));
                }
                out
            })?;
        }
        JobsCmd::Cancel { id, reason } => {
            let job = ctx.console().await?.cancel(parse_id(&id)?, &reason).await?;
            // The daemon checks its leases on the signal and stops the attempt.
            ctx.nudge_daemon();
            print(f, &job, || format!("job {} cancelled: {reason}", job.id))?;
        }
        JobsCmd::Retry { id, note } => {
            let job = ctx
                .console()
                .await?
                .retry(parse_id(&id)?, note.as_deref())
                .await?;
            ctx.nudge_daemon();
            print(f, &job, || format!("job {} is pending again", job.id))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits every job of a JSON-lines file in one write; a bad line names its number and
/// nothing is written.
async fn submit_file(ctx: &Ctx, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Usage(format!("--file {}: {e}", file.display())))?;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |e: &dyn std::fmt::Display| {
            Usage(format!("--file {} line {}: {e}", file.display(), i + 1))
        };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e))?;
        NewJob::check_submitted(&value).map_err(|e| bad(&e))?;
        let job: NewJob = serde_json::from_value(value).map_err(|e| bad(&e))?;
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Err(Usage(format!("--file {}: no jobs in it", file.display())).into());
    }
    let out = ctx.console().await?.submit_many(jobs).await?;
    ctx.nudge_daemon();
    let ids: Vec<i64> = out.iter().map(|s| s.id).collect();
    let created = out.iter().filter(|s| s.created).count();
    print(
        ctx.global.format,
        &json!({"ids": ids, "count": ids.len(), "created": created}),
        || format!("submitted {} jobs ({created} new)", ids.len()),
    )?;
    Ok(ExitCode::SUCCESS)
}
