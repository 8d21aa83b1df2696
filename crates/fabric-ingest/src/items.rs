//! The `scan` and `ingest` jobs of the maildir, mbox and git sources, called by the handlers
//! of [`crate::handlers`] for those types: they keep each source's runtime state in the
//! store's settings and put and remove its documents.
//!
//! - maildir: the file index under `source:NAME:index` (as for file trees), keyed by the
//!   files' paths; documents keyed by the message's stable name ([`crate::mailbox`]); an
//!   ingest job is `{"item": "maildir", "path": FILE, "doc_path": DOC}`.
//! - mbox: the file index likewise; one ingest job per changed mbox file
//!   (`{"item": "mbox", "path": FILE}`), which puts every message and removes the documents
//!   of messages gone from the file, listed under `source:NAME:mbox:FILE`.
//! - git: the last seen commit and file count under `source:NAME:git_head`; ingest jobs
//!   `{"item": "git_file", "path", "blob"}` per added or changed file and one
//!   `{"item": "git_commits", "head", "since"}` for the new commits.
//!
//! With `full`, the ingest jobs' unique keys carry the scan job's id, so a re-read happens
//! even when an earlier job had the same file and content.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fabric_core::config::Config;
use fabric_core::doc::NewDocument;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::source::state_key;
use fabric_core::source::SourceType;
use fabric_core::{Clock, Job, NewJob, RealClock};
use fabric_store::{SourceRecord, Store, StoreError};
use serde_json::{json, Value};

use crate::git::{commit_documents, read_blob, scan_git, GitState};
use crate::handlers::{bad_input, field_str, index_key, store_failure};
use crate::isolate::{ExtractRequest, ExtractorPool};
use crate::mailbox::{
    find_maildir_message, mbox_base, read_mbox, scan_maildir, scan_mbox, RawMessage,
};
use crate::{extract, read_capped, ExtractError, FileIndex, FileMeta, Limits, ScanOptions};
use fabric_core::doc::DocType;

/// Documents put per store call batch while streaming an mbox file or a history.
const CHANNEL: usize = 256;

fn task_failure(e: tokio::task::JoinError) -> Failure {
    Failure::msg(format!("ingest task failed: {e}"))
}

fn git_key(source: &str) -> String {
    state_key(source, "git_head")
}

fn mbox_key(source: &str, file: &str) -> String {
    state_key(source, &format!("mbox:{file}"))
}

/// A unique key of at most 256 bytes (long paths are hashed).
fn unique_key(parts: &[&str]) -> String {
    let key = parts.join(":");
    if key.len() <= 200 {
        return key;
    }
    let mut h = blake3::Hasher::new();
    h.update(key.as_bytes());
    format!(
        "{}:{}",
        parts.first().copied().unwrap_or_default(),
        h.finalize().to_hex()
    )
}

/// Builds the ingest jobs of one scan.
struct Jobs<'a> {
    scan: &'a Job,
    source: &'a SourceRecord,
    attempts: u32,
    /// `:full:<scan id>`, or empty.
    full: String,
    jobs: Vec<NewJob>,
}

impl Jobs<'_> {
    fn add(&mut self, root: &str, path: &str, unique: &str, extra: Value) {
        let name = &self.source.def.name;
        let mut j = NewJob::new(crate::handlers::INGEST);
        j.payload = json!({"source": name, "root": root, "path": path});
        if let (Value::Object(p), Value::Object(e)) = (&mut j.payload, extra) {
            p.extend(e);
        }
        j.source = Some(name.clone());
        j.shard = self.scan.shard.clone();
        j.priority = self.source.def.priority;
        j.max_attempts = self.attempts;
        j.unique_key = Some(unique_key(&[
            crate::handlers::INGEST,
            name,
            path,
            unique,
            &self.full,
        ]));
        self.jobs.push(j);
    }
}

