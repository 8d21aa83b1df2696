//! The checks of the `alerts:` section: bounds, the keys each route type needs and those it
//! does not take, rules naming routes that exist, inhibition that cannot match everything;
//! each problem names its path and value.

use super::alerts::{
    redact_route_url, AlertsConfig, RouteConfig, RouteType, DEFAULT_RULES, LOG_ROUTE,
};

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
    const NO_ENV: [(&str, &str); 0] = [];

    fn lines(y: &str) -> Vec<String> {
        crate::config::Config::from_yaml(y, NO_ENV)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect()
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
}
