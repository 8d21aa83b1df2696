//! Detection of a file's [`DocType`] by extension *and* content: magic bytes name the common
//! binary formats, and NUL bytes or a high ratio of invalid UTF-8 mark anything else as binary.
//! A text extension on binary content is malformed (the caller quarantines it as
//! `parse_error`); a binary of no known format is unsupported (skipped, not quarantined).

use std::path::Path;

use fabric_core::doc::DocType;

/// How much of the start of a file the content checks look at.
pub const SNIFF_BYTES: usize = 8192;

/// Above this share of invalid UTF-8 bytes (in the sniffed prefix), content is binary.
pub const MAX_INVALID_UTF8_RATIO: f64 = 0.01;

/// The outcome of detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    /// Parse it as this type (the content agrees, or the type is itself binary, like PDF).
    Type(DocType),
    /// The extension says text but the content is binary (`what` names it): malformed.
    BinaryAsText { claimed: DocType, what: String },
    /// Binary content of no supported type.
    Binary { what: String },
}

/// The type an extension claims, with the language of a source file; `None` for an unknown
/// or missing extension.
pub fn type_of_extension(path: &Path) -> Option<(DocType, Option<&'static str>)> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    let t = match ext.as_str() {
        "txt" | "text" | "log" | "rst" | "adoc" | "org" => DocType::Text,
        "md" | "markdown" | "mdown" | "mkd" => DocType::Markdown,
        "html" | "htm" | "xhtml" => DocType::Html,
        "json" | "jsonl" | "geojson" => DocType::Json,
        "csv" | "tsv" => DocType::Csv,
        "eml" | "mbox" => DocType::Email,
        "pdf" => DocType::Pdf,
        other => return language(other).map(|l| (DocType::Code, Some(l))),
    };
    Some((t, None))
}

/// The programming language of a source file extension.
fn language(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "rs" => "rust",
        "py" | "pyi" => "python",
        "js" | "mjs" | "cjs" | "jsx" => "javascript",
        "ts" | "tsx" => "typescript",
        "go" => "go",
        "java" => "java",
        "kt" | "kts" => "kotlin",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "cpp",
        "cs" => "csharp",
        "rb" => "ruby",
        "php" => "php",
        "swift" => "swift",
        "scala" => "scala",
        "sh" | "bash" | "zsh" => "shell",
        "sql" => "sql",
        "lua" => "lua",
        "hs" => "haskell",
        "ex" | "exs" => "elixir",
        "erl" => "erlang",
        "clj" => "clojure",
        "r" => "r",
        "toml" => "toml",
        "yaml" | "yml" => "yaml",
        "xml" => "xml",
        "css" | "scss" => "css",
        _ => return None,
    })
}

/// The language of a source file, for [`DocType::Code`].
pub fn language_of(path: &Path) -> Option<&'static str> {
    match type_of_extension(path) {
        Some((DocType::Code, l)) => l,
        _ => None,
    }
}

/// A known binary format named by its magic bytes.
fn magic(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"%PDF-", "pdf"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"PK\x03\x04", "zip"),
        (b"\x1f\x8b", "gzip"),
        (b"\x7fELF", "elf"),
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"SQLite format 3\x00", "sqlite"),
        (b"\xcf\xfa\xed\xfe", "mach-o"),
        (b"MZ", "pe"),
        (b"\x00asm", "wasm"),
        (b"OggS", "ogg"),
        (b"ID3", "mp3"),
        (b"RIFF", "riff"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, name)| *name)
}

/// Why content is not text, if it is not: a known magic, NUL bytes, or too much invalid UTF-8
/// in the first [`SNIFF_BYTES`].
pub fn binary_reason(bytes: &[u8]) -> Option<String> {
    if let Some(m) = magic(bytes) {
        // "MZ" and "ID3" are short: require a NUL or invalid UTF-8 as well for them.
        if !matches!(m, "pe" | "mp3" | "riff") || sniff_binary(bytes).is_some() {
            return Some(format!("{m} content"));
        }
    }
    sniff_binary(bytes)
}

