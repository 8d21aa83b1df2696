//! Documents and search on PostgreSQL: the tables of migration 0005, a generated `tsvector`
//! per chunk under a GIN index, ranked by `ts_rank_cd` with snippets from `ts_headline`.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fabric_core::doc::{
    self, Chunk, DocCounts, DocDetail, DocId, DocLink, DocStats, DocType, Document, LinkIn,
    NewDocument, NewDocumentMeta, PutOutcome, SearchHit, SearchQuery,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{backend, PostgresStore};
use crate::docs::doc_not_found;
use crate::{DocStore, Result};

const DOC_COLS: &str =
    "id, source, path, doc_type, title, size, mtime, hash, tags, meta, indexed_at, chunk_count";

fn row_to_document(r: &Row) -> Result<Document> {
    let doc_type: String = r.try_get(3)?;
    let meta: serde_json::Value = r.try_get(9)?;
    Ok(Document {
        id: r.try_get(0)?,
        doc: NewDocumentMeta {
            source: r.try_get(1)?,
            path: r.try_get(2)?,
            doc_type: DocType::parse(&doc_type)
                .ok_or_else(|| backend(format!("unknown document type {doc_type}")))?,
            title: r.try_get(4)?,
            size: r.try_get::<_, i64>(5)?.max(0).unsigned_abs(),
            mtime: r.try_get(6)?,
            hash: r.try_get(7)?,
            tags: r.try_get(8)?,
            meta: serde_json::from_value(meta).map_err(backend)?,
        },
        indexed_at: r.try_get(10)?,
        chunk_count: r.try_get::<_, i32>(11)?.max(0).unsigned_abs(),
    })
}

/// The headline options: matched words in `[` `]`, up to two fragments of 8–24 words.
const HEADLINE: &str = "StartSel=\"[\", StopSel=\"]\", MaxWords=24, MinWords=8, ShortWord=0, \
     MaxFragments=2, FragmentDelimiter=\" … \"";

/// The search: ranks the matches (the GIN index finds them), keeps the best `$1`, and only
/// then builds their headlines (the costly part). `{q}` is the query, built from parameters.
/// Without a source or tag filter only the newest [`doc::RANK_WINDOW`] matches are ranked
/// (`ts_rank_cd` reads each match's `tsvector`; a word in most of a million chunks took a
/// quarter of a second), as on SQLite; with one, every match.
fn search_sql(q: &str, filtered: bool) -> String {
    let candidates = if filtered {
        "SELECT c.id FROM doc_chunks c CROSS JOIN q JOIN documents d ON d.id = c.doc_id
         WHERE c.tsv @@ q.q AND ($2::text IS NULL OR d.source = $2)
           AND ($3::text IS NULL OR d.tags @> ARRAY[$3::text])"
            .to_string()
    } else {
        format!(
            "SELECT c.id FROM doc_chunks c CROSS JOIN q
             WHERE c.tsv @@ q.q AND $2::text IS NULL AND $3::text IS NULL
             ORDER BY c.id DESC LIMIT {}",
            doc::RANK_WINDOW
        )
    };
    format!(
        "WITH q AS (SELECT {q} AS q),
         m AS MATERIALIZED ({candidates}),
         top AS (
             SELECT c.id, c.doc_id, c.ord, c.heading, c.text, ts_rank_cd(c.tsv, q.q) AS score
             FROM m JOIN doc_chunks c ON c.id = m.id CROSS JOIN q
             ORDER BY score DESC, c.id LIMIT $1)
         SELECT d.id, d.source, d.path, d.title, t.ord, t.heading,
                ts_headline('simple', t.text, q.q, '{HEADLINE}'), t.score::float8
         FROM top t JOIN documents d ON d.id = t.doc_id CROSS JOIN q
         ORDER BY t.score DESC, t.id"
    )
}

