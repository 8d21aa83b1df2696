//! The audit log: who did what, when and why, newest first.

use axum::extract::Query;
use maud::{html, Markup};
use serde::Deserialize;

use super::{opt, when};
use crate::auth::Viewer;
use crate::error::UiError;
use crate::layout::{self, ts};

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    since: Option<String>,
    actor: Option<String>,
}

/// `GET /ui/audit?since=&actor=`.
pub(crate) async fn page(viewer: Viewer, Query(q): Query<AuditQuery>) -> Result<Markup, UiError> {
    let since = when("since", opt(&q.since), viewer.console.now())?;
    let mut entries = viewer.console.audit_log(since, 500).await?;
    if let Some(a) = opt(&q.actor) {
        entries.retain(|e| e.actor == a);
    }
    entries.truncate(200);
    let body = html! {
        form.filters method="get" action="/ui/audit" {
            label { "Since " input name="since" value=(opt(&q.since).unwrap_or("")) size="8" placeholder="24h"; }
            label { "Actor " input name="actor" value=(opt(&q.actor).unwrap_or("")) size="10"; }
            button type="submit" { "Filter" }
        }
        div data-live="" #audit-live {
            table.grid #audit {
                thead { tr { th { "when" } th { "actor" } th { "action" } th { "target" } th { "reason" } } }
                tbody { @for e in &entries {
                    tr { td { (ts(e.at)) } td.actor { (e.actor) } td.action { (e.action) } td { (e.target) } td { (e.reason.as_deref().unwrap_or("")) } }
                } }
            }
        }
    };
    Ok(layout::page(&viewer, "Audit log", "/ui/audit", None, body))
}
