//! Batches (RUNBOOK-MAP.md §C, the forge's write-ahead log): the items of a batch file, their
//! validation (keys, dependencies, cycles, each error naming its line), the batch's states,
//! and the critical path of a finished or running batch.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::job::{validate_name, NewJob, Priority, DEFAULT_SHARD};
use crate::CoreError;

/// A batch's identity, assigned by the store.
pub type BatchId = i64;

/// Most items one batch may hold.
pub const MAX_BATCH_ITEMS: usize = 1_000_000;

/// One line of a batch file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemLine {
    key: String,
    kind: String,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    priority: Option<PriorityField>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    shard: Option<String>,
}

/// A priority as a batch line may give it: a number or a level name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum PriorityField {
    Number(i64),
    Name(String),
}

/// One item of a batch: its key (unique in the batch), the job it runs, and the items it
/// waits for (indices into [`BatchPlan::items`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// The item's key, unique within its batch.
    pub key: String,
    /// The job the item runs (its `max_attempts` is [`NewJob::POLICY_ATTEMPTS`] when the line
    /// did not set one).
    pub job: NewJob,
    /// The items that must succeed first, as indices.
    pub depends_on: Vec<usize>,
    /// The 1-based line of the batch file the item came from.
    pub line: usize,
}

/// A validated batch: every key unique, every dependency known, no cycle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchPlan {
    /// The items in file order.
    pub items: Vec<BatchItem>,
}

impl BatchPlan {
    /// Number of dependency edges.
    pub fn edges(&self) -> usize {
        self.items.iter().map(|i| i.depends_on.len()).sum()
    }
}

/// How an error names an item's place: a file's 1-based line, or an index into a JSON
/// list of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Line,
    Index,
}

impl Place {
    fn name(self, pos: usize) -> String {
        match self {
            Place::Line => format!("line {pos}"),
            Place::Index => format!("items[{pos}]"),
        }
    }
}

/// Parses a batch file (JSON lines, one item each; blank lines are skipped) and checks it:
/// each error names its line. `check_job` sees every item's job (kind, payload) and returns
/// what is wrong with it.
pub fn parse_batch(
    text: &str,
    check_job: impl FnMut(&NewJob) -> Result<(), String>,
) -> Result<BatchPlan, CoreError> {
    let entries = text
        .lines()
        .enumerate()
        .filter(|(_, t)| !t.trim().is_empty())
        .map(|(i, t)| {
            (
                i + 1,
                serde_json::from_str::<ItemLine>(t.trim()).map_err(|e| e.to_string()),
            )
        });
    plan(Place::Line, entries, check_job)
}

/// [`parse_batch`] for items given as a JSON list (the API's `items`): each error names the
/// item's index, `items[3]`.
pub fn parse_batch_items(
    items: Vec<serde_json::Value>,
    check_job: impl FnMut(&NewJob) -> Result<(), String>,
) -> Result<BatchPlan, CoreError> {
    let entries = items.into_iter().enumerate().map(|(i, v)| {
        (
            i,
            serde_json::from_value::<ItemLine>(v).map_err(|e| e.to_string()),
        )
    });
    plan(Place::Index, entries, check_job)
}

