//! Sources of the ingestion layer: what an operator defines (`fabric sources add`): a type, a
//! root path, include and exclude globs, a schedule, a priority and a retry policy; and the
//! schedule's arithmetic (`every 15m`, or a 5- or 6-field cron expression).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::job::validate_name;
use crate::{CoreError, Priority};

/// Shortest interval of an `every` schedule.
pub const MIN_EVERY_MS: i64 = 60_000;

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    /// A directory tree of files.
    LocalFiles,
    /// An Obsidian-style vault: markdown with front matter, tags, wikilinks and embeds.
    MarkdownVault,
    Maildir,
    Mbox,
    /// A local git repository: files at HEAD and commit messages.
    Git,
}

impl SourceType {
    /// Every type.
    pub const ALL: [SourceType; 5] = [
        SourceType::LocalFiles,
        SourceType::MarkdownVault,
        SourceType::Maildir,
        SourceType::Mbox,
        SourceType::Git,
    ];

    /// The snake_case name of the CLI, the config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::LocalFiles => "local_files",
            SourceType::MarkdownVault => "markdown_vault",
            SourceType::Maildir => "maildir",
            SourceType::Mbox => "mbox",
            SourceType::Git => "git",
        }
    }

    /// Parses a type name, naming the field `type` when it is unknown.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        SourceType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = SourceType::ALL.iter().map(|t| t.as_str()).collect();
                CoreError::invalid(
                    "type",
                    format!("'{s}' is not a source type (one of {})", names.join(", ")),
                )
            })
    }
}

/// When a source is scanned on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// `every 15m`: at this interval (ms) after the last due time.
    Every(i64),
    /// A cron expression (5 fields, or 6 with seconds first), evaluated in UTC.
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// Parses `every 15m` (`s`, `m`, `h`, `d`; at least one minute) or a 5- or 6-field cron
    /// expression; the error names the field `schedule`.
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let bad = |m: String| CoreError::invalid("schedule", m);
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("every ") {
            let ms = crate::time::parse_duration_ms(rest.trim()).map_err(bad)?;
            if ms < MIN_EVERY_MS {
                return Err(bad(format!(
                    "'{t}' is shorter than one minute (the shortest interval)"
                )));
            }
            return Ok(Schedule::Every(ms));
        }
        let fields = t.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(bad(format!(
                "'{t}' is neither `every <duration>` (e.g. every 15m) nor a cron expression of \
                 5 or 6 fields ({fields} given)"
            )));
        }
        crate::cron_schedule::parse_cron("schedule", t).map(|c| Schedule::Cron(Box::new(c)))
    }

    /// The first due time strictly after `after` (epoch ms); `None` when there is none (a
    /// cron expression that never matches again).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Schedule::Every(ms) => after.checked_add(*ms),
            Schedule::Cron(c) => {
                let t = chrono::DateTime::from_timestamp_millis(after)?;
                c.find_next_occurrence(&t, false)
                    .ok()
                    .map(|n| n.timestamp_millis())
            }
        }
    }
}

impl FromStr for Schedule {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

/// A source as an operator defined it. Its definition outlives the store (it is kept in the
/// home's `config/sources.yaml` too); what happens to it (paused, scans) lives in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    /// Unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// Absolute path of the root (a directory; an mbox file for `mbox`).
    pub path: String,
    /// Globs of files to read (all when empty), relative to the root.
    #[serde(default)]
    pub include: Vec<String>,
    /// Globs of files to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `every 15m` or a cron expression; `None`: only on `sources trigger`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Priority of its jobs (default normal).
    #[serde(default = "normal")]
    pub priority: Priority,
    /// The retry policy of its jobs (`retry_policies.<name>`); `None`: the policy named like
    /// the source, else the default.
    #[serde(default)]
    pub retry_policy: Option<String>,
}

fn normal() -> Priority {
    Priority::NORMAL
}

/// The settings key under which ingestion keeps one piece of a source's runtime state
/// (`what`: `index`, `git_head`, `mbox:FILE`, ...). Every key of a source starts with
/// [`state_prefix`], so removing the source removes them all.
pub fn state_key(source: &str, what: &str) -> String {
    format!("{}{what}", state_prefix(source))
}

