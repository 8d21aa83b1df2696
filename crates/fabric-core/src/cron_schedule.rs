//! Cron schedules (`fabric schedules add`): the definition an operator gives (a name, a cron
//! expression read in an IANA time zone, the kind and payload of the job it enqueues, what to
//! do when a run is still going and when due times were missed) and the pure arithmetic of
//! its due times: the next one, a preview, and what to fire now.
//!
//! Due times follow Vixie cron across daylight-saving changes (croner implements it): a job
//! at a fixed wall-clock time (one second, minute and hour) whose time is skipped by a
//! forward jump runs once, at the first instant after the jump; one whose time is repeated by
//! a backward jump runs once, at the first of the two instants. A job with a wildcard or a
//! step in its seconds, minutes or hours (`*/15 * * * *`, `0 * * * *`) runs by real time: it
//! has no run inside a skipped hour and runs on both passes of a repeated one (they are
//! different instants).
//!
//! Firing is driven by one stored value, the schedule's next due time, which only ever moves
//! forward; so a clock that goes back never fires a due time twice, and a clock that jumps
//! ahead fires what [`CatchUp`] asks for and no more ([`due_now`]).

use chrono::TimeZone;
use serde::{Deserialize, Serialize};

use crate::job::validate_name;
use crate::{CoreError, Priority};

/// Time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Most due times one step of `catch_up: all` fires: a daemon back from a long outage
/// enqueues at most this many runs of one schedule (the most recent ones), not a burst of
/// every second it missed.
pub const MAX_CATCH_UP: usize = 1000;

/// How late a due time may be seen and still count as "now" for `catch_up: none`: the leader
/// looks every few seconds, so a due time it sees more than a minute late was missed (the
/// daemon was down, or the clock jumped).
pub const ON_TIME_MS: i64 = 60_000;

/// Missed due times are counted exactly up to this many per step (a schedule of every
/// second after a month's outage would otherwise walk millions of them).
pub const MAX_COUNTED: usize = 10_000;

/// Due times `schedules list` previews.
pub const PREVIEW: usize = 5;

/// What a due time does while the schedule's previous run has not finished.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip it (counted as skipped) while the previous job is pending, failed (waiting for
    /// its retry) or running. The default.
    #[default]
    Skip,
    /// Enqueue it anyway: runs may overlap.
    Allow,
}

impl Overlap {
    /// The name of the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
        }
    }

    /// Parses `skip` or `allow`, naming the field `overlap`.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s {
            "skip" => Ok(Overlap::Skip),
            "allow" => Ok(Overlap::Allow),
            _ => Err(CoreError::invalid(
                "overlap",
                format!("'{s}' is not an overlap policy (skip or allow)"),
            )),
        }
    }
}

/// What to fire for due times that passed while no leader looked (the daemon was down, or
/// the clock jumped ahead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Nothing late: only the latest due time, and only when it is at most [`ON_TIME_MS`]
    /// old; every other passed due time is skipped.
    None,
    /// One run for all the due times that passed (the latest of them). The default.
    #[default]
    One,
    /// A run for every passed due time, at most [`MAX_CATCH_UP`] (the most recent) a step.
    All,
}

impl CatchUp {
    /// The name of the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::One => "one",
            CatchUp::All => "all",
        }
    }

    /// Parses `none`, `one` or `all`, naming the field `catch-up`.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        match s {
            "none" => Ok(CatchUp::None),
            "one" => Ok(CatchUp::One),
            "all" => Ok(CatchUp::All),
            _ => Err(CoreError::invalid(
                "catch-up",
                format!("'{s}' is not a catch-up policy (none, one or all)"),
            )),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

fn utc() -> String {
    DEFAULT_TIMEZONE.to_string()
}

/// A cron schedule as an operator defined it. It is never edited: remove it and add it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// 5-field cron, or 6 fields with seconds first.
    pub cron: String,
    /// Kind of the job each due time enqueues.
    pub kind: String,
    /// Payload of that job (a JSON object).
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// IANA time zone the expression is read in (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Priority of its jobs; `None`: normal.
    #[serde(default)]
    pub priority: Option<Priority>,
}