/// Scans a maildir, mbox or git source (the `scan` job of those types).
pub(crate) async fn scan_source(
    store: &Arc<dyn Store>,
    config: &Config,
    job: &Job,
    source: &SourceRecord,
    full: bool,
) -> Result<Option<Value>, Failure> {
    let name = source.def.name.as_str();
    let policy = source.def.retry_policy.as_deref().unwrap_or(name);
    let mut jobs = Jobs {
        scan: job,
        source,
        attempts: crate::handlers::attempts_of(config, policy),
        full: if full {
            format!("full:{}", job.id)
        } else {
            String::new()
        },
        jobs: Vec::new(),
    };
    let opts = ScanOptions {
        include: source.def.include.clone(),
        exclude: source.def.exclude.clone(),
        full,
    };
    let root = PathBuf::from(&source.def.path);
    let scanned = match source.def.source_type {
        SourceType::Git => scan_git_source(store, &root, &opts, &mut jobs).await,
        t => scan_mail_source(store, t, &root, &opts, &mut jobs).await,
    };
    let now = RealClock.now_ms();
    let (mut result, files, removed, unreadable) = match scanned {
        Ok(r) => r,
        Err(ScanFailed::Root(e)) => {
            let outcome = e.outcome(&source.def.path);
            let _ = store
                .record_source_scan(name, now, &outcome, source.files)
                .await;
            return Err(Failure::of(ErrorKind::Connector, e.to_string()));
        }
        Err(ScanFailed::Store(f)) => return Err(f),
    };
    let enqueued = if jobs.jobs.is_empty() {
        0
    } else {
        store
            .submit(jobs.jobs, now)
            .await
            .map_err(store_failure)?
            .iter()
            .filter(|s| s.created)
            .count()
    };
    let docs = store.docs();
    for path in &removed {
        docs.remove_document(name, path)
            .await
            .map_err(store_failure)?;
    }
    let outcome = if unreadable == 0 {
        "ok".to_string()
    } else {
        format!("{unreadable} files unreadable")
    };
    store
        .record_source_scan(name, RealClock.now_ms(), &outcome, files)
        .await
        .map_err(store_failure)?;
    if let Value::Object(m) = &mut result {
        m.insert("enqueued".into(), Value::from(enqueued));
        m.insert("documents_removed".into(), Value::from(removed.len()));
    }
    Ok(Some(result))
}

enum ScanFailed {
    Root(crate::IngestError),
    Store(Failure),
}

impl From<StoreError> for ScanFailed {
    fn from(e: StoreError) -> Self {
        ScanFailed::Store(store_failure(e))
    }
}

/// The scan's result, the files it saw, the documents to remove and the unreadable files.
type Scanned = (Value, u64, Vec<String>, usize);

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ScanFailed> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ScanFailed::Store(task_failure(e)))
}

async fn scan_mail_source(
    store: &Arc<dyn Store>,
    kind: SourceType,
    root: &Path,
    opts: &ScanOptions,
    jobs: &mut Jobs<'_>,
) -> Result<Scanned, ScanFailed> {
    let name = jobs.source.def.name.clone();
    let key = index_key(&name);
    let index: FileIndex = match store.fleet().setting(&key).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or_default(),
        None => FileIndex::new(),
    };
    let (r, o) = (root.to_path_buf(), opts.clone());
    let mut removed = Vec::new();
    let mut renamed = 0;
    let report = if kind == SourceType::Mbox {
        let report = blocking(move || scan_mbox(&r, &index, &o))
            .await?
            .map_err(ScanFailed::Root)?;
        let base = mbox_base(root).display().to_string();
        for f in &report.changed {
            jobs.add(
                &base,
                &f.path,
                &f.entry.hash,
                json!({"item": "mbox", "size": f.entry.size}),
            );
        }
        for e in &report.errors {
            jobs.add(&base, &e.path, "unreadable", json!({"item": "mbox"}));
        }
        // The documents of a vanished mbox file are the ones its last ingest listed.
        for path in &report.vanished {
            let k = mbox_key(&name, path);
            if let Some(list) = store.fleet().setting(&k).await? {
                removed.extend(serde_json::from_str::<Vec<String>>(&list).unwrap_or_default());
                store.fleet().put_setting(&k, "[]").await?;
            }
        }
        report
    } else {
        let scan = blocking(move || scan_maildir(&r, &index, &o))
            .await?
            .map_err(ScanFailed::Root)?;
        let base = root.display().to_string();
        for (f, doc) in &scan.ingest {
            jobs.add(
                &base,
                &f.path,
                &f.entry.hash,
                json!({"item": "maildir", "doc_path": doc, "hash": f.entry.hash,
                       "size": f.entry.size, "mtime_ms": f.entry.mtime_ns.div_euclid(1_000_000)}),
            );
        }
        for e in &scan.report.errors {
            let doc = crate::mailbox::maildir_doc_path(&e.path);
            jobs.add(
                &base,
                &e.path,
                "unreadable",
                json!({"item": "maildir", "doc_path": doc}),
            );
        }
        removed = scan.remove;
        renamed = scan.renamed;
        scan.report
    };
    let index = serde_json::to_string(&report.index)
        .map_err(|e| ScanFailed::Store(Failure::msg(format!("cannot keep the file index: {e}"))))?;
    store.fleet().put_setting(&key, &index).await?;
    let result = json!({
        "changed": report.changed.len() as u64 - renamed,
        "renamed": renamed,
        "vanished": report.vanished.len(),
        "unreadable": report.errors.len(),
        "files_seen": report.files_seen,
        "unchanged": report.unchanged,
        "bytes_hashed": report.bytes_hashed,
    });
    Ok((
        result,
        report.index.len() as u64,
        removed,
        report.errors.len(),
    ))
}

