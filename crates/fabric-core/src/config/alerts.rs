//! The `alerts:` section: evaluation and grouping periods, routes (receivers), rules and
//! inhibition, the rules that ship by default and how they combine with the file's.
//!
//! Default rules and the file's combine so: a rule of the file replaces the default rule of
//! the same name, `disabled_rules: [name]` switches single defaults off and
//! `default_rules: false` all of them. A default rule names route *types* (`slack`, `pagerduty`, `email`): it is
//! delivered to every configured route of that type, and to `log` when none is configured, so
//! the defaults never make a config invalid. `disabled_rules` switches defaults off by name. A rule of the file names configured routes (or
//! `log`, always there); naming any other is a validation error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::redact::{redact_conn_string, MASK};

/// The built-in route every config has: notifications written to the daemon's log.
pub const LOG_ROUTE: &str = "log";

/// The `alerts:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules and deliver notifications in the daemon (default true).
    pub enabled: bool,
    /// Evaluation period: the leader samples the store's metrics and evaluates the rules this
    /// often (ms, default 10000; 50..86400000).
    pub interval_ms: u64,
    /// How long a new group of alerts waits for others before its first notification (ms,
    /// default 30000, Alertmanager's `group_wait`).
    pub group_wait_ms: u64,
    /// The least time between two notifications of one group (ms, default 300000).
    pub group_interval_ms: u64,
    /// A firing alert, unacknowledged, is notified again this often (ms, default 14400000;
    /// 0: never).
    pub repeat_interval_ms: u64,
    /// Ship the default rules (default true); see the module docs.
    pub default_rules: bool,
    /// Default rules switched off by name.
    pub disabled_rules: Vec<String>,
    /// Tries of one notification before it is given up as failed (default 10; 1..1000).
    /// Failures that retrying cannot fix (HTTP 4xx other than 408 and 429) are not retried.
    pub delivery_max_attempts: u32,
    /// First retry delay (ms, default 1000), doubled each try up to `delivery_max_backoff_ms`
    /// (default 300000); a receiver's `Retry-After` wins when longer.
    pub delivery_backoff_ms: u64,
    pub delivery_max_backoff_ms: u64,
    /// Days of delivered notifications and delivery history kept (default 30; 1..3650).
    pub history_retention_days: u32,
    /// Rate limits per route type; a notification over the limit waits, none is dropped.
    pub rate_limits: RateLimits,
    /// Receivers by name.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Rules of this file (see the module docs for how they combine with the defaults).
    pub rules: Vec<RuleConfig>,
    /// While an alert matching `source_match` fires, alerts matching `target_match` with the
    /// same values of the `equal` labels are not notified.
    pub inhibit: Vec<InhibitRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 10_000,
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            repeat_interval_ms: 4 * 3_600_000,
            default_rules: true,
            disabled_rules: Vec::new(),
            delivery_max_attempts: 10,
            delivery_backoff_ms: 1_000,
            delivery_max_backoff_ms: 300_000,
            history_retention_days: 30,
            rate_limits: RateLimits::default(),
            routes: BTreeMap::new(),
            rules: Vec::new(),
            inhibit: Vec::new(),
        }
    }
}

/// A token bucket: `per_minute` notifications a minute on average, at most `burst` at once;
/// `per_minute: 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: f64,
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// Rate limits by route type (`null`: unlimited). Slack's bucket is per route (one
/// incoming webhook), PagerDuty's per routing key, the others' per route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Default 1/s (Slack's incoming-webhook limit).
    pub slack: Option<RateLimit>,
    /// Default 120/min per routing key (PagerDuty's Events API v2 limit).
    pub pagerduty: Option<RateLimit>,
    pub webhook: Option<RateLimit>,
    pub email: Option<RateLimit>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            slack: Some(RateLimit {
                per_minute: 60.0,
                burst: 1,
            }),
            pagerduty: Some(RateLimit {
                per_minute: 120.0,
                burst: 1,
            }),
            webhook: None,
            email: None,
        }
    }
}

