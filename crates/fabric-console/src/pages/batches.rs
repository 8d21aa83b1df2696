//! Batches: the list with each one's progress, and one batch's items with their
//! dependencies, the critical path, retry and cancel.

use axum::extract::{Path, Query};
use axum::response::Response;
use fabric_core::batch::BatchState;
use maud::{html, Markup};
use serde::Deserialize;

use super::jobs::{truncate, MsgQuery};
use super::{done, id_of, opt};
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, csrf, duration, state_badge, ts, ts_opt};

#[derive(Deserialize)]
pub(crate) struct BatchesQuery {
    state: Option<String>,
    msg: Option<String>,
}

/// `GET /ui/batches?state=`.
pub(crate) async fn list(viewer: Viewer, Query(q): Query<BatchesQuery>) -> Result<Markup, UiError> {
    let state = opt(&q.state)
        .map(|s| BatchState::parse(s).map_err(|e| UiError::invalid("state", e.to_string())))
        .transpose()?;
    let batches = viewer.console.batches(state, 100).await?;
    let body = html! {
        div data-live="" #batches-live {
            table.grid #batches {
                thead { tr { th { "batch" } th { "name" } th { "state" } th { "items" } th { "progress" } th { "created" } th { "finished" } } }
                tbody {
                    @for b in &batches {
                        tr data-id=(b.id) {
                            td { a href={"/ui/batches/" (b.id)} { (b.id) } }
                            td { (b.name.as_deref().unwrap_or("")) }
                            td { (b.state.as_str()) }
                            td { (b.items) }
                            td { progress max=(b.items) value=(b.done()) {} " " (b.done()) " / " (b.items) }
                            td { (ts(b.created_at)) } td { (ts_opt(b.finished_at)) }
                        }
                    }
                    @if batches.is_empty() { tr { td colspan="7" { "No batch (" code { "fabric batch submit" } ")." } } }
                }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Batches",
        "/ui/batches",
        opt(&q.msg),
        body,
    ))
}

/// `GET /ui/batches/{id}`.
pub(crate) async fn show(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<MsgQuery>,
) -> Result<Markup, UiError> {
    let id = id_of(&id, "batch")?;
    let v = viewer.console.batch(id).await?;
    let b = &v.batch;
    let here = format!("/ui/batches/{id}");
    let body = html! {
        div data-live="" #batch-live {
            p { "State " strong #batch-state { (b.state.as_str()) } ", " (b.items) " items, "
                progress #batch-progress max="1" value=(format!("{:.3}", v.progress)) {} " " (format!("{:.0}%", v.progress * 100.0)) }
            p { "Critical path: " (duration(v.critical_path.duration_ms)) " through " code { (v.critical_path.keys.join(" → ")) } }
            div.actions {
                (button(&viewer, &format!("/ui/batches/{id}/retry"), "Retry failed items", &here, ""))
                form.inline method="post" action={"/ui/batches/" (id) "/cancel"} {
                    (csrf(&viewer)) input type="hidden" name="back" value=(here);
                    input name="reason" placeholder="reason (required)" size="18";
                    button.danger type="submit" disabled[!viewer.can_act()] { "Cancel batch" }
                }
            }
            table.grid #batch-items {
                thead { tr { th { "item" } th { "job" } th { "kind" } th { "state" } th { "depends on" } th { "attempt" } th { "error" } } }
                tbody { @for it in v.items.iter().take(500) {
                    @let i = &it.item;
                    tr { td { (i.key) } td { a href={"/ui/jobs/" (i.job_id)} { (i.job_id) } } td { (i.kind) }
                         td { (state_badge(i.state)) @if let Some(r) = it.reason { " (" (r) ")" } }
                         td { (i.depends_on.join(", ")) } td { (i.attempt) "/" (i.max_attempts) }
                         td.err { (truncate(i.last_error.as_deref().unwrap_or(""), 80)) } }
                } }
            }
            @if v.items.len() > 500 { p.hint { "The first 500 of " (v.items.len()) " items; " code { "fabric batch show " (id) } " lists all." } }
        }
    };
    Ok(layout::page(
        &viewer,
        &format!("Batch {id}"),
        "/ui/batches",
        opt(&q.msg),
        body,
    ))
}

/// `POST /ui/batches/{id}/retry|cancel`.
pub(crate) async fn action(
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let id = id_of(&id, "batch")?;
    let msg = match action.as_str() {
        "retry" => {
            let r = console.retry_batch(id).await?;
            format!(
                "batch {id}: {} requeued, {} unblocked, {} still blocked",
                r.requeued, r.unblocked, r.still_blocked
            )
        }
        "cancel" => {
            let r = console
                .cancel_batch(id, form.get("reason").unwrap_or(""))
                .await?;
            format!("batch {id}: {} items cancelled", r.cancelled)
        }
        other => {
            return Err(UiError::invalid(
                "action",
                format!("'{other}' is not retry or cancel"),
            ))
        }
    };
    Ok(done(&form.back(&format!("/ui/batches/{id}")), &msg))
}
