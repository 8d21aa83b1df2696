//! `fabric bench ingest`: the ingestion layer measured end to end on generated corpora, on a
//! fresh store, through the same engine, handlers and store a daemon runs: small notes
//! (files/s), mixed text-like files (MB/s), an unchanged re-scan of a large tree (seconds,
//! nothing written), and search latency on an index of a million chunks (p50/p99).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabric_core::config::Config;
use fabric_core::source::{SourceDef, SourceType};
use fabric_core::{Clock, JobState, NewJob, Priority, RealClock};
use fabric_engine::{Engine, EngineOptions, Metrics};
use fabric_store::Store;
use serde::Serialize;

use super::bench::Target;
use super::corpus::{self, Rng, Words};
use crate::cli::{BenchIngestArgs, Format, Global};
use crate::context::{runtime, Usage};
use crate::output::{pairs, print};

/// Distinct words of the generated text.
const VOCABULARY: usize = 50_000;
/// Synthetic documents stored per transaction when filling the index for the search run.
const FILL_BATCH: u64 = 200;
/// Chunks per synthetic document, and their size.
const FILL_CHUNKS: u32 = 10;
const FILL_CHUNK_BYTES: usize = 400;
/// Pages merged per compaction step.
const COMPACT_PAGES: u32 = 2_000;

/// One ingest run: a cold trigger of a source over a generated tree.
#[derive(Debug, Serialize)]
struct IngestRun {
    files: u64,
    bytes: u64,
    /// From the trigger to the last document committed.
    seconds: f64,
    files_per_second: f64,
    mb_per_second: f64,
    documents: u64,
    chunks: u64,
    quarantined: u64,
}

#[derive(Debug, Serialize)]
struct RescanRun {
    files: u64,
    /// The cold ingest of the tree before the re-scan.
    cold_seconds: f64,
    /// From the trigger of the unchanged re-scan to its end.
    seconds: f64,
    /// The scan job's own run time.
    scan_seconds: f64,
    changed: u64,
    ingest_jobs_enqueued: u64,
    documents_written: u64,
}

#[derive(Debug, Serialize)]
struct SearchRun {
    chunks: u64,
    queries: usize,
    /// Seconds to fill the index to `chunks` with synthetic documents.
    fill_seconds: f64,
    /// Seconds to compact the index after (what the maintenance leader does in the
    /// background, a step each fleet tick).
    compact_seconds: f64,
    /// One or two words drawn uniformly from the vocabulary: what a person looking for a topic
    /// types.
    typical: Latencies,
    /// The same, before compaction.
    typical_before_compaction: Latencies,
    /// One or two words drawn by frequency (Zipf's law): half of them among the hundred
    /// commonest words, each found in most chunks.
    common_words: Latencies,
}

#[derive(Debug, Serialize)]
struct Report {
    backend: &'static str,
    workers: usize,
    cpus: usize,
    notes: Option<IngestRun>,
    mixed: Option<IngestRun>,
    /// Messages (`files` counts messages).
    mail: Option<IngestRun>,
    pdf: Option<IngestRun>,
    rescan: Option<RescanRun>,
    search: Option<SearchRun>,
}

fn say(quiet: bool, msg: String) {
    if !quiet {
        eprintln!("bench ingest: {msg}");
    }
}

