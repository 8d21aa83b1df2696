//! Fabric ingestion: sources, incremental scans, parsers and chunking.
//!
//! This crate owns turning files into [`NewDocument`]s, as a library with no store access:
//! - [`scan()`]: walks a source root (honouring `.gitignore`, `.fabricignore`, include and
//!   exclude globs), compares it with the previous [`FileIndex`] on `stat` alone, hashes what
//!   changed (BLAKE3) and returns the changes, the vanished paths and the new index; the caller
//!   persists the index.
//! - [`detect()`]: the [`DocType`] of a file by extension *and* content (a binary named `.md` is
//!   no markdown).
//! - [`extract()`]: the in-process parsers of the text-like formats (plain text, markdown with
//!   front matter, tags, wikilinks and embeds, source code, JSON, CSV), each a pure function of
//!   the file's bytes so it can move into an extractor child process unchanged; HTML, mail and
//!   PDF are refused as [`ExtractError::Unsupported`] for the isolated extractor.
//! - [`mail::parse_message`]: one mail message into an email document (pure, like
//!   [`extract()`]); [`mailbox`]: maildir and mbox sources on disk; [`git`]: git sources read
//!   from the object database (HEAD's files, commits, a tree diff against the last seen commit).
//! - [`untrusted`]: the parsers of the untrusted formats (HTML, PDF), pure functions that
//!   only an extractor child runs; [`isolate`]: the pool of those children (timeout, memory
//!   and output caps, replacement of a child that dies) and the child's main.
//! - [`chunk`] (module): cutting a document along its structure into chunks with stable keys.
//!
//! - [`handlers`]: the `scan` and `ingest` job handlers that run all of this through the job
//!   engine into the document store, with telemetry.
//!
//! Errors carry the quarantine reason of `fabric_core::quarantine`.

pub mod chunk;
pub mod detect;
mod error;
pub mod extract;
pub mod git;
pub mod handlers;
pub mod isolate;
mod items;
pub mod mail;
pub mod mailbox;
mod markdown;
pub mod scan;
pub mod untrusted;

pub use detect::{detect, Detected};
pub use error::{io_reason, ExtractError, IngestError};
pub use extract::{extract, read_capped, FileMeta, Limits};
pub use scan::{scan, ChangedFile, FileError, FileIndex, IndexEntry, ScanOptions, ScanReport};
pub use untrusted::extract_untrusted;

#[doc(no_inline)]
pub use fabric_core::doc::{Chunk, DocLink, DocType, NewDocument};
