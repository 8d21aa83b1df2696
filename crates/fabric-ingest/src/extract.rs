//! Extraction of the text-like formats, in process: plain text, markdown, source code, JSON
//! and CSV. [`extract`] is a pure function of the file's bytes and metadata, so it can move
//! into an extractor child process unchanged.
//!
//! UTF-8 policy: JSON and CSV must be valid UTF-8 (else `parse_error`). Text, markdown and
//! code with at most [`MAX_INVALID_UTF8_RATIO`] invalid bytes are decoded lossily (each bad
//! sequence becomes U+FFFD; `meta.lossy_utf8_bytes` counts them); more is `parse_error`.
//! A leading UTF-8 byte-order mark is dropped.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use fabric_core::doc::{DocType, NewDocument};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chunk::{chunk_blocks, Block};
use crate::detect::{detect, invalid_utf8_bytes, language_of, Detected, MAX_INVALID_UTF8_RATIO};
use crate::error::ExtractError;
use crate::markdown;
use crate::scan::IndexEntry;

/// Caps and chunk sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest file parsed, in bytes (default 32 MiB); over it → `resource_exhausted`.
    pub max_bytes: u64,
    /// A chunk is closed once it reaches this many characters (default 1,000).
    pub chunk_min: usize,
    /// No chunk grows past this many characters by merging, and a longer paragraph is split
    /// (default 2,000); a code fence is never split, so one may be longer.
    pub chunk_max: usize,
}

impl Limits {
    /// `TooLarge` when `size` bytes are over [`Limits::max_bytes`].
    pub fn check_size(&self, size: u64) -> Result<(), ExtractError> {
        if size > self.max_bytes {
            return Err(ExtractError::TooLarge {
                size,
                cap: self.max_bytes,
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024 * 1024,
            chunk_min: 1000,
            chunk_max: 2000,
        }
    }
}

/// What the scan knows of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    /// Modification time, epoch milliseconds.
    pub mtime_ms: i64,
    /// BLAKE3 of the content, hex; computed from the bytes when empty.
    pub hash: String,
}

impl From<&IndexEntry> for FileMeta {
    fn from(e: &IndexEntry) -> Self {
        Self {
            size: e.size,
            mtime_ms: e.mtime_ns.div_euclid(1_000_000),
            hash: e.hash.clone(),
        }
    }
}

/// Reads `root/rel_path`, refusing a file over the cap before reading it (and one that grew
/// past it while read). A missing file is `connector_error`, EACCES `permission_denied`.
pub fn read_capped(root: &Path, rel_path: &Path, limits: &Limits) -> Result<Vec<u8>, ExtractError> {
    let path = root.join(rel_path);
    let f = std::fs::File::open(&path).map_err(|e| ExtractError::io(&e))?;
    let size = f.metadata().map_err(|e| ExtractError::io(&e))?.len();
    limits.check_size(size)?;
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| ExtractError::io(&e))?;
    limits.check_size(buf.len() as u64)?;
    Ok(buf)
}

pub(crate) fn rel_string(rel_path: &Path) -> String {
    rel_path
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn file_name(rel_path: &Path) -> String {
    rel_path
        .file_stem()
        .or_else(|| rel_path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Decodes per the module's UTF-8 policy; returns the text and the invalid bytes replaced.
fn decode(bytes: &[u8], strict: bool) -> Result<(Cow<'_, str>, usize), ExtractError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok((Cow::Borrowed(s), 0)),
        Err(e) if strict => Err(ExtractError::Parse(format!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to()
        ))),
        Err(e) => {
            let bad = invalid_utf8_bytes(bytes, false);
            let ratio = bad as f64 / bytes.len().max(1) as f64;
            if ratio > MAX_INVALID_UTF8_RATIO {
                return Err(ExtractError::Parse(format!(
                    "invalid UTF-8 ({bad} bad bytes, first at byte {})",
                    e.valid_up_to()
                )));
            }
            Ok((String::from_utf8_lossy(bytes), bad))
        }
    }
}

/// Blank-line separated paragraphs, under no heading.
pub(crate) fn paragraphs(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(Block::text("", std::mem::take(&mut cur)));
            }
        } else {
            if !cur.is_empty() {
                cur.push('\n');
            }
            cur.push_str(line.trim_end());
        }
    }
    if !cur.is_empty() {
        out.push(Block::text("", cur));
    }
    out
}

