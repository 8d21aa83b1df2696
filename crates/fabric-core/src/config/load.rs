//! Loading a config so that every problem is reported at once: the YAML is parsed into a
//! generic value, environment overrides are applied, the value is walked against the schema
//! (the serialized defaults) to report unknown and removed keys, and typed deserialization is
//! retried without each badly typed value until it succeeds; the semantic checks then run on
//! what remains.

use serde_yaml_ng::{Mapping, Value};

use super::{Config, ConfigProblem, RouteConfig, REMOVED_KEYS};
use crate::retry::{RetryPolicy, RetryPreset};

/// Upper bound on deserialization passes: each pass removes one bad value.
const MAX_PASSES: usize = 10_000;

fn problem(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        path: path.into(),
        message: message.into(),
    }
}

pub(super) fn from_yaml<I, K, V>(text: &str, env: I) -> Result<Config, Vec<ConfigProblem>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut doc: Value = if text.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            vec![problem(
                e.location()
                    .map(|l| format!("line {} column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "(file)".into()),
                format!("not valid YAML: {e}"),
            )]
        })?
    };
    if doc.is_null() {
        doc = Value::Mapping(Mapping::new());
    }
    if !doc.is_mapping() {
        return Err(vec![problem(
            "(top level)",
            format!("must be a mapping of sections, got {}", show(&doc)),
        )]);
    }
    let mut problems = Vec::new();
    apply_env(&mut doc, env, &mut problems);
    let schema = schema();
    check_keys(&mut doc, &schema, "", &mut problems);

    let mut config = None;
    let mut removed = Removed::default();
    for _ in 0..MAX_PASSES {
        match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let path = removed.original(&e.path().to_string());
                let gone = remove_at(&mut doc, e.path());
                let message = e.into_inner().to_string();
                // A field this loop removed (its value was bad) is then missing: said once.
                let ours = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                    .is_some_and(|f| removed.fields.contains(&format!("{path}.{f}")));
                if !ours {
                    problems.push(problem(
                        if path == "." {
                            "(top level)".to_string()
                        } else {
                            path.clone()
                        },
                        message,
                    ));
                }
                match gone {
                    Some(Gone::Field) => {
                        removed.fields.insert(path);
                    }
                    Some(Gone::Element) => removed.element(&path),
                    None => break,
                }
            }
        }
    }
    if let Some(c) = &config {
        problems.extend(c.problems().into_iter().map(|mut p| {
            p.path = removed.original(&p.path);
            p
        }));
    }
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(problems),
    }
}

/// The shape every file is checked against: the defaults, serialized.
fn schema() -> Value {
    serde_yaml_ng::to_value(Config::default()).unwrap_or(Value::Null)
}

