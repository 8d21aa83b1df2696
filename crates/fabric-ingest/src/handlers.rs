//! The job handlers of ingestion: `scan` walks a source and enqueues one `ingest` job per new
//! or changed file (a unique key of source, path and hash, so a re-run enqueues nothing
//! twice), removes the documents of vanished files and keeps the source's file index;
//! `ingest` reads one file, extracts its document into the store and records a telemetry
//! sample.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use fabric_core::config::Config;
use fabric_core::quarantine::{ErrorKind, Failure};
use fabric_core::{Clock, Job, NewJob, RealClock};
use fabric_engine::{Handler, Registry};
use fabric_store::{Store, TelemetrySample};
use serde_json::{json, Value};

use crate::isolate::ExtractorPool;
use crate::{scan, ExtractError, FileIndex, FileMeta, Limits, ScanOptions};

/// Kind of the job that scans a source (the Console's trigger and the leader's schedules
/// enqueue it).
pub const SCAN: &str = fabric_engine::sources::SCAN_KIND;
/// Kind of the job that ingests one file.
pub const INGEST: &str = "ingest";

/// The setting under which a source's file index is kept.
fn index_key(source: &str) -> String {
    format!("source_index:{source}")
}

/// Adds the `scan` and `ingest` handlers, working on `store`; ingest jobs get the attempts
/// of their source's retry policy in `config`, and parse HTML and PDF through `extractor`.
pub fn register(
    registry: &mut Registry,
    store: Arc<dyn Store>,
    limits: Limits,
    config: Arc<Config>,
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
            extractor,
        },
    );
}

fn field_str<'a>(payload: &'a Value, key: &str) -> Result<&'a str, String> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("payload.{key} must be a non-empty string"))
}

fn bad_input(m: String) -> Failure {
    Failure {
        permanent: true,
        ..Failure::of(ErrorKind::BadInput, m)
    }
}

fn store_failure(e: fabric_store::StoreError) -> Failure {
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
        let key = index_key(name);
        let index: FileIndex = match self.store.setting(&key).await.map_err(store_failure)? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => FileIndex::new(),
        };
        let options = ScanOptions {
            include: source.def.include.clone(),
            exclude: source.def.exclude.clone(),
            full,
        };
        let root = source.def.path.clone();
        let report = tokio::task::spawn_blocking(move || scan(Path::new(&root), &index, &options))
            .await
            .map_err(|e| Failure::msg(format!("scan task failed: {e}")))?;
        let now = RealClock.now_ms();
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                let outcome = format!("{}: {e}", e.reason());
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
        let attempts = self
            .config
            .retry_policy_of(Some(policy), INGEST)
            .max_attempts;
        let mut jobs = Vec::new();
        let mut ingest = |path: &str, unique: String, extra: Value| {
            let mut j = NewJob::new(INGEST);
            // The root travels with the job: an ingest reads no source definition.
            j.payload = json!({"source": name, "root": source.def.path, "path": path});
            if let (Value::Object(p), Value::Object(e)) = (&mut j.payload, extra) {
                p.extend(e);
            }
            j.source = Some(name.to_string());
            j.shard = job.shard.clone();
            j.priority = source.def.priority;
            j.max_attempts = attempts;
            j.unique_key = Some(unique);
            jobs.push(j);
        };
        for f in &report.changed {
            ingest(
                &f.path,
                format!("{INGEST}:{name}:{}:{}", f.path, f.entry.hash),
                json!({"hash": f.entry.hash, "size": f.entry.size,
                       "mtime_ms": f.entry.mtime_ns.div_euclid(1_000_000)}),
            );
        }
        for e in &report.errors {
            ingest(
                &e.path,
                format!("{INGEST}:{name}:{}:unreadable", e.path),
                json!({}),
            );
        }
        let enqueued = if jobs.is_empty() {
            0
        } else {
            self.store
                .submit(jobs, now)
                .await
                .map_err(store_failure)?
                .iter()
                .filter(|s| s.created)
                .count()
        };
        let docs = self.store.docs();
        for path in &report.vanished {
            docs.remove_document(name, path)
                .await
                .map_err(store_failure)?;
        }
        let index = serde_json::to_string(&report.index)
            .map_err(|e| Failure::msg(format!("cannot keep the file index: {e}")))?;
        self.store
            .put_setting(&key, &index)
            .await
            .map_err(store_failure)?;
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

/// Ingests `{"source": NAME, "root": DIR, "path": REL, "hash", "size", "mtime_ms"}`.
pub struct Ingest {
    store: Arc<dyn Store>,
    limits: Limits,
    extractor: Arc<ExtractorPool>,
}

impl Ingest {
    async fn sample(
        &self,
        job: &Job,
        source: &str,
        bytes: u64,
        started: Instant,
        outcome: &str,
        reason: Option<String>,
    ) {
        let sample = TelemetrySample {
            at: RealClock.now_ms(),
            source: source.to_string(),
            job_id: Some(job.id),
            files: 1,
            bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            outcome: outcome.to_string(),
            reason,
        };
        if let Err(e) = self.store.record_telemetry(vec![sample]).await {
            tracing::warn!(error = %e, "telemetry sample lost");
        }
    }
}

#[async_trait]
impl Handler for Ingest {
    fn validate(&self, payload: &Value) -> Result<(), String> {
        field_str(payload, "source")?;
        field_str(payload, "root")?;
        field_str(payload, "path")?;
        Ok(())
    }

    async fn run(&self, job: &Job) -> Result<Option<Value>, Failure> {
        let started = Instant::now();
        let name = field_str(&job.payload, "source").map_err(bad_input)?;
        let rel = field_str(&job.payload, "path")
            .map_err(bad_input)?
            .to_string();
        let root = field_str(&job.payload, "root").map_err(bad_input)?;
        let meta = FileMeta {
            size: job.payload.get("size").and_then(Value::as_u64).unwrap_or(0),
            mtime_ms: job
                .payload
                .get("mtime_ms")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            hash: job
                .payload
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        let parsed = crate::isolate::extract_file(
            &self.extractor,
            name,
            Path::new(root),
            Path::new(&rel),
            meta,
            &self.limits,
        )
        .await;
        match parsed {
            Ok((doc, size)) => {
                let chunks = doc.chunks.len();
                let put = self
                    .store
                    .docs()
                    .put_document(doc, RealClock.now_ms())
                    .await
                    .map_err(store_failure)?;
                self.sample(job, name, size, started, "ok", None).await;
                Ok(Some(
                    json!({"doc_id": put.id, "changed": put.changed, "chunks": chunks}),
                ))
            }
            Err(ExtractError::Unsupported { what, .. }) => {
                // Binaries of no known format, and mail (no extractor for it yet).
                self.sample(job, name, 0, started, "skipped", Some(what.clone()))
                    .await;
                Ok(Some(json!({"skipped": what})))
            }
            Err(e) => {
                let failure = e.failure();
                let outcome = if failure.permanent {
                    "quarantined"
                } else {
                    "failed"
                };
                self.sample(job, name, 0, started, outcome, Some(e.reason().to_string()))
                    .await;
                Err(failure)
            }
        }
    }
}
