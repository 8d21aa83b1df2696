//! Chunking along a document's structure: the parsers cut a document into [`Block`]s
//! (a paragraph, a list, a whole code fence, a CSV row) under a heading path; this module packs
//! them into [`Chunk`]s of about [`Limits::chunk_min`]..[`Limits::chunk_max`] characters.
//!
//! Rules: a heading change is always a boundary; small blocks under one heading are merged
//! until the chunk reaches the minimum; a block over the maximum is split at sentence, then
//! line, then character boundaries, except an atomic block (a code fence), which is never split.
//! A chunk's key is a hash of the document path, its heading and its text, so an edit elsewhere
//! leaves it unchanged.

use fabric_core::doc::Chunk;

use crate::Limits;

/// One structural unit of a document, as a parser yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Heading path above the block (`Setup > Install`), empty at the top.
    pub heading: String,
    pub text: String,
    /// Never split (a code fence).
    pub atomic: bool,
}

impl Block {
    /// A block that may be split when too long.
    pub fn text(heading: &str, text: impl Into<String>) -> Self {
        Self {
            heading: heading.to_string(),
            text: text.into(),
            atomic: false,
        }
    }

    /// A block that is never split.
    pub fn atomic(heading: &str, text: impl Into<String>) -> Self {
        Self {
            atomic: true,
            ..Self::text(heading, text)
        }
    }
}

/// Hex characters kept of a chunk key's BLAKE3 (128 bits).
const KEY_HEX_LEN: usize = 32;

/// A chunk's stable key: BLAKE3 of path, heading and text (NUL-separated), hex, truncated.
pub fn chunk_key(path: &str, heading: &str, text: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(path.as_bytes());
    h.update(&[0]);
    h.update(heading.as_bytes());
    h.update(&[0]);
    h.update(text.as_bytes());
    let mut hex = h.finalize().to_hex().to_string();
    hex.truncate(KEY_HEX_LEN);
    hex
}

/// Packs blocks into chunks (see the module doc). Empty blocks are dropped; keys are unique
/// within the document (a repeated identical chunk gets `-2`, `-3`, … appended).
pub fn chunk_blocks(path: &str, blocks: Vec<Block>, limits: &Limits) -> Vec<Chunk> {
    let max = limits.chunk_max.max(1);
    let min = limits.chunk_min.min(max);
    let mut pieces: Vec<(String, String)> = Vec::new();
    let mut cur_heading = String::new();
    let mut buf = String::new();

    let flush = |pieces: &mut Vec<(String, String)>, heading: &str, buf: &mut String| {
        let t = buf.trim();
        if !t.is_empty() {
            pieces.push((heading.to_string(), t.to_string()));
        }
        buf.clear();
    };

    for block in blocks {
        let text = block.text.trim();
        if text.is_empty() {
            continue;
        }
        if block.heading != cur_heading {
            flush(&mut pieces, &cur_heading, &mut buf);
            cur_heading = block.heading.clone();
        }
        let len = text.chars().count();
        if !buf.is_empty() && buf.chars().count() + 2 + len > max {
            flush(&mut pieces, &cur_heading, &mut buf);
        }
        if len > max && !block.atomic {
            flush(&mut pieces, &cur_heading, &mut buf);
            for part in split_long(text, max) {
                pieces.push((cur_heading.clone(), part));
            }
            continue;
        }
        if !buf.is_empty() {
            buf.push_str("\n\n");
        }
        buf.push_str(text);
        if buf.chars().count() >= min {
            flush(&mut pieces, &cur_heading, &mut buf);
        }
    }
    flush(&mut pieces, &cur_heading, &mut buf);

    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    pieces
        .into_iter()
        .enumerate()
        .map(|(ord, (heading, text))| {
            let base = chunk_key(path, &heading, &text);
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            let key = if *n == 1 { base } else { format!("{base}-{n}") };
            Chunk {
                key,
                ord: u32::try_from(ord).unwrap_or(u32::MAX),
                heading,
                text,
            }
        })
        .collect()
}

/// Splits `text` into pieces of at most `max` characters, cutting after a sentence end
/// (`. `, `! `, `? `) if one lies in the second half of the window, else at the last newline,
/// else at the last space, else at a character boundary.
fn split_long(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        // Byte offset of the `max`-th character: the window is rest[..end].
        let end = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..end];
        let half = window.len() / 2;
        let cut = [". ", "! ", "? ", ".\n"]
            .iter()
            .filter_map(|p| window.rfind(p).map(|i| i + 1))
            .filter(|&i| i > half)
            .max()
            .or_else(|| window.rfind('\n').filter(|&i| i > 0))
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(end);
        let (piece, tail) = rest.split_at(cut);
        let piece = piece.trim();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = tail.trim_start();
    }
    if !rest.trim().is_empty() {
        out.push(rest.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min: usize, max: usize) -> Limits {
        Limits {
            chunk_min: min,
            chunk_max: max,
            ..Limits::default()
        }
    }

    #[test]
    fn small_blocks_under_one_heading_merge_and_headings_are_boundaries() {
        let blocks = vec![
            Block::text("A", "one"),
            Block::text("A", "two"),
            Block::text("B", "three"),
        ];
        let chunks = chunk_blocks("p.md", blocks, &limits(100, 200));
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "one\n\ntwo");
        assert_eq!(chunks[0].heading, "A");
        assert_eq!(chunks[1].heading, "B");
        assert_eq!(chunks[1].ord, 1);
    }

    #[test]
    fn long_paragraphs_split_at_sentences_and_fences_never() {
        let para = "This is a sentence. ".repeat(30);
        let fence = format!("```\n{}```", "let x = 1;\n".repeat(40));
        let chunks = chunk_blocks(
            "p.md",
            vec![Block::text("", &para), Block::atomic("", &fence)],
            &limits(50, 100),
        );
        assert!(chunks.len() > 2);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.text.chars().count() <= 100, "{}", c.text);
            assert!(c.text.ends_with('.'), "cut at a sentence: {:?}", c.text);
        }
        assert_eq!(chunks.last().map(|c| c.text.as_str()), Some(fence.as_str()));
    }

    #[test]
    fn split_long_handles_text_without_breaks_and_multibyte() {
        let s = "é".repeat(250);
        let parts = split_long(&s, 100);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), s);
    }

    #[test]
    fn keys_depend_on_path_heading_and_text_and_are_unique() {
        assert_ne!(chunk_key("a", "h", "t"), chunk_key("b", "h", "t"));
        assert_ne!(chunk_key("a", "h", "t"), chunk_key("a", "g", "t"));
        assert_eq!(chunk_key("a", "h", "t").len(), KEY_HEX_LEN);
        let chunks = chunk_blocks(
            "p",
            vec![Block::text("", "same"), Block::text("", "same")],
            &limits(1, 10),
        );
        assert_eq!(chunks.len(), 2);
        assert_ne!(chunks[0].key, chunks[1].key);
    }
}
