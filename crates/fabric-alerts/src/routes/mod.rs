//! The receivers as real clients: Slack incoming webhooks, PagerDuty Events API v2 and
//! generic webhooks over HTTP(S) (`http`), email over SMTP (`email`), and the log. One call
//! sends one group of alerts to one route and says how it went.

mod email;
mod http;

pub use http::signature;

use std::time::Duration;

use fabric_core::config::{RouteConfig, RouteType};
use serde_json::{json, Value};

use crate::message::{self, AlertInfo};

/// How one send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver took it; what it answered (`HTTP 200`, `250 OK`, ...).
    Delivered(String),
    /// It may work later: a timeout, a refused connection, HTTP 5xx, 408 or 429, a transient
    /// SMTP error. `after` is the receiver's `Retry-After`.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Retrying will not help (HTTP 4xx, a permanent SMTP error, a bad address).
    Failed(String),
}

impl Outcome {
    /// `delivered`, `retry` or `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Delivered(_) => "delivered",
            Self::Retry { .. } => "retry",
            Self::Failed(_) => "failed",
        }
    }

    /// The receiver's answer or the error.
    pub fn detail(&self) -> String {
        match self {
            Self::Delivered(d) | Self::Failed(d) => d.clone(),
            Self::Retry { error, after: None } => error.clone(),
            Self::Retry {
                error,
                after: Some(a),
            } => format!("{error} (Retry-After {}s)", a.as_secs_f64()),
        }
    }
}

/// One send: how it went and each message it was (a PagerDuty group is one event per
/// alert; the others one message per group).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outcome: Outcome,
    /// The bodies sent, in order (email: `{to, subject, text}`).
    pub messages: Vec<Value>,
}

/// How many sends a group of `alerts` costs a route's rate limit.
pub fn cost(route: &RouteConfig, alerts: &[AlertInfo]) -> usize {
    match route.kind {
        RouteType::Pagerduty => alerts.len().max(1),
        _ => 1,
    }
}

/// The clients, shared by every send.
#[derive(Clone)]
pub struct Routes {
    http: reqwest::Client,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("fabric-alerts/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Sends `alerts` (one group, `group_key`) through route `name`. With `dry_run`
    /// nothing leaves the process: the messages are built and reported delivered.
    pub async fn deliver(
        &self,
        name: &str,
        route: &RouteConfig,
        group_key: &str,
        alerts: &[AlertInfo],
        dry_run: bool,
    ) -> Delivery {
        let timeout = Duration::from_millis(route.timeout_ms.max(1));
        let url = route.target_url().unwrap_or_default();
        let bodies: Vec<Value> = match route.kind {
            RouteType::Slack => vec![message::slack(alerts)],
            RouteType::Pagerduty => {
                let key = route.routing_key.as_deref().unwrap_or_default();
                alerts.iter().map(|a| message::pagerduty(key, a)).collect()
            }
            RouteType::Webhook => vec![message::webhook(name, group_key, alerts)],
            RouteType::Email => vec![json!({
                "to": route.to,
                "subject": message::title(alerts),
                "text": message::text(alerts),
            })],
            RouteType::Log => vec![json!({ "text": message::text(alerts) })],
        };
        if dry_run {
            return Delivery {
                outcome: Outcome::Delivered("dry run: not sent".into()),
                messages: bodies,
            };
        }
        let mut outcome = Outcome::Delivered(String::new());
        let mut sent = Vec::new();
        for body in bodies {
            outcome = match route.kind {
                RouteType::Slack | RouteType::Pagerduty | RouteType::Webhook => {
                    let secret = route
                        .secret
                        .as_deref()
                        .filter(|_| route.kind == RouteType::Webhook);
                    http::post_json(&self.http, url, &body, secret, timeout).await
                }
                RouteType::Email => email::send(route, alerts, timeout).await,
                RouteType::Log => {
                    let text = body["text"].as_str().unwrap_or_default().to_string();
                    tracing::warn!(route = name, group = group_key, "{text}");
                    Outcome::Delivered("logged".into())
                }
            };
            sent.push(body);
            if !matches!(outcome, Outcome::Delivered(_)) {
                break;
            }
        }
        Delivery {
            outcome,
            messages: sent,
        }
    }
}
