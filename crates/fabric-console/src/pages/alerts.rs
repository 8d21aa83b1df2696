//! Alerts (pending and firing, with what silences or inhibits them) and silences: add one for
//! an alert or by matchers, expire one.

use axum::extract::{Path, Query};
use axum::response::Response;
use fabric_alerts::AlertsConsole;
use fabric_store::AlertPhase;
use maud::{html, Markup};

use super::jobs::MsgQuery;
use super::{done, id_of};
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, csrf, ts};

fn service(viewer: &Viewer) -> AlertsConsole {
    let c = &viewer.console;
    AlertsConsole::new(
        c.store().clone(),
        c.config_shared(),
        c.clock(),
        c.actor().to_string(),
    )
}

fn failed(e: fabric_alerts::AlertsError) -> UiError {
    match e {
        fabric_alerts::AlertsError::InvalidInput { field, message } => {
            UiError::invalid(field, message)
        }
        fabric_alerts::AlertsError::NotFound { what, id } => UiError::NotFound { what, id },
        other => UiError::Engine(fabric_engine::EngineError::Failed(other.to_string())),
    }
}

/// `GET /ui/alerts`.
pub(crate) async fn page(viewer: Viewer, Query(q): Query<MsgQuery>) -> Result<Markup, UiError> {
    let svc = service(&viewer);
    let alerts = svc.list().await.map_err(failed)?;
    let silences = svc.silences(false).await.map_err(failed)?;
    let now = viewer.console.now();
    let body = html! {
        div data-live="" #alerts-live {
            table.grid #alerts {
                thead { tr { th { "alert" } th { "labels" } th { "phase" } th { "value" } th { "since" } th { "held back" } th {} } }
                tbody {
                    @for a in &alerts {
                        @let s = &a.state;
                        tr data-rule=(s.rule) {
                            td { (s.rule) }
                            td { (s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")) }
                            td.phase { @if s.phase == AlertPhase::Firing { span.state.state-quarantined { "firing" } } @else { "pending" } }
                            td { (format!("{:.3}", s.last_value)) } td { (ts(s.since)) }
                            td.held { @if !a.silenced_by.is_empty() { "silenced (" (a.silenced_by.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")) ")" } @if a.inhibited { " inhibited" } }
                            td {
                                form.inline method="post" action="/ui/alerts/silence" {
                                    (csrf(&viewer))
                                    input type="hidden" name="matcher" value={"alertname=" (s.labels.get("alertname").unwrap_or(&s.rule))};
                                    input name="duration" value="1h" size="4";
                                    input name="comment" placeholder="why" size="12";
                                    button type="submit" class="silence" disabled[!viewer.can_act()] { "Silence" }
                                }
                            }
                        }
                    }
                    @if alerts.is_empty() { tr { td colspan="7" #no-alerts { "No alert is pending or firing." } } }
                }
            }
            h2 { "Silences" }
            table.grid #silences {
                thead { tr { th { "id" } th { "matchers" } th { "from" } th { "until" } th { "by" } th { "comment" } th {} } }
                tbody {
                    @for s in &silences {
                        tr data-id=(s.id) {
                            td { (s.id) } td.matchers { (s.new.matchers.join(", ")) }
                            td { (ts(s.new.starts_at)) } td { (ts(s.new.ends_at)) @if !s.active(now) { " (not yet)" } }
                            td { (s.new.author) } td { (s.new.comment) }
                            td { (button(&viewer, &format!("/ui/alerts/silences/{}/expire", s.id), "Expire", "/ui/alerts", "")) }
                        }
                    }
                    @if silences.is_empty() { tr { td colspan="7" { "No silence." } } }
                }
            }
        }
        section.bulk {
            h2 { "New silence" }
            form #new-silence method="post" action="/ui/alerts/silence" {
                (csrf(&viewer))
                label { "Matcher " input name="matcher" placeholder="alertname=queue_depth_high" size="28"; }
                label { " For " input name="duration" value="2h" size="4"; }
                label { " Comment " input name="comment" size="20"; }
                button type="submit" disabled[!viewer.can_act()] { "Silence" }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Alerts",
        "/ui/alerts",
        q.msg.as_deref(),
        body,
    ))
}

/// `POST /ui/alerts/silence`: `matcher` (one or more), `duration` (`2h`), `comment`.
pub(crate) async fn silence(viewer: Viewer, form: Fields) -> Result<Response, UiError> {
    viewer.act(&form)?;
    let matchers: Vec<String> = form.all("matcher");
    let duration = fabric_core::time::parse_duration_ms(form.required("duration")?)
        .map_err(|e| UiError::invalid("duration", e))?;
    let comment = form.get("comment").unwrap_or("silenced in the console");
    let author = viewer.principal.name.clone();
    let s = service(&viewer)
        .silence(&matchers, duration, Some(&author), comment)
        .await
        .map_err(failed)?;
    Ok(done(
        "/ui/alerts",
        &format!(
            "silence {} holds back {} until {}",
            s.id,
            s.new.matchers.join(", "),
            ts(s.new.ends_at)
        ),
    ))
}

/// `POST /ui/alerts/silences/{id}/expire`.
pub(crate) async fn unsilence(
    viewer: Viewer,
    Path(id): Path<String>,
    form: Fields,
) -> Result<Response, UiError> {
    viewer.act(&form)?;
    let id = id_of(&id, "silence")?;
    let s = service(&viewer).unsilence(id).await.map_err(failed)?;
    Ok(done("/ui/alerts", &format!("silence {} expired", s.id)))
}