fn plan(
    place: Place,
    entries: impl Iterator<Item = (usize, Result<ItemLine, String>)>,
    mut check_job: impl FnMut(&NewJob) -> Result<(), String>,
) -> Result<BatchPlan, CoreError> {
    let at_line = |pos: usize, message: String| CoreError::invalid(place.name(pos), message);
    let mut items = Vec::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut raw_deps: Vec<Vec<String>> = Vec::new();
    for (line, item) in entries {
        if items.len() >= MAX_BATCH_ITEMS {
            return Err(at_line(
                line,
                format!("a batch holds at most {MAX_BATCH_ITEMS} items"),
            ));
        }
        let item = item.map_err(|e| at_line(line, format!("not a batch item: {e}")))?;
        if item.key.is_empty() || item.key.len() > 256 {
            return Err(at_line(line, "key must be 1..256 bytes".into()));
        }
        if let Some(first) = keys.insert(item.key.clone(), items.len()) {
            let first_line: usize = items.get(first).map(|it: &BatchItem| it.line).unwrap_or(0);
            return Err(at_line(
                line,
                format!(
                    "duplicate key '{}' (first on {})",
                    item.key,
                    place.name(first_line)
                ),
            ));
        }
        let priority = match item.priority {
            None => Priority::NORMAL,
            Some(PriorityField::Number(n)) => {
                Priority::parse(&n.to_string()).map_err(|e| at_line(line, e.to_string()))?
            }
            Some(PriorityField::Name(s)) => {
                Priority::parse(&s).map_err(|e| at_line(line, e.to_string()))?
            }
        };
        let mut job = NewJob::new(item.kind);
        job.payload = item.payload.unwrap_or_else(|| serde_json::json!({}));
        job.priority = priority;
        job.max_attempts = item.max_attempts.unwrap_or(NewJob::POLICY_ATTEMPTS);
        job.shard = item.shard.unwrap_or_else(|| DEFAULT_SHARD.to_string());
        validate_name("kind", &job.kind).map_err(|e| at_line(line, e.to_string()))?;
        if let Some(n) = item.max_attempts {
            if n == 0 || n > 100 {
                return Err(at_line(
                    line,
                    format!("invalid max_attempts: {n} is out of range 1..100"),
                ));
            }
        }
        let mut probe = job.clone();
        if probe.max_attempts == NewJob::POLICY_ATTEMPTS {
            probe.max_attempts = 1;
        }
        probe.validate().map_err(|e| at_line(line, e.to_string()))?;
        check_job(&job).map_err(|m| at_line(line, format!("key '{}': {m}", item.key)))?;
        raw_deps.push(item.depends_on);
        items.push(BatchItem {
            key: item.key,
            job,
            depends_on: Vec::new(),
            line,
        });
    }
    if items.is_empty() {
        return Err(CoreError::invalid("batch", "it holds no items"));
    }
    for (i, deps) in raw_deps.into_iter().enumerate() {
        let mut resolved = Vec::with_capacity(deps.len());
        for d in deps {
            let line = items[i].line;
            match keys.get(&d) {
                None => {
                    return Err(at_line(
                        line,
                        format!("key '{}' depends on unknown key '{d}'", items[i].key),
                    ))
                }
                Some(&j) if j == i => {
                    return Err(at_line(line, format!("key '{d}' depends on itself")))
                }
                Some(&j) => {
                    if !resolved.contains(&j) {
                        resolved.push(j);
                    }
                }
            }
        }
        items[i].depends_on = resolved;
    }
    let plan = BatchPlan { items };
    if let Some(cycle) = find_cycle(&plan) {
        let first = &plan.items[cycle[0]];
        let path = cycle
            .iter()
            .chain(std::iter::once(&cycle[0]))
            .map(|&i| format!("'{}'", plan.items[i].key))
            .collect::<Vec<_>>()
            .join(" -> ");
        return Err(at_line(first.line, format!("dependency cycle: {path}")));
    }
    Ok(plan)
}

/// A cycle of the dependency graph, as the indices along it, if there is one.
fn find_cycle(plan: &BatchPlan) -> Option<Vec<usize>> {
    // Iterative depth-first search with three colours.
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let n = plan.items.len();
    let mut colour = vec![WHITE; n];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for start in 0..n {
        if colour[start] != WHITE {
            continue;
        }
        colour[start] = GREY;
        stack.push((start, 0));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &plan.items[node].depends_on;
            if *next < deps.len() {
                let d = deps[*next];
                *next += 1;
                match colour[d] {
                    WHITE => {
                        colour[d] = GREY;
                        stack.push((d, 0));
                    }
                    GREY => {
                        let from = stack.iter().position(|&(x, _)| x == d).unwrap_or(0);
                        // The stack runs from a dependent to what it depends on; report the
                        // cycle in the order "a depends on b".
                        return Some(stack[from..].iter().map(|&(x, _)| x).collect());
                    }
                    _ => {}
                }
            } else {
                colour[node] = BLACK;
                stack.pop();
            }
        }
    }
    None
}

