//! The job handlers of ingestion: `scan` walks a source and enqueues `ingest` jobs for the new
//! and changed files (batches of up to [`BATCH_FILES`] files, a lone file as a job of its
//! own; unique keys of source, paths and hashes, so a re-run enqueues nothing twice), removes
//! the documents of vanished files and keeps the source's file index; `ingest` reads its
//! files, extracts their documents into the store in one transaction and records telemetry.
//! A file of a batch that fails (or needs the isolated extractor) is handed to an `ingest`
//! job of its own, which retries and quarantines it with its reason, alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fabric_core::config::Config;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::source::SourceType;
use fabric_core::{Clock, Job, NewJob, RealClock};
use fabric_engine::{Handler, Metrics, Registry};
use fabric_store::{Store, TelemetrySample};
use serde_json::{json, Value};

use crate::isolate::ExtractorPool;
use crate::{
    extract, read_capped, scan, ExtractError, FileIndex, FileMeta, Limits, NewDocument, ScanOptions,
};

/// Kind of the job that scans a source (the Console's trigger and the leader's schedules
/// enqueue it).
pub const SCAN: &str = fabric_engine::sources::SCAN_KIND;
/// Kind of the job that ingests one file.
pub const INGEST: &str = "ingest";

/// Most files in one batched ingest job.
pub const BATCH_FILES: usize = 256;
/// Most bytes (by the scan's sizes) in one batched ingest job.
pub const BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// Ingest jobs a scan submits per store call.
const SUBMIT_SLICE: usize = 64;

/// The setting under which a source's file index is kept.
pub(crate) fn index_key(source: &str) -> String {
    fabric_core::source::state_key(source, "index")
}

/// Adds the `scan` and `ingest` handlers, working on `store`; ingest jobs get the attempts
/// of their source's retry policy in `config`, parse HTML and PDF through `extractor`, and
/// count what they ingest in `metrics`.
pub fn register(
    registry: &mut Registry,
    store: Arc<dyn Store>,
    limits: Limits,
    config: Arc<Config>,
    metrics: Metrics,
    extractor: Arc<ExtractorPool>,
) {
    registry.register(
        SCAN,
        Scan {
            store: store.clone(),
            config,
        },
    );
    registry.register(
        INGEST,
        Ingest {
            store,
            limits,
            metrics,
            extractor,
        },
    );
}

pub(crate) fn field_str<'a>(payload: &'a Value, key: &str) -> Result<&'a str, String> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("payload.{key} must be a non-empty string"))
}

pub(crate) fn bad_input(m: String) -> Failure {
    Failure {
        permanent: true,
        ..Failure::of(ErrorKind::BadInput, m)
    }
}

pub(crate) fn store_failure(e: fabric_store::StoreError) -> Failure {
    Failure::of(ErrorKind::Connector, e.to_string())
}

/// Scans `{"source": NAME, "full": bool}`.
pub struct Scan {
    store: Arc<dyn Store>,
    config: Arc<Config>,
}

