//! Sources (their state, last scan, documents, quarantined files; pause, resume, scan now)
//! and document search with the matched words marked.

use axum::extract::{Path, Query};
use axum::response::Response;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::jobs::MsgQuery;
use super::{done, id_of, opt};
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, pause_toggle, ts_opt};

/// `GET /ui/sources`.
pub(crate) async fn sources(viewer: Viewer, Query(q): Query<MsgQuery>) -> Result<Markup, UiError> {
    let list = viewer.console.sources().await?;
    let body = html! {
        div data-live="" #sources-live {
            @if list.is_empty() { p { "No source is defined (" code { "fabric sources add" } ")." } } @else {
                table.grid #sources {
                    thead { tr { th { "source" } th { "type" } th { "state" } th { "last scan" } th { "outcome" } th { "documents" } th { "quarantined" } th {} } }
                    tbody { @for s in &list {
                        @let name = &s.def.name;
                        tr data-source=(name) {
                            td { (name) } td { (s.def.source_type.as_str()) }
                            td.source-state { (s.state) @if let Some(r) = &s.pause_reason { " (" (r) ")" } }
                            td { (ts_opt(s.last_scan_at)) } td { (s.last_outcome.as_deref().unwrap_or("")) }
                            td { a href={"/ui/docs?source=" (name)} { (s.documents) } }
                            td { a href={"/ui/jobs?state=quarantined&source=" (name)} { (s.quarantined) } }
                            td {
                                (pause_toggle(&viewer, &format!("/ui/sources/{name}"), s.state == "paused", "/ui/sources"))
                                (button(&viewer, &format!("/ui/sources/{name}/scan"), "Scan now", "/ui/sources", ""))
                            }
                        }
                    } }
                }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Sources",
        "/ui/sources",
        q.msg.as_deref(),
        body,
    ))
}

/// `POST /ui/sources/{name}/pause|resume|scan`.
pub(crate) async fn source_action(
    viewer: Viewer,
    Path((name, action)): Path<(String, String)>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let msg = match action.as_str() {
        "pause" => {
            let s = console
                .pause_source(&name, form.get("reason").unwrap_or("paused in the console"))
                .await?;
            format!("source {} is {}", s.def.name, s.state)
        }
        "resume" => {
            let s = console.resume_source(&name).await?;
            format!("source {} is {}", s.def.name, s.state)
        }
        "scan" => {
            let job = console.trigger_source(&name, false, None).await?;
            format!("scan of {name} queued as job {}", job.id)
        }
        other => {
            return Err(UiError::invalid(
                "action",
                format!("'{other}' is not pause, resume or scan"),
            ))
        }
    };
    Ok(done(&form.back("/ui/sources"), &msg))
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    q: Option<String>,
    source: Option<String>,
    tag: Option<String>,
}

/// `[word]` marks from the store as `<mark>`, everything else escaped.
fn marked(snippet: &str) -> Markup {
    let escaped = maud::html! { (snippet) }.into_string();
    PreEscaped(escaped.replace('[', "<mark>").replace(']', "</mark>"))
}

/// `GET /ui/docs?q=&source=&tag=`.
pub(crate) async fn search(
    viewer: Viewer,
    Query(q): Query<SearchQuery>,
) -> Result<Markup, UiError> {
    let text = opt(&q.q);
    let hits = match text {
        Some(t) => Some(
            viewer
                .console
                .docs_search(t, opt(&q.source), opt(&q.tag), Some(20))
                .await?,
        ),
        None => None,
    };
    let stats = viewer.console.docs_stats().await?;
    let body = html! {
        form.filters #doc-search method="get" action="/ui/docs" {
            input name="q" value=(text.unwrap_or("")) size="40" placeholder="words, \"a phrase\"" autofocus;
            label { "Source " input name="source" value=(opt(&q.source).unwrap_or("")) size="10"; }
            label { "Tag " input name="tag" value=(opt(&q.tag).unwrap_or("")) size="10"; }
            button type="submit" { "Search" }
        }
        p.hint { (stats.total.documents) " documents, " (stats.total.chunks) " chunks indexed." }
        @if let Some(hits) = &hits {
            @if hits.is_empty() { p #no-hits { "Nothing matches." } }
            ol.hits #hits { @for h in hits {
                li {
                    a.title href={"/ui/docs/" (h.doc_id)} { (h.title) } " "
                    span.path { (h.source) ": " (h.path) @if !h.heading.is_empty() { " › " (h.heading) } }
                    p.snippet { (marked(&h.snippet)) }
                }
            } }
        }
    };
    Ok(layout::page(&viewer, "Documents", "/ui/docs", None, body))
}

/// `GET /ui/docs/{id}`.
pub(crate) async fn show(viewer: Viewer, Path(id): Path<String>) -> Result<Markup, UiError> {
    let id = id_of(&id, "document")?;
    let d = viewer.console.doc(id).await?;
    let doc = &d.document;
    let body = html! {
        table.fields {
            tr { th { "source" } td { (doc.doc.source) } }
            tr { th { "path" } td { (doc.doc.path) } }
            tr { th { "chunks" } td { (doc.chunk_count) } }
        }
        @for c in &d.chunks {
            section.chunk { @if !c.heading.is_empty() { h3 { (c.heading) } } pre.text { (c.text) } }
        }
    };
    Ok(layout::page(
        &viewer,
        &doc.doc.title,
        "/ui/docs",
        None,
        body,
    ))
}
