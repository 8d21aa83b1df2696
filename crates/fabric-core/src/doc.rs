//! Documents of the ingestion layer: what a parsed file becomes (metadata, the chunks search
//! finds, the links it makes), as the extractors produce it and the store keeps it. Pure data;
//! parsing lives in `fabric-ingest`, storage and search in `fabric-store`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A document's identity: assigned by the store.
pub type DocId = i64;

/// Longest accepted search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 1024;

/// What kind of content a document holds (how it was parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DocType {
    Text,
    Markdown,
    Code,
    Html,
    Json,
    Csv,
    Email,
    Pdf,
    /// A commit message of a `git` source.
    Commit,
}

impl DocType {
    /// Every type.
    pub const ALL: [DocType; 9] = [
        DocType::Text,
        DocType::Markdown,
        DocType::Code,
        DocType::Html,
        DocType::Json,
        DocType::Csv,
        DocType::Email,
        DocType::Pdf,
        DocType::Commit,
    ];

    /// The snake_case name used in the store, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DocType::Text => "text",
            DocType::Markdown => "markdown",
            DocType::Code => "code",
            DocType::Html => "html",
            DocType::Json => "json",
            DocType::Csv => "csv",
            DocType::Email => "email",
            DocType::Pdf => "pdf",
            DocType::Commit => "commit",
        }
    }

    /// Parses a type name.
    pub fn parse(s: &str) -> Option<Self> {
        DocType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One piece of a document that search indexes and returns, cut along the document's
/// structure (a heading's section, a paragraph run, a whole code fence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Stable across re-runs of the same content: derived from the document's path and the
    /// chunk's text (not its position alone), so an edit elsewhere keeps the others' keys.
    pub key: String,
    /// 0-based position in the document.
    pub ord: u32,
    /// The heading path above it (`Setup > Install`), empty at the top.
    pub heading: String,
    pub text: String,
}

/// A link out of a document: a `[[wikilink]]`, an embed `![[...]]`, a markdown link, or a
/// mail's reply-to reference. `target` is as written (resolved by the reader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocLink {
    pub target: String,
    /// `wikilink`, `embed`, `link`, `reply`.
    pub kind: String,
}

/// A parsed file (or mail message, or commit), ready to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDocument {
    /// The source it belongs to.
    pub source: String,
    /// Its path relative to the source root (a mail's `path#message-id`, a commit's
    /// `commit/<sha>`); with `source`, the document's unique key: storing a document of the
    /// same source and path replaces the old one and its chunks.
    pub path: String,
    pub doc_type: DocType,
    pub title: String,
    /// Bytes of the file.
    pub size: u64,
    /// Modification time of the file (epoch ms).
    pub mtime: i64,
    /// BLAKE3 of the file's bytes, hex.
    pub hash: String,
    /// Tags: front matter `tags`, inline `#tags`.
    pub tags: Vec<String>,
    /// Everything else worth keeping: front matter fields, mail headers, commit fields.
    pub meta: BTreeMap<String, serde_json::Value>,
    pub links: Vec<DocLink>,
    pub chunks: Vec<Chunk>,
}

/// A stored document (without its chunks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: DocId,
    #[serde(flatten)]
    pub doc: NewDocumentMeta,
    /// When it was stored (epoch ms).
    pub indexed_at: i64,
    /// Chunks it holds.
    pub chunk_count: u32,
}

/// A document's metadata: [`NewDocument`] without its chunks and links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDocumentMeta {
    pub source: String,
    pub path: String,
    pub doc_type: DocType,
    pub title: String,
    pub size: u64,
    pub mtime: i64,
    pub hash: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, serde_json::Value>,
}

impl NewDocument {
    /// Its metadata alone.
    pub fn meta(&self) -> NewDocumentMeta {
        NewDocumentMeta {
            source: self.source.clone(),
            path: self.path.clone(),
            doc_type: self.doc_type,
            title: self.title.clone(),
            size: self.size,
            mtime: self.mtime,
            hash: self.hash.clone(),
            tags: self.tags.clone(),
            meta: self.meta.clone(),
        }
    }
}

/// One search hit: a chunk, ranked, with a snippet whose matched words are marked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub doc_id: DocId,
    pub source: String,
    pub path: String,
    pub title: String,
    pub chunk_ord: u32,
    pub heading: String,
    /// The matching passage with each matched term wrapped in `[` and `]`.
    pub snippet: String,
    /// Higher is better (the negated bm25 on SQLite, `ts_rank_cd` on PostgreSQL): comparable
    /// within one result list only.
    pub score: f64,
}

/// A search request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Words to find (all of them; a `"quoted phrase"` as a phrase); at most
    /// [`MAX_QUERY_BYTES`].
    pub text: String,
    pub source: Option<String>,
    pub tag: Option<String>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_types_round_trip_their_names() {
        for t in DocType::ALL {
            assert_eq!(DocType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).expect("serialise");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(DocType::parse("docx"), None);
    }
}