#[async_trait]
impl Handler for Scan {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        field_str(payload, "source")?;
        match payload.get("full") {
            None | Some(Value::Bool(_)) => Ok(()),
            Some(v) => Err(format!("payload.full must be true or false, got {v}")),
        }
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let name = field_str(&job.payload, "source").map_err(bad_input)?;
        let full = job.payload.get("full").and_then(Value::as_bool) == Some(true);
        let source = self.store.source(name).await.map_err(|e| match e {
            fabric_store::StoreError::NotFound { .. } => {
                bad_input(format!("source '{name}' is not defined"))
            }
            e => store_failure(e),
        })?;
        // Mail and git sources have their own scans (crate::items).
        if !matches!(
            source.def.source_type,
            SourceType::LocalFiles | SourceType::MarkdownVault
        ) {
            return crate::items::scan_source(&self.store, &self.config, job, &source, full).await;
        }
        let key = index_key(name);
        let index: FileIndex = match self
            .store
            .fleet()
            .setting(&key)
            .await
            .map_err(store_failure)?
        {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => FileIndex::new(),
        };
        let options = ScanOptions {
            include: source.def.include.clone(),
            exclude: source.def.exclude.clone(),
            full,
        };
        let root = source.def.path.clone();
        let (report, index_changed) = tokio::task::spawn_blocking(move || {
            let report = scan(Path::new(&root), &index, &options);
            let changed = report.as_ref().map(|r| r.index != index).unwrap_or(false);
            (report, changed)
        })
        .await
        .map_err(|e| Failure::msg(format!("scan task failed: {e}")))?;
        let now = RealClock.now_ms();
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                let outcome = e.outcome(&source.def.path);
                let _ = self
                    .store
                    .record_source_scan(name, now, &outcome, source.files)
                    .await;
                return Err(Failure::of(ErrorKind::Connector, e.to_string()));
            }
        };
        // One ingest job per changed file, and one per file the scan could not read (its
        // ingest attempt meets the same error and is quarantined with its reason, once).
        let policy = source.def.retry_policy.as_deref().unwrap_or(name);
        let attempts = attempts_of(&self.config, policy);
        let template = IngestTemplate {
            source: name,
            root: &source.def.path,
            shard: &job.shard,
            priority: source.def.priority,
            max_attempts: attempts,
            full_scan: full.then_some(job.id),
        };
        // A file the scan could not read gets a job of its own: its ingest attempt meets the
        // same error and is quarantined with its reason, once.
        let mut jobs = batches(&report.changed)
            .into_iter()
            .map(|files| template.batch(files))
            .chain(report.errors.iter().map(|e| template.unreadable(&e.path)));
        // Submitted a slice at a time, so a tree of 100,000 new files never holds all its
        // job payloads at once (a scan that fails half-way is retried: unique keys keep the
        // jobs already submitted from being enqueued twice).
        let mut enqueued = 0;
        loop {
            let slice: Vec<NewJob> = jobs.by_ref().take(SUBMIT_SLICE).collect();
            if slice.is_empty() {
                break;
            }
            enqueued += self
                .store
                .submit(slice, now)
                .await
                .map_err(store_failure)?
                .iter()
                .filter(|s| s.created)
                .count();
        }
        let docs = self.store.docs();
        for path in &report.vanished {
            docs.remove_document(name, path)
                .await
                .map_err(store_failure)?;
        }
        // An unchanged tree leaves the index as it was: nothing to write.
        if index_changed {
            let index = serde_json::to_string(&report.index)
                .map_err(|e| Failure::msg(format!("cannot keep the file index: {e}")))?;
            self.store
                .fleet()
                .put_setting(&key, &index)
                .await
                .map_err(store_failure)?;
        }
        let outcome = if report.errors.is_empty() {
            "ok".to_string()
        } else {
            format!("{} files unreadable", report.errors.len())
        };
        self.store
            .record_source_scan(
                name,
                RealClock.now_ms(),
                &outcome,
                report.index.len() as u64,
            )
            .await
            .map_err(store_failure)?;
        Ok(Some(json!({
            "changed": report.changed.len(),
            "vanished": report.vanished.len(),
            "unreadable": report.errors.len(),
            "enqueued": enqueued,
            "files_seen": report.files_seen,
            "unchanged": report.unchanged,
            "bytes_hashed": report.bytes_hashed,
        })))
    }
}

/// What every ingest job of one scan shares.
struct IngestTemplate<'a> {
    source: &'a str,
    root: &'a str,
    shard: &'a str,
    priority: fabric_core::Priority,
    max_attempts: u32,
    /// The `--full` scan the jobs come from: part of their unique keys, so a full re-read
    /// really reads again what earlier jobs already ingested.
    full_scan: Option<i64>,
}

