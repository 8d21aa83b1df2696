//! `fabric alerts list|rules|history|silence|unsilence|ack|test`: the operator's face of
//! fabric-alerts; every action goes through [`AlertsConsole`], which validates and audits.

use std::process::ExitCode;
use std::sync::Arc;

use fabric_alerts::{AlertView, AlertsConsole};
use fabric_core::config::fmt_number;
use fabric_core::RealClock;
use fabric_store::{AlertPhase, Silence};

use crate::cli::AlertsCmd;
use crate::context::{parse_since, Ctx, Usage};
use crate::output::{pairs, print, short, table, time};

async fn console(ctx: &Ctx) -> anyhow::Result<AlertsConsole> {
    ctx.ensure_home()?;
    let store = fabric_engine::open_store(&ctx.config, &ctx.home).await?;
    Ok(AlertsConsole::new(
        store,
        ctx.config.clone(),
        Arc::new(RealClock),
        Ctx::actor(),
    ))
}

/// `shard=earth, team=ops`: the labels other than alertname and severity.
fn labels(v: &AlertView) -> String {
    v.state
        .labels
        .iter()
        .filter(|(k, _)| *k != "alertname" && *k != "severity")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `silenced (3)`, `inhibited`, `acked by cli:ada`, or nothing.
fn held(v: &AlertView) -> String {
    let mut out = Vec::new();
    if !v.silenced_by.is_empty() {
        let ids: Vec<String> = v.silenced_by.iter().map(i64::to_string).collect();
        out.push(format!("silenced ({})", ids.join(", ")));
    }
    if v.inhibited {
        out.push("inhibited".into());
    }
    if let Some(by) = &v.state.acked_by {
        out.push(format!("acked by {by}"));
    }
    out.join("; ")
}

fn silence_rows(list: &[Silence]) -> String {
    table(
        &["id", "matchers", "starts", "ends", "author", "comment"],
        list.iter()
            .map(|s| {
                vec![
                    s.id.to_string(),
                    s.new.matchers.join(", "),
                    time(Some(s.new.starts_at)),
                    time(Some(s.new.ends_at)),
                    s.new.author.clone(),
                    short(&s.new.comment, 60),
                ]
            })
            .collect(),
    )
}

pub async fn run(ctx: &Ctx, cmd: AlertsCmd) -> anyhow::Result<ExitCode> {
    let format = ctx.global.format;
    match cmd {
        AlertsCmd::List => {
            let list = console(ctx).await?.list().await?;
            print(format, &list, || {
                if list.is_empty() {
                    return "no alert is pending or firing".into();
                }
                table(
                    &[
                        "state", "rule", "value", "since", "labels", "routes", "held", "id",
                    ],
                    list.iter()
                        .map(|v| {
                            let s = &v.state;
                            vec![
                                if s.phase == AlertPhase::Firing {
                                    "firing".into()
                                } else {
                                    format!("pending {}", s.breaches)
                                },
                                s.rule.clone(),
                                fmt_number(s.last_value),
                                time(Some(s.since)),
                                labels(v),
                                v.routes.join(", "),
                                held(v),
                                s.fingerprint[..12.min(s.fingerprint.len())].to_string(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        AlertsCmd::Rules => {
            let rules = console(ctx).await?.rules().await?;
            print(format, &rules, || {
                table(
                    &[
                        "rule",
                        "condition",
                        "severity",
                        "routes",
                        "origin",
                        "firing",
                    ],
                    rules
                        .iter()
                        .map(|r| {
                            vec![
                                r.rule.name.clone(),
                                r.condition.clone(),
                                r.rule.severity.as_str().into(),
                                r.rule.routes.join(", "),
                                r.rule.origin.into(),
                                r.firing.to_string(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        AlertsCmd::History {
            since,
            route,
            limit,
        } => {
            if !(1..=100_000).contains(&limit) {
                return Err(Usage(format!("--limit {limit} is out of range 1..100000")).into());
            }
            let since = parse_since(since.as_deref())?;
            let list = console(ctx)
                .await?
                .history(since, route.as_deref(), limit)
                .await?;
            print(format, &list, || {
                if list.is_empty() {
                    return "no delivery attempt recorded".into();
                }
                table(
                    &["at", "route", "outcome", "try", "alerts", "detail", "ms"],
                    list.iter()
                        .map(|a| {
                            let a = &a.attempt;
                            vec![
                                time(Some(a.at)),
                                a.route.clone(),
                                a.outcome.clone(),
                                a.attempt.to_string(),
                                short(&a.summary, 50),
                                short(&a.detail, 60),
                                a.duration_ms.to_string(),
                            ]
                        })
                        .collect(),
                )
            })?;
        }
        AlertsCmd::Silence {
            mut matchers,
            rule,
            duration,
            author,
            comment,
            all,
        } => {
            let c = console(ctx).await?;
            if let Some(rule) = rule {
                matchers.push(format!("alertname={rule}"));
            }
            if matchers.is_empty() {
                let list = c.silences(all).await?;
                print(format, &list, || {
                    if list.is_empty() {
                        "no silence in force".into()
                    } else {
                        silence_rows(&list)
                    }
                })?;
                return Ok(ExitCode::SUCCESS);
            }
            let ms = fabric_core::time::parse_duration_ms(&duration)
                .map_err(|e| Usage(format!("--duration: {e}")))?;
            let s = c
                .silence(&matchers, ms, author.as_deref(), &comment)
                .await?;
            print(format, &s, || {
                format!(
                    "silence {} until {}: {}",
                    s.id,
                    time(Some(s.new.ends_at)),
                    s.new.matchers.join(", ")
                )
            })?;
        }
        AlertsCmd::Unsilence { id } => {
            let n = id
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Usage(format!(
                        "invalid silence id '{id}': expected a positive integer"
                    ))
                })?;
            let s = console(ctx).await?.unsilence(n).await?;
            print(format, &s, || {
                format!("silence {} ended at {}", s.id, time(Some(s.new.ends_at)))
            })?;
        }
        AlertsCmd::Ack { alert, comment } => {
            let acked = console(ctx).await?.ack(&alert, comment.as_deref()).await?;
            print(format, &acked, || {
                acked
                    .iter()
                    .map(|s| format!("acknowledged {} ({})\n", s.rule, s.fingerprint))
                    .collect()
            })?;
        }
        AlertsCmd::Test { route } => {
            let out = console(ctx).await?.test(&route).await?;
            print(format, &out, || {
                pairs(&[
                    ("route", out.route.clone()),
                    ("type", out.kind.as_str().into()),
                    ("endpoint", out.endpoint.clone()),
                    ("outcome", out.outcome.clone()),
                    ("detail", out.detail.clone()),
                    ("duration_ms", out.duration_ms.to_string()),
                ])
            })?;
            if !out.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