/// The prefix of every settings key of a source's runtime state.
pub fn state_prefix(source: &str) -> String {
    format!("source:{source}:")
}

/// Most include or exclude globs of one source.
pub const MAX_GLOBS: usize = 256;

impl SourceDef {
    /// Checks every field, naming the first bad one: the name, an absolute path without NUL
    /// bytes, the schedule, at most [`MAX_GLOBS`] non-empty globs each way.
    pub fn validate(&self) -> Result<(), CoreError> {
        validate_name("name", &self.name)?;
        if self.path.is_empty() || !self.path.starts_with('/') || self.path.contains('\0') {
            return Err(CoreError::invalid(
                "path",
                format!("'{}' must be an absolute path", self.path),
            ));
        }
        if let Some(s) = &self.schedule {
            Schedule::parse(s)?;
        }
        for (field, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            if globs.len() > MAX_GLOBS {
                return Err(CoreError::invalid(
                    field,
                    format!("{} globs given; at most {MAX_GLOBS}", globs.len()),
                ));
            }
            if let Some(g) = globs
                .iter()
                .find(|g| g.trim().is_empty() || g.contains('\0'))
            {
                return Err(CoreError::invalid(field, format!("'{g}' is not a glob")));
            }
        }
        if let Some(p) = &self.retry_policy {
            validate_name("retry-policy", p)?;
        }
        Ok(())
    }

    /// Its schedule, parsed (`None` when it has none).
    pub fn schedule(&self) -> Result<Option<Schedule>, CoreError> {
        self.schedule.as_deref().map(Schedule::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> SourceDef {
        SourceDef {
            name: "notes".into(),
            source_type: SourceType::MarkdownVault,
            path: "/srv/notes".into(),
            include: vec!["**/*.md".into()],
            exclude: vec![],
            schedule: Some("every 15m".into()),
            priority: Priority::NORMAL,
            retry_policy: None,
        }
    }

    #[test]
    fn every_and_cron_schedules_give_their_next_due_time() {
        let t0 = 1_796_000_000_000; // 2026-12-01T...
        assert_eq!(
            Schedule::parse("every 15m").unwrap().next_after(t0),
            Some(t0 + 900_000)
        );
        let quarter = Schedule::parse("*/15 * * * *").unwrap();
        let next = quarter.next_after(t0).unwrap();
        assert!(next > t0 && next - t0 <= 900_000);
        assert_eq!(next % 900_000, 0, "on a quarter hour");
        let with_seconds = Schedule::parse("30 */5 * * * *").unwrap();
        assert_eq!(with_seconds.next_after(t0).unwrap() % 300_000, 30_000);
    }

    #[test]
    fn bad_schedules_name_the_field() {
        for bad in [
            "every 10s",
            "every often",
            "* * *",
            "61 * * * *",
            "1 2 3 4 5 6 7",
            "",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid schedule:"), "{bad}: {e}");
        }
    }

    #[test]
    fn definitions_are_validated_field_by_field() {
        assert!(def().validate().is_ok());
        let mut d = def();
        d.path = "relative/notes".into();
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid path"));
        let mut d = def();
        d.name = "no spaces".into();
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid name"));
        let mut d = def();
        d.schedule = Some("sometimes".into());
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid schedule"));
        let mut d = def();
        d.exclude = vec![" ".into()];
        assert!(d
            .validate()
            .unwrap_err()
            .to_string()
            .contains("invalid exclude"));
        assert!(SourceType::parse("ftp")
            .unwrap_err()
            .to_string()
            .contains("local_files, markdown_vault, maildir, mbox, git"));
    }

    #[test]
    fn a_definition_round_trips_through_yaml_with_type_as_its_key() {
        let y = serde_yaml_ng::to_string(&def()).unwrap();
        assert!(y.contains("type: markdown_vault"), "{y}");
        let back: SourceDef = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back, def());
    }
}
