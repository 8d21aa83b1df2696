//! Jobs: the filtered list in keyset pages of 50, a job's detail (payload, attempts, lease,
//! timeline) with retry and cancel, and bulk actions on everything a filter matches.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use fabric_core::JobState;
use fabric_engine::bulk::{BulkAction, BulkFilter};
use maud::{html, Markup};
use serde::Deserialize;

use super::{done, id_of, opt, when};
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, csrf, duration, json, state_badge, ts, ts_opt};
use crate::UiState;

/// Rows per page.
pub(crate) const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub(crate) struct JobsQuery {
    state: Option<String>,
    kind: Option<String>,
    shard: Option<String>,
    source: Option<String>,
    /// Text in the last error.
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    msg: Option<String>,
}

impl JobsQuery {
    /// The filter, with times made absolute; errors name the parameter.
    fn filter(&self, now: i64) -> Result<BulkFilter, UiError> {
        Ok(BulkFilter {
            state: opt(&self.state)
                .map(|s| JobState::parse(s).map_err(|e| UiError::invalid("state", e.to_string())))
                .transpose()?,
            kind: opt(&self.kind).map(String::from),
            shard: opt(&self.shard).map(String::from),
            source: opt(&self.source).map(String::from),
            error: opt(&self.q).map(String::from),
            since: when("since", opt(&self.since), now)?,
            until: when("until", opt(&self.until), now)?,
        })
    }

    /// The query string of this filter (no page), for links and forms.
    fn pairs(&self) -> Vec<(&'static str, Option<&str>)> {
        vec![
            ("state", opt(&self.state)),
            ("kind", opt(&self.kind)),
            ("shard", opt(&self.shard)),
            ("source", opt(&self.source)),
            ("q", opt(&self.q)),
            ("since", opt(&self.since)),
            ("until", opt(&self.until)),
        ]
    }
}

