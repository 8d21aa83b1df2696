//! `fabric batch submit|show|list|retry|cancel`: batches of items with dependencies, written
//! in one durable transaction before any runs, resumed after a crash.

use std::process::ExitCode;

use clap::Subcommand;
use fabric_core::batch::BatchState;
use fabric_engine::batches::{BatchInput, OnComplete};
use serde_json::json;

use crate::context::{parse_id_of, Ctx, Usage};
use crate::output::{pairs, print, short, table, time};

#[derive(Debug, Subcommand)]
pub enum BatchCmd {
    /// Submit a batch from a JSON-lines file, one item per line: {"key", "kind", "payload",
    /// "depends_on": [keys], "priority"?, "max_attempts"?, "shard"?}. Prints the batch id.
    Submit {
        file: std::path::PathBuf,
        /// A name for the batch.
        #[arg(long)]
        name: Option<String>,
        /// Kind of a job to run once when the batch ends; its payload gets a `batch` key
        /// with the outcome (id, name, state, counts).
        #[arg(long, value_name = "KIND")]
        on_complete: Option<String>,
        /// Payload of the --on-complete job (a JSON object).
        #[arg(long, requires = "on_complete", value_name = "JSON")]
        payload: Option<String>,
    },
    /// One batch: counts per state, progress, critical path, and each item.
    Show { id: String },
    /// Batches, newest first.
    List {
        /// running, succeeded, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run the quarantined items again and unblock their dependents.
    Retry { id: String },
    /// Cancel every item that has not finished (running ones stop at once).
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

fn parse_batch_id(s: &str) -> anyhow::Result<i64> {
    parse_id_of(s, "batch")
}

pub async fn run(ctx: &Ctx, cmd: BatchCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    match cmd {
        BatchCmd::Submit {
            file,
            name,
            on_complete,
            payload,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
            let on_complete = match on_complete {
                None => None,
                Some(kind) => {
                    let payload = payload.as_deref().unwrap_or("{}");
                    let payload: serde_json::Value = serde_json::from_str(payload)
                        .map_err(|e| Usage(format!("invalid --payload: malformed JSON: {e}")))?;
                    Some(OnComplete { kind, payload })
                }
            };
            let out = ctx
                .console()
                .await?
                .submit_batch(BatchInput::Lines(&text), name, on_complete)
                .await?;
            ctx.nudge_daemon();
            print(f, &out, || out.id.to_string())?;
        }
        BatchCmd::Show { id } => {
            let b = ctx.console().await?.batch(parse_batch_id(&id)?).await?;
            print(f, &b, || {
                let c = &b.batch.counts;
                let mut out = pairs(&[
                    ("id", b.batch.id.to_string()),
                    ("name", b.batch.name.clone().unwrap_or_else(|| "-".into())),
                    ("state", b.batch.state.to_string()),
                    (
                        "progress",
                        format!(
                            "{:.1}% ({} of {} items done)",
                            b.progress * 100.0,
                            b.batch.done(),
                            b.batch.items
                        ),
                    ),
                    (
                        "items",
                        format!(
                            "succeeded {}, running {}, pending {}, waiting {}, failed {}, quarantined {}, blocked {}, cancelled {}",
                            c.succeeded, c.running, c.pending, c.waiting, c.failed, c.quarantined, c.blocked, c.cancelled
                        ),
                    ),
                    (
                        "critical path",
                        format!(
                            "{} ms: {}",
                            b.critical_path.duration_ms,
                            short(&b.critical_path.keys.join(" -> "), 120)
                        ),
                    ),
                    ("created", time(Some(b.batch.created_at))),
                    ("finished", time(b.batch.finished_at)),
                    (
                        "on complete",
                        match (&b.batch.on_complete, b.batch.callback_job_id) {
                            (None, _) => "-".into(),
                            (Some(k), None) => k.clone(),
                            (Some(k), Some(id)) => format!("{k} (job {id})"),
                        },
                    ),
                ]);
                if let Some(r) = &b.batch.cancel_reason {
                    out.push_str(&pairs(&[("cancelled", r.clone())]));
                }
                out.push_str(&table(
                    &["key", "job", "state", "attempts", "error"],
                    b.items
                        .iter()
                        .map(|i| {
                            let error = match (i.reason, &i.item.last_error) {
                                // A blocked item's error already starts with its reason.
                                (Some(r), Some(e)) if e.starts_with(&format!("{r}:")) => e.clone(),
                                (Some(r), Some(e)) => format!("{r}: {e}"),
                                (Some(r), None) => r.to_string(),
                                (None, e) => e.clone().unwrap_or_default(),
                            };
                            vec![
                                i.item.key.clone(),
                                i.item.job_id.to_string(),
                                i.item.state.to_string(),
                                format!("{}/{}", i.item.attempt, i.item.max_attempts),
                                short(&error, 60),
                            ]
                        })
                        .collect(),
                ));
                out
            })?;
        }
        BatchCmd::List { state, limit } => {
            let state = state.as_deref().map(BatchState::parse).transpose()?;
            let list = ctx.console().await?.batches(state, limit).await?;
            print(f, &list, || {
                table(
                    &[
                        "id", "name", "state", "items", "done", "created", "finished",
                    ],
                    list.iter()
                        .map(|b| {
                            vec![
                                b.id.to_string(),
                                b.name.clone().unwrap_or_default(),
                                b.state.to_string(),
                                b.items.to_string(),
                                b.done().to_string(),
                                time(Some(b.created_at)),
                                time(b.finished_at),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        BatchCmd::Retry { id } => {
            let id = parse_batch_id(&id)?;
            let out = ctx.console().await?.retry_batch(id).await?;
            ctx.nudge_daemon();
            print(f, &out, || {
                format!(
                    "batch {id}: {} requeued, {} unblocked, {} still blocked",
                    out.requeued, out.unblocked, out.still_blocked
                )
            })?;
        }
        BatchCmd::Cancel { id, reason } => {
            let id = parse_batch_id(&id)?;
            let out = ctx.console().await?.cancel_batch(id, &reason).await?;
            ctx.nudge_daemon();
            print(
                f,
                &json!({"id": id, "cancelled": out.cancelled, "running": out.running,
                        "callback_job_id": out.callback_job_id}),
                || format!("batch {id} cancelled: {} items ({reason})", out.cancelled),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