impl ScheduleDef {
    /// A schedule with the defaults: UTC, overlap skip, catch-up one, an empty payload.
    pub fn new(name: impl Into<String>, cron: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cron: cron.into(),
            kind: kind.into(),
            payload: empty_object(),
            timezone: utc(),
            overlap: Overlap::default(),
            catch_up: CatchUp::default(),
            priority: None,
        }
    }

    /// Checks every field, naming the first bad one (`name`, `cron`, `timezone`, `kind`,
    /// `payload`), and returns the parsed expression.
    pub fn validate(&self) -> Result<CronSpec, CoreError> {
        validate_name("name", &self.name)?;
        let spec = self.spec()?;
        if self.kind.trim().is_empty() {
            return Err(CoreError::invalid("kind", "must not be empty"));
        }
        if !self.payload.is_object() {
            return Err(CoreError::invalid(
                "payload",
                format!("must be a JSON object, got {}", self.payload),
            ));
        }
        Ok(spec)
    }

    /// The expression in its time zone.
    pub fn spec(&self) -> Result<CronSpec, CoreError> {
        CronSpec::parse(&self.cron, &self.timezone)
    }
}

/// The unique key of the job a schedule enqueues for due time `due` (epoch ms): one job per
/// schedule and due time, however many leaders fire it.
pub fn job_key(name: &str, due: i64) -> String {
    format!("schedule:{name}:{due}")
}

/// The unique key of a run an operator asked for at `now` (`schedules trigger`).
pub fn manual_key(name: &str, now: i64) -> String {
    format!("schedule:{name}:manual:{now}")
}

/// Parses a cron expression of 5 fields, or 6 with seconds first; the error names `field`.
pub fn parse_cron(field: &str, expr: &str) -> Result<croner::Cron, CoreError> {
    let t = expr.trim();
    let fields = t.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(CoreError::invalid(
            field,
            format!(
                "'{t}' is not a cron expression of 5 fields, or 6 with seconds first \
                 ({fields} given)"
            ),
        ));
    }
    let parse = |expr: &str| {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
    };
    parse(t).map_err(|e| {
        // Name the field at fault: the first that fails with every other one a wildcard.
        let parts: Vec<&str> = t.split_whitespace().collect();
        let names: &[&str] = if parts.len() == 6 {
            &[
                "second",
                "minute",
                "hour",
                "day of month",
                "month",
                "day of week",
            ]
        } else {
            &["minute", "hour", "day of month", "month", "day of week"]
        };
        let culprit = (0..parts.len()).find(|&i| {
            let alone: Vec<&str> = (0..parts.len())
                .map(|j| if j == i { parts[i] } else { "*" })
                .collect();
            parse(&alone.join(" ")).is_err()
        });
        let what = match culprit {
            Some(i) => format!(
                "its {} field '{}' is out of range or malformed",
                names[i], parts[i]
            ),
            None => e.to_string(),
        };
        CoreError::invalid(
            field,
            format!("'{t}' is not a valid cron expression: {what}"),
        )
    })
}

/// A cron expression read in a time zone: its due times as epoch milliseconds (whole
/// seconds).
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