/// Where a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Some item may still run.
    Running,
    /// Every item succeeded.
    Succeeded,
    /// Every item is done and some did not succeed (quarantined, blocked or cancelled);
    /// `batch retry` runs them again.
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

impl BatchState {
    /// Every state.
    pub const ALL: [BatchState; 4] = [
        BatchState::Running,
        BatchState::Succeeded,
        BatchState::Failed,
        BatchState::Cancelled,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Running => "running",
            BatchState::Succeeded => "succeeded",
            BatchState::Failed => "failed",
            BatchState::Cancelled => "cancelled",
        }
    }

    /// Parses a state name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let lower = s.to_ascii_lowercase();
        BatchState::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| {
                CoreError::invalid(
                    "state",
                    format!(
                        "'{s}' is not a batch state (one of running, succeeded, failed, cancelled)"
                    ),
                )
            })
    }
}

impl std::fmt::Display for BatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order a batch's items are stored in (positions into the file order): Kahn's order,
/// first-in first-out, so every item comes after what it depends on and the items that
/// become ready together sit together (the roots in file order, then the items they free,
/// and so on). Rows stored in this order are written near each other at every step of a
/// drain: a chained batch's claims, completions and releases touch few pages each, as a
/// batch without dependencies does. The batch must be acyclic (validated).
pub fn run_order<D: AsRef<[usize]>>(depends_on: &[D]) -> Vec<usize> {
    topological_order(depends_on.len(), depends_on)
}

/// Kahn's order of items `0..n` (each after everything it depends on; dependencies out of
/// range are ignored, and items on a cycle are left out).
fn topological_order<D: AsRef<[usize]>>(n: usize, depends_on: &[D]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, deps) in depends_on.iter().enumerate().take(n) {
        for &d in deps.as_ref().iter().filter(|&&d| d < n) {
            indegree[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let i = order[head];
        head += 1;
        for &j in &dependents[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                order.push(j);
            }
        }
    }
    order
}