async fn scan_git_source(
    store: &Arc<dyn Store>,
    root: &Path,
    opts: &ScanOptions,
    jobs: &mut Jobs<'_>,
) -> Result<Scanned, ScanFailed> {
    let name = jobs.source.def.name.clone();
    let key = git_key(&name);
    let last: Option<GitState> = store
        .fleet()
        .setting(&key)
        .await?
        .and_then(|t| serde_json::from_str(&t).ok());
    let (r, o, l) = (root.to_path_buf(), opts.clone(), last.clone());
    let scan = blocking(move || scan_git(&r, l.as_ref(), &o))
        .await?
        .map_err(ScanFailed::Root)?;
    let base = root.display().to_string();
    for f in &scan.changed {
        jobs.add(
            &base,
            &f.path,
            &f.blob,
            json!({"item": "git_file", "blob": f.blob, "mtime_ms": scan.head_time_ms}),
        );
    }
    if let (true, Some(state)) = (scan.new_commits, &scan.state) {
        let since = last
            .as_ref()
            .filter(|_| !opts.full)
            .map(|l| l.commit.clone());
        let path = format!("commit/{}", state.commit);
        jobs.add(
            &base,
            &path,
            since.as_deref().unwrap_or("all"),
            json!({"item": "git_commits", "head": state.commit, "since": since}),
        );
    }
    let files = scan.state.as_ref().map_or(0, |s| s.files);
    // Nothing new: nothing written (not even the same state again).
    if scan.new_commits {
        if let Some(state) = &scan.state {
            let text = serde_json::to_string(state).map_err(|e| {
                ScanFailed::Store(Failure::msg(format!("cannot keep the git state: {e}")))
            })?;
            store.fleet().put_setting(&key, &text).await?;
        }
    }
    let result = json!({
        "changed": scan.changed.len(),
        "vanished": scan.deleted.len(),
        "unreadable": 0,
        "files_seen": files,
        "head": scan.state.as_ref().map(|s| s.commit.clone()),
        "new_commits": scan.new_commits,
        "history_rewritten": scan.lost_last,
        "bytes_hashed": 0,
    });
    Ok((result, files, scan.deleted, 0))
}

/// The text field `key` of the payload.
fn text<'a>(payload: &'a Value, key: &str) -> Result<&'a str, Failure> {
    field_str(payload, key).map_err(bad_input)
}

fn extract_failure(e: ExtractError) -> Failure {
    e.failure()
}

