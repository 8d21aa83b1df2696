//! Field reports: an append-only log of job outcomes and risk events under
//! `$FABRIC_HOME/reports/`, one file per UTC day (`field-YYYY-MM-DD.log`, 0600). Each record
//! is length-prefixed and checksummed (`u32` length, `u32` CRC-32 of the body, both
//! little-endian, then the JSON body) and every appended batch is fsync'd before the call
//! returns. A torn or corrupt tail (a crash mid-write) is tolerated on load: the records
//! before and after it are read and the damage is reported with its file and offset.
//! Retention deletes whole day files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use fabric_core::JobId;
use fabric_store::{Completion, Outcome};

/// One field report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldReport {
    /// When it happened (epoch ms).
    pub at: i64,
    /// The node that wrote it.
    pub node: String,
    /// `job_succeeded`, `job_failed` (an attempt failed; the job retries),
    /// `job_quarantined`, or a risk event (`pause_triggered`, `bp_quarantine`, ...).
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Whatever else the event carries (a quarantine reason, an error, a risk score).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// Damage found in a day file: the `bytes` from `offset` were not an intact record (the
/// records before and after it were read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornTail {
    pub file: String,
    pub offset: u64,
    /// Bytes after `offset` that were not a whole, intact record.
    pub bytes: u64,
    pub problem: String,
}

/// What [`read`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Loaded {
    pub records: Vec<FieldReport>,
    pub torn: Vec<TornTail>,
}

/// Largest record body accepted on load (a larger length prefix is damage).
const MAX_RECORD: u32 = 16 * 1024 * 1024;

/// The directory of the field reports of a home.
pub fn dir_of(home: &Path) -> PathBuf {
    home.join("reports")
}

