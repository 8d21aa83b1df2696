//! The overview: job counts by state, throughput and failure charts from the live ring
//! buffer, the alerts firing now and each SLO's burn.

use axum::extract::{Query, State};
use fabric_core::JobState;
use maud::{html, Markup};

use super::jobs::MsgQuery;
use crate::auth::Viewer;
use crate::error::UiError;
use crate::layout::{self, bars, state_badge, ts};
use crate::UiState;

/// `GET /ui`.
pub(crate) async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<MsgQuery>,
) -> Result<Markup, UiError> {
    crate::live::ensure_started(&state);
    let console = &viewer.console;
    let counts = console.counts().await?;
    let slo = console.slo_report().await?;
    let alerts = fabric_alerts::active_summary(&**console.store())
        .await
        .map_err(|e| fabric_engine::EngineError::Unavailable(e.to_string()))?;
    let points = state.0.live.points();
    let completed: Vec<u64> = points.iter().map(|p| p.completed).collect();
    let failed: Vec<u64> = points.iter().map(|p| p.failed).collect();
    let m = &state.0.deps.metrics;
    let body = html! {
        div data-live="" #overview-live {
            section.cards #counts {
                @for s in JobState::ALL {
                    a.card href={"/ui/jobs?state=" (s.as_str())} {
                        span.n data-state=(s.as_str()) { (counts.get(s)) }
                        (state_badge(s))
                    }
                }
            }
            p { "Workers of this daemon: " strong #workers { (m.workers_busy.get()) " / " (m.workers_max.get()) } " busy." }
            section.charts {
                div { h2 { "Succeeded per 5 s" } (bars("chart-completed", &completed, 60, "ok")) }
                div { h2 { "Failed attempts per 5 s" } (bars("chart-failed", &failed, 60, "bad")) }
                p.hint { "This daemon's work over the last " (points.len() * 5 / 60) " min, kept in memory." }
            }
            h2 { "Alerts firing" }
            @if alerts.is_empty() { p #alerts-none { "None." } } @else {
                table.grid #alerts-firing {
                    thead { tr { th { "alert" } th { "metric" } th { "value" } th { "since" } th { "routes notified" } } }
                    tbody { @for (name, a) in &alerts {
                        tr { td { a href="/ui/alerts" { (name) } } td { (a.metric) } td { (format!("{:.3}", a.value)) } td { (ts(a.since)) } td {
                            @if a.routes.is_empty() { a href="/ui/alerts" { "none notified (held back: see Alerts)" } } @else { (a.routes.join(", ")) }
                        } }
                    } }
                }
            }
            h2 { "SLO burn" }
            @if slo.is_empty() { p { "No SLO is configured (slo: in the config)." } } @else {
                table.grid #slo {
                    thead { tr { th { "SLO" } th { "objective" } th { "window" } th { "events" } th { "violations" } th { "burn rate" } } }
                    tbody { @for (name, s) in &slo {
                        tr { td { (name) } td { (s.objective) } td { (s.window) } td { (s.total) } td { (s.violations) } td { (format!("{:.2}", s.burn_rate)) } }
                    } }
                }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Overview",
        "/ui",
        q.msg.as_deref(),
        body,
    ))
}