fn floor_second(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

impl CronSpec {
    /// Parses `expr` (field `cron`) in the IANA zone `timezone` (field `timezone`).
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, CoreError> {
        let cron = parse_cron("cron", expr)?;
        let tz: chrono_tz::Tz = timezone.parse().map_err(|_| {
            CoreError::invalid(
                "timezone",
                format!("'{timezone}' is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
            )
        })?;
        Ok(Self { cron, tz })
    }

    fn at(&self, ms: i64) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let utc = chrono::DateTime::from_timestamp_millis(floor_second(ms))?;
        Some(self.tz.from_utc_datetime(&utc.naive_utc()))
    }

    /// The first due time strictly after `after` (epoch ms); `None` when there is none.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let t = self.at(after)?;
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|n| n.timestamp_millis())
    }

    /// The last due time at or before `at`; `None` when there is none.
    pub fn last_at_or_before(&self, at: i64) -> Option<i64> {
        let t = self.at(at)?;
        self.cron
            .find_previous_occurrence(&t, true)
            .ok()
            .map(|n| n.timestamp_millis())
    }

    /// The first due time strictly before `before`.
    fn previous(&self, before: i64) -> Option<i64> {
        let t = self.at(before)?;
        self.cron
            .find_previous_occurrence(&t, false)
            .ok()
            .map(|n| n.timestamp_millis())
    }

    /// The next `n` due times after `after`, in order.
    pub fn upcoming(&self, after: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The due times in `from..=to`, the most recent `keep` of them in order, and how many
    /// there are in all (exact up to [`MAX_COUNTED`], a lower bound beyond).
    fn passed(&self, from: i64, to: i64, keep: usize) -> (Vec<i64>, u64) {
        let mut kept = Vec::new();
        let mut count = 0u64;
        let mut cursor = self.last_at_or_before(to);
        while let Some(due) = cursor.filter(|d| *d >= from) {
            count += 1;
            if kept.len() < keep {
                kept.push(due);
            }
            if count as usize >= MAX_COUNTED.max(keep) {
                break;
            }
            cursor = self.previous(due);
        }
        kept.reverse();
        (kept, count)
    }
}

/// What a schedule fires at one step of the leader ([`due_now`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Due times to enqueue a run for, in order.
    pub fire: Vec<i64>,
    /// Due times that passed and get no run (per [`CatchUp`]).
    pub missed: u64,
    /// The schedule's next due time after this step (strictly after `now`; `None`: never).
    pub next_due: Option<i64>,
}

