//! PDF → text from its text layer, page by page (pdf-extract over lopdf). A page is a chunk
//! boundary (heading `page N`); the title comes from the document information dictionary.
//! pdf-extract panics on some malformed input: only the extractor child calls this, behind
//! `catch_unwind`.

use std::io::Write;

use pdf_extract::{Document, Object, OutputError, PlainTextOutput};

use crate::chunk::Block;
use crate::error::ExtractError;
use crate::extract::paragraphs;

/// Most text taken from one PDF; more is `resource_exhausted` (a few KiB of compressed
/// content streams can expand to gigabytes).
pub const MAX_TEXT_BYTES: usize = 64 << 20;

/// What the PDF parser yields.
pub(super) struct Parsed {
    pub title: Option<String>,
    pub pages: u32,
    pub blocks: Vec<Block>,
}

/// A writer that refuses to grow past a cap, so text extraction stops there.
struct Capped {
    buf: Vec<u8>,
    room: usize,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > self.room {
            self.over = true;
            return Err(std::io::Error::other("text cap reached"));
        }
        self.room -= data.len();
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let (_, info) = doc.dereference(info).ok()?;
    let t = info.as_dict().ok()?.get(b"Title").ok()?;
    let (_, t) = doc.dereference(t).ok()?;
    let t = match t {
        Object::String(..) => pdf_extract::decode_text_string(t).ok()?,
        _ => return None,
    };
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    (!t.is_empty()).then_some(t)
}

/// Parses a PDF's text layer (see the module doc). An unreadable file (truncated, no
/// cross-reference table to be found, encrypted with a password) is `parse_error`; a page
/// whose content cannot be read is skipped and counted in `meta.unreadable_pages` by the
/// caller.
pub(super) fn parse(bytes: &[u8]) -> Result<(Parsed, u32), ExtractError> {
    let mut doc =
        Document::load_mem(bytes).map_err(|e| ExtractError::Parse(format!("invalid PDF: {e}")))?;
    if doc.is_encrypted() {
        doc.decrypt("").map_err(|e| {
            ExtractError::Parse(format!("encrypted PDF that needs a password: {e}"))
        })?;
    }
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    if pages.is_empty() {
        return Err(ExtractError::Parse("PDF without pages".into()));
    }
    let mut out = Capped {
        buf: Vec::new(),
        room: MAX_TEXT_BYTES,
        over: false,
    };
    let mut blocks = Vec::new();
    let mut unreadable = 0u32;
    for &n in &pages {
        let before = out.buf.len();
        let r = {
            let w: &mut dyn Write = &mut out;
            let mut dev = PlainTextOutput::new(w);
            pdf_extract::output_doc_page(&doc, &mut dev, n)
        };
        if out.over {
            return Err(ExtractError::ResourceExhausted(format!(
                "PDF text over {} MiB",
                MAX_TEXT_BYTES >> 20
            )));
        }
        match r {
            Ok(()) => {
                let text = String::from_utf8_lossy(&out.buf[before..]);
                let heading = format!("page {n}");
                blocks.extend(
                    paragraphs(&text)
                        .into_iter()
                        .map(|b| Block::text(&heading, b.text)),
                );
            }
            Err(
                OutputError::PdfError(_) | OutputError::FormatError(_) | OutputError::IoError(_),
            ) => {
                unreadable += 1;
                out.room += out.buf.len() - before;
                out.buf.truncate(before);
            }
        }
    }
    if unreadable as usize == pages.len() {
        return Err(ExtractError::Parse(format!(
            "no page of the PDF's {} could be read",
            pages.len()
        )));
    }
    Ok((
        Parsed {
            title: title(&doc),
            pages: pages.len() as u32,
            blocks,
        },
        unreadable,
    ))
}