impl RateLimits {
    /// The limit of routes of `kind` (`None`: unlimited).
    pub fn of(&self, kind: RouteType) -> Option<RateLimit> {
        let limit = match kind {
            RouteType::Slack => self.slack,
            RouteType::Pagerduty => self.pagerduty,
            RouteType::Webhook => self.webhook,
            RouteType::Email => self.email,
            RouteType::Log => None,
        };
        limit.filter(|l| l.per_minute > 0.0)
    }
}

/// What kind of receiver a route is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RouteType {
    /// A Slack incoming webhook (`url`).
    Slack,
    /// PagerDuty Events API v2 (`routing_key`, `url` defaults to PagerDuty's).
    Pagerduty,
    /// Any HTTP endpoint taking JSON (`url`, optional HMAC `secret`).
    Webhook,
    /// SMTP (`host`, `port`, `from`, `to`, optional `username`/`password`, `tls`).
    Email,
    /// The daemon's log.
    #[default]
    Log,
}

impl RouteType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
            Self::Webhook => "webhook",
            Self::Email => "email",
            Self::Log => "log",
        }
    }

    /// The type named `s`.
    pub fn named(s: &str) -> Option<Self> {
        [
            Self::Slack,
            Self::Pagerduty,
            Self::Webhook,
            Self::Email,
            Self::Log,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// How an email route speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text.
    None,
    /// STARTTLS when the server offers it (the default).
    #[default]
    Opportunistic,
    /// STARTTLS, refusing a server without it.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One receiver. Which keys apply depends on `type`; a key that does not apply is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    #[serde(rename = "type")]
    pub kind: RouteType,
    /// slack, webhook (required); pagerduty (default [`PAGERDUTY_URL`]). Secret: a Slack URL's
    /// path and every URL's password and query values are masked when shown.
    pub url: Option<String>,
    /// pagerduty: the integration's routing key (secret).
    pub routing_key: Option<String>,
    /// webhook: HMAC-SHA256 key signing each body (secret; `X-Fabric-Signature`).
    pub secret: Option<String>,
    /// email: the SMTP server.
    pub host: Option<String>,
    /// email: its port (default 25).
    pub port: Option<u16>,
    /// email: sender address.
    pub from: Option<String>,
    /// email: recipient addresses.
    pub to: Vec<String>,
    /// email: SMTP login.
    pub username: Option<String>,
    /// email: SMTP password (secret).
    pub password: Option<String>,
    /// email: TLS (default opportunistic STARTTLS).
    pub tls: Option<SmtpTls>,
    /// Each send's timeout (ms, default 10000; 100..300000).
    pub timeout_ms: u64,
    /// Labels whose values make a group (default `[alertname]`): one message per group.
    pub group_by: Vec<String>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            kind: RouteType::Log,
            url: None,
            routing_key: None,
            secret: None,
            host: None,
            port: None,
            from: None,
            to: Vec::new(),
            username: None,
            password: None,
            tls: None,
            timeout_ms: 10_000,
            group_by: vec!["alertname".into()],
        }
    }
}

impl RouteConfig {
    /// The built-in `log` route.
    pub fn log() -> Self {
        Self::default()
    }

    /// The URL to post to (pagerduty's default filled in).
    pub fn target_url(&self) -> Option<&str> {
        match (self.kind, self.url.as_deref()) {
            (RouteType::Pagerduty, None) => Some(PAGERDUTY_URL),
            (_, url) => url,
        }
    }

    /// Where it delivers, safe to show: host and port, or the URL without its secrets.
    pub fn endpoint(&self) -> String {
        match self.kind {
            RouteType::Email => format!(
                "smtp://{}:{}",
                self.host.as_deref().unwrap_or("?"),
                self.port.unwrap_or(25)
            ),
            RouteType::Log => "log".into(),
            kind => redact_route_url(kind, self.target_url().unwrap_or("")),
        }
    }
}