/// JSON: every scalar as `key: value` (array items as the value), grouped under the path of
/// the object holding it (`items > 0 > owner`); a `.jsonl` stream's values are `[0]`, `[1]`, ….
fn json_blocks(text: &str) -> Result<(Vec<Block>, Option<String>), ExtractError> {
    let values = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ExtractError::Parse(format!("invalid JSON: {e}")))?;
    let title = match values.as_slice() {
        [Value::Object(m)] => ["title", "name"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    };
    let mut blocks: Vec<Block> = Vec::new();
    let many = values.len() > 1;
    for (i, v) in values.iter().enumerate() {
        let mut path = if many {
            vec![format!("[{i}]")]
        } else {
            Vec::new()
        };
        json_walk(v, &mut path, &mut blocks);
    }
    Ok((blocks, title))
}

fn json_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_line(blocks: &mut Vec<Block>, path: &[String], line: String) {
    let heading = path.join(" > ");
    match blocks.last_mut() {
        Some(b) if b.heading == heading => {
            b.text.push('\n');
            b.text.push_str(&line);
        }
        _ => blocks.push(Block::text(&heading, line)),
    }
}

fn json_walk(v: &Value, path: &mut Vec<String>, blocks: &mut Vec<Block>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                match json_scalar(child) {
                    Some(s) => json_line(blocks, path, format!("{k}: {s}")),
                    None => {
                        path.push(k.clone());
                        json_walk(child, path, blocks);
                        path.pop();
                    }
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                match json_scalar(child) {
                    Some(s) => json_line(blocks, path, s),
                    None => {
                        path.push(i.to_string());
                        json_walk(child, path, blocks);
                        path.pop();
                    }
                }
            }
        }
        _ => {
            if let Some(s) = json_scalar(v) {
                json_line(blocks, path, s);
            }
        }
    }
}

/// CSV (TSV by extension): a `columns:` block, then each row as `column: value | …`.
fn csv_blocks(
    text: &str,
    tab: bool,
    meta: &mut BTreeMap<String, Value>,
) -> Result<Vec<Block>, ExtractError> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(if tab { b'\t' } else { b',' })
        .from_reader(text.as_bytes());
    let err = |e: csv::Error| ExtractError::Parse(format!("invalid CSV: {e}"));
    let headers: Vec<String> = rdr
        .headers()
        .map_err(err)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut blocks = vec![Block::text("", format!("columns: {}", headers.join(", ")))];
    let mut rows = 0u64;
    for rec in rdr.records() {
        let rec = rec.map_err(err)?;
        rows += 1;
        let line = rec
            .iter()
            .enumerate()
            .map(|(i, v)| match headers.get(i) {
                Some(h) if !h.is_empty() => format!("{h}: {v}"),
                _ => v.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" | ");
        blocks.push(Block::text("", line));
    }
    meta.insert("columns".into(), Value::from(headers));
    meta.insert("rows".into(), Value::from(rows));
    Ok(blocks)
}

