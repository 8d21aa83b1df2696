//! The unfiltered search's ranking on SQLite when a query holds a common term: the newest
//! [`doc::RANK_WINDOW`] matches, scored with FTS5's own BM25 formula ([`fabric_core::bm25`])
//! from document frequencies that never walk a whole doclist. FTS5's `bm25()` counts every
//! row holding each query term before it ranks anything (a word in most of a million chunks:
//! 35 ms and more); here a term's frequency is exact up to [`EXACT_CAP`] rows, and beyond
//! that estimated from its share of the newest [`SAMPLE_ROWS`] chunks and remembered while
//! the index grows or shrinks by less than a 64th. A query of rarer terms
//! ([`TermStats::cheap_to_count`]) is still ranked by FTS5.

use std::collections::HashMap;
use std::sync::Mutex;

use fabric_core::bm25::{self, Ranker};
use fabric_core::doc::{self, QueryTerm};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, StoreError};

/// Column weights of `doc_fts` (heading, text): the `bm25(2.0, 1.0)` of migration 0008.
const WEIGHTS: [f64; 2] = [2.0, 1.0];

/// A term found in fewer rows than this is counted exactly (at most this many index entries
/// read, well under a millisecond).
const EXACT_CAP: i64 = 4_096;

/// The newest chunks a common term's frequency is estimated from.
const SAMPLE_ROWS: i64 = 16_384;

/// A query with a term in more rows than this is ranked here; below, FTS5's `bm25()` counts
/// its terms' rows (about 45 ns each) and ranks the window (about 1.2 µs a row) more cheaply
/// than this module reads and scores the window's text (about 2 µs a row).
const COUNT_LIMIT: f64 = 20_000.0;

/// Estimates kept at most (the map is emptied when it is full).
const CACHE_ENTRIES: usize = 4_096;

/// Estimated document frequencies of common terms, by FTS5 expression: (rows holding it,
/// rows in the index when estimated).
#[derive(Default)]
pub(super) struct DocFrequencies(Mutex<HashMap<String, (f64, u64)>>);

/// Rows in the index and their total length in tokens (all columns), from FTS5's averages
/// record (a varint count of rows, then one varint total per column).
fn corpus(conn: &Connection) -> Result<(u64, u64)> {
    let blob: Option<Vec<u8>> = conn
        .prepare_cached("SELECT block FROM doc_fts_data WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let blob = blob.unwrap_or_default();
    let mut at = 0;
    let mut next = || varint(&blob, &mut at);
    let rows = next().unwrap_or(0);
    let mut tokens = 0u64;
    while let Some(t) = next() {
        tokens = tokens.saturating_add(t);
    }
    Ok((rows, tokens))
}

/// SQLite's variable-length integer at `*at` (big-endian groups of 7 bits, a ninth byte of
/// 8), advancing `*at`; `None` at the end of `b`.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..9 {
        let c = *b.get(*at)?;
        *at += 1;
        if i == 8 {
            return Some((v << 8) | u64::from(c));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c < 0x80 {
            return Some(v);
        }
    }
    Some(v)
}

impl DocFrequencies {
    /// Rows of the index (of `rows`) that hold `expr`, one FTS5 term.
    fn of(&self, conn: &Connection, expr: &str, rows: u64) -> Result<f64> {
        // Only common terms are remembered.
        if let Ok(map) = self.0.lock() {
            if let Some(&(hits, at)) = map.get(expr) {
                if at.abs_diff(rows).saturating_mul(64) <= rows {
                    return Ok(hits);
                }
            }
        }
        let capped: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM doc_fts WHERE doc_fts MATCH ?1 LIMIT ?2)",
            )?
            .query_row(params![expr, EXACT_CAP], |r| r.get(0))?;
        if capped < EXACT_CAP {
            return Ok(capped as f64);
        }
        // The id above which the newest SAMPLE_ROWS rows lie (FTS5's row-size table holds
        // one small row per indexed chunk).
        let floor: Option<i64> = conn
            .prepare_cached("SELECT id FROM doc_fts_docsize ORDER BY id DESC LIMIT 1 OFFSET ?1")?
            .query_row([SAMPLE_ROWS], |r| r.get(0))
            .optional()?;
        let hits = match floor {
            // A small index: counting all of it is cheap.
            None => conn
                .prepare_cached("SELECT count(*) FROM doc_fts WHERE doc_fts MATCH ?1")?
                .query_row([expr], |r| r.get::<_, i64>(0))? as f64,
            Some(floor) => {
                let in_sample: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM doc_fts WHERE doc_fts MATCH ?1 AND rowid > ?2",
                    )?
                    .query_row(params![expr, floor], |r| r.get(0))?;
                (in_sample as f64 * rows as f64 / SAMPLE_ROWS as f64).max(EXACT_CAP as f64)
            }
        };
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
            map.insert(expr.to_string(), (hits, rows));
        }
        Ok(hits)
    }
}