async fn detail<C: GenericClient>(c: &C, id: DocId) -> Result<DocDetail> {
    let row = c
        .query_opt(
            &format!("SELECT {DOC_COLS} FROM documents WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| doc_not_found(id))?;
    let document = row_to_document(&row)?;
    let chunks = c
        .query(
            "SELECT key, ord, heading, text FROM doc_chunks WHERE doc_id = $1 ORDER BY ord, id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Chunk {
                key: r.try_get(0)?,
                ord: r.try_get::<_, i32>(1)?.max(0).unsigned_abs(),
                heading: r.try_get(2)?,
                text: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let links_out = c
        .query(
            "SELECT target, kind FROM doc_links WHERE doc_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(DocLink {
                target: r.try_get(0)?,
                kind: r.try_get(1)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let targets = DocDetail::link_targets(&document.doc);
    let links_in = c
        .query(
            "SELECT DISTINCT d.id, d.source, d.path, d.title, l.kind
             FROM doc_links l JOIN documents d ON d.id = l.doc_id
             WHERE l.target = ANY($1) AND d.source = $2 AND d.id <> $3
             ORDER BY d.path, l.kind",
            &[&targets, &document.doc.source, &id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(LinkIn {
                doc_id: r.try_get(0)?,
                source: r.try_get(1)?,
                path: r.try_get(2)?,
                title: r.try_get(3)?,
                kind: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DocDetail {
        document,
        chunks,
        links_out,
        links_in,
    })
}

/// Stores `doc` inside transaction `tx` (see [`DocStore::put_document`]).
async fn put(tx: &impl GenericClient, doc: &NewDocument, now: i64) -> Result<PutOutcome> {
    let size = i64::try_from(doc.size).unwrap_or(i64::MAX);
    let meta = serde_json::to_value(&doc.meta).map_err(backend)?;
    let chunk_count = i32::try_from(doc.chunks.len()).unwrap_or(i32::MAX);
    // The upsert locks the row of this source and path, so concurrent puts of one
    // document run one after the other; an unchanged hash updates (and returns) nothing.
    let changed = tx
        .query_opt(
            "INSERT INTO documents (source, path, doc_type, title, size, mtime, hash, tags,
                 meta, indexed_at, chunk_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (source, path) DO UPDATE SET doc_type = excluded.doc_type,
                 title = excluded.title, size = excluded.size, mtime = excluded.mtime,
                 hash = excluded.hash, tags = excluded.tags, meta = excluded.meta,
                 indexed_at = excluded.indexed_at, chunk_count = excluded.chunk_count
             WHERE documents.hash <> excluded.hash
             RETURNING id",
            &[
                &doc.source,
                &doc.path,
                &doc.doc_type.as_str(),
                &doc.title,
                &size,
                &doc.mtime,
                &doc.hash,
                &doc.tags,
                &meta,
                &now,
                &chunk_count,
            ],
        )
        .await?;
    let Some(row) = changed else {
        let id: DocId = tx
            .query_one(
                "SELECT id FROM documents WHERE source = $1 AND path = $2",
                &[&doc.source, &doc.path],
            )
            .await?
            .try_get(0)?;
        return Ok(PutOutcome { id, changed: false });
    };
    let id: DocId = row.try_get(0)?;
    tx.execute("DELETE FROM doc_chunks WHERE doc_id = $1", &[&id])
        .await?;
    tx.execute("DELETE FROM doc_links WHERE doc_id = $1", &[&id])
        .await?;
    let ords: Vec<i32> = doc
        .chunks
        .iter()
        .map(|c| i32::try_from(c.ord).unwrap_or(i32::MAX))
        .collect();
    let keys: Vec<&str> = doc.chunks.iter().map(|c| c.key.as_str()).collect();
    let headings: Vec<&str> = doc.chunks.iter().map(|c| c.heading.as_str()).collect();
    let texts: Vec<&str> = doc.chunks.iter().map(|c| c.text.as_str()).collect();
    tx.execute(
        "INSERT INTO doc_chunks (doc_id, ord, key, heading, text)
         SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[])",
        &[&id, &ords, &keys, &headings, &texts],
    )
    .await?;
    let targets: Vec<&str> = doc.links.iter().map(|l| l.target.as_str()).collect();
    let kinds: Vec<&str> = doc.links.iter().map(|l| l.kind.as_str()).collect();
    tx.execute(
        "INSERT INTO doc_links (doc_id, target, kind)
         SELECT $1, u.t, u.k FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS u(t, k, n)
         ORDER BY n",
        &[&id, &targets, &kinds],
    )
    .await?;
    Ok(PutOutcome { id, changed: true })
}

#[async_trait]
impl DocStore for PostgresStore {
    async fn put_document(&self, doc: NewDocument, now: i64) -> Result<PutOutcome> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let out = put(&tx, &doc, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn put_documents(&self, docs: Vec<NewDocument>, now: i64) -> Result<Vec<PutOutcome>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut out = Vec::with_capacity(docs.len());
        for doc in &docs {
            out.push(put(&tx, doc, now).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn remove_document(&self, source: &str, path: &str) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM documents WHERE source = $1 AND path = $2",
                &[&source, &path],
            )
            .await?;
        Ok(n > 0)
    }

    async fn remove_source_documents(&self, source: &str) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM documents WHERE source = $1", &[&source])
            .await?)
    }

    async fn document(&self, id: DocId) -> Result<DocDetail> {
        let client = self.pool.get().await?;
        detail(&client, id).await
    }

    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>> {
        doc::check_limit(query.limit)?;
        let terms = doc::parse_query(&query.text)?;
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        // Every term a parameter of its own: user text never becomes tsquery syntax.
        let q = (0..terms.len())
            .map(|i| format!("phraseto_tsquery('simple', ${})", i + 4))
            .collect::<Vec<_>>()
            .join(" && ");
        let limit = crate::sql_limit(query.limit);
        let texts: Vec<&str> = terms.iter().map(|t| t.text()).collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit, &query.source, &query.tag];
        for t in &texts {
            params.push(t);
        }
        let client = self.pool.get().await?;
        let filtered = query.source.is_some() || query.tag.is_some();
        let rows = client.query(&search_sql(&q, filtered), &params).await?;
        rows.iter()
            .map(|r| {
                Ok(SearchHit {
                    doc_id: r.try_get(0)?,
                    source: r.try_get(1)?,
                    path: r.try_get(2)?,
                    title: r.try_get(3)?,
                    chunk_ord: r.try_get::<_, i32>(4)?.max(0).unsigned_abs(),
                    heading: r.try_get(5)?,
                    snippet: r.try_get(6)?,
                    score: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn doc_stats(&self) -> Result<DocStats> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT doc_type, source, COUNT(*), COALESCE(SUM(chunk_count), 0)::bigint,
                        COALESCE(SUM(size), 0)::bigint
                 FROM documents GROUP BY doc_type, source",
                &[],
            )
            .await?;
        let mut out = DocStats::default();
        for r in &rows {
            let n = DocCounts {
                documents: r.try_get::<_, i64>(2)?.unsigned_abs(),
                chunks: r.try_get::<_, i64>(3)?.unsigned_abs(),
                bytes: r.try_get::<_, i64>(4)?.unsigned_abs(),
            };
            let doc_type: String = r.try_get(0)?;
            let source: String = r.try_get(1)?;
            for c in [
                &mut out.total,
                out.by_type.entry(doc_type).or_default(),
                out.by_source.entry(source).or_default(),
            ] {
                c.documents += n.documents;
                c.chunks += n.chunks;
                c.bytes += n.bytes;
            }
        }
        Ok(out)
    }

    async fn compact_index(&self, _pages: u32) -> Result<bool> {
        Ok(false)
    }

    async fn doc_integrity_check(&self) -> Result<Vec<String>> {
        let client = self.pool.get().await?;
        let mut problems = Vec::new();
        // The GIN index must exist and be valid (a failed CREATE INDEX CONCURRENTLY or a
        // REINDEX leaves it invalid, and search then reads every chunk).
        let valid: Option<bool> = client
            .query_opt(
                "SELECT i.indisvalid AND i.indisready FROM pg_index i
                 JOIN pg_class c ON c.oid = i.indexrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relname = 'doc_chunks_tsv' AND n.nspname = current_schema()",
                &[],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        match valid {
            None => problems.push("full-text index doc_chunks_tsv is missing".to_string()),
            Some(false) => problems.push("full-text index doc_chunks_tsv is invalid".to_string()),
            Some(true) => {}
        }
        // What the index answers must agree with the table: every chunk is found through it
        // by the words of its own vector (a sample, through the index), and every document
        // holds the chunks it counts.
        let unfound: i64 = client
            .query_one(
                "WITH sample AS (
                     SELECT s.id, (SELECT to_tsquery('simple', quote_literal(word))
                                   FROM ts_stat('SELECT tsv FROM doc_chunks WHERE id = ' || s.id)
                                   ORDER BY word LIMIT 1) AS q
                     FROM (SELECT id FROM doc_chunks WHERE tsv <> ''::tsvector
                           ORDER BY random() LIMIT 20) s)
                 SELECT COUNT(*) FROM sample
                 WHERE NOT (sample.id = ANY (ARRAY(
                     SELECT c.id FROM doc_chunks c WHERE c.tsv @@ sample.q)))",
                &[],
            )
            .await?
            .try_get(0)?;
        if unfound > 0 {
            problems.push(format!(
                "{unfound} sampled chunks are not found by their own words"
            ));
        }
        let miscounted: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM documents d
                 WHERE d.chunk_count <> (SELECT COUNT(*) FROM doc_chunks c WHERE c.doc_id = d.id)",
                &[],
            )
            .await?
            .try_get(0)?;
        if miscounted > 0 {
            problems.push(format!(
                "{miscounted} documents hold another number of chunks than they count"
            ));
        }
        if problems.is_empty() {
            problems.push("ok".to_string());
        }
        Ok(problems)
    }
}
