//! The parsers of untrusted formats, HTML, PDF and mail: the ones that can hang, blow up memory,
//! overflow the stack or panic on hostile input. Each is a pure function of the file's bytes;
//! the daemon never calls them itself, it sends the bytes to an extractor child process
//! ([`crate::isolate`]) that runs [`extract_untrusted`] under its caps.

use std::collections::BTreeMap;
use std::path::Path;

use fabric_core::doc::{DocType, NewDocument};
use serde_json::Value;

use crate::chunk::chunk_blocks;
use crate::error::ExtractError;
use crate::extract::{file_name, rel_string};
use crate::{FileMeta, Limits};

mod html;
mod pdf;

pub use html::MAX_HTML_DEPTH;
pub use pdf::MAX_TEXT_BYTES;

/// The types [`extract_untrusted`] parses, and so the types the ingest handler sends to the
/// extractor pool instead of parsing them in process.
pub fn parses(doc_type: DocType) -> bool {
    matches!(doc_type, DocType::Html | DocType::Pdf | DocType::Email)
}

/// Parses one file of an untrusted format into a document, like [`crate::extract()`] does
/// for the text-like ones: HTML (title from `<title>` or the first `<h1>`, text by html2text
/// cut along headings and paragraphs, `<a href>` links; nested deeper than
/// [`MAX_HTML_DEPTH`] is `parse_error` without parsing) and PDF (the text layer page by page,
/// the title of its information dictionary; `meta.pages`). Any other type is
/// [`ExtractError::Unsupported`]. Run it only in an extractor child: it may panic (caught
/// there) or exhaust memory (capped there).
pub fn extract_untrusted(
    doc_type: DocType,
    source: &str,
    rel_path: &Path,
    bytes: &[u8],
    file: FileMeta,
    limits: &Limits,
) -> Result<NewDocument, ExtractError> {
    limits.check_size((bytes.len() as u64).max(file.size))?;
    if doc_type == DocType::Email {
        // A message's bodies (charsets, encodings, HTML parts) come from mail-parser.
        return crate::mail::parse_message(source, &rel_string(rel_path), bytes, file, limits);
    }
    let mut meta = BTreeMap::new();
    let (title, links, blocks) = match doc_type {
        DocType::Html => {
            let p = html::parse(bytes)?;
            (p.title, p.links, p.blocks)
        }
        DocType::Pdf => {
            let (p, unreadable) = pdf::parse(bytes)?;
            meta.insert("pages".into(), Value::from(p.pages));
            if unreadable > 0 {
                meta.insert("unreadable_pages".into(), Value::from(unreadable));
            }
            (p.title, Vec::new(), p.blocks)
        }
        other => {
            return Err(ExtractError::Unsupported {
                doc_type: Some(other),
                what: format!("{} has no isolated parser", other.as_str()),
            })
        }
    };
    let path = rel_string(rel_path);
    let hash = if file.hash.is_empty() {
        blake3::hash(bytes).to_hex().to_string()
    } else {
        file.hash
    };
    Ok(NewDocument {
        source: source.to_string(),
        title: title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| file_name(rel_path)),
        chunks: chunk_blocks(&path, blocks, limits),
        path,
        doc_type,
        size: bytes.len() as u64,
        mtime: file.mtime_ms,
        hash,
        tags: Vec::new(),
        meta,
        links,
    })
}

/// A small valid PDF whose pages carry `pages` as their text layer (one line of text per
/// line, Helvetica), with `title` in its information dictionary: for tests and benchmarks.
pub fn sample_pdf(title: &str, pages: &[&str]) -> Vec<u8> {
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)")
    }
    let n = pages.len().max(1);
    // Objects: 1 catalog, 2 pages, 3 font, 4 info, then a page and its content per page.
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {n} >>",
            (0..n)
                .map(|i| format!("{} 0 R", 5 + 2 * i))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
        format!("<< /Title ({}) /Producer (fabric) >>", esc(title)),
    ];
    for i in 0..n {
        let text = pages.get(i).copied().unwrap_or("");
        let mut content = String::from("BT /F1 12 Tf 14 TL 72 720 Td");
        for line in text.lines() {
            content.push_str(&format!(" ({}) Tj T*", esc(line)));
        }
        content.push_str(" ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
             /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            6 + 2 * i
        ));
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::quarantine::QuarantineReason;

    fn ex(t: DocType, path: &str, bytes: &[u8]) -> Result<NewDocument, ExtractError> {
        extract_untrusted(
            t,
            "s",
            Path::new(path),
            bytes,
            FileMeta::default(),
            &Limits::default(),
        )
    }

    #[test]
    fn html_pages_are_documents() {
        let d = ex(
            DocType::Html,
            "site/index.html",
            b"<title>Home</title><h1>Hello</h1><p>A <a href='b.html'>link</a>.</p>",
        )
        .expect("html");
        assert_eq!(
            (d.title.as_str(), d.path.as_str()),
            ("Home", "site/index.html")
        );
        assert_eq!(d.doc_type, DocType::Html);
        assert_eq!(d.chunks.len(), 1);
        assert_eq!(d.chunks[0].heading, "Hello");
        assert_eq!(d.chunks[0].text, "A link.");
        assert_eq!(d.links[0].target, "b.html");
        let e = ex(
            DocType::Html,
            "deep.html",
            "<div>".repeat(100_000).as_bytes(),
        )
        .expect_err("deep");
        assert_eq!(e.reason(), QuarantineReason::ParseError);
    }

    #[test]
    fn pdf_text_layers_are_read_page_by_page() {
        let pdf = sample_pdf(
            "Annual (report)",
            &["Quarterly zebra figures\nsecond line", "Page two walrus"],
        );
        let d = ex(DocType::Pdf, "r.pdf", &pdf).expect("pdf");
        assert_eq!(d.title, "Annual (report)");
        assert_eq!(d.meta.get("pages"), Some(&Value::from(2)));
        let parts: Vec<(&str, &str)> = d
            .chunks
            .iter()
            .map(|c| (c.heading.as_str(), c.text.as_str()))
            .collect();
        assert!(
            parts
                .iter()
                .any(|(h, t)| *h == "page 1" && t.contains("zebra")),
            "{parts:?}"
        );
        assert!(
            parts
                .iter()
                .any(|(h, t)| *h == "page 2" && t.contains("walrus")),
            "{parts:?}"
        );
    }

    #[test]
    fn a_truncated_pdf_is_a_parse_error() {
        let pdf = sample_pdf("t", &["some words"]);
        for cut in [pdf.len() / 2, 40, 9] {
            let e = ex(DocType::Pdf, "t.pdf", &pdf[..cut]).expect_err("truncated");
            assert_eq!(e.reason(), QuarantineReason::ParseError, "{e}");
        }
    }

    #[test]
    fn other_types_are_not_parsed_here() {
        assert!(matches!(
            ex(DocType::Markdown, "a.md", b"# x"),
            Err(ExtractError::Unsupported {
                doc_type: Some(DocType::Markdown),
                ..
            })
        ));
        assert!(parses(DocType::Pdf) && parses(DocType::Html) && !parses(DocType::Text));
    }
}