impl IngestTemplate<'_> {
    fn job(&self, mut payload: Value, mut unique: String) -> NewJob {
        if let Some(scan) = self.full_scan {
            unique.push_str(&format!(":full{scan}"));
            payload["full_scan"] = json!(scan);
        }
        let mut j = NewJob::new(INGEST);
        j.payload = payload;
        j.source = Some(self.source.to_string());
        j.shard = self.shard.to_string();
        j.priority = self.priority;
        j.max_attempts = self.max_attempts;
        j.unique_key = Some(unique);
        j
    }

    /// The job of one file: `{"source", "root", "path", "hash", "size", "mtime_ms"}` (the
    /// root travels with the job: an ingest reads no source definition), unique per source,
    /// path and hash.
    fn single(&self, f: &BatchFile) -> NewJob {
        self.job(
            json!({"source": self.source, "root": self.root, "path": f.path, "hash": f.hash,
                   "size": f.size, "mtime_ms": f.mtime_ms}),
            format!("{INGEST}:{}:{}:{}", self.source, f.path, f.hash),
        )
    }

    /// The job of several files: `{"source", "root", "files": [{path, hash, size,
    /// mtime_ms}]}`, unique per source and the set of paths and hashes; one file makes a
    /// [`IngestTemplate::single`] job.
    fn batch(&self, files: Vec<BatchFile>) -> NewJob {
        if let [one] = files.as_slice() {
            return self.single(one);
        }
        let mut h = blake3::Hasher::new();
        for f in &files {
            h.update(f.path.as_bytes());
            h.update(b"\0");
            h.update(f.hash.as_bytes());
            h.update(b"\n");
        }
        let key = h.finalize().to_hex();
        self.job(
            json!({"source": self.source, "root": self.root, "files": files}),
            format!("{INGEST}:{}:batch:{}", self.source, &key[..32]),
        )
    }

    /// The job of a file the scan could not read.
    fn unreadable(&self, path: &str) -> NewJob {
        self.job(
            json!({"source": self.source, "root": self.root, "path": path}),
            format!("{INGEST}:{}:{path}:unreadable", self.source),
        )
    }
}

/// One file of an ingest job, as the scan saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BatchFile {
    path: String,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mtime_ms: i64,
}

impl BatchFile {
    fn meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            mtime_ms: self.mtime_ms,
            hash: self.hash.clone(),
        }
    }
}

