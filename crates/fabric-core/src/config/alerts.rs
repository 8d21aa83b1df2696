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
