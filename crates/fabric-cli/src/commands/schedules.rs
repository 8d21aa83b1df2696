//! `fabric schedules add|list|show|pause|resume|remove|trigger`: cron schedules, fired by
//! the daemons' maintenance leader once per due time across the fleet.

use std::process::ExitCode;

use clap::Subcommand;
use fabric_core::cron_schedule::{CatchUp, Overlap, ScheduleDef, DEFAULT_TIMEZONE};
use fabric_engine::schedules::ScheduleView;
use serde_json::json;

use crate::context::{Ctx, Usage};
use crate::output::{pairs, print, short, table, time};

#[derive(Debug, Subcommand)]
pub enum SchedulesCmd {
    /// Add a cron schedule: each due time enqueues one job of KIND with PAYLOAD.
    Add {
        /// Unique name (letters, digits, '-', '_', '.').
        name: String,
        /// 5-field cron expression, or 6 fields with seconds first ("0 3 * * *").
        #[arg(long, value_name = "EXPR")]
        cron: String,
        /// Job kind each due time enqueues.
        #[arg(long, value_name = "K")]
        kind: String,
        /// Job payload (a JSON object).
        #[arg(long, value_name = "JSON")]
        payload: String,
        /// IANA time zone the expression is read in (daylight-saving changes as Vixie cron:
        /// a skipped time runs just after the jump, a repeated one once).
        #[arg(long, value_name = "TZ", default_value = DEFAULT_TIMEZONE)]
        timezone: String,
        /// A due time while the previous run is pending or running: skip it, or enqueue it
        /// anyway.
        #[arg(long, value_name = "skip|allow", default_value = "skip")]
        overlap: String,
        /// Due times missed while no daemon ran (or the clock jumped): none, one run for
        /// all, or all of them (at most 1000).
        #[arg(long, value_name = "none|one|all", default_value = "one")]
        catch_up: String,
    },
    /// Every schedule with its next 5 due times.
    List,
    /// One schedule: definition, state, last run, next 5 due times.
    Show { name: String },
    /// Stop firing a schedule (due times that pass meanwhile are not caught up).
    Pause {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Fire a paused schedule again, from the next due time after now.
    Resume { name: String },
    /// Remove a schedule (the jobs it enqueued stay).
    Remove { name: String },
    /// Enqueue a run now, whatever the schedule's state and overlap policy.
    Trigger { name: String },
}

fn state(v: &ScheduleView) -> String {
    if v.schedule.paused {
        "paused".into()
    } else {
        "active".into()
    }
}

fn upcoming(v: &ScheduleView) -> String {
    let times: Vec<String> = v.upcoming.iter().map(|t| time(Some(*t))).collect();
    if times.is_empty() {
        "-".into()
    } else {
        times.join(", ")
    }
}

fn detail(v: &ScheduleView) -> String {
    let s = &v.schedule;
    let d = &s.def;
    let mut items = vec![
        ("name", d.name.clone()),
        ("state", state(v)),
        ("cron", d.cron.clone()),
        ("timezone", d.timezone.clone()),
        ("kind", d.kind.clone()),
        ("payload", short(&d.payload.to_string(), 120)),
        ("overlap", d.overlap.as_str().into()),
        ("catch up", d.catch_up.as_str().into()),
        ("priority", d.priority.unwrap_or_default().label()),
        ("attempts", s.max_attempts.to_string()),
        ("last due", time(s.last_due)),
        (
            "last job",
            s.last_job_id
                .map_or_else(|| "-".into(), |id| id.to_string()),
        ),
        ("runs", s.runs.to_string()),
        ("skipped", s.skipped.to_string()),
        ("next runs", upcoming(v)),
    ];
    if let Some(reason) = &s.pause_reason {
        items.push(("paused", format!("{} ({reason})", time(s.paused_at))));
    }
    pairs(&items)
}

pub async fn run(ctx: &Ctx, cmd: SchedulesCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    let console = ctx.console().await?;
    match cmd {
        SchedulesCmd::Add {
            name,
            cron,
            kind,
            payload,
            timezone,
            overlap,
            catch_up,
        } => {
            let payload: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|e| Usage(format!("invalid --payload: malformed JSON: {e}")))?;
            let mut def = ScheduleDef::new(name, cron, kind);
            def.payload = payload;
            def.timezone = timezone;
            def.overlap = Overlap::parse(&overlap)?;
            def.catch_up = CatchUp::parse(&catch_up)?;
            let v = console.add_schedule(def).await?;
            print(f, &v, || {
                format!(
                    "schedule {} added; next runs: {}",
                    v.schedule.def.name,
                    upcoming(&v)
                )
            })?;
        }
        SchedulesCmd::List => {
            let list = console.schedules().await?;
            print(f, &list, || {
                table(
                    &[
                        "name",
                        "state",
                        "cron",
                        "timezone",
                        "kind",
                        "last due",
                        "runs",
                        "skipped",
                        "next runs",
                    ],
                    list.iter()
                        .map(|v| {
                            let s = &v.schedule;
                            vec![
                                s.def.name.clone(),
                                state(v),
                                s.def.cron.clone(),
                                s.def.timezone.clone(),
                                s.def.kind.clone(),
                                time(s.last_due),
                                s.runs.to_string(),
                                s.skipped.to_string(),
                                upcoming(v),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        SchedulesCmd::Show { name } => {
            let v = console.schedule(&name).await?;
            print(f, &v, || detail(&v))?;
        }
        SchedulesCmd::Pause { name, reason } => {
            let v = console.pause_schedule(&name, reason).await?;
            print(f, &v, || {
                format!(
                    "schedule {name} paused: {}",
                    v.schedule.pause_reason.clone().unwrap_or_default()
                )
            })?;
        }
        SchedulesCmd::Resume { name } => {
            let v = console.resume_schedule(&name).await?;
            print(f, &v, || {
                format!("schedule {name} resumed; next runs: {}", upcoming(&v))
            })?;
        }
        SchedulesCmd::Remove { name } => {
            console.remove_schedule(&name).await?;
            print(f, &json!({"name": name, "removed": true}), || {
                format!("schedule {name} removed")
            })?;
        }
        SchedulesCmd::Trigger { name } => {
            let out = console.trigger_schedule(&name).await?;
            ctx.nudge_daemon();
            print(
                f,
                &json!({"name": name, "job_id": out.id, "created": out.created}),
                || format!("schedule {name} triggered: job {}", out.id),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
