//! The Console's document actions: search, one document, stats and the index check. Read
//! only (documents are written by the ingest handlers), so nothing here is audited.

use fabric_core::doc::{DocDetail, DocId, DocStats, SearchHit, SearchQuery};

use crate::console::{Console, Result};

/// Hits a search returns when no limit is given.
pub const DEFAULT_SEARCH_LIMIT: usize = 10;

impl Console {
    /// The best-ranked chunks containing every word of `text` (a `"quoted phrase"` as a
    /// phrase), optionally of one source and one tag; `limit` defaults to
    /// [`DEFAULT_SEARCH_LIMIT`] and is at most 1000. A blank or over-long query is an
    /// invalid `query`.
    pub async fn docs_search(
        &self,
        text: &str,
        source: Option<&str>,
        tag: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<SearchHit>> {
        let query = SearchQuery {
            text: text.to_string(),
            source: source.map(str::to_string),
            tag: tag.map(str::to_string),
            limit: limit.unwrap_or(DEFAULT_SEARCH_LIMIT),
        };
        Ok(self.store().docs().search(query).await?)
    }

    /// One document with its chunks and its links both ways.
    pub async fn doc(&self, id: DocId) -> Result<DocDetail> {
        Ok(self.store().docs().document(id).await?)
    }

    /// Documents, chunks and bytes in total, by type and by source.
    pub async fn docs_stats(&self) -> Result<DocStats> {
        Ok(self.store().docs().doc_stats().await?)
    }

    /// The full-text index's own integrity check: `["ok"]` when sound.
    pub async fn docs_check(&self) -> Result<Vec<String>> {
        Ok(self.store().docs().doc_integrity_check().await?)
    }
}