/// A rule's comparison of a sample's value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparator {
    #[serde(rename = ">", alias = "gt")]
    Gt,
    #[serde(rename = ">=", alias = "ge")]
    Ge,
    #[serde(rename = "<", alias = "lt")]
    Lt,
    #[serde(rename = "<=", alias = "le")]
    Le,
    #[serde(rename = "==", alias = "eq")]
    Eq,
    #[serde(rename = "!=", alias = "ne")]
    Ne,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Eq => "==",
            Self::Ne => "!=",
        }
    }

    /// Whether `value` breaches `threshold`. NaN breaches nothing.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
            Self::Eq => value == threshold,
            Self::Ne => !value.is_nan() && value != threshold,
        }
    }
}

/// How urgent an alert is (PagerDuty's severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    #[default]
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// One rule as written in the file. `name`, `metric`, `comparator` and `threshold` are
/// required (checked by validation, so that a missing one does not renumber the rules after
/// it in the problems reported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default)]
    pub name: String,
    /// The metric of the samples it watches (`queue_depth`, `training_latency_ms`, ...).
    #[serde(default)]
    pub metric: String,
    #[serde(default)]
    pub comparator: Option<Comparator>,
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Consecutive breaching samples before it fires (default 1; 1..1000).
    #[serde(default = "one")]
    pub for_count: u32,
    /// Names of configured routes, or `log`.
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Labels added to every alert of the rule (matched by silences and inhibition).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `false` switches the rule (or the default rule of this name) off.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// One inhibition: label equalities on both sides, and labels that must be equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_match: BTreeMap<String, String>,
    pub target_match: BTreeMap<String, String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A rule in force: a default or the file's, its routes resolved to route names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    pub name: String,
    pub metric: String,
    pub comparator: Comparator,
    pub threshold: f64,
    pub for_count: u32,
    /// Route names (configured routes or `log`).
    pub routes: Vec<String>,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    /// `default` or `config`.
    pub origin: &'static str,
}

impl AlertRule {
    /// `queue_depth > 4000 for 2 samples`.
    pub fn condition(&self) -> String {
        format!(
            "{} {} {} for {} sample{}",
            self.metric,
            self.comparator.as_str(),
            fmt_number(self.threshold),
            self.for_count,
            if self.for_count == 1 { "" } else { "s" }
        )
    }
}

/// A number as people write it: `4000`, not `4000.0`.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A default rule: name, metric, comparator, threshold, for_count, route types, severity.
type DefaultRule = (
    &'static str,
    &'static str,
    Comparator,
    f64,
    u32,
    &'static [RouteType],
    Severity,
);

/// The rules that ship (RUNBOOK-MAP §C and the Esper runbook's four).
pub const DEFAULT_RULES: [DefaultRule; 9] = {
    use Comparator::*;
    use RouteType::*;
    use Severity::*;
    [
        (
            "queue_depth_high",
            "queue_depth",
            Gt,
            4000.0,
            2,
            &[Slack],
            Warning,
        ),
        (
            "job_latency_high",
            "job_latency_ms",
            Gt,
            60_000.0,
            3,
            &[Pagerduty, Slack],
            Critical,
        ),
        (
            "quarantine_spike",
            "quarantined",
            Gt,
            10.0,
            1,
            &[Slack],
            Warning,
        ),
        (
            "throughput_low",
            "throughput_ratio",
            Lt,
            0.5,
            3,
            &[Slack],
            Warning,
        ),
        ("retry_high", "retries", Gt, 100.0, 2, &[Slack], Warning),
        (
            "training_latency_high",
            "training_latency_ms",
            Gt,
            18.0,
            3,
            &[Slack],
            Warning,
        ),
        (
            "kasmina_isolation_violation",
            "kasmina_isolation_violations",
            Gt,
            0.0,
            1,
            &[Pagerduty],
            Critical,
        ),
        (
            "oona_queue_depth",
            "bus_queue_depth",
            Gt,
            4000.0,
            2,
            &[Slack],
            Warning,
        ),
        (
            "tezzeret_compile_retry_high",
            "tezzeret_compile_retries",
            Gt,
            3.0,
            1,
            &[Email],
            Warning,
        ),
    ]
};

