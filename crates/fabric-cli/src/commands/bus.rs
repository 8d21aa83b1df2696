//! `fabric bus init|snapshot|streams|publish|tail|dead-letters list|replay|purge`: the message
//! bus as an operator sees it, on the configured backend. Publishing, replaying, purging and
//! creating groups are audited like every other operator action.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fabric_bus::{Bus, BusBackend, DeadLetter, Delivery, Lane, Message};
use serde_json::json;

use crate::cli::{BusCmd, DeadLettersCmd, Format};
use crate::context::{Ctx, Usage};
use crate::output::{emit, pairs, print, table};

/// How often `tail -f` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// The largest `--limit`.
const MAX_LIMIT: usize = 100_000;

/// The bus of the configuration. The in-process bus exists only inside a daemon, so a
/// command run from a shell has nothing to inspect: that is a usage error saying so.
async fn open(ctx: &Ctx) -> anyhow::Result<Arc<dyn Bus>> {
    let config = ctx.config.bus.clone();
    if config.backend == BusBackend::Inproc {
        return Err(Usage(
            "bus.backend is inproc: the in-process bus lives inside the daemon and is not \
             reachable from this command (its counters are on the daemon's /metrics as \
             fabric_bus_*); set bus.backend: redis and bus.url to share a bus between \
             daemons and the command line"
                .into(),
        )
        .into());
    }
    let url = fabric_core::config::redact_conn_string(&config.url);
    fabric_bus::open(config)
        .await
        .with_context(|| format!("cannot open the bus at {url}"))
}

/// The lane `name` names: a lane (`normal`, `dead-letter`, …) or a configured stream name.
fn lane_named(ctx: &Ctx, name: &str, allow_dead: bool) -> anyhow::Result<Lane> {
    let streams = &ctx.config.bus.streams;
    let lane = match Lane::named(&name.replace('-', "_")) {
        Some(l) => Some(l),
        None => [
            (Lane::Normal, &streams.normal),
            (Lane::Emergency, &streams.emergency),
            (Lane::Telemetry, &streams.telemetry),
            (Lane::Policy, &streams.policy),
            (Lane::DeadLetter, &streams.dead_letter),
        ]
        .into_iter()
        .find(|(_, n)| n.as_str() == name)
        .map(|(l, _)| l),
    };
    match lane {
        Some(Lane::DeadLetter) if !allow_dead => Err(Usage(format!(
            "--stream {name}: nothing is published to dead_letter directly (entries land \
             there after too many deliveries); use normal, emergency, telemetry or policy"
        ))
        .into()),
        Some(l) => Ok(l),
        None => Err(Usage(format!(
            "--stream {name:?} is not a stream: use normal, emergency, telemetry, policy{}",
            if allow_dead { " or dead_letter" } else { "" }
        ))
        .into()),
    }
}

