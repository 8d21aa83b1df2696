//! `fabric nodes list|offline|online|drain`: the fleet of daemons sharing one store.

use std::process::ExitCode;

use fabric_engine::console::NodeAction;

use crate::cli::NodesCmd;
use crate::context::Ctx;
use crate::output::{print, table, time};

pub async fn run(ctx: &Ctx, cmd: NodesCmd) -> anyhow::Result<ExitCode> {
    let f = ctx.global.format;
    let console = ctx.console().await?;
    let (id, action, reason) = match cmd {
        NodesCmd::List => {
            let nodes = console.nodes().await?;
            print(f, &nodes, || {
                if nodes.is_empty() {
                    return "no nodes registered (a daemon registers when it starts)".into();
                }
                table(
                    &[
                        "id",
                        "shard",
                        "health",
                        "load",
                        "capacity",
                        "heartbeat",
                        "age",
                        "leader",
                        "host/pid",
                    ],
                    nodes
                        .iter()
                        .map(|v| {
                            let n = &v.node;
                            let mut health = v.effective_health.to_string();
                            if n.draining {
                                health.push_str(" (draining)");
                            }
                            if n.stopped_at.is_some() {
                                health.push_str(" (stopped)");
                            }
                            vec![
                                n.id.clone(),
                                n.shard.clone(),
                                health,
                                n.load.to_string(),
                                n.capacity.to_string(),
                                time(Some(n.heartbeat_at)),
                                format!("{:.1}s", v.heartbeat_age_ms as f64 / 1000.0),
                                if v.leader { "yes" } else { "" }.into(),
                                format!("{}/{}", n.host, n.pid),
                            ]
                        })
                        .collect(),
                )
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        NodesCmd::Offline { id, reason } => (id, NodeAction::Offline, reason),
        NodesCmd::Online { id, reason } => (id, NodeAction::Online, reason),
        NodesCmd::Drain { id, reason } => (id, NodeAction::Drain, reason),
    };
    let node = console.set_node(&id, action, reason.as_deref()).await?;
    print(f, &node, || {
        format!(
            "node {}: health {}{}",
            node.id,
            node.health,
            if node.draining { ", draining" } else { "" }
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