/// Ingests one maildir, mbox or git item (the payload's `item`); returns the job's result
/// and the bytes read.
pub(crate) async fn ingest(
    store: &Arc<dyn Store>,
    pool: &Arc<ExtractorPool>,
    limits: &Limits,
    payload: &Value,
) -> Result<(Value, u64), Failure> {
    let name = text(payload, "source")?.to_string();
    let root = PathBuf::from(text(payload, "root")?);
    let path = text(payload, "path")?.to_string();
    let limits = limits.clone();
    match text(payload, "item")? {
        "maildir" => {
            let doc_path = text(payload, "doc_path")?.to_string();
            let meta = FileMeta {
                size: payload.get("size").and_then(Value::as_u64).unwrap_or(0),
                mtime_ms: payload.get("mtime_ms").and_then(Value::as_i64).unwrap_or(0),
                hash: String::new(),
            };
            let lim = limits.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                match read_capped(&root, Path::new(&path), &lim) {
                    // Moved by a flag change since the scan: read it where it is now.
                    Err(ExtractError::Io { .. }) if !root.join(&path).exists() => {
                        let now = find_maildir_message(&root, &path).ok_or_else(|| {
                            ExtractError::io(&std::io::Error::from(std::io::ErrorKind::NotFound))
                        })?;
                        read_capped(&root, Path::new(&now), &lim)
                    }
                    r => r,
                }
            })
            .await
            .map_err(task_failure)?
            .map_err(extract_failure)?;
            let size = bytes.len() as u64;
            // The message is parsed in an extractor child (crate::isolate).
            let doc = pool
                .extract(&ExtractRequest {
                    doc_type: DocType::Email,
                    source: name.clone(),
                    path: doc_path,
                    meta,
                    limits,
                    bytes,
                })
                .await
                .map_err(extract_failure)?;
            put_one(store, doc, size).await
        }
        "git_file" => {
            let blob = text(payload, "blob")?.to_string();
            let meta = FileMeta {
                size: 0,
                mtime_ms: payload.get("mtime_ms").and_then(Value::as_i64).unwrap_or(0),
                hash: String::new(),
            };
            let b = blob.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                let bytes = read_blob(&root, &b, &limits)?;
                extract(&name, Path::new(&path), &bytes, meta, &limits).map(|d| (d, bytes.len()))
            })
            .await
            .map_err(task_failure)?;
            match parsed {
                Ok((mut doc, size)) => {
                    doc.meta.insert("blob".into(), Value::from(blob));
                    put_one(store, doc, size as u64).await
                }
                // HTML and PDF belong to the isolated extractor (not built yet).
                Err(ExtractError::Unsupported { what, .. }) => Ok((json!({"skipped": what}), 0)),
                Err(e) => Err(e.failure()),
            }
        }
        "git_commits" => {
            let head = text(payload, "head")?.to_string();
            let since = payload
                .get("since")
                .and_then(Value::as_str)
                .map(str::to_string);
            let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
            let walk = tokio::task::spawn_blocking(move || {
                commit_documents(&root, &name, &head, since.as_deref(), &limits, |d| {
                    let _ = tx.blocking_send(Ok(d));
                })
            });
            let (put, changed, _) = drain(store, rx).await?;
            let n = walk.await.map_err(task_failure)?.map_err(extract_failure)?;
            Ok((json!({"commits": n, "put": put, "changed": changed}), 0))
        }
        "mbox" => ingest_mbox(store, pool, &name, root, path, limits).await,
        other => Err(Failure {
            permanent: true,
            ..Failure::of(
                ErrorKind::BadInput,
                format!("payload.item '{other}' is not maildir, mbox, git_file or git_commits"),
            )
        }),
    }
}

async fn put_one(
    store: &Arc<dyn Store>,
    doc: NewDocument,
    bytes: u64,
) -> Result<(Value, u64), Failure> {
    let chunks = doc.chunks.len();
    let put = store
        .docs()
        .put_document(doc, RealClock.now_ms())
        .await
        .map_err(store_failure)?;
    Ok((
        json!({"doc_id": put.id, "changed": put.changed, "chunks": chunks}),
        bytes,
    ))
}

type Item = Result<NewDocument, (String, ExtractError)>;