/// Cuts the changed files into batches of at most [`BATCH_FILES`] files and [`BATCH_BYTES`]
/// bytes (a larger file alone).
fn batches(changed: &[crate::ChangedFile]) -> Vec<Vec<BatchFile>> {
    let mut out: Vec<Vec<BatchFile>> = Vec::new();
    let mut cur: Vec<BatchFile> = Vec::new();
    let mut bytes = 0u64;
    for f in changed {
        let size = f.entry.size;
        if !cur.is_empty() && (cur.len() >= BATCH_FILES || bytes + size > BATCH_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(BatchFile {
            path: f.path.clone(),
            hash: f.entry.hash.clone(),
            size,
            mtime_ms: f.entry.mtime_ns.div_euclid(1_000_000),
        });
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Ingests one file (`{"source", "root", "path", "hash", "size", "mtime_ms"}`) or a batch
/// (`{"source", "root", "files": [...]}`).
pub struct Ingest {
    store: Arc<dyn Store>,
    limits: Limits,
    metrics: Metrics,
    extractor: Arc<ExtractorPool>,
}

/// What extracting one file of a batch gave.
type Extracted = Result<(NewDocument, u64), ExtractError>;

impl Ingest {
    /// Keeps the telemetry samples of one ingest job, and counts them in the metrics.
    async fn record(&self, samples: Vec<TelemetrySample>) {
        let Some(first) = samples.first() else {
            return;
        };
        let longest = samples.iter().map(|s| s.duration_ms).max().unwrap_or(0);
        self.metrics
            .ingest_job(&first.source, longest as f64 / 1000.0);
        for s in &samples {
            self.metrics
                .ingested(&s.source, &s.outcome, s.files, s.bytes);
        }
        if let Err(e) = self.store.record_telemetry(samples).await {
            tracing::warn!(error = %e, "telemetry samples lost");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn sample(
        job: &Job,
        source: &str,
        files: u64,
        bytes: u64,
        started: Instant,
        outcome: &str,
        reason: Option<String>,
    ) -> TelemetrySample {
        TelemetrySample {
            at: RealClock.now_ms(),
            source: source.to_string(),
            job_id: Some(job.id),
            files,
            bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            outcome: outcome.to_string(),
            reason,
        }
    }

    /// Reads and extracts `files` under `root`: the text-like formats in process, off the
    /// async threads, all in one go; HTML and PDF then one by one through the extractor pool.
    async fn extract_all(
        &self,
        source: &str,
        root: &str,
        files: Vec<BatchFile>,
    ) -> Result<Vec<(BatchFile, Extracted)>, Failure> {
        let (dir, limits, src) = (root.to_string(), self.limits.clone(), source.to_string());
        let mut got: Vec<(BatchFile, Extracted)> = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|f| {
                    let got = read_capped(Path::new(&dir), Path::new(&f.path), &limits).and_then(
                        |bytes| {
                            let size = bytes.len() as u64;
                            extract(&src, Path::new(&f.path), &bytes, f.meta(), &limits)
                                .map(|d| (d, size))
                        },
                    );
                    (f, got)
                })
                .collect()
        })
        .await
        .map_err(|e| Failure::msg(format!("ingest task failed: {e}")))?;
        for (f, result) in got.iter_mut() {
            if let Err(ExtractError::Unsupported {
                doc_type: Some(t), ..
            }) = result
            {
                if crate::untrusted::parses(*t) {
                    *result = crate::isolate::extract_file(
                        &self.extractor,
                        source,
                        Path::new(root),
                        Path::new(&f.path),
                        f.meta(),
                        &self.limits,
                    )
                    .await;
                }
            }
        }
        Ok(got)
    }

    async fn run_single(
        &self,
        job: &Job,
        name: &str,
        root: &str,
        started: Instant,
    ) -> Result<Option<Value>, Failure> {
        // A single job's payload carries the file's fields at its top level.
        field_str(&job.payload, "path").map_err(bad_input)?;
        let file: BatchFile = serde_json::from_value(job.payload.clone())
            .map_err(|e| bad_input(format!("payload: {e}")))?;
        // Handed on by a batch that met a permanent failure (see `run_batch`).
        let known: Option<ExtractError> = job
            .payload
            .get("error")
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        let parsed = match known {
            Some(e) => Err(e),
            None => {
                let mut got = self.extract_all(name, root, vec![file]).await?;
                got.pop()
                    .ok_or_else(|| Failure::msg("no file extracted"))?
                    .1
            }
        };
        match parsed {
            Ok((doc, size)) => {
                let chunks = doc.chunks.len();
                let put = self
                    .store
                    .docs()
                    .put_document(doc, RealClock.now_ms())
                    .await
                    .map_err(store_failure)?;
                self.record(vec![Self::sample(job, name, 1, size, started, "ok", None)])
                    .await;
                Ok(Some(
                    json!({"doc_id": put.id, "changed": put.changed, "chunks": chunks}),
                ))
            }
            Err(ExtractError::Unsupported { what, .. }) => {
                // Binaries of no known format.
                self.record(vec![Self::sample(
                    job,
                    name,
                    1,
                    0,
                    started,
                    "skipped",
                    Some(what.clone()),
                )])
                .await;
                Ok(Some(json!({"skipped": what})))
            }
            Err(e) => {
                let failure = e.failure();
                let outcome = outcome_of(job, &failure);
                self.record(vec![Self::sample(
                    job,
                    name,
                    1,
                    0,
                    started,
                    outcome,
                    Some(e.reason().to_string()),
                )])
                .await;
                Err(failure)
            }
        }
    }

    /// A batch: the documents extracted are stored in one transaction; a file that failed or
    /// needs the isolated extractor goes to a job of its own (see the module's doc).
    async fn run_batch(
        &self,
        job: &Job,
        name: &str,
        root: &str,
        files: Vec<BatchFile>,
        started: Instant,
    ) -> Result<Option<Value>, Failure> {
        let total = files.len();
        let got = self.extract_all(name, root, files).await?;
        let mut docs = Vec::new();
        let mut bytes = 0u64;
        let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
        let mut handed_on = Vec::new();
        for (file, parsed) in got {
            match parsed {
                Ok((doc, size)) => {
                    bytes += size;
                    docs.push(doc);
                }
                Err(ExtractError::Unsupported {
                    doc_type: None,
                    what,
                }) => *skipped.entry(what).or_default() += 1,
                Err(e) => handed_on.push((file, e)),
            }
        }
        let stored = docs.len();
        let changed = self
            .store
            .docs()
            .put_documents(docs, RealClock.now_ms())
            .await
            .map_err(store_failure)?
            .iter()
            .filter(|p| p.changed)
            .count();
        let deferred = handed_on.len();
        if !handed_on.is_empty() {
            let template = IngestTemplate {
                source: name,
                root,
                shard: &job.shard,
                priority: job.priority,
                max_attempts: job.max_attempts,
                full_scan: job.payload.get("full_scan").and_then(Value::as_i64),
            };
            let jobs = handed_on
                .iter()
                .map(|(f, e)| {
                    let mut j = template.single(f);
                    // A permanent failure is not worth meeting again (an extractor that timed
                    // out would take its full timeout twice): the job fails with it at once.
                    if e.failure().permanent {
                        j.payload["error"] = serde_json::to_value(e).unwrap_or(Value::Null);
                    }
                    j
                })
                .collect();
            self.store
                .submit(jobs, RealClock.now_ms())
                .await
                .map_err(store_failure)?;
        }
        let mut samples = Vec::new();
        if stored > 0 {
            samples.push(Self::sample(
                job,
                name,
                stored as u64,
                bytes,
                started,
                "ok",
                None,
            ));
        }
        for (what, n) in skipped.iter() {
            samples.push(Self::sample(
                job,
                name,
                *n,
                0,
                started,
                "skipped",
                Some(what.clone()),
            ));
        }
        self.record(samples).await;
        Ok(Some(json!({
            "files": total,
            "stored": stored,
            "changed": changed,
            "skipped": skipped.values().sum::<u64>(),
            "handed_on": deferred,
        })))
    }
}

#[async_trait]
impl Handler for Ingest {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        field_str(payload, "source")?;
        field_str(payload, "root")?;
        match payload.get("files") {
            None => {
                field_str(payload, "path")?;
            }
            Some(files) => {
                let files: Vec<BatchFile> = serde_json::from_value(files.clone())
                    .map_err(|e| format!("payload.files must be a list of files: {e}"))?;
                if files.is_empty() {
                    return Err("payload.files must not be empty".into());
                }
                if let Some(i) = files.iter().position(|f| f.path.is_empty()) {
                    return Err(format!("payload.files[{i}].path must not be empty"));
                }
            }
        }
        Ok(())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let started = Instant::now();
        let name = field_str(&job.payload, "source").map_err(bad_input)?;
        let root = field_str(&job.payload, "root").map_err(bad_input)?;
        // A message of a maildir or mbox, a git blob or commits (crate::items).
        if job.payload.get("item").is_some() {
            return match crate::items::ingest(
                &self.store,
                &self.extractor,
                &self.limits,
                &job.payload,
            )
            .await
            {
                Ok((result, bytes)) => {
                    let s = Self::sample(job, name, 1, bytes, started, "ok", None);
                    self.record(vec![s]).await;
                    Ok(Some(result))
                }
                Err(f) => {
                    let outcome = outcome_of(job, &f);
                    let reason = Some(f.reason().to_string());
                    let s = Self::sample(job, name, 1, 0, started, outcome, reason);
                    self.record(vec![s]).await;
                    Err(f)
                }
            };
        }
        match job.payload.get("files") {
            None => self.run_single(job, name, root, started).await,
            Some(files) => {
                let files: Vec<BatchFile> = serde_json::from_value(files.clone())
                    .map_err(|e| bad_input(format!("payload.files: {e}")))?;
                self.run_batch(job, name, root, files, started).await
            }
        }
    }
}

/// The telemetry outcome of an attempt that failed with `f`: `quarantined` when the engine
/// will quarantine the job for it (a permanent failure, such as a parse error or a denied
/// read, or its last attempt), else `failed` (it will be retried).
fn outcome_of(job: &Job, f: &Failure) -> &'static str {
    if f.failure_type() == fabric_core::retry::FailureType::Permanent
        || job.attempt >= job.max_attempts
    {
        "quarantined"
    } else {
        "failed"
    }
}

