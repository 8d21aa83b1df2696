//! Documents and search on SQLite: the tables of migration 0008 and the FTS5 index
//! `doc_fts`, an external-content index over `doc_chunks` (the chunk text is stored once;
//! rowid = chunk id), written once per stored batch (migration 0009). Ranking is BM25 with a
//! heading's words weighing double: computed by Fabric over the newest matches of an
//! unfiltered search (see [`ranking`]), by FTS5's `bm25()` over every match of a filtered one.
//! Snippets come from `snippet()`.

use async_trait::async_trait;
use fabric_core::doc::{
    self, Chunk, DocCounts, DocDetail, DocId, DocLink, DocStats, DocType, Document, LinkIn,
    NewDocument, NewDocumentMeta, PutOutcome, SearchHit, SearchQuery,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::ranking::{self, DocFrequencies};
use super::{conversion, SqliteStore};
use crate::docs::doc_not_found;
use crate::{DocStore, Result, StoreError};

const DOC_COLS: &str =
    "id, source, path, doc_type, title, size, mtime, hash, tags, meta, indexed_at, chunk_count";

fn row_to_document(r: &Row<'_>) -> rusqlite::Result<Document> {
    let doc_type: String = r.get(3)?;
    let tags: String = r.get(8)?;
    let meta: String = r.get(9)?;
    Ok(Document {
        id: r.get(0)?,
        doc: NewDocumentMeta {
            source: r.get(1)?,
            path: r.get(2)?,
            doc_type: DocType::parse(&doc_type).ok_or_else(|| {
                conversion(3, StoreError::Backend(format!("unknown type {doc_type}")))
            })?,
            title: r.get(4)?,
            size: r.get::<_, i64>(5)?.max(0).unsigned_abs(),
            mtime: r.get(6)?,
            hash: r.get(7)?,
            tags: serde_json::from_str(&tags).map_err(|e| conversion(8, e))?,
            meta: serde_json::from_str(&meta).map_err(|e| conversion(9, e))?,
        },
        indexed_at: r.get(10)?,
        chunk_count: r.get(11)?,
    })
}

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Deletes document `id` with its chunks (whose trigger unindexes them), tags and links.
fn delete_doc(conn: &Connection, id: DocId) -> Result<()> {
    conn.prepare_cached("DELETE FROM doc_chunks WHERE doc_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM doc_links WHERE doc_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM doc_tags WHERE doc_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM documents WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

fn put(conn: &Connection, doc: &NewDocument, now: i64) -> Result<PutOutcome> {
    let existing: Option<(DocId, String)> = conn
        .prepare_cached("SELECT id, hash FROM documents WHERE source = ?1 AND path = ?2")?
        .query_row(params![doc.source, doc.path], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some((id, hash)) = &existing {
        if *hash == doc.hash {
            return Ok(PutOutcome {
                id: *id,
                changed: false,
            });
        }
        delete_doc(conn, *id)?;
    }
    let size = i64::try_from(doc.size).unwrap_or(i64::MAX);
    // A replacement keeps its id, so links and bookmarks to it stay valid.
    let id: DocId = conn
        .prepare_cached(
            "INSERT INTO documents (id, source, path, doc_type, title, size, mtime, hash, tags,
                 meta, indexed_at, chunk_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
        )?
        .query_row(
            params![
                existing.map(|(id, _)| id),
                doc.source,
                doc.path,
                doc.doc_type.as_str(),
                doc.title,
                size,
                doc.mtime,
                doc.hash,
                json(&doc.tags)?,
                json(&doc.meta)?,
                now,
                doc.chunks.len() as i64,
            ],
            |r| r.get(0),
        )?;
    let mut tag =
        conn.prepare_cached("INSERT OR IGNORE INTO doc_tags (tag, doc_id) VALUES (?1, ?2)")?;
    for t in &doc.tags {
        tag.execute(params![t, id])?;
    }
    // All chunks in one statement (each statement costs a statement journal); they are
    // indexed by [`put_many`].
    let chunks: Vec<(u32, &str, &str, &str)> = doc
        .chunks
        .iter()
        .map(|c| (c.ord, c.key.as_str(), c.heading.as_str(), c.text.as_str()))
        .collect();
    conn.prepare_cached(
        "INSERT INTO doc_chunks (doc_id, ord, key, heading, text)
         SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?2)
         ORDER BY key",
    )?
    .execute(params![id, json(&chunks)?])?;
    let mut link =
        conn.prepare_cached("INSERT INTO doc_links (doc_id, target, kind) VALUES (?1, ?2, ?3)")?;
    for l in &doc.links {
        link.execute(params![id, l.target, l.kind])?;
    }
    Ok(PutOutcome { id, changed: true })
}

/// Stores `docs` (see [`put`]), then indexes the chunks of the changed ones in one statement:
/// FTS5 flushes its pending terms to a new segment at every savepoint, so indexing statement
/// by statement would leave a segment per document to merge.
fn put_many(conn: &Connection, docs: &[NewDocument], now: i64) -> Result<Vec<PutOutcome>> {
    let out = docs
        .iter()
        .map(|d| put(conn, d, now))
        .collect::<Result<Vec<_>>>()?;
    let changed: Vec<DocId> = out.iter().filter(|o| o.changed).map(|o| o.id).collect();
    if !changed.is_empty() {
        conn.prepare_cached(
            "INSERT INTO doc_fts (rowid, heading, text)
             SELECT c.id, c.heading, c.text
             FROM json_each(?1) j JOIN doc_chunks c ON c.doc_id = j.value
             ORDER BY c.id",
        )?
        .execute([json(&changed)?])?;
    }
    Ok(out)
}

fn detail(conn: &Connection, id: DocId) -> Result<DocDetail> {
    let document = conn
        .prepare_cached(&format!("SELECT {DOC_COLS} FROM documents WHERE id = ?1"))?
        .query_row([id], row_to_document)
        .optional()?
        .ok_or_else(|| doc_not_found(id))?;
    let chunks = conn
        .prepare_cached(
            "SELECT key, ord, heading, text FROM doc_chunks WHERE doc_id = ?1 ORDER BY ord, id",
        )?
        .query_map([id], |r| {
            Ok(Chunk {
                key: r.get(0)?,
                ord: r.get(1)?,
                heading: r.get(2)?,
                text: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let links_out = conn
        .prepare_cached("SELECT target, kind FROM doc_links WHERE doc_id = ?1 ORDER BY rowid")?
        .query_map([id], |r| {
            Ok(DocLink {
                target: r.get(0)?,
                kind: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let targets = json(&DocDetail::link_targets(&document.doc))?;
    let links_in = conn
        .prepare_cached(
            "SELECT DISTINCT d.id, d.source, d.path, d.title, l.kind
             FROM doc_links l JOIN documents d ON d.id = l.doc_id
             WHERE l.target IN (SELECT value FROM json_each(?1)) AND d.source = ?2
               AND d.id <> ?3
             ORDER BY d.path, l.kind",
        )?
        .query_map(params![targets, document.doc.source, id], |r| {
            Ok(LinkIn {
                doc_id: r.get(0)?,
                source: r.get(1)?,
                path: r.get(2)?,
                title: r.get(3)?,
                kind: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(DocDetail {
        document,
        chunks,
        links_out,
        links_in,
    })
}

/// Without filters, when FTS5's `bm25()` is cheap (see [`ranking::TermStats`]), FTS5 ranks
/// and cuts the list itself (its `ORDER BY rank LIMIT` plan), so only the returned hits get a
/// snippet and a join. `?3`: rank only chunks above this id (see [`RANK_WINDOW`]).
const SEARCH_TOP: &str = "SELECT d.id, d.source, d.path, d.title, c.ord, c.heading, f.snip, -f.rank
     FROM (SELECT rowid, rank, snippet(doc_fts, 1, '[', ']', '…', 24) AS snip
           FROM doc_fts WHERE doc_fts MATCH ?1 AND rowid > ?3 ORDER BY rank LIMIT ?2) f
     JOIN doc_chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.doc_id
     ORDER BY f.rank";

/// [`doc::RANK_WINDOW`]: bm25 costs about 1.2 µs a match, so a word found in a few hundred
/// thousand chunks would take a good part of a second to rank in full. Finding the window's
/// edge walks the match list in rowid order without scoring (cheap).
const RANK_WINDOW: i64 = doc::RANK_WINDOW as i64;

/// The id below the newest [`RANK_WINDOW`] matches, or `i64::MIN` when there are fewer.
const WINDOW_FLOOR: &str =
    "SELECT rowid FROM doc_fts WHERE doc_fts MATCH ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2";

/// One hit of an unfiltered search, by chunk id: its document, chunk and snippet.
const HIT: &str = "SELECT d.id, d.source, d.path, d.title, c.ord, c.heading,
            snippet(doc_fts, 1, '[', ']', '…', 24)
     FROM doc_fts JOIN doc_chunks c ON c.id = doc_fts.rowid JOIN documents d ON d.id = c.doc_id
     WHERE doc_fts MATCH ?1 AND doc_fts.rowid = ?2";

/// With a source or tag filter every match is checked, then ranked by FTS5's `bm25()`.
const SEARCH_FILTERED: &str = "SELECT d.id, d.source, d.path, d.title, c.ord, c.heading,
            snippet(doc_fts, 1, '[', ']', '…', 24), -doc_fts.rank
     FROM doc_fts JOIN doc_chunks c ON c.id = doc_fts.rowid JOIN documents d ON d.id = c.doc_id
     WHERE doc_fts MATCH ?1 AND (?3 IS NULL OR d.source = ?3)
       AND (?4 IS NULL OR d.id IN (SELECT doc_id FROM doc_tags WHERE tag = ?4))
     ORDER BY doc_fts.rank LIMIT ?2";

/// A hit from columns 0..=5 (document and chunk), the snippet at 6 and the given score.
fn hit(r: &Row<'_>, score: f64) -> rusqlite::Result<SearchHit> {
    Ok(SearchHit {
        doc_id: r.get(0)?,
        source: r.get(1)?,
        path: r.get(2)?,
        title: r.get(3)?,
        chunk_ord: r.get(4)?,
        heading: r.get(5)?,
        snippet: r.get(6)?,
        score,
    })
}

/// An unfiltered search ranks the newest [`doc::RANK_WINDOW`] matches
/// ([`ranking::ranked_window`]) and reads the snippets of the best only; a filtered one ranks
/// every match that passes the filter.
fn search(conn: &Connection, q: &SearchQuery, freqs: &DocFrequencies) -> Result<Vec<SearchHit>> {
    doc::check_limit(q.limit)?;
    let terms = doc::parse_query(&q.text)?;
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let expr = doc::fts5_conjunction(&terms);
    if q.source.is_some() || q.tag.is_some() {
        let mut stmt = conn.prepare_cached(SEARCH_FILTERED)?;
        let hits = stmt
            .query_map(
                params![expr, crate::sql_limit(q.limit), q.source, q.tag],
                |r| {
                    let score = r.get(7)?;
                    hit(r, score)
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        return Ok(hits);
    }
    let stats = ranking::TermStats::of(conn, freqs, &terms)?;
    let limit = crate::sql_limit(q.limit);
    if stats.cheap_to_count() {
        let floor: i64 = conn
            .prepare_cached(WINDOW_FLOOR)?
            .query_row(params![expr, RANK_WINDOW], |r| r.get(0))
            .optional()?
            .unwrap_or(i64::MIN);
        return Ok(conn
            .prepare_cached(SEARCH_TOP)?
            .query_map(params![expr, limit, floor], |r| {
                let score = r.get(7)?;
                hit(r, score)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?);
    }
    let best = ranking::ranked_window(conn, &stats, &terms, &expr, q.limit)?;
    let mut stmt = conn.prepare_cached(HIT)?;
    let mut hits = Vec::with_capacity(best.len());
    for (id, score) in best {
        if let Some(h) = stmt
            .query_row(params![expr, id], |r| hit(r, score))
            .optional()?
        {
            hits.push(h);
        }
    }
    Ok(hits)
}

fn stats(conn: &Connection) -> Result<DocStats> {
    let mut out = DocStats::default();
    let mut stmt = conn.prepare_cached(
        "SELECT doc_type, source, COUNT(*), SUM(chunk_count), SUM(size)
         FROM documents GROUP BY doc_type, source",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let n = DocCounts {
            documents: r.get::<_, i64>(2)?.unsigned_abs(),
            chunks: r.get::<_, i64>(3)?.unsigned_abs(),
            bytes: r.get::<_, i64>(4)?.unsigned_abs(),
        };
        for c in [
            &mut out.total,
            out.by_type.entry(r.get(0)?).or_default(),
            out.by_source.entry(r.get(1)?).or_default(),
        ] {
            c.documents += n.documents;
            c.chunks += n.chunks;
            c.bytes += n.bytes;
        }
    }
    Ok(out)
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn put_document(&self, doc: NewDocument, now: i64) -> Result<PutOutcome> {
        self.inner
            .writer
            .write(move |conn| Ok(put_many(conn, std::slice::from_ref(&doc), now)?[0]))
            .await
    }

    async fn put_documents(&self, docs: Vec<NewDocument>, now: i64) -> Result<Vec<PutOutcome>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .writer
            .write(move |conn| put_many(conn, &docs, now))
            .await
    }

    async fn remove_document(&self, source: &str, path: &str) -> Result<bool> {
        let (source, path) = (source.to_string(), path.to_string());
        self.inner
            .writer
            .write(move |conn| {
                let id: Option<DocId> = conn
                    .prepare_cached("SELECT id FROM documents WHERE source = ?1 AND path = ?2")?
                    .query_row(params![source, path], |r| r.get(0))
                    .optional()?;
                match id {
                    Some(id) => delete_doc(conn, id).map(|()| true),
                    None => Ok(false),
                }
            })
            .await
    }

    async fn remove_source_documents(&self, source: &str) -> Result<u64> {
        let source = source.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let ids = conn
                    .prepare_cached("SELECT id FROM documents WHERE source = ?1")?
                    .query_map([&source], |r| r.get::<_, DocId>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for id in &ids {
                    delete_doc(conn, *id)?;
                }
                Ok(ids.len() as u64)
            })
            .await
    }

    async fn document(&self, id: DocId) -> Result<DocDetail> {
        self.read(move |conn| detail(conn, id)).await
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>> {
        let inner = self.inner.clone();
        self.read(move |conn| search(conn, &query, &inner.doc_freqs))
            .await
    }

    async fn doc_stats(&self) -> Result<DocStats> {
        self.read(stats).await
    }

    async fn compact_index(&self, pages: u32) -> Result<bool> {
        let pages = i64::from(pages.max(2));
        self.inner
            .writer
            .write(move |conn| {
                // The merge says whether it did any work only through the change counter.
                let before = conn.total_changes();
                conn.prepare_cached("INSERT INTO doc_fts (doc_fts, rank) VALUES ('merge', ?1)")?
                    .execute([pages])?;
                Ok(conn.total_changes() - before > 1)
            })
            .await
    }

    async fn doc_integrity_check(&self) -> Result<Vec<String>> {
        // FTS5's own check, against the content table (rank 1): reports a missing, stale or
        // extra index entry as SQLITE_CORRUPT_VTAB.
        // Through the writer: the check is an INSERT to SQLite, so it takes the write lock.
        self.inner
            .writer
            .write(|conn| {
                match conn.execute(
                    "INSERT INTO doc_fts (doc_fts, rank) VALUES ('integrity-check', 1)",
                    [],
                ) {
                    Ok(_) => Ok(vec!["ok".to_string()]),
                    Err(e)
                        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) =>
                    {
                        Ok(vec![format!("full-text index doc_fts: {e}")])
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }
}