impl AlertsConfig {
    /// The routes in force: the configured ones plus `log`.
    pub fn route(&self, name: &str) -> Option<RouteConfig> {
        match self.routes.get(name) {
            Some(r) => Some(r.clone()),
            None if name == LOG_ROUTE => Some(RouteConfig::log()),
            None => None,
        }
    }

    /// Every rule in force, defaults first (in their order), then the file's new ones.
    pub fn effective_rules(&self) -> Vec<AlertRule> {
        let by_name: BTreeMap<&str, &RuleConfig> =
            self.rules.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut out = Vec::new();
        if self.default_rules {
            for (name, metric, comparator, threshold, for_count, types, severity) in DEFAULT_RULES {
                if by_name.contains_key(name) || self.disabled_rules.iter().any(|d| d == name) {
                    continue;
                }
                let mut routes: Vec<String> = types
                    .iter()
                    .flat_map(|t| {
                        self.routes
                            .iter()
                            .filter(move |(_, r)| r.kind == *t)
                            .map(|(n, _)| n.clone())
                    })
                    .collect();
                routes.dedup();
                if routes.is_empty() {
                    routes.push(LOG_ROUTE.into());
                }
                out.push(AlertRule {
                    name: name.into(),
                    metric: metric.into(),
                    comparator,
                    threshold,
                    for_count,
                    routes,
                    severity,
                    labels: BTreeMap::new(),
                    origin: "default",
                });
            }
        }
        for r in self.rules.iter().filter(|r| r.enabled) {
            out.push(AlertRule {
                name: r.name.clone(),
                metric: r.metric.clone(),
                comparator: r.comparator.unwrap_or(Comparator::Gt),
                threshold: r.threshold.unwrap_or(0.0),
                for_count: r.for_count,
                routes: r.routes.clone(),
                severity: r.severity,
                labels: r.labels.clone(),
                origin: "config",
            });
        }
        out
    }

    /// A copy with every route's URL shown without its secrets (see [`redact_route_url`]).
    pub(super) fn redacted(&self) -> AlertsConfig {
        let mut a = self.clone();
        for r in a.routes.values_mut() {
            if let Some(u) = &r.url {
                r.url = Some(redact_route_url(r.kind, u));
            }
            for secret in [&mut r.routing_key, &mut r.secret, &mut r.password] {
                if secret.is_some() {
                    *secret = Some(MASK.into());
                }
            }
        }
        a
    }
}

/// A route URL safe to show: the password and every query value masked, and a Slack
/// webhook's path (which is its credential) masked whole.
pub fn redact_route_url(kind: RouteType, url: &str) -> String {
    let mut u = redact_conn_string(url);
    if let Some(q) = u.find('?') {
        let params: Vec<String> = u[q + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}={MASK}"),
                None => p.to_string(),
            })
            .collect();
        u = format!("{}?{}", &u[..q], params.join("&"));
    }
    if kind == RouteType::Slack {
        if let Some(start) = u.find("://").map(|i| i + 3) {
            if let Some(slash) = u[start..].find('/') {
                u = format!("{}/{MASK}", &u[..start + slash]);
            }
        }
    }
    u
}

/// Collected `(path, message)` problems of the section.
struct Found(Vec<(String, String)>);

impl Found {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    fn range(&mut self, path: &str, value: u64, lo: u64, hi: u64) {
        if value < lo || value > hi {
            self.push(path, format!("{value} is out of range {lo}..{hi}"));
        }
    }

    /// A name of letters, digits, `_`, `-`, `.` (1..64).
    fn name(&mut self, path: &str, value: &str) {
        if crate::job::validate_name(path, value).is_err() {
            self.push(
                path,
                format!("'{value}' must be 1..64 characters of letters, digits, '_', '-' or '.'"),
            );
        }
    }
}

/// Whether `url` is an `http://` or `https://` URL with a host.
fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or("");
        !host.is_empty() && !host.starts_with(':') && !r.contains(char::is_whitespace)
    })
}