fn check_limit(limit: usize) -> anyhow::Result<()> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Usage(format!("--limit {limit} is out of range 1..{MAX_LIMIT}")).into());
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: BusCmd) -> anyhow::Result<ExitCode> {
    // Arguments are checked before anything is opened.
    match &cmd {
        BusCmd::Publish {
            stream, payload, ..
        } => {
            lane_named(ctx, stream, false)?;
            serde_json::from_str::<serde_json::Value>(payload)
                .map_err(|e| Usage(format!("--payload is not JSON: {e}")))?;
        }
        BusCmd::Tail { stream, limit, .. } => {
            lane_named(ctx, stream, true)?;
            check_limit(*limit)?;
        }
        BusCmd::DeadLetters(DeadLettersCmd::List { limit }) => check_limit(*limit)?,
        BusCmd::DeadLetters(
            DeadLettersCmd::Replay { ids, all } | DeadLettersCmd::Purge { ids, all },
        ) if ids.is_empty() && !all => {
            return Err(Usage("name the dead-letter ids, or give --all".into()).into());
        }
        BusCmd::Init { group } if group.is_empty() || group.contains(char::is_whitespace) => {
            return Err(Usage(format!("--group {group:?} must be a name without spaces")).into());
        }
        _ => {}
    }
    let bus = open(ctx).await?;
    let format = ctx.global.format;
    match cmd {
        BusCmd::Init { group } => {
            bus.init(&group).await?;
            audit(ctx, "bus.init", format!("group {group}")).await?;
            print(format, &json!({"group": group, "created": true}), || {
                format!("consumer group '{group}' exists on every stream")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BusCmd::Snapshot => {
            let m = bus.metrics_snapshot().await?;
            print(format, &m, || {
                let items: Vec<(&str, String)> =
                    m.0.iter().map(|(k, v)| (*k, v.to_string())).collect();
                pairs(&items)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BusCmd::Streams => {
            let streams = bus.streams().await?;
            print(format, &streams, || {
                let mut rows = Vec::new();
                for s in &streams {
                    let key = format!("{}:{}", ctx.config.bus.prefix, s.name);
                    if s.groups.is_empty() {
                        rows.push(vec![
                            s.lane.as_str().into(),
                            key.clone(),
                            s.length.to_string(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ]);
                    }
                    for (g, info) in &s.groups {
                        rows.push(vec![
                            s.lane.as_str().into(),
                            key.clone(),
                            s.length.to_string(),
                            g.clone(),
                            info.pending.to_string(),
                            info.lag.to_string(),
                        ]);
                    }
                }
                table(
                    &["stream", "key", "length", "group", "pending", "lag"],
                    rows,
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BusCmd::Publish {
            stream,
            payload,
            emergency,
        } => publish(ctx, bus.as_ref(), &stream, payload, emergency).await,
        BusCmd::Tail {
            stream,
            group,
            limit,
            follow,
        } => tail(ctx, bus.as_ref(), &stream, group, limit, follow).await,
        BusCmd::DeadLetters(cmd) => dead_letters(ctx, bus.as_ref(), cmd).await,
    }
}

async fn audit(ctx: &Ctx, action: &str, target: String) -> anyhow::Result<()> {
    ctx.console()
        .await?
        .audit_action(action, target, None)
        .await?;
    Ok(())
}

/// Publishes one message; a dropped message (normal too deep) exits 1 saying so.
async fn publish(
    ctx: &Ctx,
    bus: &dyn Bus,
    stream: &str,
    payload: String,
    emergency: bool,
) -> anyhow::Result<ExitCode> {
    let lane = lane_named(ctx, stream, false)?;
    // `landed`: the stream the message is stored on (none when dropped), not the one asked
    // for.
    let (outcome, id, landed) = match lane {
        Lane::Normal | Lane::Emergency => {
            let m = Message {
                payload,
                emergency: emergency || lane == Lane::Emergency,
            };
            let out = bus.publish(m).await?;
            (out.as_str(), out.id().map(str::to_string), out.lane())
        }
        _ if emergency => {
            return Err(Usage(format!(
                "--emergency applies to normal and emergency, not to --stream {stream}"
            ))
            .into())
        }
        lane => (
            "appended",
            Some(bus.publish_to(lane, &payload).await?),
            Some(lane),
        ),
    };
    audit(
        ctx,
        "bus.publish",
        format!(
            "{} → {outcome}{}",
            lane.as_str(),
            id.as_deref().map(|i| format!(" {i}")).unwrap_or_default()
        ),
    )
    .await?;
    let c = &ctx.config.bus;
    let value = json!({"stream": landed.map(Lane::as_str), "outcome": outcome, "id": id});
    print(ctx.global.format, &value, || match (outcome, &id) {
        ("dropped", _) => format!(
            "dropped: the normal stream holds at least bus.backpressure_drop_threshold ({}) \
             entries; nothing was stored",
            c.backpressure_drop_threshold
        ),
        ("rerouted", Some(id)) => format!(
            "rerouted to emergency as {id}: the normal stream holds at least \
             bus.emergency_threshold ({}) entries",
            c.emergency_threshold
        ),
        (_, Some(id)) => format!("published to {} as {id}", landed.map_or("-", Lane::as_str)),
        (o, None) => o.to_string(),
    })?;
    Ok(if outcome == "dropped" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show_entries(format: Format, entries: &[Delivery]) -> anyhow::Result<()> {
    match format {
        // One JSON object per line, so `-f` output can be piped to jq.
        Format::Json => {
            let mut text = String::new();
            for d in entries {
                let line = json!({
                    "stream": d.lane.as_str(),
                    "id": d.id,
                    "payload": serde_json::from_str::<serde_json::Value>(&d.payload)
                        .unwrap_or_else(|_| json!(d.payload)),
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
            emit(&text)
        }
        _ => {
            let text: String = entries
                .iter()
                .map(|d| format!("{}  {}  {}\n", d.lane.as_str(), d.id, d.payload))
                .collect();
            emit(&text)
        }
    }
}

async fn tail(
    ctx: &Ctx,
    bus: &dyn Bus,
    stream: &str,
    group: Option<String>,
    limit: usize,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let lane = lane_named(ctx, stream, true)?;
    let mut after = match &group {
        Some(g) => {
            let streams = bus.streams().await?;
            let info = streams
                .iter()
                .find(|s| s.lane == lane)
                .and_then(|s| s.groups.get(g))
                .ok_or_else(|| {
                    Usage(format!(
                        "no consumer group {g:?} on the {} stream (`fabric bus streams` lists \
                         them; `fabric bus init --group {g}` creates it)",
                        lane.as_str()
                    ))
                })?;
            Some(info.last_delivered.clone())
        }
        None => None,
    };
    let first = bus.entries(lane, after.as_deref(), limit).await?;
    show_entries(ctx.global.format, &first)?;
    if let Some(last) = first.last() {
        after = Some(last.id.clone());
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    if after.is_none() {
        // An empty stream: follow from its start.
        after = Some("0-0".into());
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        let new = bus.entries(lane, after.as_deref(), MAX_LIMIT).await?;
        if let Some(last) = new.last() {
            after = Some(last.id.clone());
            show_entries(ctx.global.format, &new)?;
        }
    }
}

/// The dead letters `ids` names (every one with `all`); an unknown id is an error naming it.
async fn chosen(bus: &dyn Bus, ids: &[String], all: bool) -> anyhow::Result<Vec<DeadLetter>> {
    let letters = bus.dead_letters(MAX_LIMIT).await?;
    if all {
        return Ok(letters);
    }
    ids.iter()
        .map(|id| {
            letters
                .iter()
                .find(|l| &l.id == id)
                .cloned()
                .ok_or_else(|| {
                    Usage(format!(
                        "no dead letter {id:?} (`fabric bus dead-letters list` shows them)"
                    ))
                    .into()
                })
        })
        .collect()
}

async fn dead_letters(ctx: &Ctx, bus: &dyn Bus, cmd: DeadLettersCmd) -> anyhow::Result<ExitCode> {
    let format = ctx.global.format;
    match cmd {
        DeadLettersCmd::List { limit } => {
            let letters = bus.dead_letters(limit).await?;
            print(format, &letters, || {
                let rows = letters
                    .iter()
                    .map(|l| {
                        vec![
                            l.id.clone(),
                            l.lane.as_str().into(),
                            l.original_id.clone(),
                            l.group.clone(),
                            l.deliveries.to_string(),
                            l.payload.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "id",
                        "stream",
                        "original id",
                        "group",
                        "deliveries",
                        "payload",
                    ],
                    rows,
                )
            })?;
        }
        DeadLettersCmd::Replay { ids, all } => {
            let letters = chosen(bus, &ids, all).await?;
            let done = fabric_bus::replay_dead_letters(bus, &letters).await?;
            let dropped = done.iter().filter(|r| r.outcome == "dropped").count();
            audit(
                ctx,
                "bus.dead_letters.replay",
                format!("{} replayed, {dropped} dropped", done.len() - dropped),
            )
            .await?;
            print(format, &done, || {
                let rows = done
                    .iter()
                    .map(|r| {
                        vec![
                            r.dead_letter_id.clone(),
                            r.lane.as_str().into(),
                            r.outcome.into(),
                            r.id.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table(&["dead letter", "stream", "outcome", "new id"], rows)
            })?;
            if dropped > 0 {
                eprintln!(
                    "{dropped} dead letters were dropped again (normal is past its drop \
                     threshold) and stay in the dead-letter stream"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        DeadLettersCmd::Purge { ids, all } => {
            let letters = chosen(bus, &ids, all).await?;
            let ids: Vec<String> = letters.iter().map(|l| l.id.clone()).collect();
            let n = bus.delete_dead_letters(&ids).await?;
            audit(ctx, "bus.dead_letters.purge", format!("{n} dead letters")).await?;
            print(format, &json!({"purged": n}), || {
                format!("{n} dead letters deleted")
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
