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

/// Most matching chunks a search without a source or tag filter ranks: when its words match
/// more, only the newest this many matches are ranked (ranking reads every match it ranks,
/// about 2 µs each; a word that common says little about relevance). A filtered search ranks
/// every match. At 2,000 a query of common words took 6 ms at the median on an index of a
/// million chunks, at 1,000 3.6 ms (docs/benchmarks.md).
pub const RANK_WINDOW: usize = 1_000;

/// Most hits one search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    pub id: DocId,
    /// False when a document of the same source, path and hash was already stored: then
    /// nothing was written.
    pub changed: bool,
}

/// A document that links to another one (a link in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkIn {
    pub doc_id: DocId,
    pub source: String,
    pub path: String,
    pub title: String,
    pub kind: String,
}

/// A stored document with its chunks (in order) and its links both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocDetail {
    #[serde(flatten)]
    pub document: Document,
    pub chunks: Vec<Chunk>,
    pub links_out: Vec<DocLink>,
    /// Documents of the same source whose links target this one's path (with or without its
    /// extension), file name or title.
    pub links_in: Vec<LinkIn>,
}

impl DocDetail {
    /// The link targets that name `doc`: its path, its path without the extension, its file
    /// name with and without the extension, and its title.
    pub fn link_targets(doc: &NewDocumentMeta) -> Vec<String> {
        let mut out = vec![doc.path.clone()];
        let name = doc.path.rsplit('/').next().unwrap_or(&doc.path);
        for p in [doc.path.as_str(), name] {
            out.push(p.to_string());
            if let Some((stem, _)) = p.rsplit_once('.') {
                if !stem.is_empty() && !stem.ends_with('/') {
                    out.push(stem.to_string());
                }
            }
        }
        if !doc.title.is_empty() {
            out.push(doc.title.clone());
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Counts of one group of documents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocCounts {
    pub documents: u64,
    pub chunks: u64,
    /// Bytes of the files.
    pub bytes: u64,
}

/// What the document store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocStats {
    #[serde(flatten)]
    pub total: DocCounts,
    pub by_type: BTreeMap<String, DocCounts>,
    pub by_source: BTreeMap<String, DocCounts>,
}

/// One term of a search query, safe to hand to any full-text engine once quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryTerm {
    /// A word, to be found anywhere in the chunk.
    Word(String),
    /// Words to be found in this order, next to each other (a `"quoted phrase"`).
    Phrase(String),
}

impl QueryTerm {
    /// The term's text (a phrase's words separated by spaces).
    pub fn text(&self) -> &str {
        match self {
            QueryTerm::Word(w) | QueryTerm::Phrase(w) => w,
        }
    }

    /// The term as an FTS5 string: in double quotes, inner quotes doubled, so no character
    /// of it is query syntax (`*`, `NEAR(`, `-`, `OR`, `:` are all plain text in a string).
    pub fn fts5(&self) -> String {
        format!("\"{}\"", self.text().replace('"', "\"\""))
    }
}

/// The FTS5 query for `terms`: each as an FTS5 string ([`QueryTerm::fts5`]), all required.
pub fn fts5_conjunction(terms: &[QueryTerm]) -> String {
    terms
        .iter()
        .map(QueryTerm::fts5)
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Turns a user's search text into terms, all of which a hit must contain: text between
/// double quotes is a phrase, every other whitespace-separated token a word. Tokens without
/// any letter or digit (`*`, `-`, a lone `"`) are dropped: they cannot match and must not be
/// syntax. Errors (naming `query`) when the text is blank or longer than
/// [`MAX_QUERY_BYTES`]; an empty list means that nothing in it can match.
pub fn parse_query(text: &str) -> Result<Vec<QueryTerm>, crate::CoreError> {
    if text.trim().is_empty() {
        return Err(crate::CoreError::invalid("query", "is empty"));
    }
    if text.len() > MAX_QUERY_BYTES {
        return Err(crate::CoreError::invalid(
            "query",
            format!("is {} bytes long; at most {MAX_QUERY_BYTES}", text.len()),
        ));
    }
    let searchable = |s: &str| s.chars().any(char::is_alphanumeric);
    // Control characters separate words: a NUL would end an FTS5 string early and is no
    // valid text to PostgreSQL.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut terms = Vec::new();
    // Between quotes on odd pieces; an unbalanced last quote opens nothing.
    let pieces: Vec<&str> = text.split('"').collect();
    let balanced = pieces.len() % 2 == 1;
    for (i, piece) in pieces.iter().enumerate() {
        let quoted = i % 2 == 1 && (balanced || i + 1 < pieces.len());
        if quoted {
            let words: Vec<&str> = piece.split_whitespace().filter(|w| searchable(w)).collect();
            match words.len() {
                0 => {}
                1 => terms.push(QueryTerm::Word(words[0].to_string())),
                _ => terms.push(QueryTerm::Phrase(words.join(" "))),
            }
        } else {
            terms.extend(
                piece
                    .split_whitespace()
                    .filter(|w| searchable(w))
                    .map(|w| QueryTerm::Word(w.to_string())),
            );
        }
    }
    Ok(terms)
}

/// Checks a search's limit: 1 to [`MAX_SEARCH_LIMIT`] (an error names `limit`).
pub fn check_limit(limit: usize) -> Result<(), crate::CoreError> {
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(crate::CoreError::invalid(
            "limit",
            format!("{limit} is not between 1 and {MAX_SEARCH_LIMIT}"),
        ));
    }
    Ok(())
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

    #[test]
    fn queries_become_quoted_terms_and_phrases() {
        let terms = parse_query(r#"alpha "beta  gamma" * - OR a:b NEAR( "#).expect("parse");
        assert_eq!(
            terms,
            vec![
                QueryTerm::Word("alpha".into()),
                QueryTerm::Phrase("beta gamma".into()),
                QueryTerm::Word("OR".into()),
                QueryTerm::Word("a:b".into()),
                QueryTerm::Word("NEAR(".into()),
            ]
        );
        assert_eq!(QueryTerm::Word("a\"b".into()).fts5(), "\"a\"\"b\"");
        assert_eq!(parse_query("\"").expect("parse"), vec![]);
        assert_eq!(
            parse_query("a\u{0}b").expect("parse"),
            vec![QueryTerm::Word("a".into()), QueryTerm::Word("b".into())]
        );
        assert_eq!(
            parse_query("\"open phrase").expect("parse"),
            vec![
                QueryTerm::Word("open".into()),
                QueryTerm::Word("phrase".into())
            ]
        );
        for bad in ["", "   ", &"x".repeat(MAX_QUERY_BYTES + 1)] {
            let e = parse_query(bad).expect_err("refused");
            assert!(e.to_string().contains("query"), "{e}");
        }
        assert!(check_limit(0).is_err() && check_limit(1001).is_err());
        assert!(check_limit(1000).is_ok());
    }

    #[test]
    fn link_targets_name_a_document_by_path_name_and_title() {
        let doc = NewDocumentMeta {
            source: "vault".into(),
            path: "notes/Setup Guide.md".into(),
            doc_type: DocType::Markdown,
            title: "Setup".into(),
            size: 0,
            mtime: 0,
            hash: String::new(),
            tags: vec![],
            meta: BTreeMap::new(),
        };
        let t = DocDetail::link_targets(&doc);
        for want in [
            "notes/Setup Guide.md",
            "notes/Setup Guide",
            "Setup Guide.md",
            "Setup Guide",
            "Setup",
        ] {
            assert!(t.contains(&want.to_string()), "{t:?}");
        }
    }
}
