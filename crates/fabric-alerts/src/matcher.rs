//! Label matchers of silences (`alertname=queue_depth_high`, `severity!=info`) and the
//! inhibition check.

use std::collections::BTreeMap;
use std::fmt;

use fabric_core::config::InhibitRule;

use crate::AlertsError;

/// One `label=value` or `label!=value` matcher. A missing label has the value `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub value: String,
    /// `!=` rather than `=`.
    pub negated: bool,
}

impl Matcher {
    /// Parses `label=value` or `label!=value`; the error names `field` and the text.
    pub fn parse(field: &str, s: &str) -> Result<Self, AlertsError> {
        let (label, value, negated) = match s.split_once("!=") {
            Some((l, v)) => (l, v, true),
            None => match s.split_once('=') {
                Some((l, v)) => (l, v, false),
                None => {
                    return Err(AlertsError::invalid(
                        field,
                        format!("'{s}' is not a matcher: use label=value or label!=value"),
                    ))
                }
            },
        };
        let label = label.trim();
        if fabric_core::job::validate_name(field, label).is_err() {
            return Err(AlertsError::invalid(
                field,
                format!("'{s}': '{label}' is not a label name"),
            ));
        }
        Ok(Self {
            label: label.to_string(),
            value: value.trim().to_string(),
            negated,
        })
    }

    /// Whether `labels` satisfy it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        (v == self.value) != self.negated
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.negated { "!=" } else { "=" };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// Whether every matcher of a silence (stored as text) matches `labels`; a matcher that
/// no longer parses matches nothing.
pub(crate) fn silenced_by(matchers: &[String], labels: &BTreeMap<String, String>) -> bool {
    !matchers.is_empty()
        && matchers.iter().all(|m| {
            Matcher::parse("matcher", m)
                .map(|m| m.matches(labels))
                .unwrap_or(false)
        })
}

fn subset(want: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether an alert with `target` labels is inhibited by one of the `firing` alerts' labels
/// under `rules`. An alert never inhibits itself.
pub(crate) fn inhibited(
    rules: &[InhibitRule],
    target: &BTreeMap<String, String>,
    firing: &[&BTreeMap<String, String>],
) -> bool {
    rules.iter().any(|r| {
        subset(&r.target_match, target)
            && firing.iter().any(|source| {
                *source != target
                    && subset(&r.source_match, source)
                    && r.equal.iter().all(|l| source.get(l) == target.get(l))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_match_and_name_bad_input() {
        let l = labels(&[("alertname", "a"), ("severity", "warning")]);
        assert!(Matcher::parse("m", "alertname=a").unwrap().matches(&l));
        assert!(Matcher::parse("m", "severity!=info").unwrap().matches(&l));
        assert!(!Matcher::parse("m", "severity!=warning")
            .unwrap()
            .matches(&l));
        assert!(Matcher::parse("m", "shard=").unwrap().matches(&l));
        assert_eq!(
            Matcher::parse("m", " shard != mars ").unwrap().to_string(),
            "shard!=mars"
        );
        let e = Matcher::parse("--matcher", "alertname").unwrap_err();
        assert!(e.to_string().starts_with("--matcher: 'alertname'"), "{e}");
        let e = Matcher::parse("--matcher", "a b=c").unwrap_err();
        assert!(e.to_string().contains("'a b' is not a label name"), "{e}");
        assert!(
            !silenced_by(&[], &l),
            "a silence without matchers silences nothing"
        );
    }

    #[test]
    fn inhibition_needs_a_source_the_target_and_equal_labels() {
        let rule = InhibitRule {
            source_match: labels(&[("severity", "critical")]),
            target_match: labels(&[("severity", "warning")]),
            equal: vec!["shard".into()],
        };
        let crit_earth = labels(&[("severity", "critical"), ("shard", "earth")]);
        let warn_earth = labels(&[("severity", "warning"), ("shard", "earth")]);
        let warn_mars = labels(&[("severity", "warning"), ("shard", "mars")]);
        let rules = [rule];
        assert!(inhibited(&rules, &warn_earth, &[&crit_earth]));
        assert!(!inhibited(&rules, &warn_mars, &[&crit_earth]));
        assert!(!inhibited(&rules, &warn_earth, &[]));
        assert!(!inhibited(&rules, &crit_earth, &[&crit_earth]));
    }
}
