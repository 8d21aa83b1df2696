//! The bus: each lane's depth, lag and pending deliveries, the publish and drop counters, and
//! the dead letters.

use axum::extract::State;
use maud::{html, Markup};

use super::jobs::truncate;
use crate::auth::Viewer;
use crate::error::UiError;
use crate::layout;
use crate::UiState;

/// `GET /ui/bus`.
pub(crate) async fn page(State(state): State<UiState>, viewer: Viewer) -> Result<Markup, UiError> {
    let Some(bus) = state.0.deps.bus.clone() else {
        let body = html! { p { "This daemon has no bus." } };
        return Ok(layout::page(&viewer, "Bus", "/ui/bus", None, body));
    };
    let timeout = std::time::Duration::from_secs(2);
    let snapshot = tokio::time::timeout(timeout, bus.metrics_snapshot()).await;
    let streams = tokio::time::timeout(timeout, bus.streams()).await;
    let letters = tokio::time::timeout(timeout, bus.dead_letters(100)).await;
    let body = html! {
        div data-live="" #bus-live {
            p { "Backend: " strong { (format!("{:?}", bus.config().backend).to_lowercase()) } }
            h2 { "Streams" }
            @match streams {
                Ok(Ok(list)) => {
                    table.grid #bus-streams {
                        thead { tr { th { "lane" } th { "stream" } th { "length" } th { "group" } th { "pending" } th { "lag" } } }
                        tbody {
                            @for st in &list {
                                @for (group, pending, lag) in group_rows(st) {
                                    tr data-lane=(st.lane.as_str()) { td { (st.lane.as_str()) } td { code { (st.name) } } td { (st.length) } td { (group) } td { (pending) } td { (lag) } }
                                }
                            }
                        }
                    }
                }
                Ok(Err(e)) => { p.error-message { "The streams cannot be read: " (e) } }
                Err(_) => { p.error-message { "The bus did not answer in 2 s." } }
            }
            h2 { "Counters" }
            @match snapshot {
                Ok(Ok(m)) => {
                    table.grid #bus-metrics {
                        thead { tr { th { "figure" } th { "value" } } }
                        tbody { @for (k, v) in &m.0 { tr { td { code { (k) } } td { (v) } } } }
                    }
                }
                Ok(Err(e)) => { p.error-message #bus-error { "The bus cannot be read: " (e) } }
                Err(_) => { p.error-message #bus-error { "The bus did not answer in 2 s." } }
            }
            h2 { "Dead letters" }
            @match letters {
                Ok(Ok(list)) => {
                    table.grid #dead-letters {
                        thead { tr { th { "id" } th { "stream" } th { "original id" } th { "group" } th { "deliveries" } th { "payload" } } }
                        tbody {
                            @for d in &list {
                                tr { td { (d.id) } td { (d.lane.as_str()) } td { (d.original_id) } td { (d.group) } td { (d.deliveries) } td.err { (truncate(&d.payload, 120)) } }
                            }
                            @if list.is_empty() { tr { td colspan="6" { "None." } } }
                        }
                    }
                    p.hint { "Replay or purge them with " code { "fabric bus dead-letters replay|purge" } "." }
                }
                Ok(Err(e)) => { p.error-message { (e) } }
                Err(_) => { p.error-message { "The bus did not answer in 2 s." } }
            }
        }
    };
    Ok(layout::page(&viewer, "Bus", "/ui/bus", None, body))
}

/// A stream's rows: one per consumer group (name, pending, lag), or one of dashes when it has
/// none.
fn group_rows(st: &fabric_bus::StreamInfo) -> Vec<(String, String, String)> {
    if st.groups.is_empty() {
        return vec![("—".into(), "—".into(), "—".into())];
    }
    st.groups
        .iter()
        .map(|(name, g)| (name.clone(), g.pending.to_string(), g.lag.to_string()))
        .collect()
}