/// Parses one file of a source into a document (see the module doc).
///
/// `rel_path` is relative to the source root and names the document; `bytes` is the whole
/// file. Refuses with [`ExtractError::TooLarge`] over `limits.max_bytes`,
/// [`ExtractError::Parse`] for binary content under a text extension or malformed content, and
/// [`ExtractError::Unsupported`] for HTML, mail and PDF (the isolated extractor's) and for
/// binaries of no known format.
pub fn extract(
    source: &str,
    rel_path: &Path,
    bytes: &[u8],
    file: FileMeta,
    limits: &Limits,
) -> Result<NewDocument, ExtractError> {
    limits.check_size((bytes.len() as u64).max(file.size))?;
    let doc_type = match detect(rel_path, bytes) {
        Detected::Type(t) => t,
        Detected::BinaryAsText { claimed, what } => {
            return Err(ExtractError::Parse(format!(
                "{what} in a file named as {}",
                claimed.as_str()
            )))
        }
        Detected::Binary { what } => {
            return Err(ExtractError::Unsupported {
                doc_type: None,
                what,
            })
        }
    };
    if matches!(
        doc_type,
        DocType::Html | DocType::Email | DocType::Pdf | DocType::Commit
    ) {
        return Err(ExtractError::Unsupported {
            doc_type: Some(doc_type),
            what: format!("{} goes to the isolated extractor", doc_type.as_str()),
        });
    }
    let strict = matches!(doc_type, DocType::Json | DocType::Csv);
    let (text, lossy) = decode(bytes, strict)?;
    let path = rel_string(rel_path);
    let mut title = None;
    let mut tags = Vec::new();
    let mut links = Vec::new();
    let mut meta = BTreeMap::new();
    if lossy > 0 {
        meta.insert("lossy_utf8_bytes".into(), Value::from(lossy));
    }
    let blocks = match doc_type {
        DocType::Markdown => {
            let p = markdown::parse(&text);
            title = p.title;
            tags = p.tags;
            links = p.links;
            meta.extend(p.meta);
            p.blocks
        }
        DocType::Code => {
            if let Some(lang) = language_of(rel_path) {
                meta.insert("language".into(), Value::from(lang));
            }
            paragraphs(&text)
        }
        DocType::Json => {
            let (b, t) = json_blocks(&text)?;
            title = t;
            b
        }
        DocType::Csv => {
            let tab = rel_path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            csv_blocks(&text, tab, &mut meta)?
        }
        _ => paragraphs(&text),
    };
    let hash = if file.hash.is_empty() {
        blake3::hash(bytes).to_hex().to_string()
    } else {
        file.hash
    };
    let chunks = chunk_blocks(&path, blocks, limits);
    Ok(NewDocument {
        source: source.to_string(),
        title: title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| file_name(rel_path)),
        path,
        doc_type,
        size: bytes.len() as u64,
        mtime: file.mtime_ms,
        hash,
        tags,
        meta,
        links,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::quarantine::QuarantineReason;

    fn ex(path: &str, bytes: &[u8]) -> Result<NewDocument, ExtractError> {
        extract(
            "s",
            Path::new(path),
            bytes,
            FileMeta::default(),
            &Limits::default(),
        )
    }

    #[test]
    fn plain_text_and_code() {
        let d = ex("notes/a.txt", b"one\n\ntwo\n").expect("text");
        assert_eq!(d.doc_type, DocType::Text);
        assert_eq!(d.title, "a");
        assert_eq!(d.path, "notes/a.txt");
        assert_eq!(d.chunks.len(), 1);
        assert_eq!(d.hash, blake3::hash(b"one\n\ntwo\n").to_hex().to_string());
        let d = ex("src/main.rs", b"fn main() {}\n").expect("code");
        assert_eq!(d.doc_type, DocType::Code);
        assert_eq!(d.meta.get("language"), Some(&Value::from("rust")));
    }

    #[test]
    fn json_is_flattened_with_paths_as_headings() {
        let d = ex(
            "d.json",
            br#"{"title":"Cfg","owner":{"name":"ann","langs":["rust","go"]},"items":[{"id":1}]}"#,
        )
        .expect("json");
        assert_eq!(d.title, "Cfg");
        let parts: Vec<(&str, &str)> = d
            .chunks
            .iter()
            .map(|c| (c.heading.as_str(), c.text.as_str()))
            .collect();
        assert!(parts.contains(&("owner", "name: ann")), "{parts:?}");
        assert!(parts.contains(&("owner > langs", "rust\ngo")), "{parts:?}");
        assert!(parts.contains(&("items > 0", "id: 1")), "{parts:?}");
        assert_eq!(
            ex("d.json", b"{nope").map_err(|e| e.reason()).err(),
            Some(QuarantineReason::ParseError)
        );
    }

    #[test]
    fn csv_rows_become_text() {
        let d = ex("t.csv", b"name,city\nann,Paris\nbob,\"Oslo, NO\"\n").expect("csv");
        assert_eq!(d.meta.get("rows"), Some(&Value::from(2)));
        let text = &d.chunks[0].text;
        assert!(text.contains("columns: name, city"));
        assert!(text.contains("name: bob | city: Oslo, NO"), "{text}");
        let d = ex("t.tsv", b"a\tb\n1\t2\n").expect("tsv");
        assert!(d.chunks[0].text.contains("a: 1 | b: 2"));
    }

    #[test]
    fn utf8_policy_and_caps() {
        let mut few_bad = b"hello world ".repeat(100);
        few_bad.push(0xff);
        let d = ex("a.txt", &few_bad).expect("lossy text");
        assert_eq!(d.meta.get("lossy_utf8_bytes"), Some(&Value::from(1)));
        assert!(matches!(
            ex("a.json", b"{\"a\":\"\xff\"}"),
            Err(ExtractError::Parse(_))
        ));
        let tiny = Limits {
            max_bytes: 3,
            ..Limits::default()
        };
        let e =
            extract("s", Path::new("a.txt"), b"abcd", FileMeta::default(), &tiny).expect_err("cap");
        assert_eq!(e.reason(), QuarantineReason::ResourceExhausted);
        assert!(matches!(
            ex("p.html", b"<p>x</p>"),
            Err(ExtractError::Unsupported {
                doc_type: Some(DocType::Html),
                ..
            })
        ));
        assert!(matches!(
            ex("img.png", b"\x89PNG\r\n\x1a\n\0\0"),
            Err(ExtractError::Unsupported { doc_type: None, .. })
        ));
    }
}
