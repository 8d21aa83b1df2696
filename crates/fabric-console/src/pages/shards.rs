//! Shards and nodes, with their levers: pause and resume, the spillover limit and the latency
//! budget of a shard; drain, offline and online of a node.

use axum::extract::{Path, Query};
use axum::response::Response;
use fabric_engine::console::NodeAction;
use maud::{html, Markup};

use super::done;
use super::jobs::MsgQuery;
use crate::auth::{Fields, Viewer};
use crate::error::UiError;
use crate::layout::{self, button, csrf, duration, pause_toggle};

/// `GET /ui/shards`.
pub(crate) async fn list(viewer: Viewer, Query(q): Query<MsgQuery>) -> Result<Markup, UiError> {
    let shards = viewer.console.shards().await?;
    let nodes = viewer.console.nodes().await?;
    let depths = viewer
        .console
        .store()
        .queue_depths()
        .await
        .map_err(fabric_engine::EngineError::from)?;
    let body = html! {
        div data-live="" #shards-live {
            table.grid #shards {
                thead { tr { th { "shard" } th { "state" } th { "queued" } th { "spillover limit" } th { "latency budget" } th { "levers" } } }
                tbody { @for s in &shards {
                    @let name = &s.name;
                    tr data-shard=(name) {
                        td { a href={"/ui/jobs?shard=" (name)} { (name) } }
                        td.shard-state { @if s.paused { span.state.state-paused { "paused" } } @else { span.state.state-active { "active" } } }
                        td { (depths.get(name).copied().unwrap_or(0)) }
                        td { (s.spillover_limit) }
                        td { (s.latency_budget_ms) " ms" }
                        td {
                            (pause_toggle(&viewer, &format!("/ui/shards/{name}"), s.paused, "/ui/shards"))
                            form.inline method="post" action={"/ui/shards/" (name) "/spillover"} {
                                (csrf(&viewer)) input name="value" value=(s.spillover_limit) size="4";
                                button type="submit" disabled[!viewer.can_act()] { "Set spillover" }
                            }
                            form.inline method="post" action={"/ui/shards/" (name) "/latency-budget"} {
                                (csrf(&viewer)) input name="value" value=(s.latency_budget_ms) size="6";
                                button type="submit" disabled[!viewer.can_act()] { "Set budget (ms)" }
                            }
                        }
                    }
                } }
            }
            h2 { "Nodes" }
            table.grid #nodes {
                thead { tr { th { "node" } th { "shard" } th { "health" } th { "load" } th { "capacity" } th { "heartbeat" } th { "levers" } } }
                tbody { @for n in &nodes {
                    @let id = &n.node.id;
                    tr data-node=(id) {
                        td { (id) @if n.leader { " (leader)" } }
                        td { (n.node.shard) }
                        td.node-health { (n.effective_health.as_str()) @if n.node.draining { " (draining)" } }
                        td { (n.node.load) } td { (n.node.capacity) }
                        td { (duration(n.heartbeat_age_ms)) " ago" }
                        td {
                            (button(&viewer, &format!("/ui/nodes/{id}/drain"), "Drain", "/ui/shards", ""))
                            (button(&viewer, &format!("/ui/nodes/{id}/offline"), "Offline", "/ui/shards", "danger"))
                            (button(&viewer, &format!("/ui/nodes/{id}/online"), "Online", "/ui/shards", ""))
                        }
                    }
                } }
            }
        }
    };
    Ok(layout::page(
        &viewer,
        "Shards & nodes",
        "/ui/shards",
        q.msg.as_deref(),
        body,
    ))
}

fn number<T: std::str::FromStr>(form: &Fields) -> Result<T, UiError> {
    form.required("value")?
        .parse()
        .map_err(|_| UiError::invalid("value", "must be a whole number"))
}

/// `POST /ui/shards/{name}/pause|resume|spillover|latency-budget`.
pub(crate) async fn lever(
    viewer: Viewer,
    Path((name, lever)): Path<(String, String)>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let reason = form.get("reason");
    let s = match lever.as_str() {
        "pause" => console.pause_shard(&name, reason).await?,
        "resume" => console.resume_shard(&name, reason).await?,
        "spillover" => {
            console
                .update_spillover_limit(&name, number(&form)?, reason)
                .await?
        }
        "latency-budget" => {
            console
                .update_latency_budget(&name, number(&form)?, reason)
                .await?
        }
        other => {
            return Err(UiError::invalid(
                "lever",
                format!("'{other}' is not pause, resume, spillover or latency-budget"),
            ))
        }
    };
    let state = if s.paused { "paused" } else { "active" };
    Ok(done(
        &form.back("/ui/shards"),
        &format!(
            "shard {} is {state} (spillover {}, budget {} ms)",
            s.name, s.spillover_limit, s.latency_budget_ms
        ),
    ))
}

/// `POST /ui/nodes/{id}/drain|offline|online`.
pub(crate) async fn node(
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    form: Fields,
) -> Result<Response, UiError> {
    let console = viewer.act(&form)?;
    let action = match action.as_str() {
        "drain" => NodeAction::Drain,
        "offline" => NodeAction::Offline,
        "online" => NodeAction::Online,
        other => {
            return Err(UiError::invalid(
                "action",
                format!("'{other}' is not drain, offline or online"),
            ))
        }
    };
    let n = console.set_node(&id, action, form.get("reason")).await?;
    Ok(done(
        &form.back("/ui/shards"),
        &format!(
            "node {} is {}{}",
            n.id,
            n.health,
            if n.draining { ", draining" } else { "" }
        ),
    ))
}