/// What ranking a query needs to know of the index and of each of its terms.
pub(super) struct TermStats {
    /// Rows in the index.
    rows: u64,
    /// Their total length in tokens, all columns.
    tokens: u64,
    /// Rows holding each term, exact or estimated ([`DocFrequencies`]).
    hits: Vec<f64>,
}

impl TermStats {
    /// The statistics of `terms` (the query's, in order).
    pub(super) fn of(
        conn: &Connection,
        freqs: &DocFrequencies,
        terms: &[QueryTerm],
    ) -> Result<Self> {
        let (rows, tokens) = corpus(conn)?;
        let mut hits = Vec::with_capacity(terms.len());
        for t in terms {
            hits.push(if rows == 0 {
                0.0
            } else {
                freqs.of(conn, &t.fts5(), rows)?
            });
        }
        Ok(Self { rows, tokens, hits })
    }

    /// Whether FTS5's `bm25()` may rank the query: it counts the rows of every term first,
    /// which for a term in more than [`COUNT_LIMIT`] rows costs more than scoring the text
    /// of a whole window here.
    pub(super) fn cheap_to_count(&self) -> bool {
        self.hits.iter().all(|&h| h < COUNT_LIMIT)
    }
}

/// The best `limit` of the newest [`doc::RANK_WINDOW`] chunks matching every term (`expr` is
/// their FTS5 conjunction), best first (ties: newest first), as (chunk id, score).
pub(super) fn ranked_window(
    conn: &Connection,
    stats: &TermStats,
    terms: &[QueryTerm],
    expr: &str,
    limit: usize,
) -> Result<Vec<(i64, f64)>> {
    if stats.rows == 0 {
        return Ok(Vec::new());
    }
    let rows = stats.rows as f64;
    let idf = stats.hits.iter().map(|&h| bm25::idf(rows, h)).collect();
    let phrases = terms.iter().map(|t| bm25::tokens(t.text())).collect();
    let mut ranker = Ranker::new(phrases, idf, &WEIGHTS, stats.tokens as f64 / rows);
    let mut stmt = conn.prepare_cached(
        "SELECT f.rowid, c.heading, c.text
         FROM (SELECT rowid FROM doc_fts WHERE doc_fts MATCH ?1 ORDER BY rowid DESC LIMIT ?2) f
         JOIN doc_chunks c ON c.id = f.rowid",
    )?;
    let mut scored = Vec::with_capacity(doc::RANK_WINDOW);
    let mut cursor = stmt.query(params![expr, doc::RANK_WINDOW as i64])?;
    while let Some(r) = cursor.next()? {
        let id: i64 = r.get(0)?;
        let text = |i| {
            r.get_ref(i)?
                .as_str()
                .map_err(|e| StoreError::Backend(format!("doc_chunks column {i}: {e}")))
        };
        let (heading, body) = (text(1)?, text(2)?);
        scored.push((id, ranker.score(&[heading, body])));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    scored.truncate(limit);
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store file holding `n` chunks: `w{k}` in about one of `k + 1` (twice in a third of
    /// those), `w5 w6` as a phrase in some, `Café` in one of 17, a heading holding a `w`
    /// word in one of 5; its connection.
    fn corpus_of(n: usize) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(super::super::SqliteStore::open(&path, Default::default()).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO documents (id, source, path, doc_type, title, size, mtime, hash,
                 indexed_at, chunk_count) VALUES (1, 's', 'd.md', 'markdown', 'd', 1, 0, 'h', 0, 0)",
            [],
        )
        .unwrap();
        for i in 0..n {
            let mut words = Vec::new();
            for k in 0..12 {
                if i.is_multiple_of(k + 1) {
                    words.push(format!("w{k}"));
                    if (i / (k + 1)).is_multiple_of(3) {
                        words.push(format!("w{k}"));
                    }
                }
            }
            words.extend((0..(i * 7) % 23).map(|k| format!("filler{}", (i + k) % 50)));
            if i.is_multiple_of(4) {
                words.push("w6 w5".into());
            }
            if i.is_multiple_of(17) {
                words.push("Café".into());
            }
            let heading = if i.is_multiple_of(15) {
                format!("Résumé w{}", i % 4)
            } else if i.is_multiple_of(5) {
                format!("Section w{}", i % 4)
            } else {
                String::new()
            };
            conn.execute(
                "INSERT INTO doc_chunks (doc_id, ord, key, heading, text) VALUES (1, ?1, ?1, ?2, ?3)",
                params![i as i64, heading, words.join(" ")],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO doc_fts (rowid, heading, text) SELECT id, heading, text FROM doc_chunks",
            [],
        )
        .unwrap();
        (dir, conn)
    }

    #[test]
    fn the_window_is_ranked_as_fts5s_bm25_ranks_it_given_exact_counts() {
        let (_dir, conn) = corpus_of(3_000);
        let (rows, tokens) = corpus(&conn).unwrap();
        assert_eq!(rows, 3_000);
        for text in [
            "w3",
            "w0",
            "w2 w7",
            "\"w5 w6\"",
            "filler7 w1",
            "cafe",
            "CAFÉ w0",
            "résumé w3",
        ] {
            let terms = doc::parse_query(text).unwrap();
            let expr = doc::fts5_conjunction(&terms);
            let count = |e: &str| -> f64 {
                conn.query_row(
                    "SELECT count(*) FROM doc_fts WHERE doc_fts MATCH ?1",
                    [e],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap() as f64
            };
            let stats = TermStats {
                rows,
                tokens,
                hits: terms.iter().map(|t| count(&t.fts5())).collect(),
            };
            let ours = ranked_window(&conn, &stats, &terms, &expr, 10).unwrap();
            let floor: i64 = conn
                .query_row(
                    "SELECT rowid FROM doc_fts WHERE doc_fts MATCH ?1 ORDER BY rowid DESC
                     LIMIT 1 OFFSET ?2",
                    params![expr, doc::RANK_WINDOW as i64],
                    |r| r.get(0),
                )
                .unwrap_or(i64::MIN);
            let mut stmt = conn
                .prepare(
                    "SELECT rowid, -bm25(doc_fts, 2.0, 1.0) FROM doc_fts
                     WHERE doc_fts MATCH ?1 AND rowid > ?2 ORDER BY rank LIMIT 10",
                )
                .unwrap();
            let theirs: Vec<(i64, f64)> = stmt
                .query_map(params![expr, floor], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(ours.len(), theirs.len(), "{text}: {ours:?} {theirs:?}");
            for (a, b) in ours.iter().zip(&theirs) {
                assert!(
                    (a.1 - b.1).abs() <= 1e-9 * b.1.abs(),
                    "{text}: ours {ours:?}\nfts5 {theirs:?}"
                );
            }
        }
    }

    #[test]
    fn varints_read_as_sqlite_writes_them() {
        // 1,000,000 / 2,000,000 / 58,964,059: FTS5's averages record of a bench index.
        let b = [0xBD, 0x84, 0x40, 0xFA, 0x89, 0x00, 0x9C, 0x8E, 0xF0, 0x5B];
        let mut at = 0;
        let got: Vec<u64> = std::iter::from_fn(|| varint(&b, &mut at)).collect();
        assert_eq!(got, [1_000_000, 2_000_000, 58_964_059]);
        // Nine bytes: the last carries 8 bits.
        assert_eq!(varint(&[0xFF; 9], &mut 0), Some(u64::MAX));
        assert_eq!(varint(&[0x81], &mut 0), None);
    }
}