impl AlertsConfig {
    /// Every problem of the section as `(path, message)`, paths under `alerts.`.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut p = Found(Vec::new());
        p.range("alerts.interval_ms", self.interval_ms, 50, 86_400_000);
        p.range("alerts.group_wait_ms", self.group_wait_ms, 0, 86_400_000);
        p.range(
            "alerts.group_interval_ms",
            self.group_interval_ms,
            0,
            86_400_000,
        );
        p.range(
            "alerts.repeat_interval_ms",
            self.repeat_interval_ms,
            0,
            30 * 86_400_000,
        );
        p.range(
            "alerts.delivery_max_attempts",
            u64::from(self.delivery_max_attempts),
            1,
            1000,
        );
        p.range(
            "alerts.delivery_backoff_ms",
            self.delivery_backoff_ms,
            1,
            3_600_000,
        );
        p.range(
            "alerts.delivery_max_backoff_ms",
            self.delivery_max_backoff_ms,
            self.delivery_backoff_ms.min(3_600_000),
            86_400_000,
        );
        p.range(
            "alerts.history_retention_days",
            u64::from(self.history_retention_days),
            1,
            u64::from(super::MAX_RETENTION_DAYS),
        );
        for (kind, limit) in [
            ("slack", self.rate_limits.slack),
            ("pagerduty", self.rate_limits.pagerduty),
            ("webhook", self.rate_limits.webhook),
            ("email", self.rate_limits.email),
        ] {
            let Some(l) = limit else { continue };
            let path = format!("alerts.rate_limits.{kind}");
            if !(l.per_minute.is_finite() && (0.0..=1_000_000.0).contains(&l.per_minute)) {
                p.push(
                    format!("{path}.per_minute"),
                    format!("{} is out of range 0..1000000 (0: no limit)", l.per_minute),
                );
            }
            p.range(&format!("{path}.burst"), u64::from(l.burst), 1, 10_000);
        }
        for (name, route) in &self.routes {
            self.route_problems(&mut p, name, route);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let path = format!("alerts.rules[{i}]");
            p.name(&format!("{path}.name"), &rule.name);
            if !seen.insert(rule.name.as_str()) {
                p.push(
                    format!("{path}.name"),
                    format!("'{}' names a rule twice", rule.name),
                );
            }
            if rule.metric.trim().is_empty() || rule.metric.len() > 128 {
                // (an empty metric is a missing one)
                p.push(
                    format!("{path}.metric"),
                    format!("'{}' must be 1..128 characters", rule.metric),
                );
            }
            match rule.threshold {
                None => p.push(format!("{path}.threshold"), "is required"),
                Some(t) if !t.is_finite() => p.push(
                    format!("{path}.threshold"),
                    format!("{t} is not a finite number"),
                ),
                Some(_) => {}
            }
            if rule.comparator.is_none() {
                p.push(
                    format!("{path}.comparator"),
                    "is required: one of > >= < <= == !=",
                );
            }
            p.range(
                &format!("{path}.for_count"),
                u64::from(rule.for_count),
                1,
                1000,
            );
            if rule.routes.is_empty() && rule.enabled {
                p.push(
                    format!("{path}.routes"),
                    "is empty: name at least one route of alerts.routes, or log",
                );
            }
            for (j, r) in rule.routes.iter().enumerate() {
                if self.route(r).is_none() {
                    let known: Vec<&str> = self
                        .routes
                        .keys()
                        .map(String::as_str)
                        .chain([LOG_ROUTE])
                        .collect();
                    p.push(
                        format!("{path}.routes[{j}]"),
                        format!("'{r}' is not a route (configured: {})", known.join(", ")),
                    );
                }
            }
            for k in rule.labels.keys() {
                p.name(&format!("{path}.labels"), k);
            }
        }
        for (i, d) in self.disabled_rules.iter().enumerate() {
            if !DEFAULT_RULES.iter().any(|r| r.0 == d) {
                let names: Vec<&str> = DEFAULT_RULES.iter().map(|r| r.0).collect();
                p.push(
                    format!("alerts.disabled_rules[{i}]"),
                    format!("'{d}' is not a default rule ({})", names.join(", ")),
                );
            }
        }
        for (i, inh) in self.inhibit.iter().enumerate() {
            let path = format!("alerts.inhibit[{i}]");
            if inh.source_match.is_empty() {
                p.push(
                    format!("{path}.source_match"),
                    "is empty: it would inhibit with every alert",
                );
            }
            if inh.target_match.is_empty() {
                p.push(
                    format!("{path}.target_match"),
                    "is empty: it would inhibit every alert",
                );
            }
            for l in &inh.equal {
                p.name(&format!("{path}.equal"), l);
            }
        }
        p.0
    }

    fn route_problems(&self, p: &mut Found, name: &str, r: &RouteConfig) {
        let path = format!("alerts.routes.{name}");
        p.name(&path, name);
        if name == LOG_ROUTE && r.kind != RouteType::Log {
            p.push(
                format!("{path}.type"),
                format!("'{}': the route named log is the log", r.kind.as_str()),
            );
        }
        p.range(&format!("{path}.timeout_ms"), r.timeout_ms, 100, 300_000);
        for (i, l) in r.group_by.iter().enumerate() {
            p.name(&format!("{path}.group_by[{i}]"), l);
        }
        let kind = r.kind.as_str();
        let mut not_for = |key: &str, set: bool| {
            if set {
                p.push(
                    format!("{path}.{key}"),
                    format!("does not apply to a {kind} route"),
                );
            }
        };
        let email = r.kind == RouteType::Email;
        not_for(
            "url",
            r.url.is_some() && matches!(r.kind, RouteType::Email | RouteType::Log),
        );
        not_for(
            "routing_key",
            r.routing_key.is_some() && r.kind != RouteType::Pagerduty,
        );
        not_for("secret", r.secret.is_some() && r.kind != RouteType::Webhook);
        for (key, set) in [
            ("host", r.host.is_some()),
            ("port", r.port.is_some()),
            ("from", r.from.is_some()),
            ("to", !r.to.is_empty()),
            ("username", r.username.is_some()),
            ("password", r.password.is_some()),
            ("tls", r.tls.is_some()),
        ] {
            not_for(key, set && !email);
        }
        match r.kind {
            RouteType::Slack | RouteType::Webhook | RouteType::Pagerduty => {
                match r.target_url() {
                    None => p.push(
                        format!("{path}.url"),
                        format!("is required for a {kind} route"),
                    ),
                    Some(u) if !is_http_url(u) => p.push(
                        format!("{path}.url"),
                        format!(
                            "'{}' is not an http:// or https:// URL",
                            redact_route_url(r.kind, u)
                        ),
                    ),
                    Some(_) => {}
                }
                if r.kind == RouteType::Pagerduty
                    && r.routing_key.as_deref().is_none_or(|k| k.trim().is_empty())
                {
                    p.push(
                        format!("{path}.routing_key"),
                        "is required for a pagerduty route",
                    );
                }
                if r.secret.as_deref().is_some_and(|s| s.is_empty()) {
                    p.push(
                        format!("{path}.secret"),
                        "is empty: set it or remove the key",
                    );
                }
            }
            RouteType::Email => {
                if r.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                    p.push(format!("{path}.host"), "is required for an email route");
                }
                if r.port == Some(0) {
                    p.push(format!("{path}.port"), "0 is out of range 1..65535");
                }
                match r.from.as_deref() {
                    None => p.push(format!("{path}.from"), "is required for an email route"),
                    Some(f) if !f.contains('@') => p.push(
                        format!("{path}.from"),
                        format!("'{f}' is not an email address"),
                    ),
                    Some(_) => {}
                }
                if r.to.is_empty() {
                    p.push(
                        format!("{path}.to"),
                        "is required for an email route: a list of addresses",
                    );
                }
                for (i, t) in r.to.iter().enumerate() {
                    if !t.contains('@') {
                        p.push(
                            format!("{path}.to[{i}]"),
                            format!("'{t}' is not an email address"),
                        );
                    }
                }
                if r.username.is_some() != r.password.is_some() {
                    p.push(
                        format!("{path}.password"),
                        "username and password go together",
                    );
                }
            }
            RouteType::Log => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    /// The `alerts:` part of issue 14 §7, exactly as written there.
    const ISSUE_EXAMPLE: &str = r#"
alerts:
  routes:
    oncall-slack: {type: slack, url: "http://…"}
    pager:        {type: pagerduty, url: "http://…", routing_key: "…"}
    hook:         {type: webhook, url: "http://…"}
    mail:         {type: email, host: "127.0.0.1", port: 25, from: "fabric@…", to: ["ops@…"]}
  rules:
    - {name: queue_depth_high, metric: queue_depth, comparator: ">", threshold: 4000, for_count: 2, routes: [oncall-slack]}
"#;

    fn load(y: &str) -> Result<crate::config::Config, Vec<crate::config::ConfigProblem>> {
        crate::config::Config::from_yaml(y, NO_ENV)
    }

    fn lines(y: &str) -> Vec<String> {
        load(y).unwrap_err().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_issue_example_parses_and_its_rule_replaces_the_default() {
        let c = load(ISSUE_EXAMPLE).unwrap();
        let a = &c.alerts;
        assert_eq!(a.routes.len(), 4);
        assert_eq!(a.routes["mail"].port, Some(25));
        assert_eq!(a.routes["pager"].routing_key.as_deref(), Some("…"));
        let rules = a.effective_rules();
        let q: Vec<&AlertRule> = rules
            .iter()
            .filter(|r| r.name == "queue_depth_high")
            .collect();
        assert_eq!(q.len(), 1, "the file's rule replaces the default");
        assert_eq!(
            (q[0].origin, q[0].routes.clone()),
            ("config", vec!["oncall-slack".to_string()])
        );
        assert_eq!(q[0].condition(), "queue_depth > 4000 for 2 samples");
        let route_of = |n: &str| rules.iter().find(|r| r.name == n).unwrap().routes.clone();
        assert_eq!(route_of("kasmina_isolation_violation"), ["pager"]);
        assert_eq!(route_of("oona_queue_depth"), ["oncall-slack"]);
        assert_eq!(route_of("tezzeret_compile_retry_high"), ["mail"]);
        assert_eq!(route_of("job_latency_high"), ["pager", "oncall-slack"]);
        assert_eq!(rules.len(), DEFAULT_RULES.len());
    }

    #[test]
    fn defaults_fall_back_to_log_and_can_be_switched_off() {
        let c = load("").unwrap();
        let rules = c.alerts.effective_rules();
        assert_eq!(rules.len(), 9);
        assert!(rules
            .iter()
            .all(|r| r.routes == ["log"] && r.origin == "default"));
        let t = rules
            .iter()
            .find(|r| r.name == "training_latency_high")
            .unwrap();
        assert_eq!(t.condition(), "training_latency_ms > 18 for 3 samples");
        let c = load("alerts:\n  disabled_rules: [retry_high]\n").unwrap();
        assert_eq!(c.alerts.effective_rules().len(), 8);
        let c = load("alerts:\n  default_rules: false\n").unwrap();
        assert!(c.alerts.effective_rules().is_empty());
    }

    #[test]
    fn every_problem_names_its_path_and_value() {
        let y = r#"
alerts:
  interval_ms: 1
  routes:
    s: {type: slack}
    p: {type: pagerduty, secret: x}
    w: {type: webhook, url: "ftp://x"}
    m: {type: email, host: h, from: nobody, to: [ops]}
    x: {type: sms}
    u: {type: log, colour: red}
  rules:
    - {name: r1, metric: m, comparator: ">", threshold: 1, routes: [nowhere]}
    - {name: r1, metric: m, comparator: "~", threshold: 1, routes: [log]}
    - {name: r2, metric: m, comparator: "<", threshold: 1, for_count: 0}
    - {name: r3, routes: [log], comparator: "<"}
  disabled_rules: [nope]
  inhibit:
    - {source_match: {}, target_match: {severity: warning}}
"#;
        let got = lines(y);
        for want in [
            "alerts.interval_ms: 1 is out of range 50..86400000",
            "alerts.routes.s.url: is required for a slack route",
            "alerts.routes.p.routing_key: is required for a pagerduty route",
            "alerts.routes.p.secret: does not apply to a pagerduty route",
            "alerts.routes.w.url: 'ftp://x' is not an http:// or https:// URL",
            "alerts.routes.m.from: 'nobody' is not an email address",
            "alerts.routes.m.to[0]: 'ops' is not an email address",
            "alerts.rules[0].routes[0]: 'nowhere' is not a route (configured: m, p, s, u, w, x, log)",
            "alerts.rules[1].name: 'r1' names a rule twice",
            "alerts.rules[2].for_count: 0 is out of range 1..1000",
            "alerts.rules[2].routes: is empty: name at least one route of alerts.routes, or log",
            "alerts.rules[3].metric: '' must be 1..128 characters",
            "alerts.rules[3].threshold: is required",
            "alerts.disabled_rules[0]: 'nope' is not a default rule",
            "alerts.inhibit[0].source_match: is empty: it would inhibit with every alert",
        ] {
            assert!(got.iter().any(|l| l.starts_with(want)), "{want} not in {got:#?}");
        }
        assert!(
            got.iter()
                .any(|l| l.starts_with("alerts.routes.x.type") && l.contains("sms")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|l| l.starts_with("alerts.routes.u.colour: unknown key")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|l| l.starts_with("alerts.rules[1].comparator") && l.contains('~')),
            "{got:#?}"
        );
    }

    #[test]
    fn secrets_are_masked_when_shown_and_env_overrides_reach_routes() {
        let y = r#"
alerts:
  routes:
    chat: {type: slack, url: "https://hooks.slack.com/services/T0/B0/sekrit1"}
    pager: {type: pagerduty, routing_key: "rk-sekrit2"}
    hook: {type: webhook, url: "http://u:sekrit3@127.0.0.1:9/h?sig=sekrit4", secret: "sekrit5"}
    mail: {type: email, host: h, from: a@b, to: [c@d], username: u, password: "sekrit6"}
"#;
        let c = crate::config::Config::from_yaml(
            y,
            [("FABRIC__ALERTS__ROUTES__PAGER__ROUTING_KEY", "rk-from-env")],
        )
        .unwrap();
        assert_eq!(
            c.alerts.routes["pager"].routing_key.as_deref(),
            Some("rk-from-env")
        );
        let shown = serde_yaml_ng::to_string(&c.display_value()).unwrap();
        for s in ["sekrit", "rk-from-env"] {
            assert!(!shown.contains(s), "{s} shown in {shown}");
        }
        assert!(
            shown.contains("https://hooks.slack.com/********"),
            "{shown}"
        );
        assert!(!format!("{:?}", c.redacted()).contains("sekrit"));
        assert_eq!(
            c.alerts.routes["chat"].endpoint(),
            "https://hooks.slack.com/********"
        );
        assert_eq!(c.alerts.routes["mail"].endpoint(), "smtp://h:25");
    }

    #[test]
    fn slack_paths_passwords_and_query_values_are_masked() {
        assert_eq!(
            redact_route_url(
                RouteType::Slack,
                "https://hooks.slack.com/services/T0/B0/xyz"
            ),
            "https://hooks.slack.com/********"
        );
        assert_eq!(
            redact_route_url(RouteType::Webhook, "http://u:pw@h:8080/hook?token=abc&x=1"),
            "http://u:********@h:8080/hook?token=********&x=********"
        );
        assert_eq!(
            redact_route_url(RouteType::Webhook, "http://127.0.0.1:9/hook"),
            "http://127.0.0.1:9/hook"
        );
    }

    #[test]
    fn comparators_compare_and_nan_breaches_nothing() {
        use Comparator::*;
        assert!(Gt.breaches(2.0, 1.0) && !Gt.breaches(1.0, 1.0));
        assert!(Ge.breaches(1.0, 1.0) && Le.breaches(1.0, 1.0));
        assert!(Lt.breaches(0.0, 1.0) && Eq.breaches(3.0, 3.0) && Ne.breaches(3.0, 4.0));
        for c in [Gt, Ge, Lt, Le, Eq, Ne] {
            assert!(!c.breaches(f64::NAN, 1.0), "{c:?}");
        }
    }
}