pub fn run(global: Global, args: BenchIngestArgs) -> anyhow::Result<ExitCode> {
    let format = global.format;
    if args.workers == 0 || args.workers > 1024 {
        return Err(Usage(format!(
            "--workers {} is out of range 1..1024",
            args.workers
        ))
        .into());
    }
    if args.queries == 0 {
        return Err(Usage("--queries must be at least 1".into()).into());
    }
    let quiet = format != Format::Table;
    let target = Target::new(&global, &args.backend)?;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let report = runtime()?.block_on(async {
        let mut target = target;
        let out = bench(&args, quiet, &mut target, dir.path()).await;
        target.cleanup().await;
        out
    })?;
    print(format, &report, || {
        let mut rows = vec![
            ("store", report.backend.to_string()),
            (
                "workers",
                format!("{} (on {} CPUs)", report.workers, report.cpus),
            ),
        ];
        for (name, r) in [
            ("notes", &report.notes),
            ("mixed", &report.mixed),
            ("mail", &report.mail),
            ("pdf", &report.pdf),
        ] {
            if let Some(r) = r {
                rows.push((
                    name,
                    format!(
                        "{} files, {:.1} MB in {:.2} s: {:.0} files/s, {:.1} MB/s \
                         ({} chunks, {} quarantined)",
                        r.files,
                        r.bytes as f64 / 1_048_576.0,
                        r.seconds,
                        r.files_per_second,
                        r.mb_per_second,
                        r.chunks,
                        r.quarantined
                    ),
                ));
            }
        }
        if let Some(r) = &report.rescan {
            rows.push((
                "rescan",
                format!(
                    "{} unchanged files re-scanned in {:.3} s (scan job {:.3} s), {} changed, \
                     {} ingest jobs, {} documents written",
                    r.files,
                    r.seconds,
                    r.scan_seconds,
                    r.changed,
                    r.ingest_jobs_enqueued,
                    r.documents_written
                ),
            ));
        }
        if let Some(r) = &report.search {
            for (name, l) in [
                ("search", &r.typical),
                ("search (common words)", &r.common_words),
            ] {
                rows.push((
                    name,
                    format!(
                        "{} queries on {} chunks: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
                         ({} with hits)",
                        r.queries, r.chunks, l.p50_ms, l.p99_ms, l.max_ms, l.with_hits
                    ),
                ));
            }
        }
        pairs(&rows)
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    args: &BenchIngestArgs,
    quiet: bool,
    target: &mut Target,
    dir: &Path,
) -> anyhow::Result<Report> {
    let store = target.open("ingest", false).await?;
    let config = Arc::new(Config::default());
    let mut opts = EngineOptions::from_config(config.clone());
    opts.node_id = "bench".into();
    opts.max_workers = args.workers;
    opts.poll_interval = Duration::from_millis(50);
    let metrics = Metrics::new();
    let engine = Engine::start(
        store.clone(),
        crate::context::registry(&config, store.clone(), metrics.clone()),
        Arc::new(RealClock),
        metrics,
        opts,
    );
    let words = Words::new(VOCABULARY);
    let mut report = Report {
        backend: target.backend(),
        workers: args.workers,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        notes: None,
        mixed: None,
        mail: None,
        pdf: None,
        rescan: None,
        search: None,
    };
    let out = async {
        if args.files > 0 {
            let root = dir.join("notes");
            say(
                quiet,
                format!(
                    "writing {} notes of 1–4 KB to {}",
                    args.files,
                    root.display()
                ),
            );
            let bytes = corpus::notes(&root, args.files, &words, 1)?;
            say(quiet, "ingesting the notes".into());
            let run = ingest(
                &*store,
                &engine,
                "notes",
                SourceType::MarkdownVault,
                &root,
                bytes,
            )
            .await?;
            report.notes = Some(run);
        }
        if args.mixed_mb > 0 {
            let root = dir.join("mixed");
            say(
                quiet,
                format!("writing {} MB of mixed text-like files", args.mixed_mb),
            );
            let (_, bytes) = corpus::mixed(&root, args.mixed_mb, &words, 2)?;
            say(quiet, "ingesting the mixed files".into());
            let run = ingest(
                &*store,
                &engine,
                "mixed",
                SourceType::LocalFiles,
                &root,
                bytes,
            )
            .await?;
            report.mixed = Some(run);
        }
        if args.mail_messages > 0 {
            let root = dir.join("mail");
            say(
                quiet,
                format!(
                    "writing {} mail messages in 4 mbox files",
                    args.mail_messages
                ),
            );
            let bytes = corpus::mbox(&root, args.mail_messages, 4, &words, 6)?;
            say(quiet, "ingesting the mail".into());
            let mut run = ingest(&*store, &engine, "mail", SourceType::Mbox, &root, bytes).await?;
            // Per message, not per mbox file.
            run.files = run.documents;
            run.files_per_second = run.documents as f64 / run.seconds;
            report.mail = Some(run);
        }
        if args.pdfs > 0 {
            let root = dir.join("pdf");
            say(
                quiet,
                format!("writing {} PDFs with a text layer", args.pdfs),
            );
            let bytes = corpus::pdfs(&root, args.pdfs, &words, 7)?;
            say(quiet, "ingesting the PDFs".into());
            let run = ingest(
                &*store,
                &engine,
                "pdf",
                SourceType::LocalFiles,
                &root,
                bytes,
            )
            .await?;
            report.pdf = Some(run);
        }
        if args.rescan_files > 0 {
            let root = dir.join("rescan");
            say(
                quiet,
                format!("writing {} tiny files for the re-scan", args.rescan_files),
            );
            let bytes = corpus::tiny(&root, args.rescan_files, &words, 3)?;
            say(
                quiet,
                "ingesting them cold, then re-scanning unchanged".into(),
            );
            let cold = ingest(
                &*store,
                &engine,
                "rescan",
                SourceType::LocalFiles,
                &root,
                bytes,
            )
            .await?;
            let before = store.docs().doc_stats().await?;
            let t = Instant::now();
            let (scan, counts) = trigger(&*store, &engine, "rescan").await?;
            let seconds = t.elapsed().as_secs_f64();
            let after = store.docs().doc_stats().await?;
            let result = scan.result.unwrap_or_default();
            report.rescan = Some(RescanRun {
                files: cold.files,
                cold_seconds: cold.seconds,
                seconds,
                scan_seconds: scan
                    .started_at
                    .zip(scan.finished_at)
                    .map_or(0.0, |(s, f)| (f - s) as f64 / 1000.0),
                changed: result["changed"].as_u64().unwrap_or(0),
                ingest_jobs_enqueued: counts,
                documents_written: after.total.documents.abs_diff(before.total.documents)
                    + after.total.chunks.abs_diff(before.total.chunks),
            });
        }
        if args.search_chunks > 0 {
            report.search = Some(search(&*store, args, &words, quiet).await?);
        }
        anyhow::Ok(())
    }
    .await;
    engine.shutdown().await;
    out?;
    Ok(report)
}

/// Triggers a scan of `name` and waits for it and every ingest job it led to; returns the
/// scan job and how many ingest jobs there were.
async fn trigger(
    store: &dyn Store,
    engine: &Engine,
    name: &str,
) -> anyhow::Result<(fabric_core::Job, u64)> {
    let mut job = NewJob::new(fabric_engine::sources::SCAN_KIND);
    job.payload = serde_json::json!({"source": name, "full": false});
    job.source = Some(name.to_string());
    let scan_id = store.submit(vec![job], RealClock.now_ms()).await?[0].id;
    engine.waker().wake();
    loop {
        let scan = store.job(scan_id).await?.job;
        let counts = store.counts_of(name, "ingest", scan_id).await?;
        let done = !matches!(scan.state, JobState::Pending | JobState::Running);
        if done && counts.pending + counts.running == 0 {
            if scan.state != JobState::Succeeded {
                anyhow::bail!(
                    "the scan of {name} ended {}: {}",
                    scan.state,
                    scan.last_error.unwrap_or_default()
                );
            }
            return Ok((scan, counts.total()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ingest(
    store: &dyn Store,
    engine: &Engine,
    name: &str,
    source_type: SourceType,
    root: &Path,
    bytes: u64,
) -> anyhow::Result<IngestRun> {
    let def = SourceDef {
        name: name.into(),
        source_type,
        path: root.to_string_lossy().into_owned(),
        include: vec![],
        exclude: vec![],
        schedule: None,
        priority: Priority::NORMAL,
        retry_policy: None,
    };
    store.put_source(def, RealClock.now_ms()).await?;
    let t = Instant::now();
    let (scan, _) = trigger(store, engine, name).await?;
    let seconds = t.elapsed().as_secs_f64();
    let files = scan
        .result
        .as_ref()
        .map_or(0, |r| r["changed"].as_u64().unwrap_or(0));
    let stats = store.docs().doc_stats().await?;
    let mine = stats.by_source.get(name).cloned().unwrap_or_default();
    let counts = store.counts_of(name, "ingest", 0).await?;
    Ok(IngestRun {
        files,
        bytes,
        seconds,
        files_per_second: files as f64 / seconds,
        mb_per_second: bytes as f64 / 1_048_576.0 / seconds,
        documents: mine.documents,
        chunks: mine.chunks,
        quarantined: counts.quarantined,
    })
}

/// Fills the index to `--search-chunks` with synthetic documents, then times searches before
/// and after compacting the index.
async fn search(
    store: &dyn Store,
    args: &BenchIngestArgs,
    words: &Words,
    quiet: bool,
) -> anyhow::Result<SearchRun> {
    let docs = store.docs();
    let have = docs.doc_stats().await?.total.chunks;
    let mut rng = Rng::new(4);
    let t = Instant::now();
    if have < args.search_chunks {
        let need = (args.search_chunks - have).div_ceil(u64::from(FILL_CHUNKS));
        say(
            quiet,
            format!(
                "filling the index with {need} synthetic documents ({} chunks)",
                need * u64::from(FILL_CHUNKS)
            ),
        );
        let mut i = 0;
        let mut shown = Instant::now();
        while i < need {
            let n = FILL_BATCH.min(need - i);
            let batch = (i..i + n)
                .map(|k| {
                    corpus::document(
                        "synthetic",
                        k,
                        FILL_CHUNKS,
                        FILL_CHUNK_BYTES,
                        words,
                        &mut rng,
                    )
                })
                .collect();
            docs.put_documents(batch, RealClock.now_ms()).await?;
            i += n;
            if shown.elapsed() >= Duration::from_secs(5) {
                shown = Instant::now();
                say(quiet, format!("{i} of {need} documents stored"));
            }
        }
    }
    let fill_seconds = t.elapsed().as_secs_f64();
    let chunks = docs.doc_stats().await?.total.chunks;
    let before = latencies(docs, args.queries, words, false).await?;
    say(quiet, "compacting the index".into());
    let t = Instant::now();
    while docs.compact_index(COMPACT_PAGES).await? {}
    let compact_seconds = t.elapsed().as_secs_f64();
    let typical = latencies(docs, args.queries, words, false).await?;
    let common_words = latencies(docs, args.queries, words, true).await?;
    Ok(SearchRun {
        chunks,
        queries: args.queries,
        fill_seconds,
        compact_seconds,
        typical,
        typical_before_compaction: before,
        common_words,
    })
}

/// Search latencies of one run of queries.
#[derive(Debug, Serialize)]
struct Latencies {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Queries that found at least one hit.
    with_hits: usize,
}

/// Times `queries` searches of one or two words drawn from the vocabulary (uniformly, or by
/// frequency with `common`), top 10 with snippets; the same queries every time.
async fn latencies(
    docs: &dyn fabric_store::DocStore,
    queries: usize,
    words: &Words,
    common: bool,
) -> anyhow::Result<Latencies> {
    let mut rng = Rng::new(5);
    let pick = |rng: &mut Rng| {
        if common {
            words.pick(rng).to_string()
        } else {
            words.pick_uniform(rng).to_string()
        }
    };
    let mut lat = Vec::with_capacity(queries);
    let mut with_hits = 0;
    for q in 0..queries {
        let text = if q % 2 == 0 {
            pick(&mut rng)
        } else {
            format!("{} {}", pick(&mut rng), pick(&mut rng))
        };
        let t = Instant::now();
        let hits = docs
            .search(fabric_core::doc::SearchQuery {
                text,
                limit: 10,
                ..Default::default()
            })
            .await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        with_hits += usize::from(!hits.is_empty());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    Ok(Latencies {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat[lat.len() - 1],
        with_hits,
    })
}