/// `max_attempts` of the ingest jobs of a source whose retry policy is `policy` (its
/// `--retry-policy`, else its name): that policy of `retry_policies`, else the preset of that
/// name, else the policy of the `ingest` kind or `retry`.
pub(crate) fn attempts_of(config: &fabric_core::config::Config, policy: &str) -> u32 {
    config
        .named_policy(policy)
        .map(|p| p.max_attempts)
        .unwrap_or_else(|| config.retry_policy_of(Some(policy), INGEST).max_attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source's `--retry-policy` names a policy of `retry_policies` or a preset: `mail`
    /// gives its preset's attempts without a `retry_policies.mail`.
    #[test]
    fn a_source_policy_may_name_a_preset() {
        let mut c = fabric_core::config::Config::default();
        let mail = fabric_core::retry::RetryPolicy::mail().max_attempts;
        assert_ne!(mail, c.retry.max_attempts);
        assert_eq!(attempts_of(&c, "mail"), mail);
        assert_eq!(attempts_of(&c, "notes"), c.retry.max_attempts);
        let mut own = fabric_core::retry::RetryPolicy::mail();
        own.max_attempts = 9;
        c.retry_policies.insert("mail".into(), own);
        assert_eq!(attempts_of(&c, "mail"), 9);
    }
    use crate::{ChangedFile, IndexEntry};

    fn changed(n: usize, size: u64) -> Vec<ChangedFile> {
        (0..n)
            .map(|i| ChangedFile {
                path: format!("f{i:04}.md"),
                entry: IndexEntry {
                    size,
                    mtime_ns: 1_000_000 * i as i64,
                    inode: i as u64,
                    hash: format!("h{i}"),
                },
                new: true,
            })
            .collect()
    }

    #[test]
    fn batches_hold_at_most_their_files_and_bytes_and_keep_every_file_once() {
        let files = changed(600, 10);
        let b = batches(&files);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [BATCH_FILES, BATCH_FILES, 600 - 2 * BATCH_FILES]
        );
        let paths: Vec<&str> = b.iter().flatten().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>()
        );
        assert_eq!(b[0][3].mtime_ms, 3);
        // By bytes: three files of 6 MiB make two batches; one over the cap goes alone.
        let b = batches(&changed(3, 6 << 20));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        let b = batches(&changed(2, BATCH_BYTES + 1));
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn a_batch_key_names_its_files_and_a_lone_file_gets_its_own_job() {
        let t = IngestTemplate {
            source: "notes",
            root: "/r",
            shard: "default",
            priority: fabric_core::Priority::NORMAL,
            max_attempts: 4,
            full_scan: None,
        };
        let two = batches(&changed(2, 1)).remove(0);
        let a = t.batch(two.clone());
        assert_eq!(a.payload["files"].as_array().map(Vec::len), Some(2));
        assert_eq!(a.max_attempts, 4);
        assert_eq!(a.unique_key, t.batch(two.clone()).unique_key);
        let mut other = two;
        other[1].hash = "changed".into();
        assert_ne!(a.unique_key, t.batch(other).unique_key);
        let one = t.batch(batches(&changed(1, 1)).remove(0));
        assert_eq!(one.payload["path"], "f0000.md");
        assert_eq!(one.unique_key.as_deref(), Some("ingest:notes:f0000.md:h0"));
        // A full scan's jobs are its own.
        let full = IngestTemplate {
            full_scan: Some(77),
            ..t
        };
        let again = full.batch(batches(&changed(1, 1)).remove(0));
        assert_eq!(
            again.unique_key.as_deref(),
            Some("ingest:notes:f0000.md:h0:full77")
        );
        assert_eq!(again.payload["full_scan"], 77);
    }
}