/// Puts the documents sent on `rx`; returns how many were put, how many of them changed,
/// and the messages that did not parse (path and reason).
async fn drain(
    store: &Arc<dyn Store>,
    mut rx: tokio::sync::mpsc::Receiver<Item>,
) -> Result<(u64, u64, Vec<(String, String)>), Failure> {
    let docs = store.docs();
    let (mut put, mut changed, mut failed) = (0, 0, Vec::new());
    let mut batch = Vec::new();
    loop {
        let item = rx.recv().await;
        let last = item.is_none();
        match item {
            Some(Ok(doc)) => batch.push(doc),
            Some(Err((path, e))) => failed.push((path, e.to_string())),
            None => {}
        }
        // Documents are stored in batches, each in one transaction.
        if batch.len() >= DRAIN_BATCH || (last && !batch.is_empty()) {
            let n = batch.len() as u64;
            let outcomes = docs
                .put_documents(std::mem::take(&mut batch), RealClock.now_ms())
                .await
                .map_err(store_failure)?;
            put += n;
            changed += outcomes.iter().filter(|o| o.changed).count() as u64;
        }
        if last {
            return Ok((put, changed, failed));
        }
    }
}

/// Documents stored per transaction by [`drain`].
const DRAIN_BATCH: usize = 256;

async fn ingest_mbox(
    store: &Arc<dyn Store>,
    pool: &Arc<ExtractorPool>,
    name: &str,
    base: PathBuf,
    file: String,
    limits: Limits,
) -> Result<(Value, u64), Failure> {
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::channel::<RawMessage>(CHANNEL);
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (f, p) = (file.clone(), paths.clone());
    let read = tokio::task::spawn_blocking(move || {
        read_mbox(&base, &f, |m| {
            if let Ok(mut p) = p.lock() {
                p.push(m.path.clone());
            }
            let _ = raw_tx.blocking_send(m);
        })
    });
    // Each message is parsed in an extractor child, as many at once as the pool has
    // children, in order; the documents go on to `drain`.
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(CHANNEL);
    let (src, pool2, workers) = (name.to_string(), pool.clone(), pool.config().workers);
    let parse = tokio::spawn(async move {
        use futures_util::StreamExt;
        let messages = futures_util::stream::poll_fn(move |cx| raw_rx.poll_recv(cx));
        let mut parsed = messages
            .map(|m: RawMessage| {
                let pool = pool2.clone();
                let req = ExtractRequest {
                    doc_type: DocType::Email,
                    source: src.clone(),
                    path: m.path,
                    meta: FileMeta {
                        size: m.bytes.len() as u64,
                        ..FileMeta::default()
                    },
                    limits: limits.clone(),
                    bytes: m.bytes,
                };
                async move {
                    let got = pool.extract(&req).await;
                    got.map_err(|e| (req.path, e))
                }
            })
            .buffered(workers);
        while let Some(item) = parsed.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let (put, changed, failed) = drain(store, rx).await?;
    parse.await.map_err(task_failure)?;
    let bytes = read.await.map_err(task_failure)?.map_err(extract_failure)?;
    let now: Vec<String> = paths.lock().map(|p| p.clone()).unwrap_or_default();
    // Messages gone from the file lose their documents.
    let key = mbox_key(name, &file);
    let before: Vec<String> = match store.fleet().setting(&key).await.map_err(store_failure)? {
        Some(t) => serde_json::from_str(&t).unwrap_or_default(),
        None => Vec::new(),
    };
    let keep: BTreeSet<&String> = now.iter().collect();
    let mut removed = 0;
    for path in before.iter().filter(|p| !keep.contains(p)) {
        if store
            .docs()
            .remove_document(name, path)
            .await
            .map_err(store_failure)?
        {
            removed += 1;
        }
    }
    let list = serde_json::to_string(&now).map_err(|e| Failure::msg(e.to_string()))?;
    store
        .fleet()
        .put_setting(&key, &list)
        .await
        .map_err(store_failure)?;
    let failed: Vec<Value> = failed
        .into_iter()
        .map(|(path, error)| json!({"path": path, "error": error}))
        .collect();
    Ok((
        json!({"messages": now.len(), "put": put, "changed": changed,
               "removed": removed, "unparsed": failed}),
        bytes,
    ))
}