fn sniff_binary(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    if head.contains(&0) {
        return Some("binary content (NUL bytes)".into());
    }
    let invalid = invalid_utf8_bytes(head, head.len() < bytes.len());
    if head.is_empty() {
        return None;
    }
    let ratio = invalid as f64 / head.len() as f64;
    (ratio > MAX_INVALID_UTF8_RATIO)
        .then(|| format!("binary content ({:.1}% invalid UTF-8)", ratio * 100.0))
}

/// Bytes of `bytes` that are not valid UTF-8; with `truncated`, an incomplete sequence at the
/// very end (a cut through a character) does not count.
pub fn invalid_utf8_bytes(bytes: &[u8], truncated: bool) -> usize {
    let mut invalid = 0;
    let chunks: Vec<_> = bytes.utf8_chunks().collect();
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        let bad = c.invalid().len();
        let at_end = i + 1 == n && c.valid().len() + bad > 0;
        if truncated && at_end && bad > 0 && bad < 4 {
            continue;
        }
        invalid += bad;
    }
    invalid
}

/// Detects a file's type from its path and its first bytes.
pub fn detect(path: &Path, bytes: &[u8]) -> Detected {
    let claimed = type_of_extension(path).map(|(t, _)| t);
    match claimed {
        Some(t @ DocType::Pdf) => {
            if bytes.starts_with(b"%PDF-") {
                Detected::Type(t)
            } else {
                Detected::Binary {
                    what: "a .pdf without a PDF header".into(),
                }
            }
        }
        Some(t) => match binary_reason(bytes) {
            Some(what) => Detected::BinaryAsText { claimed: t, what },
            None => Detected::Type(t),
        },
        None => match (magic(bytes), binary_reason(bytes)) {
            (Some("pdf"), _) => Detected::Type(DocType::Pdf),
            (_, Some(what)) => Detected::Binary { what },
            (_, None) => Detected::Type(DocType::Text),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_types() {
        let t = |p: &str| type_of_extension(Path::new(p));
        assert_eq!(t("a/b.MD"), Some((DocType::Markdown, None)));
        assert_eq!(t("x.rs"), Some((DocType::Code, Some("rust"))));
        assert_eq!(t("x.csv"), Some((DocType::Csv, None)));
        assert_eq!(t("x.json"), Some((DocType::Json, None)));
        assert_eq!(t("x.htm"), Some((DocType::Html, None)));
        assert_eq!(t("x.eml"), Some((DocType::Email, None)));
        assert_eq!(t("x.unknownext"), None);
        assert_eq!(t("Makefile"), None);
    }

    #[test]
    fn content_overrides_a_text_extension() {
        let p = Path::new("n.md");
        assert_eq!(detect(p, b"# hi\n"), Detected::Type(DocType::Markdown));
        assert!(matches!(
            detect(p, b"\x89PNG\r\n\x1a\n...."),
            Detected::BinaryAsText {
                claimed: DocType::Markdown,
                ..
            }
        ));
        assert!(matches!(
            detect(p, b"abc\0def"),
            Detected::BinaryAsText { .. }
        ));
        let noisy: Vec<u8> = (0..200u8)
            .map(|i| if i % 10 == 0 { 0xff } else { b'a' })
            .collect();
        assert!(matches!(detect(p, &noisy), Detected::BinaryAsText { .. }));
        assert_eq!(
            detect(Path::new("README"), b"plain"),
            Detected::Type(DocType::Text)
        );
        assert!(matches!(
            detect(Path::new("img"), b"GIF89a\0"),
            Detected::Binary { .. }
        ));
        assert_eq!(
            detect(Path::new("doc"), b"%PDF-1.7"),
            Detected::Type(DocType::Pdf)
        );
    }

    #[test]
    fn a_cut_through_the_last_character_is_not_invalid() {
        let s = "é".repeat(10);
        let b = &s.as_bytes()[..5];
        assert_eq!(invalid_utf8_bytes(b, true), 0);
        assert_eq!(invalid_utf8_bytes(b, false), 1);
        assert_eq!(invalid_utf8_bytes(b"a\xffb", true), 1);
    }
}
