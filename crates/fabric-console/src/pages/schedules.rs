//! Cron schedules: each one's expression, time zone, next due times and last run; pause,
//! resume and run now.

use axum::extract::{Path, Query};
use axum::response::Response;
use maud::{html, Markup};

use super::done;
use super::jobs::MsgQuery;
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, pause_toggle, ts, ts_opt};

/// `GET /ui/schedules`.
pub(crate) async fn list(viewer: Viewer, Query(q): Query<MsgQuery>) -> Result<Markup, UiError> {
    let schedules = viewer.console.schedules().await?;
    let body = html! {
        div data-live="" #schedules-live {
            table.grid #schedules {
                thead { tr { th { "schedule" } th { "cron" } th { "zone" } th { "kind" } th { "state" } th { "next due" } th { "last run" } th { "runs" } th { "skipped" } th {} } }
                tbody {
                    @for v in &schedules {
                        @let s = &v.schedule;
                        @let name = &s.def.name;
                        tr data-schedule=(name) {
                            td { (name) } td { code { (s.def.cron) } } td { (s.def.timezone) } td { (s.def.kind) }
                            td { @if s.paused { "paused" @if let Some(r) = &s.pause_reason { " (" (r) ")" } } @else { "active" } }
                            td { (ts_opt(s.next_due)) @if v.upcoming.len() > 1 { span.hint title=(v.upcoming.iter().map(|t| ts(*t)).collect::<Vec<_>>().join(", ")) { " +" (v.upcoming.len() - 1) } } }
                            td { @if let Some(j) = s.last_job_id { a href={"/ui/jobs/" (j)} { (ts_opt(s.last_fired_at)) } } }
                            td { (s.runs) } td { (s.skipped) }
                            td {
                                (pause_toggle(&viewer, &format!("/ui/schedules/{name}"), s.paused, "/ui/schedules"))
                                (button(&viewer, &format!("/ui/schedules/{name}/trigger"), "Run now", "/ui/schedules", ""))
                            }
                        }
                    }
                    @if schedules.is_empty() { tr { td colspan="10" { "No schedule (" code { "fabric schedules add" } ")." } } }
                }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Schedules",
        "/ui/schedules",
        q.msg.as_deref(),
        body,
    ))
}

/// `POST /ui/schedules/{name}/pause|resume|trigger`.
pub(crate) async fn action(
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let msg = match action.as_str() {
        "pause" => {
            console
                .pause_schedule(&name, form.get("reason").map(String::from))
                .await?;
            format!("schedule {name} is paused")
        }
        "resume" => {
            console.resume_schedule(&name).await?;
            format!("schedule {name} is active")
        }
        "trigger" => {
            let job = console.trigger_schedule(&name).await?;
            format!("schedule {name} ran now as job {}", job.id)
        }
        other => {
            return Err(UiError::invalid(
                "action",
                format!("'{other}' is not pause, resume or trigger"),
            ))
        }
    };
    Ok(done(&form.back("/ui/schedules"), &msg))
}