/// What to fire at `now` for a schedule whose stored next due time is `next_due`: nothing
/// (`None`) until `now` reaches it; then the due times `next_due..=now` as `catch_up` asks —
/// `none`: the latest only if at most [`ON_TIME_MS`] old, `one`: the latest, `all`: every
/// one, at most [`MAX_CATCH_UP`] (the most recent) — and the first due time after `now`.
pub fn due_now(spec: &CronSpec, catch_up: CatchUp, next_due: i64, now: i64) -> Option<Due> {
    if next_due > now {
        return None;
    }
    let keep = match catch_up {
        CatchUp::None | CatchUp::One => 1,
        CatchUp::All => MAX_CATCH_UP,
    };
    let (mut fire, passed) = spec.passed(next_due, now, keep);
    // The stored value is a due time and at most `now`, so the walk finds it at least; if the
    // expression no longer yields it (it cannot change), fire the stored one.
    if fire.is_empty() {
        fire.push(next_due);
    }
    if catch_up == CatchUp::None && fire.last().is_some_and(|d| now - d > ON_TIME_MS) {
        fire.clear();
    }
    Some(Due {
        missed: passed.max(1) - fire.len() as u64,
        fire,
        next_due: spec.next_after(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    /// Epoch ms of a UTC wall-clock time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .unwrap()
            .timestamp_millis()
    }

    fn spec(expr: &str, tz: &str) -> CronSpec {
        CronSpec::parse(expr, tz).unwrap()
    }

    #[test]
    fn definitions_are_checked_field_by_field() {
        let good = ScheduleDef::new("nightly", "0 3 * * *", "noop");
        good.validate().unwrap();
        ScheduleDef::new("fast", "*/5 * * * * *", "noop")
            .validate()
            .unwrap();
        let field = |d: ScheduleDef| match d.validate().unwrap_err() {
            CoreError::InvalidInput { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(
            field(ScheduleDef::new("bad name", "* * * * *", "noop")),
            "name"
        );
        for bad in ["* * *", "61 * * * *", "1 2 3 4 5 6 7", "every 5m", ""] {
            assert_eq!(field(ScheduleDef::new("n", bad, "noop")), "cron", "{bad}");
        }
        let mut d = good.clone();
        d.timezone = "Mars/Olympus".into();
        assert_eq!(field(d), "timezone");
        let mut d = good.clone();
        d.payload = serde_json::json!([1]);
        assert_eq!(field(d), "payload");
        assert_eq!(field(ScheduleDef::new("n", "* * * * *", " ")), "kind");
        assert_eq!(Overlap::parse("allow").unwrap(), Overlap::Allow);
        assert_eq!(CatchUp::parse("all").unwrap(), CatchUp::All);
        assert!(Overlap::parse("never")
            .unwrap_err()
            .to_string()
            .contains("overlap"));
        assert!(CatchUp::parse("some")
            .unwrap_err()
            .to_string()
            .contains("catch-up"));
        let json = serde_json::json!({"name": "n", "cron": "* * * * *", "kind": "noop"});
        let d: ScheduleDef = serde_json::from_value(json).unwrap();
        assert_eq!((d.overlap, d.catch_up), (Overlap::Skip, CatchUp::One));
        assert_eq!(d.timezone, "UTC");
    }

    #[test]
    fn next_due_times_are_read_in_the_time_zone() {
        let t0 = utc(2026, 6, 1, 0, 0);
        // 09:00 in Berlin is 07:00 UTC in summer.
        let berlin = spec("0 9 * * *", "Europe/Berlin");
        assert_eq!(berlin.next_after(t0), Some(utc(2026, 6, 1, 7, 0)));
        assert_eq!(
            berlin.upcoming(t0, PREVIEW),
            (0..5)
                .map(|d| utc(2026, 6, 1, 7, 0) + d * 24 * HOUR)
                .collect::<Vec<_>>()
        );
        // Strictly after: a due time is not its own next one, even mid-second.
        let secs = spec("* * * * * *", "UTC");
        assert_eq!(secs.next_after(t0), Some(t0 + 1000));
        assert_eq!(secs.next_after(t0 + 400), Some(t0 + 1000));
        assert_eq!(
            spec("30 */5 * * * *", "UTC").next_after(t0),
            Some(t0 + 30_000)
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_once_just_after_the_jump() {
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:30 never comes.
        let ny = spec("30 2 * * *", "America/New_York");
        let runs = ny.upcoming(utc(2026, 3, 7, 12, 0), 3);
        assert_eq!(
            runs,
            vec![
                utc(2026, 3, 8, 7, 0), // 03:00 EDT, the first instant after the jump
                utc(2026, 3, 9, 6, 30),
                utc(2026, 3, 10, 6, 30),
            ]
        );
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let berlin = spec("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            berlin.upcoming(utc(2026, 3, 28, 12, 0), 2),
            vec![utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
        );
        // A job by real time has no run inside the skipped hour: 06:45 UTC is 01:45 EST,
        // the next quarter is 03:00 EDT.
        let quarter = spec("*/15 * * * *", "America/New_York");
        assert_eq!(
            quarter.next_after(utc(2026, 3, 8, 6, 45)),
            Some(utc(2026, 3, 8, 7, 0))
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 comes at 05:30 and 06:30 UTC.
        let ny = spec("30 1 * * *", "America/New_York");
        assert_eq!(
            ny.upcoming(utc(2026, 10, 31, 12, 0), 2),
            vec![utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
        );
        // From inside the repeated hour (after the first 01:30), no second run that day.
        assert_eq!(
            ny.next_after(utc(2026, 11, 1, 6, 0)),
            Some(utc(2026, 11, 2, 6, 30))
        );
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 comes at 00:30 and 01:30 UTC.
        let berlin = spec("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            berlin.upcoming(utc(2026, 10, 24, 12, 0), 2),
            vec![utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
        );
        // Hourly by real time: both passes of the repeated hour are different instants.
        let hourly = spec("0 * * * *", "America/New_York");
        assert_eq!(
            hourly.upcoming(utc(2026, 11, 1, 4, 30), 3),
            vec![
                utc(2026, 11, 1, 5, 0),
                utc(2026, 11, 1, 6, 0),
                utc(2026, 11, 1, 7, 0)
            ]
        );
    }

    #[test]
    fn the_backward_walk_agrees_with_the_forward_one_across_dst() {
        for tz in ["America/New_York", "Europe/Berlin"] {
            for expr in [
                "30 2 * * *",
                "30 1 * * *",
                "*/15 * * * *",
                "0 * * * *",
                "0 30 * * * *",
            ] {
                let s = spec(expr, tz);
                for (from, to) in [
                    (utc(2026, 3, 7, 0, 0), utc(2026, 3, 10, 0, 0)),
                    (utc(2026, 3, 28, 0, 0), utc(2026, 3, 31, 0, 0)),
                    (utc(2026, 10, 24, 0, 0), utc(2026, 10, 27, 0, 0)),
                    (utc(2026, 10, 31, 0, 0), utc(2026, 11, 3, 0, 0)),
                ] {
                    let forward: Vec<i64> = s
                        .upcoming(from - 1, 1000)
                        .into_iter()
                        .take_while(|d| *d <= to)
                        .collect();
                    let (backward, n) = s.passed(from, to, usize::MAX);
                    assert_eq!(backward, forward, "{expr} in {tz} from {from}");
                    assert_eq!(n as usize, forward.len());
                }
            }
        }
    }

    #[test]
    fn nothing_fires_before_the_next_due_time() {
        let s = spec("0 * * * *", "UTC");
        let due = utc(2026, 6, 1, 10, 0);
        assert_eq!(due_now(&s, CatchUp::All, due, due - 1), None);
        // Fired at 10:00:00.2: the next due time is 11:00. A clock that then goes back an
        // hour finds nothing due until 11:00 again: 10:00 is never fired twice.
        let d = due_now(&s, CatchUp::One, due, due + 200).unwrap();
        assert_eq!((d.fire.clone(), d.missed), (vec![due], 0));
        let next = d.next_due.unwrap();
        assert_eq!(next, due + HOUR);
        assert_eq!(due_now(&s, CatchUp::All, next, due - HOUR + 5), None);
    }

    #[test]
    fn catch_up_decides_what_a_jump_ahead_fires() {
        let s = spec("* * * * *", "UTC");
        let due = utc(2026, 6, 1, 10, 0);
        let now = due + HOUR + 10_000; // an hour and ten seconds late
        let one = due_now(&s, CatchUp::One, due, now).unwrap();
        assert_eq!(one.fire, vec![due + HOUR], "one run, the latest");
        assert_eq!(one.missed, 60);
        assert_eq!(one.next_due, Some(due + HOUR + MIN));
        let all = due_now(&s, CatchUp::All, due, now).unwrap();
        assert_eq!(
            all.fire,
            (0..=60).map(|m| due + m * MIN).collect::<Vec<_>>()
        );
        assert_eq!(all.missed, 0);
        // none: the latest is ten seconds old, so it is "now"; the 60 before it are missed.
        let none = due_now(&s, CatchUp::None, due, now).unwrap();
        assert_eq!((none.fire, none.missed), (vec![due + HOUR], 60));
        // none, daily: 09:00 seen at 10:00 is late, and nothing fires until tomorrow.
        let daily = spec("0 9 * * *", "UTC");
        let nine = utc(2026, 6, 1, 9, 0);
        let late = due_now(&daily, CatchUp::None, nine, nine + HOUR).unwrap();
        assert_eq!((late.fire, late.missed), (vec![], 1));
        assert_eq!(late.next_due, Some(nine + 24 * HOUR));
        let on_time = due_now(&daily, CatchUp::None, nine, nine + ON_TIME_MS).unwrap();
        assert_eq!(on_time.fire, vec![nine]);
    }

    #[test]
    fn catch_up_all_is_bounded() {
        let s = spec("* * * * * *", "UTC");
        let due = utc(2026, 6, 1, 10, 0);
        let now = due + 2 * HOUR + 500; // 7,201 due times passed
        let all = due_now(&s, CatchUp::All, due, now).unwrap();
        assert_eq!(all.fire.len(), MAX_CATCH_UP);
        assert_eq!(
            *all.fire.last().unwrap(),
            due + 2 * HOUR,
            "the most recent ones"
        );
        assert_eq!(
            all.fire[0],
            due + 2 * HOUR - (MAX_CATCH_UP as i64 - 1) * 1000
        );
        assert_eq!(all.missed, 7201 - MAX_CATCH_UP as u64);
        assert_eq!(all.next_due, Some(due + 2 * HOUR + 1000));
    }
}