/// A value as an error message quotes it: scalars in full (long ones cut), collections by kind.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.chars().count() > 60 => {
            format!("'{}…'", s.chars().take(60).collect::<String>())
        }
        Value::String(s) => format!("'{s}'"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("{} {}", t.tag, show(&t.value)),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reports and removes every key of `doc` the schema does not know (or no longer knows), so
/// that typed deserialization afterwards only meets known keys. Retry policies named like a
/// preset get that preset when they name none.
fn check_keys(doc: &mut Value, schema: &Value, path: &str, out: &mut Vec<ConfigProblem>) {
    let Value::Mapping(known) = schema else {
        return;
    };
    // An empty section (`workers:` with everything commented out) means the defaults.
    if doc.is_null() {
        *doc = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = doc else {
        return; // the wrong type is reported by deserialization, with the value
    };
    let keys: Vec<Value> = map.keys().cloned().collect();
    for key in keys {
        let Some(name) = key.as_str().map(str::to_string) else {
            out.push(problem(
                join(path, &show(&key)),
                "is not a key name (keys are strings)",
            ));
            map.remove(&key);
            continue;
        };
        // An empty or blank key is quoted, so the problem still names a path.
        let full = if name.trim().is_empty() {
            join(path, &format!("'{name}'"))
        } else {
            join(path, &name)
        };
        match known.get(name.as_str()) {
            Some(child) if full == "retry_policies" => {
                if let Some(Value::Mapping(policies)) = map.get_mut(name.as_str()) {
                    check_policies(policies, &full, out);
                } else if let Some(v) = map.get_mut(name.as_str()) {
                    check_keys(v, child, &full, out);
                }
            }
            Some(_) if full == "alerts.routes" => {
                if let Some(Value::Mapping(routes)) = map.get_mut(name.as_str()) {
                    let schema =
                        serde_yaml_ng::to_value(RouteConfig::default()).unwrap_or(Value::Null);
                    check_entries(routes, &schema, &full, out);
                }
            }
            Some(_) if full == "slo" => {
                if let Some(Value::Mapping(slos)) = map.get_mut(name.as_str()) {
                    check_entries(slos, &slo_schema(), &full, out);
                }
            }
            Some(child) => {
                if let Some(v) = map.get_mut(name.as_str()) {
                    check_keys(v, child, &full, out);
                }
            }
            None => {
                let value = map.remove(&key).unwrap_or(Value::Null);
                match REMOVED_KEYS.iter().find(|(k, _)| *k == full) {
                    Some((_, why)) => out.push(problem(full, format!("{} {why}", show(&value)))),
                    None => {
                        let names: Vec<&str> = known.keys().filter_map(Value::as_str).collect();
                        out.push(problem(
                            full,
                            format!(
                                "unknown key (value {}); known keys here: {}",
                                show(&value),
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// The keys one SLO may have.
fn slo_schema() -> Value {
    let full = crate::slo::SloConfig {
        indicator: crate::slo::Indicator::Latency,
        objective: 0.99,
        window: "3d".into(),
        threshold_ms: Some(1),
    };
    serde_yaml_ng::to_value(full).unwrap_or(Value::Null)
}

/// Checks each entry of a map of named entries (`slo:`) against one schema.
fn check_entries(entries: &mut Mapping, schema: &Value, path: &str, out: &mut Vec<ConfigProblem>) {
    for (name, entry) in entries.iter_mut() {
        let label = name
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| show(name));
        check_keys(entry, schema, &join(path, &label), out);
    }
}

/// Checks each policy of `retry_policies` against the policy schema; a policy named like a
/// preset gets that preset when it names none.
fn check_policies(policies: &mut Mapping, path: &str, out: &mut Vec<ConfigProblem>) {
    let key = Value::String("preset".into());
    for (name, policy) in policies.iter_mut() {
        if let (Some(preset), Value::Mapping(m)) =
            (name.as_str().and_then(RetryPreset::named), &mut *policy)
        {
            if !m.contains_key(&key) {
                m.insert(key.clone(), Value::String(preset.as_str().into()));
            }
        }
    }
    let schema = serde_yaml_ng::to_value(RetryPolicy::default()).unwrap_or(Value::Null);
    check_entries(policies, &schema, path, out);
}

/// What [`remove_at`] took out of the document.
enum Gone {
    Field,
    Element,
}

/// What the deserialization loop removed, so that later problems name paths of the file as
/// written: list elements removed (a later element's index would shift down) and fields
/// removed (their absence is not a second problem).
#[derive(Default)]
struct Removed {
    /// Per list path (`api.tokens`), the original indices of its removed elements, ascending.
    elements: std::collections::BTreeMap<String, Vec<usize>>,
    /// Original paths of removed fields.
    fields: std::collections::HashSet<String>,
}

impl Removed {
    /// Records the removal of the element at `path` (an original path ending in `[i]`).
    fn element(&mut self, path: &str) {
        if let Some((list, i)) = split_index(path) {
            let v = self.elements.entry(list.to_string()).or_default();
            if let Err(at) = v.binary_search(&i) {
                v.insert(at, i);
            }
        }
    }

    /// `path` of the document now, as a path of the file as written.
    fn original(&self, path: &str) -> String {
        for (list, gone) in &self.elements {
            let Some(rest) = path.strip_prefix(list.as_str()) else {
                continue;
            };
            let Some((digits, tail)) = rest.strip_prefix('[').and_then(|r| r.split_once(']'))
            else {
                continue;
            };
            let Ok(mut i) = digits.parse::<usize>() else {
                continue;
            };
            for g in gone {
                if *g <= i {
                    i += 1;
                }
            }
            return format!("{list}[{i}]{tail}");
        }
        path.to_string()
    }
}

/// `a.b[3]` → (`a.b`, 3).
fn split_index(path: &str) -> Option<(&str, usize)> {
    let open = path.rfind('[')?;
    let i = path[open + 1..].strip_suffix(']')?.parse().ok()?;
    Some((&path[..open], i))
}

/// Removes the value at `path` and says what it was; `None` when there is nothing to remove
/// (the whole document).
fn remove_at(doc: &mut Value, path: &serde_path_to_error::Path) -> Option<Gone> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let (last, parents) = segments.split_last()?;
    let mut cur = doc;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(s)) => s.get_mut(*index),
            _ => None,
        };
        cur = next?;
    }
    match (last, cur) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).map(|_| Gone::Field),
        (Segment::Seq { index }, Value::Sequence(s)) if *index < s.len() => {
            s.remove(*index);
            Some(Gone::Element)
        }
        _ => None,
    }
}

/// Applies `FABRIC__SECTION__KEY=value` overrides; values are read as YAML scalars. An
/// override of `KEY` replaces a `KEY_file` beside it.
fn apply_env<I, K, V>(doc: &mut Value, env: I, problems: &mut Vec<ConfigProblem>)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    for (k, v) in env {
        let Some(rest) = k.as_ref().strip_prefix("FABRIC__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if parts.iter().any(|p| p.is_empty()) {
            problems.push(problem(
                k.as_ref(),
                "empty section or key in environment override",
            ));
            continue;
        }
        // An empty value is an empty string (checked like one in the file: an empty
        // `FABRIC__API__TOKEN=` is refused), not YAML's null, which would unset the key.
        let value: Value = if v.as_ref().trim().is_empty() {
            Value::String(v.as_ref().to_string())
        } else {
            serde_yaml_ng::from_str(v.as_ref())
                .unwrap_or_else(|_| Value::String(v.as_ref().to_string()))
        };
        let mut cur = &mut *doc;
        for (i, part) in parts.iter().enumerate() {
            if cur.is_null() {
                *cur = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = cur else {
                problems.push(problem(
                    parts[..i].join("."),
                    format!("is not a section, so {} cannot set it", k.as_ref()),
                ));
                break;
            };
            let key = Value::String(part.clone());
            if i + 1 == parts.len() {
                // The environment wins over a file named for the same secret
                // (`FABRIC__BUS__SIGNING__SECRET` over `bus.signing.secret_file`).
                map.remove(format!("{part}_file").as_str());
                map.insert(key, value.clone());
                break;
            }
            cur = map
                .entry(key)
                .or_insert_with(|| Value::Mapping(Mapping::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];

    /// A bad value inside a list element is reported once, at its own path, and the problems
    /// of the elements after it keep the indices of the file.
    #[test]
    fn problems_after_a_removed_list_element_keep_their_indices() {
        let yaml = "api:\n  tokens:\n    - {name: a, token: t1, role: read}\n    \
                    - {name: b, token: t2, role: superuser}\n    - {name: c, role: read}\n";
        let problems = from_yaml(yaml, NO_ENV).unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("api.tokens[1].role: unknown variant `superuser`"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("api.tokens[2].token: is required"),
            "{lines:?}"
        );
    }

    /// A type error met after an element was removed names its index in the file, too.
    #[test]
    fn a_later_type_error_keeps_its_index() {
        let yaml = "api:\n  tokens:\n    - {name: a, token: t1, role: superuser}\n    \
                    - {name: b, token: t2, role: [read]}\n";
        let problems = from_yaml(yaml, NO_ENV).unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("api.tokens[1].role: ")),
            "{lines:?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("api.tokens[0].role: invalid type")),
            "{lines:?}"
        );
    }
}
