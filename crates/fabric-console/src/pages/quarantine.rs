//! Quarantine: entries by reason, one entry's file, error and notes, retry, and purge of old
//! entries.

use axum::extract::{Path, Query};
use axum::response::Response;
use fabric_core::quarantine::QuarantineReason;
use fabric_store::QuarantineFilter;
use maud::{html, Markup};
use serde::Deserialize;

use super::jobs::truncate;
use super::{done, id_of, opt};
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, csrf, json, ts};

#[derive(Deserialize)]
pub(crate) struct QuarantineQuery {
    reason: Option<String>,
    msg: Option<String>,
}

fn reason_of(field: &str, v: Option<&str>) -> Result<Option<QuarantineReason>, UiError> {
    v.map(|r| QuarantineReason::parse(r).map_err(|e| UiError::invalid(field, e.to_string())))
        .transpose()
}

/// `GET /ui/quarantine?reason=`.
pub(crate) async fn list(
    viewer: Viewer,
    Query(q): Query<QuarantineQuery>,
) -> Result<Markup, UiError> {
    let reason = reason_of("reason", opt(&q.reason))?;
    let stats = viewer.console.quarantine_stats().await?;
    let entries = viewer
        .console
        .quarantine(QuarantineFilter {
            reason,
            since: None,
            limit: 50,
        })
        .await?;
    let body = html! {
        div data-live="" #quarantine-live {
            p { strong #quarantine-total { (stats.total) } " in quarantine. By reason: "
                @for (r, n) in &stats.by_reason { a.pill href={"/ui/quarantine?reason=" (r)} { (r) " " (n) } " " }
                @if reason.is_some() { a href="/ui/quarantine" { "all" } }
            }
            table.grid #quarantine {
                thead { tr { th { "job" } th { "kind" } th { "source" } th { "file" } th { "reason" } th { "error" } th { "attempts" } th { "quarantined" } th { "retries" } } }
                tbody {
                    @for e in &entries {
                        tr data-id=(e.id) {
                            td { a href={"/ui/quarantine/" (e.id)} { (e.id) } }
                            td { (e.kind) } td { (e.source.as_deref().unwrap_or("")) }
                            td.file { (file_of(&e.payload)) }
                            td { (e.reason.as_str()) } td.err { (truncate(&e.error, 100)) }
                            td { (e.attempts) } td { (ts(e.quarantined_at)) } td { (e.retries) }
                        }
                    }
                    @if entries.is_empty() { tr { td colspan="9" { "Nothing in quarantine." } } }
                }
            }
            @if stats.total > 0 {
                p { a href={"/ui/jobs?state=quarantined"} { "All quarantined jobs, with bulk retry and purge" } }
            }
        }
        section.bulk {
            h2 { "Purge" }
            form.inline #purge method="post" action="/ui/quarantine/purge" {
                (csrf(&viewer))
                label { "Older than " input name="older_than_days" value="30" size="3"; " days" }
                label { " Reason " select name="reason" {
                    option value="" { "any" }
                    @for r in QuarantineReason::ALL { option value=(r.as_str()) { (r.as_str()) } }
                } }
                button.danger type="submit" disabled[!viewer.can_act()] { "Purge" }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Quarantine",
        "/ui/quarantine",
        opt(&q.msg),
        body,
    ))
}

/// `GET /ui/quarantine/{id}`.
pub(crate) async fn show(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<QuarantineQuery>,
) -> Result<Markup, UiError> {
    let id = id_of(&id, "job")?;
    let e = viewer.console.quarantine_entry(id).await?;
    let here = format!("/ui/quarantine/{id}");
    let body = html! {
        table.fields #entry {
            tr { th { "job" } td { a href={"/ui/jobs/" (e.id)} { (e.id) } } }
            tr { th { "state" } td #entry-state { (e.state.as_str()) } }
            tr { th { "kind" } td { (e.kind) } }
            tr { th { "source" } td { (e.source.as_deref().unwrap_or("")) } }
            tr { th { "file" } td #entry-file { (file_of(&e.payload)) } }
            tr { th { "reason" } td #entry-reason { (e.reason.as_str()) } }
            tr { th { "failure" } td { (e.failure) } }
            tr { th { "error" } td.err #entry-error { (e.error) } }
            tr { th { "attempts" } td { (e.attempts) } }
            tr { th { "quarantined" } td { (ts(e.quarantined_at)) } }
            tr { th { "operator retries" } td { (e.retries) } }
        }
        @if !e.notes.is_empty() {
            h2 { "Notes" }
            ul { @for n in &e.notes { li { (ts(n.at)) ": " (n.note) } } }
        }
        form.inline method="post" action={"/ui/quarantine/" (id) "/retry"} {
            (csrf(&viewer))
            input type="hidden" name="back" value=(here);
            input name="note" placeholder="note (why it is safe now)" size="30";
            button type="submit" #retry disabled[!viewer.can_act()] { "Retry" }
        }
        h2 { "Payload" }
        (json(&e.payload))
    };
    Ok(layout::page(
        &viewer,
        &format!("Quarantined job {id}"),
        "/ui/quarantine",
        opt(&q.msg),
        body,
    ))
}

/// `POST /ui/quarantine/{id}/retry`.
pub(crate) async fn retry(
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let id = id_of(&id, "job")?;
    let job = console.quarantine_retry(id, form.get("note")).await?;
    Ok(done(
        &format!("/ui/jobs/{id}"),
        &format!("job {} is {} again", job.id, job.state.as_str()),
    ))
}

/// `POST /ui/quarantine/purge`: `older_than_days`, `reason`.
pub(crate) async fn purge(viewer: Viewer, form: Fields) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let days: u32 = form
        .required("older_than_days")?
        .parse()
        .map_err(|_| UiError::invalid("older_than_days", "must be a whole number of days"))?;
    let reason = reason_of("reason", form.get("reason"))?;
    let ids = console.quarantine_purge(days, reason, false).await?;
    Ok(done(
        "/ui/quarantine",
        &format!("purged {} quarantined jobs", ids.len()),
    ))
}

/// The file an ingestion job was about (its payload's `path`, relative to its source's
/// root); empty for other jobs.
fn file_of(payload: &serde_json::Value) -> &str {
    payload.get("path").and_then(|p| p.as_str()).unwrap_or("")
}