/// `GET /ui/jobs?state=&kind=&shard=&source=&q=&since=&until=&before=`.
pub(crate) async fn list(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<JobsQuery>,
) -> Result<Markup, UiError> {
    crate::live::ensure_started(&state);
    let console = &viewer.console;
    let filter = q.filter(console.now())?;
    let before = opt(&q.before)
        .map(|b| id_of(b, "job"))
        .transpose()
        .map_err(|_| UiError::invalid("before", "must be a job id"))?;
    let rows = console.jobs(filter.to_job_filter(before, PAGE)).await?;
    let matching = console.count_jobs(filter.to_job_filter(None, 0)).await?;
    let next = (rows.len() == PAGE).then(|| {
        let mut pairs = q.pairs();
        let last = rows.last().map(|j| j.id.to_string()).unwrap_or_default();
        pairs.push(("before", Some(last.as_str())));
        format!("/ui/jobs{}", layout::query(&pairs))
    });
    let request = format!("{:032x}", rand::random::<u128>());
    let states = JobState::ALL;
    let body = html! {
        form.filters #job-filters method="get" action="/ui/jobs" {
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in states {
                        option value=(s.as_str()) selected[opt(&q.state) == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "Kind " input name="kind" value=(opt(&q.kind).unwrap_or("")) size="10"; }
            label { "Shard " input name="shard" value=(opt(&q.shard).unwrap_or("")) size="10"; }
            label { "Source " input name="source" value=(opt(&q.source).unwrap_or("")) size="10"; }
            label { "Error text " input name="q" value=(opt(&q.q).unwrap_or("")) size="16"; }
            label { "Since " input name="since" value=(opt(&q.since).unwrap_or("")) size="8" placeholder="24h"; }
            label { "Until " input name="until" value=(opt(&q.until).unwrap_or("")) size="8" placeholder="RFC 3339"; }
            button type="submit" { "Filter" }
            " " a href="/ui/jobs" { "clear" }
        }
        div data-live="" #jobs-live {
            p.count { strong #match-count { (matching) } " matching" }
            (table(&rows))
            @if let Some(n) = &next { p { a #next-page href=(n) { "Older →" } } }
        }
        @if matching > 0 {
            section.bulk #bulk {
                h2 { "All " (matching) " matching" }
                p.hint { "Runs on the server as one job, with its progress shown; it acts on every job the filter matches, not only this page." }
                @for (action, label) in [("retry", "Retry"), ("cancel", "Cancel"), ("purge", "Purge")] {
                    form.inline method="post" action="/ui/jobs/bulk" {
                        (csrf(&viewer))
                        input type="hidden" name="action" value=(action);
                        input type="hidden" name="request" value={(request) "-" (action)};
                        @for (k, v) in q.pairs() { @if let Some(v) = v { input type="hidden" name=(k) value=(v); } }
                        @if action == "cancel" { input name="reason" placeholder="reason" size="14"; }
                        button type="submit" id={"bulk-" (action)} class=(if action == "retry" { "" } else { "danger" }) disabled[!viewer.can_act()] {
                            (label) " all " (matching) " matching"
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Jobs", "/ui/jobs", opt(&q.msg), body))
}

fn table(rows: &[fabric_core::Job]) -> Markup {
    html! {
        table.grid #jobs {
            thead { tr { th { "id" } th { "kind" } th { "state" } th { "shard" } th { "source" } th { "attempt" } th { "updated" } th { "last error" } } }
            tbody {
                @for j in rows {
                    tr data-id=(j.id) {
                        td { a href={"/ui/jobs/" (j.id)} { (j.id) } }
                        td { (j.kind) }
                        td { (state_badge(j.state)) }
                        td { (j.shard) }
                        td { (j.source.as_deref().unwrap_or("")) }
                        td { (j.attempt) "/" (j.max_attempts) }
                        td { (ts(j.updated_at)) }
                        td.err { (truncate(j.last_error.as_deref().unwrap_or(""), 120)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="8" { "No job matches." } } }
            }
        }
    }
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[derive(Deserialize)]
pub(crate) struct MsgQuery {
    pub(crate) msg: Option<String>,
}

/// `GET /ui/jobs/{id}`.
pub(crate) async fn show(
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<MsgQuery>,
) -> Result<Markup, UiError> {
    let id = id_of(&id, "job")?;
    let d = viewer.console.job(id).await?;
    let j = &d.job;
    let here = format!("/ui/jobs/{id}");
    let mut timeline: Vec<(i64, String)> = vec![(j.created_at, "submitted".into())];
    for e in &d.errors {
        timeline.push((e.started_at, format!("attempt {} started", e.attempt)));
        timeline.push((
            e.finished_at,
            format!(
                "attempt {} failed ({}): {}",
                e.attempt,
                e.failure,
                truncate(&e.error, 100)
            ),
        ));
    }
    // The job's own start is its last attempt's, which the history above already holds
    // when that attempt failed (their clocks may differ by a millisecond).
    if let Some(t) = j
        .started_at
        .filter(|_| !d.errors.iter().any(|e| e.attempt == j.attempt))
    {
        timeline.push((t, format!("attempt {} started", j.attempt)));
    }
    if let Some(t) = j.finished_at {
        timeline.push((t, j.state.as_str().to_string()));
    }
    timeline.sort_by_key(|(t, _)| *t);
    timeline.dedup();
    let body = html! {
        div data-live="" #job-live {
            table.fields #job {
                tr { th { "state" } td #job-state { (state_badge(j.state)) } }
                tr { th { "kind" } td { (j.kind) } }
                tr { th { "shard" } td { (j.shard) } }
                tr { th { "source" } td { (j.source.as_deref().unwrap_or("")) } }
                tr { th { "priority" } td { (j.priority.0) } }
                tr { th { "attempt" } td { (j.attempt) " of " (j.max_attempts) } }
                tr { th { "run at" } td { (ts(j.run_at)) } }
                tr { th { "lease" } td #lease {
                    @if let Some(owner) = &j.lease_owner { (owner) " until " (ts_opt(j.lease_expires_at)) } @else { "none" }
                } }
                @if let Some(k) = &j.unique_key { tr { th { "unique key" } td { (k) } } }
                @if let Some(b) = j.batch_id { tr { th { "batch" } td { a href={"/ui/batches/" (b)} { (b) } } } }
                @if let Some(e) = &j.last_error { tr { th { "last error" } td.err #last-error { (e) } } }
                @if let Some(r) = &j.cancel_reason { tr { th { "cancel reason" } td { (r) } } }
            }
            div.actions {
                @if matches!(j.state, JobState::Quarantined | JobState::Failed) {
                    (button(&viewer, &format!("/ui/jobs/{id}/retry"), "Retry", &here, ""))
                }
                @if !j.state.is_final() {
                    form.inline method="post" action={"/ui/jobs/" (id) "/cancel"} {
                        (csrf(&viewer))
                        input type="hidden" name="back" value=(here);
                        input name="reason" placeholder="reason" size="20";
                        button.danger type="submit" #cancel disabled[!viewer.can_act()] { "Cancel" }
                    }
                }
            }
            h2 { "Attempts" }
            table.grid #attempts {
                thead { tr { th { "attempt" } th { "failure" } th { "error" } th { "started" } th { "duration" } } }
                tbody {
                    @for e in &d.errors {
                        tr { td { (e.attempt) } td { (e.failure) } td.err { (e.error) } td { (ts(e.started_at)) } td { (duration(e.finished_at - e.started_at)) } }
                    }
                    @if let (Some(s), true) = (j.started_at, j.state == JobState::Running || j.state == JobState::Succeeded) {
                        tr { td { (j.attempt) } td { (j.state.as_str()) } td {} td { (ts(s)) }
                             td { @if let Some(f) = j.finished_at { (duration(f - s)) } @else { "running" } } }
                    }
                }
            }
            h2 { "Timeline" }
            ol.timeline { @for (t, what) in &timeline { li { time { (ts(*t)) } " " (what) } } }
        }
        h2 { "Payload" }
        (json(&j.payload))
        @if let Some(r) = &j.result { h2 { "Result" } (json(r)) }
    };
    Ok(layout::page(
        &viewer,
        &format!("Job {id}"),
        "/ui/jobs",
        opt(&q.msg),
        body,
    ))
}

/// `POST /ui/jobs/{id}/retry`.
pub(crate) async fn retry(
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let id = id_of(&id, "job")?;
    let job = console.retry(id, form.get("note")).await?;
    Ok(done(
        &form.back(&format!("/ui/jobs/{id}")),
        &format!("job {} is {} again", job.id, job.state.as_str()),
    ))
}

/// `POST /ui/jobs/{id}/cancel`.
pub(crate) async fn cancel(
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let id = id_of(&id, "job")?;
    let job = console
        .cancel(id, form.get("reason").unwrap_or("cancelled in the console"))
        .await?;
    Ok(done(
        &form.back(&format!("/ui/jobs/{id}")),
        &format!("job {} is {}", job.id, job.state.as_str()),
    ))
}

/// `POST /ui/jobs/bulk`: `action`, `request` (the form's one-time id), the filter's fields.
pub(crate) async fn bulk(viewer: Viewer, form: Fields) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let action = BulkAction::parse(form.required("action")?)?;
    let request = form.required("request")?;
    let q = JobsQuery {
        state: form.get("state").map(String::from),
        kind: form.get("kind").map(String::from),
        shard: form.get("shard").map(String::from),
        source: form.get("source").map(String::from),
        q: form.get("q").map(String::from),
        since: form.get("since").map(String::from),
        until: form.get("until").map(String::from),
        ..JobsQuery::default()
    };
    let filter = q.filter(console.now())?;
    let out = console
        .bulk(
            action,
            filter,
            form.get("reason").map(String::from),
            request,
        )
        .await?;
    Ok(Redirect::to(&format!("/ui/bulk/{}", out.id)).into_response())
}

/// `GET /ui/bulk/{id}`: a bulk action's progress.
pub(crate) async fn bulk_show(viewer: Viewer, Path(id): Path<String>) -> Result<Markup, UiError> {
    let id = id_of(&id, "bulk job")?;
    let v = viewer.console.bulk_view(id).await?;
    let p = &v.progress;
    let pct = (p.seen * 100)
        .checked_div(v.matched)
        .unwrap_or(100)
        .min(100);
    let body = html! {
        div data-live="" #bulk-live {
            p { "Action " strong #bulk-action { (v.action.as_str()) } " on " code { (v.filter.describe()) } "." }
            progress #bulk-progress max="100" value=(pct) {}
            table.fields {
                tr { th { "state" } td #bulk-state { (state_badge(v.job.state)) } }
                tr { th { "matched" } td #bulk-matched { (v.matched) } }
                tr { th { "read" } td #bulk-seen { (p.seen) } }
                tr { th { "changed" } td #bulk-done { (p.done) } }
                tr { th { "skipped" } td #bulk-skipped { (p.skipped()) } }
            }
            @if let Some(e) = &v.job.last_error { p.error-message { (e) } }
            p { a href={"/ui/jobs/" (id)} { "The bulk job itself" } " · " a href="/ui/jobs" { "Jobs" } }
        }
    };
    Ok(layout::page(
        &viewer,
        &format!("Bulk {} (job {id})", v.action.as_str()),
        "/ui/jobs",
        None,
        body,
    ))
}
