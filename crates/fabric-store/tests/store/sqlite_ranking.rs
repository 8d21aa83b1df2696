//! The SQLite store's unfiltered searches against FTS5's `bm25()`, through the store: the
//! same hits in the same order with the same scores for queries of rarer words (which FTS5
//! ranks), and within a percent once a common term is ranked by Fabric from an estimate of
//! its frequency. Fabric's ranking with exact counts is checked against `bm25()` in
//! `src/sqlite/ranking.rs`.

use std::collections::BTreeMap;

use fabric_core::doc::{Chunk, DocType, NewDocument, SearchQuery};
use fabric_store::sqlite::SqliteOptions;
use fabric_store::Store;

const T0: i64 = 1_800_000_000_000;

/// Words of the corpus: `w{n}` is in about one chunk of `n + 1` (the text of chunk `i` holds
/// `w{n}` when `i % (n + 1) == 0`, some of them twice), plus filler of varied length.
fn chunk_text(i: usize) -> (String, String) {
    let mut words = Vec::new();
    for n in 0..12 {
        if i.is_multiple_of(n + 1) {
            words.push(format!("w{n}"));
            if (i / (n + 1)).is_multiple_of(3) {
                words.push(format!("w{n}"));
            }
        }
    }
    for k in 0..(i * 7) % 23 {
        words.push(format!("filler{}", (i + k) % 50));
    }
    if i.is_multiple_of(17) {
        words.push("Café".into());
    }
    let heading = if i.is_multiple_of(5) {
        format!("Section w{}", i % 4)
    } else {
        String::new()
    };
    (heading, words.join(" "))
}

fn docs(chunks: usize) -> Vec<NewDocument> {
    (0..chunks.div_ceil(10))
        .map(|d| NewDocument {
            source: "s".into(),
            path: format!("d{d}.md"),
            doc_type: DocType::Markdown,
            title: format!("d{d}"),
            size: 1,
            mtime: T0,
            hash: format!("h{d}"),
            tags: vec![],
            meta: BTreeMap::new(),
            links: vec![],
            chunks: (0..10)
                .map(|k| {
                    let (heading, text) = chunk_text(d * 10 + k);
                    Chunk {
                        key: format!("{d}#{k}"),
                        ord: k as u32,
                        heading,
                        text,
                    }
                })
                .collect(),
        })
        .collect()
}

async fn filled(chunks: usize) -> (std::sync::Arc<dyn Store>, tempfile::TempDir) {
    let (store, dir) = super::sqlite_in_tempdir(SqliteOptions::default()).unwrap();
    let all = docs(chunks);
    for part in all.chunks(500) {
        store.docs().put_documents(part.to_vec(), T0).await.unwrap();
    }
    (store, dir)
}

/// FTS5's own top `limit` for `expr` among chunks above `floor`: (document path, chunk ord,
/// score).
fn fts5_top(dir: &tempfile::TempDir, expr: &str, floor: i64) -> Vec<(String, u32, f64)> {
    let conn = rusqlite::Connection::open(dir.path().join("queue.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT d.path, c.ord, -f.rank
             FROM (SELECT rowid, rank FROM doc_fts WHERE doc_fts MATCH ?1 AND rowid > ?2
                   ORDER BY rank LIMIT 10) f
             JOIN doc_chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.doc_id
             ORDER BY f.rank",
        )
        .unwrap();
    let rows = stmt
        .query_map(rusqlite::params![expr, floor], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

async fn ours(store: &dyn Store, text: &str) -> Vec<(String, u32, f64)> {
    let hits = store
        .docs()
        .search(SearchQuery {
            text: text.into(),
            limit: 10,
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    hits.into_iter()
        .map(|h| (h.path, h.chunk_ord, h.score))
        .collect()
}

fn assert_close(ours: &[(String, u32, f64)], theirs: &[(String, u32, f64)], tolerance: f64) {
    assert!(!theirs.is_empty());
    assert_eq!(ours.len(), theirs.len(), "{ours:?}\n{theirs:?}");
    for (a, b) in ours.iter().zip(theirs) {
        // Equal scores may come in either order; the scores must agree position by position.
        assert!(
            (a.2 - b.2).abs() <= tolerance * b.2.abs(),
            "ours {ours:?}\nfts5 {theirs:?}"
        );
    }
    let key = |v: &[(String, u32, f64)]| {
        let mut k: Vec<_> = v.iter().map(|h| (h.0.clone(), h.1)).collect();
        k.sort();
        k
    };
    if tolerance == 0.0 || ours.windows(2).all(|w| w[0].2 > w[1].2 * (1.0 + tolerance)) {
        assert_eq!(key(ours), key(theirs), "ours {ours:?}\nfts5 {theirs:?}");
    }
}

/// The FTS5 conjunction the store searches for `text`.
fn fts5_expr(text: &str) -> String {
    fabric_core::doc::fts5_conjunction(&fabric_core::doc::parse_query(text).unwrap())
}

#[tokio::test]
async fn unfiltered_scores_are_fts5s_bm25_when_frequencies_are_counted() {
    let (store, dir) = filled(1_000).await;
    for text in [
        "w3",
        "w0",
        "w2 w7",
        "\"w5 w6\"",
        "filler7 w1",
        "cafe",
        "CAFÉ w0",
    ] {
        let expr = fts5_expr(text);
        let theirs = fts5_top(&dir, &expr, i64::MIN);
        let ours = ours(&*store, text).await;
        assert_close(&ours, &theirs, 1e-9);
    }
}

#[tokio::test]
async fn a_common_terms_frequency_is_estimated_from_the_newest_chunks() {
    // More chunks than the estimate samples; a word in every one, one in every third (more
    // rows than FTS5 is left to count), one in every tenth.
    let (store, dir) = filled(60_000).await;
    for text in ["w0", "w2", "w2 w9", "w9 w2 filler3"] {
        let expr = fts5_expr(text);
        // The same window of newest matches FTS5 would rank.
        let conn = rusqlite::Connection::open(dir.path().join("queue.db")).unwrap();
        let floor: i64 = conn
            .query_row(
                "SELECT rowid FROM doc_fts WHERE doc_fts MATCH ?1 ORDER BY rowid DESC
                 LIMIT 1 OFFSET ?2",
                rusqlite::params![expr, fabric_core::doc::RANK_WINDOW as i64],
                |r| r.get(0),
            )
            .unwrap_or(i64::MIN);
        let theirs = fts5_top(&dir, &expr, floor);
        let ours = ours(&*store, text).await;
        assert_close(&ours, &theirs, 0.01);
    }
}
