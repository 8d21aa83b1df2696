//! A quick measure of document search on a generated corpus (run by hand; nothing asserts
//! it): `cargo run -p fabric-store --example docs_search_bench -- CHUNKS [POSTGRES_URL]`.
//! Puts CHUNKS chunks (10 a document, ~60 words each from a Zipf-like vocabulary of 50,000
//! words) into a fresh store, then runs 2,000 searches of one or two words (top 10 with
//! snippets) and prints the p50 and p99 latencies.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a hand-run measurement

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fabric_core::doc::{Chunk, DocType, NewDocument, SearchQuery};
use fabric_store::{sqlite::SqliteOptions, PostgresStore, SqliteStore, Store};

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A word index with a heavy head: the square of a uniform draw.
    fn word(&mut self, vocab: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((u * u * u) * vocab as f64) as usize
    }
}

fn word(i: usize) -> String {
    // Pronounceable and distinct: base-20 syllables.
    const S: [&str; 20] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "po", "da", "fe", "gu", "hi", "jo",
        "bu", "ce", "wa", "xy", "qe",
    ];
    let mut n = i + 20;
    let mut out = String::new();
    while n > 0 {
        out.push_str(S[n % 20]);
        n /= 20;
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let chunks: usize = args.get(1).map_or(200_000, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store: Box<dyn Store> = match args.get(2) {
        Some(url) => Box::new(PostgresStore::open(url, "fabric_docs_bench").await.unwrap()),
        None => {
            Box::new(SqliteStore::open(dir.path().join("q.db"), SqliteOptions::default()).unwrap())
        }
    };
    let docs = store.docs();
    const VOCAB: usize = 50_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t0 = Instant::now();
    let per_doc = 10;
    for d in 0..chunks.div_ceil(per_doc) {
        let path = format!("dir{}/note{d}.md", d % 100);
        let doc = NewDocument {
            source: format!("src{}", d % 4),
            path: path.clone(),
            doc_type: DocType::Markdown,
            title: format!("note {d}"),
            size: 4000,
            mtime: 0,
            hash: format!("{d}"),
            tags: vec![format!("tag{}", d % 10)],
            meta: BTreeMap::new(),
            links: vec![],
            chunks: (0..per_doc)
                .map(|c| Chunk {
                    key: format!("{path}#{c}"),
                    ord: c as u32,
                    heading: word(rng.word(VOCAB)),
                    text: (0..60)
                        .map(|_| word(rng.word(VOCAB)))
                        .collect::<Vec<_>>()
                        .join(" "),
                })
                .collect(),
        };
        docs.put_document(doc, 0).await.unwrap();
    }
    let load = t0.elapsed();
    println!(
        "{} chunks stored in {:.1} s ({})",
        docs.doc_stats().await.unwrap().total.chunks,
        load.as_secs_f64(),
        store.backend()
    );
    let mut times: Vec<Duration> = Vec::new();
    let mut hits = 0;
    for i in 0..2_000 {
        // Words from across the vocabulary: common, middling and rare.
        let mut text = word(rng.word(VOCAB));
        if i % 2 == 0 {
            text = format!("{text} {}", word(rng.word(VOCAB)));
        }
        let t = Instant::now();
        let found = docs
            .search(SearchQuery {
                text,
                source: None,
                tag: None,
                limit: 10,
            })
            .await
            .unwrap();
        times.push(t.elapsed());
        hits += found.len();
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "2000 searches (top 10, snippets): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.1} hits on average",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        hits as f64 / 2_000.0
    );
    if let Some(url) = args.get(2) {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute("DROP SCHEMA fabric_docs_bench CASCADE")
            .await
            .unwrap();
    }
}
