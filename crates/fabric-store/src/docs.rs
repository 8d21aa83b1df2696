//! The document store: documents, their chunks and links, kept beside the jobs (one backup
//! covers everything) and searched with the backend's own full-text index (SQLite FTS5,
//! PostgreSQL `tsvector` + GIN). Both backends implement [`DocStore`] and pass the same
//! conformance suite.

use async_trait::async_trait;
use fabric_core::doc::{
    DocDetail, DocId, DocStats, NewDocument, PutOutcome, SearchHit, SearchQuery,
};

use crate::Result;

/// Documents and search. Reached through [`crate::Store::docs`].
#[async_trait]
pub trait DocStore: Send + Sync {
    /// Stores `doc`, replacing the document of the same source and path with its chunks and
    /// links, in one transaction. A stored document of the same source, path and hash is
    /// left alone (nothing is written; `changed: false`).
    async fn put_document(&self, doc: NewDocument, now: i64) -> Result<PutOutcome>;

    /// Stores every document of `docs` as [`DocStore::put_document`] does, all in one
    /// transaction (all or nothing); the outcomes are in the order of `docs`. How an ingest
    /// job of many files commits them.
    async fn put_documents(&self, docs: Vec<NewDocument>, now: i64) -> Result<Vec<PutOutcome>>;

    /// Removes the document of `source` and `path` with its chunks and links; false when
    /// there was none.
    async fn remove_document(&self, source: &str, path: &str) -> Result<bool>;

    /// Removes every document of `source`; returns how many.
    async fn remove_source_documents(&self, source: &str) -> Result<u64>;

    /// One document with its chunks and links both ways (`NotFound` when unknown).
    async fn document(&self, id: DocId) -> Result<DocDetail>;

    /// The best-ranked chunks containing every term of `query.text` (see
    /// [`fabric_core::doc::parse_query`]), best first, at most `query.limit` (1 to 1000).
    /// A blank or over-long query or a bad limit is `Invalid`; a query without a searchable
    /// word finds nothing.
    async fn search(&self, query: SearchQuery) -> Result<Vec<SearchHit>>;

    /// Documents, chunks and bytes in total, by type and by source.
    async fn doc_stats(&self) -> Result<DocStats>;

    /// Merges up to `pages` pages of the full-text index's segments (SQLite FTS5's incremental
    /// merge; a big ingest leaves many segments, and every search reads all of them). True
    /// when there was work to do, false once the index is compact (and always on PostgreSQL,
    /// whose GIN index keeps itself).
    async fn compact_index(&self, pages: u32) -> Result<bool>;

    /// Checks the full-text index against the chunks it indexes; `["ok"]` when sound, else
    /// one line per problem.
    async fn doc_integrity_check(&self) -> Result<Vec<String>>;
}

/// A missing document.
pub(crate) fn doc_not_found(id: DocId) -> crate::StoreError {
    crate::StoreError::NotFound {
        what: "document",
        id: id.to_string(),
    }
}