/// The critical path of a batch: the chain of dependencies whose run times add up to the
/// longest, with that sum. `duration[i]` is how long item `i` ran (0 when it has not run);
/// `depends_on[i]` are the items it waits for. The graph must be acyclic.
pub fn critical_path(duration: &[i64], depends_on: &[Vec<usize>]) -> (i64, Vec<usize>) {
    let n = duration.len();
    // A longest-path relaxation along a topological order; between chains of equal run time
    // (before anything ran, all of them) the one of more items wins, so the path shown is
    // the batch's longest chain of dependencies until run times tell otherwise.
    let order = topological_order(n, depends_on);
    let mut best = vec![(0i64, 0usize); n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    for &i in &order {
        let ((time, items), from) = depends_on[i]
            .iter()
            .filter(|&&d| d < n)
            .map(|&d| (best[d], Some(d)))
            .max_by_key(|&(b, _)| b)
            .unwrap_or(((0, 0), None));
        best[i] = (time.saturating_add(duration[i].max(0)), items + 1);
        via[i] = from;
    }
    let Some(end) = (0..n).max_by_key(|&i| best[i]) else {
        return (0, Vec::new());
    };
    let mut path = vec![end];
    let mut at = end;
    while let Some(prev) = via[at] {
        path.push(prev);
        at = prev;
    }
    path.reverse();
    (best[end].0, path)
}

/// What `batch retry` does to each item, given every item's state and dependencies: a
/// quarantined item runs again and a blocked one is unblocked, each to `pending` when all it
/// depends on has succeeded, else to `waiting` with the number still to succeed. An item that
/// depends on a cancelled item (cancelled is final) stays blocked, and so do its dependents.
/// `None` leaves an item as it is.
pub fn retry_states(
    states: &[crate::JobState],
    depends_on: &[Vec<usize>],
) -> Vec<Option<(crate::JobState, u32)>> {
    use crate::JobState;
    let n = states.len();
    let order = topological_order(n, depends_on);
    let mut now: Vec<JobState> = states.to_vec();
    let mut out = vec![None; n];
    for &i in &order {
        if !matches!(states[i], JobState::Quarantined | JobState::Blocked) {
            continue;
        }
        let deps = depends_on[i].iter().filter(|&&d| d < n);
        if deps
            .clone()
            .any(|&d| matches!(now[d], JobState::Cancelled | JobState::Blocked))
        {
            continue;
        }
        let remaining = deps.filter(|&&d| now[d] != JobState::Succeeded).count() as u32;
        let to = if remaining == 0 {
            JobState::Pending
        } else {
            JobState::Waiting
        };
        now[i] = to;
        out[i] = Some((to, remaining));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &NewJob) -> Result<(), String> {
        Ok(())
    }

    fn err(text: &str) -> String {
        parse_batch(text, ok).unwrap_err().to_string()
    }

    #[test]
    fn a_batch_file_parses_with_its_dependencies() {
        let plan = parse_batch(
            "{\"key\":\"a\",\"kind\":\"noop\"}\n\n{\"key\":\"b\",\"kind\":\"record\",\"payload\":{\"x\":1},\"depends_on\":[\"a\",\"a\"],\"priority\":\"high\",\"max_attempts\":5}\n",
            ok,
        )
        .unwrap();
        assert_eq!(plan.items.len(), 2);
        assert_eq!(plan.items[1].depends_on, vec![0]);
        assert_eq!(plan.items[1].line, 3);
        assert_eq!(plan.items[1].job.priority, Priority::HIGH);
        assert_eq!(plan.items[1].job.max_attempts, 5);
        assert_eq!(plan.items[0].job.max_attempts, NewJob::POLICY_ATTEMPTS);
        assert_eq!(plan.edges(), 1);
    }

    #[test]
    fn every_bad_line_is_named() {
        assert_eq!(
            err("{\"key\":\"a\",\"kind\":\"noop\"}\n{\"key\":\"a\",\"kind\":\"noop\"}"),
            "invalid line 2: duplicate key 'a' (first on line 1)"
        );
        let item = serde_json::json!({"key": "a", "kind": "noop"});
        assert_eq!(
            parse_batch_items(vec![item.clone(), item], ok)
                .unwrap_err()
                .to_string(),
            "invalid items[1]: duplicate key 'a' (first on items[0])"
        );
        assert_eq!(
            err("{\"key\":\"a\",\"kind\":\"noop\",\"depends_on\":[\"zz\"]}"),
            "invalid line 1: key 'a' depends on unknown key 'zz'"
        );
        assert!(err("{\"key\":\"a\",\"kind\":\"noop\"}\nnot json")
            .starts_with("invalid line 2: not a batch item"));
        assert!(err("{\"key\":\"a\",\"kind\":\"noop\",\"colour\":1}")
            .contains("unknown field `colour`"));
        assert!(
            err("{\"key\":\"a\",\"kind\":\"no op\"}").starts_with("invalid line 1: invalid kind")
        );
        assert_eq!(
            err("{\"key\":\"a\",\"kind\":\"noop\",\"max_attempts\":0}"),
            "invalid line 1: invalid max_attempts: 0 is out of range 1..100"
        );
        assert_eq!(err(""), "invalid batch: it holds no items");
        let bad = parse_batch("{\"key\":\"a\",\"kind\":\"sleep\"}", |j| {
            Err(format!("payload of {} is bad", j.kind))
        })
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "invalid line 1: key 'a': payload of sleep is bad"
        );
    }

    #[test]
    fn run_order_groups_the_items_that_become_ready_together() {
        // Two chains of three (0 -> 1 -> 2, 3 -> 4 -> 5) and a diamond (6; 7 and 8 need 6;
        // 9 needs both), given in file order.
        let deps = vec![
            vec![],
            vec![0],
            vec![1],
            vec![],
            vec![3],
            vec![4],
            vec![],
            vec![6],
            vec![6],
            vec![7, 8],
        ];
        assert_eq!(run_order(&deps), vec![0, 3, 6, 1, 4, 7, 8, 2, 5, 9]);
        // A dependency given later in the file still comes first.
        assert_eq!(run_order(&[vec![1], vec![]]), vec![1, 0]);
        assert!(run_order::<Vec<usize>>(&[]).is_empty());
    }

    #[test]
    fn cycles_are_refused_with_their_path() {
        let e = err(concat!(
            "{\"key\":\"a\",\"kind\":\"noop\"}\n",
            "{\"key\":\"b\",\"kind\":\"noop\",\"depends_on\":[\"d\"]}\n",
            "{\"key\":\"c\",\"kind\":\"noop\",\"depends_on\":[\"b\",\"a\"]}\n",
            "{\"key\":\"d\",\"kind\":\"noop\",\"depends_on\":[\"c\"]}\n",
        ));
        assert_eq!(
            e,
            "invalid line 2: dependency cycle: 'b' -> 'd' -> 'c' -> 'b'"
        );
        assert_eq!(
            err("{\"key\":\"a\",\"kind\":\"noop\",\"depends_on\":[\"a\"]}"),
            "invalid line 1: key 'a' depends on itself"
        );
        // A diamond is not a cycle.
        parse_batch(
            concat!(
                "{\"key\":\"a\",\"kind\":\"noop\"}\n",
                "{\"key\":\"b\",\"kind\":\"noop\",\"depends_on\":[\"a\"]}\n",
                "{\"key\":\"c\",\"kind\":\"noop\",\"depends_on\":[\"a\"]}\n",
                "{\"key\":\"d\",\"kind\":\"noop\",\"depends_on\":[\"b\",\"c\"]}\n",
            ),
            ok,
        )
        .unwrap();
    }

    #[test]
    fn a_long_chain_is_checked_without_recursion() {
        let mut text = String::from("{\"key\":\"k0\",\"kind\":\"noop\"}\n");
        for i in 1..200_000 {
            text.push_str(&format!(
                "{{\"key\":\"k{i}\",\"kind\":\"noop\",\"depends_on\":[\"k{}\"]}}\n",
                i - 1
            ));
        }
        assert_eq!(parse_batch(&text, ok).unwrap().items.len(), 200_000);
    }

    #[test]
    fn the_critical_path_is_the_longest_chain_of_run_times() {
        // a(5) -> b(1) -> d(1); a -> c(10) -> d; e(3) alone.
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![]];
        let (total, path) = critical_path(&[5, 1, 10, 1, 3], &deps);
        assert_eq!(total, 16);
        assert_eq!(path, vec![0, 2, 3]);
        assert_eq!(critical_path(&[], &[]), (0, vec![]));
        // Nothing ran yet: the longest chain of dependencies, not the last one found.
        let deps = vec![vec![2], vec![], vec![1], vec![]];
        assert_eq!(critical_path(&[0, 0, 0, 0], &deps), (0, vec![1, 2, 0]));
    }

    #[test]
    fn retry_reruns_the_quarantined_and_unblocks_what_it_can() {
        use crate::JobState::*;
        // a succeeded; b quarantined (after a); c blocked (after b); d blocked (after c);
        // e cancelled; f blocked (after e); g blocked (after f).
        let states = [
            Succeeded,
            Quarantined,
            Blocked,
            Blocked,
            Cancelled,
            Blocked,
            Blocked,
        ];
        let deps = vec![vec![], vec![0], vec![1], vec![2], vec![], vec![4], vec![5]];
        let out = retry_states(&states, &deps);
        assert_eq!(
            out,
            vec![
                None,
                Some((Pending, 0)),
                Some((Waiting, 1)),
                Some((Waiting, 1)),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn batch_states_parse() {
        assert_eq!(BatchState::parse("FAILED").unwrap(), BatchState::Failed);
        assert!(BatchState::parse("done")
            .unwrap_err()
            .to_string()
            .contains("running, succeeded"));
    }
}