fn day_of(at_ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

fn file_name(day: &str) -> String {
    format!("field-{day}.log")
}

/// The day of a report file name (`field-YYYY-MM-DD.log`), if it is one.
fn day_in(name: &str) -> Option<&str> {
    name.strip_prefix("field-")?
        .strip_suffix(".log")
        .filter(|d| d.len() == 10)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Encodes one record: length, CRC-32 of the body, body.
fn encode(r: &FieldReport, out: &mut Vec<u8>) -> std::io::Result<()> {
    let body = serde_json::to_vec(r)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| std::io::Error::other("field report over 16 MiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Appends `records` to the day files of `dir` (created 0700), each file's share in one
/// write, then fsyncs them: when this returns `Ok`, the records are durable.
pub fn append(dir: &Path, records: &[FieldReport]) -> std::io::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    create_dir(dir)?;
    let mut by_day: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for r in records {
        encode(r, by_day.entry(day_of(r.at)).or_default())?;
    }
    for (day, bytes) in by_day {
        let mut f = open_append(&dir.join(file_name(&day)))?;
        f.write_all(&bytes)?;
        f.sync_data()?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// The day files of `dir`, oldest first.
fn day_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(day) = day_in(&name) {
            out.push((day.to_string(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The record at `at` of `bytes`, with its encoded length, if a whole, intact one starts
/// there; else what is wrong.
fn record_at(bytes: &[u8], at: usize) -> Result<(FieldReport, usize), &'static str> {
    let head = bytes.get(at..at + 8).ok_or("incomplete record header")?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD {
        return Err("impossible record length");
    }
    let body = bytes
        .get(at + 8..at + 8 + len as usize)
        .ok_or("incomplete record")?;
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch");
    }
    let r = serde_json::from_slice(body).map_err(|_| "unreadable record")?;
    Ok((r, 8 + len as usize))
}

/// Decodes the records of one file's bytes. Damage (a torn write, a flipped byte) is
/// reported with its offset, and reading goes on at the next intact record after it, so
/// what was appended after a crash is still read.
fn decode(name: &str, bytes: &[u8], out: &mut Loaded) {
    let mut at = 0usize;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((r, len)) => {
                out.records.push(r);
                at += len;
            }
            Err(problem) => {
                let next = (at + 1..bytes.len())
                    .find(|&i| record_at(bytes, i).is_ok())
                    .unwrap_or(bytes.len());
                out.torn.push(TornTail {
                    file: name.to_string(),
                    offset: at as u64,
                    bytes: (next - at) as u64,
                    problem: problem.to_string(),
                });
                at = next;
            }
        }
    }
}

/// Reads the reports of `dir` at or after `since` (epoch ms), oldest first, with the damage
/// found on the way.
pub fn read(dir: &Path, since: i64) -> std::io::Result<Loaded> {
    let first_day = day_of(since);
    let mut out = Loaded::default();
    for (day, path) in day_files(dir)? {
        if day < first_day {
            continue;
        }
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        decode(&file_name(&day), &bytes, &mut out);
    }
    out.records.retain(|r| r.at >= since);
    Ok(out)
}

/// Deletes the day files of days before the day of `before` (epoch ms); returns how many.
pub fn prune(dir: &Path, before: i64) -> std::io::Result<u64> {
    let keep_from = day_of(before);
    let mut n = 0;
    for (day, path) in day_files(dir)? {
        if day < keep_from {
            std::fs::remove_file(path)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The field reports of a durable completion batch (`late`: some of it was rejected as
/// late, which ones is not known: they are marked).
pub(crate) fn of_completions(node: &str, batch: &[Completion], late: bool) -> Vec<FieldReport> {
    batch
        .iter()
        .map(|c| {
            let (event, mut detail) = match &c.outcome {
                Outcome::Succeeded { .. } => ("job_succeeded", serde_json::json!({})),
                Outcome::Retry {
                    run_at,
                    error,
                    failure,
                } => (
                    "job_failed",
                    serde_json::json!({"error": error, "failure": failure, "retry_at": run_at}),
                ),
                Outcome::Quarantine {
                    reason,
                    error,
                    failure,
                } => (
                    "job_quarantined",
                    serde_json::json!({"reason": reason, "error": error, "failure": failure}),
                ),
            };
            detail["seconds"] = serde_json::json!((c.finished_at - c.started_at) as f64 / 1000.0);
            if late {
                detail["possibly_late"] = serde_json::json!(true);
            }
            FieldReport {
                at: c.finished_at,
                node: node.to_string(),
                event: event.to_string(),
                job_id: Some(c.id),
                attempt: Some(c.attempt),
                detail,
            }
        })
        .collect()
}

/// Where and how long an engine keeps its field reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportsOptions {
    pub dir: PathBuf,
    pub retention_days: u32,
}

/// The engine's field-report writer: a thread that appends what it is sent, a batch (all
/// that queued while the previous fsync ran) at a time, and deletes day files past their
/// retention once an hour. Job completions are already durable in the store when they are
/// sent here; a report that cannot be written is logged, never retried forever.
pub struct FieldLog {
    tx: std::sync::Mutex<Option<std::sync::mpsc::Sender<Vec<FieldReport>>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl FieldLog {
    /// Starts the writer thread.
    pub fn start(options: ReportsOptions) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<FieldReport>>();
        let thread = std::thread::Builder::new()
            .name("fabric-reports".into())
            .spawn(move || writer(options, rx))?;
        Ok(Self {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Queues `records` for writing.
    pub fn send(&self, records: Vec<FieldReport>) {
        if records.is_empty() {
            return;
        }
        if let Ok(tx) = self.tx.lock() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(records);
            }
        }
    }

    /// Writes what is queued and stops the thread (blocking).
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

fn writer(options: ReportsOptions, rx: std::sync::mpsc::Receiver<Vec<FieldReport>>) {
    let mut last_prune: Option<std::time::Instant> = None;
    while let Ok(mut batch) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        if let Err(e) = append(&options.dir, &batch) {
            tracing::warn!(error = %e, lost = batch.len(), "field reports not written");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(3600)) {
            last_prune = Some(std::time::Instant::now());
            let now = chrono::Utc::now().timestamp_millis();
            let before = now - i64::from(options.retention_days) * 86_400_000;
            match prune(&options.dir, before) {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "field reports: old days deleted"),
                Err(e) => tracing::warn!(error = %e, "field reports: retention failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const T0: i64 = 1_800_000_000_000;

    fn report(at: i64, event: &str, job: i64) -> FieldReport {
        FieldReport {
            at,
            node: "n1".into(),
            event: event.into(),
            job_id: Some(job),
            attempt: Some(1),
            detail: serde_json::json!({"reason": "parse_error"}),
        }
    }

    #[test]
    fn records_round_trip_across_day_files_and_since_filters() {
        let dir = tempfile::tempdir().unwrap();
        let rs = vec![
            report(T0, "job_succeeded", 1),
            report(T0 + 1, "job_quarantined", 2),
            report(T0 + DAY, "pause_triggered", 3),
        ];
        append(dir.path(), &rs[..2]).unwrap();
        append(dir.path(), &rs[2..]).unwrap();
        let all = read(dir.path(), 0).unwrap();
        assert_eq!(all.records, rs);
        assert!(all.torn.is_empty());
        assert_eq!(day_files(dir.path()).unwrap().len(), 2);
        assert_eq!(read(dir.path(), T0 + 1).unwrap().records, rs[1..]);
        assert_eq!(read(dir.path(), T0 + DAY).unwrap().records, rs[2..]);
    }

    #[test]
    fn a_torn_or_corrupt_tail_keeps_the_records_before_it_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        append(
            dir.path(),
            &[report(T0, "job_succeeded", 1), report(T0, "job_failed", 2)],
        )
        .unwrap();
        let (_, path) = day_files(dir.path()).unwrap().remove(0);
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of the second record.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        let got = read(dir.path(), 0).unwrap();
        assert_eq!(got.records, [report(T0, "job_succeeded", 1)]);
        assert_eq!(got.torn.len(), 1);
        assert_eq!(got.torn[0].problem, "incomplete record");
        let first_len = 8 + u32::from_le_bytes([whole[0], whole[1], whole[2], whole[3]]) as u64;
        assert_eq!(got.torn[0].offset, first_len);
        // A flipped byte in the second record's body.
        let mut bad = whole.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let got = read(dir.path(), 0).unwrap();
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.torn[0].problem, "checksum mismatch");
        // Records appended after a torn write are read again past the damage.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        append(dir.path(), &[report(T0, "job_succeeded", 3)]).unwrap();
        let got = read(dir.path(), 0).unwrap();
        assert_eq!(
            got.records.iter().map(|r| r.job_id).collect::<Vec<_>>(),
            [Some(1), Some(3)]
        );
        assert_eq!(got.torn.len(), 1);
        assert_eq!(got.torn[0].bytes, whole.len() as u64 - 5 - first_len);
    }

    #[test]
    fn retention_deletes_whole_old_days_only() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..4 {
            append(dir.path(), &[report(T0 + d * DAY, "job_succeeded", d)]).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "kept").unwrap();
        assert_eq!(prune(dir.path(), T0 + 2 * DAY).unwrap(), 2);
        let left = read(dir.path(), 0).unwrap().records;
        assert_eq!(
            left.iter().map(|r| r.job_id).collect::<Vec<_>>(),
            [Some(2), Some(3)]
        );
        assert!(dir.path().join("notes.txt").exists());
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    #[test]
    fn the_writer_appends_what_it_is_sent_and_close_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let log = FieldLog::start(ReportsOptions {
            dir: dir.path().join("reports"),
            retention_days: 30,
        })
        .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        for i in 0..50 {
            log.send(vec![FieldReport {
                at: now,
                node: "n".into(),
                event: "job_succeeded".into(),
                job_id: Some(i),
                attempt: Some(1),
                detail: serde_json::Value::Null,
            }]);
        }
        log.close();
        let got = read(&dir.path().join("reports"), 0).unwrap();
        assert_eq!(
            got.records.iter().map(|r| r.job_id).collect::<Vec<_>>(),
            (0..50).map(Some).collect::<Vec<_>>()
        );
    }
}
