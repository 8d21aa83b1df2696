//! Mail sources on disk, without store access: which files of a maildir are messages and
//! under which stable document path they are kept, what changed in an mbox source, and the
//! messages of one mbox file as documents.
//!
//! Maildir: the messages are the files under `cur/` and `new/` of the root and of every
//! sub-folder (Maildir++ `.Sent/cur`, or nested `Sent/cur`); `tmp/` and everything else is
//! ignored. A message's document path is its folder and the *unique* part of its file name
//! (before the `:2,` info), e.g. `1720000000.M1P2.host` or `.Sent/1720000000.M3P4.host`, so a
//! flag change (`new/X` → `cur/X:2,S`) keeps the document: the move is neither a removal nor
//! a re-ingest when the content is the same.
//!
//! Mbox: the root is an mbox file or a directory of them; each changed file is ingested as a
//! whole and its messages become documents `FILE#<message-id>` (`FILE#<n>`, 1-based, for a
//! message without a Message-ID or with one seen earlier in the file).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufReader;
use std::path::Path;

use fabric_core::quarantine::QuarantineReason;

use crate::error::{io_reason, IngestError};
use crate::scan::{hash_file, scan, scan_filtered, stat_fields};
use crate::{ChangedFile, ExtractError, FileIndex, IndexEntry, ScanOptions};
use crate::{FileError, ScanReport};

/// Is `rel` (a `/`-separated relative path) a maildir message: a file right under a `cur`
/// or `new` directory?
pub fn is_maildir_message(rel: &str) -> bool {
    let mut parts = rel.rsplit('/');
    let _file = parts.next();
    matches!(parts.next(), Some("cur" | "new"))
}

/// The stable document path of the maildir message at `rel`: its folder (the path above
/// `cur`/`new`, none at the root) and the unique part of its name (before `:`).
pub fn maildir_doc_path(rel: &str) -> String {
    let (dir, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let unique = file.split_once(':').map_or(file, |(u, _)| u);
    match dir.rsplit_once('/') {
        Some((folder, _cur_or_new)) => format!("{folder}/{unique}"),
        None => unique.to_string(),
    }
}

/// A maildir scan: the files as [`scan`] sees them, and what to do with the documents.
#[derive(Debug, Default)]
pub struct MaildirScan {
    pub report: ScanReport,
    /// Files to ingest, each with its document path.
    pub ingest: Vec<(ChangedFile, String)>,
    /// Document paths whose every file is gone.
    pub remove: Vec<String>,
    /// Changed files whose message was known under another name with the same content
    /// (a flag change): nothing to ingest.
    pub renamed: u64,
}

/// Scans a maildir root against the previous file index (keyed by the files' relative
/// paths, so unchanged files are skipped on `stat`), and maps the changes to documents.
pub fn scan_maildir(
    root: &Path,
    previous: &FileIndex,
    opts: &ScanOptions,
) -> Result<MaildirScan, IngestError> {
    let report = scan_filtered(root, previous, opts, true, &is_maildir_message)?;
    let current: BTreeSet<String> = report.index.keys().map(|k| maildir_doc_path(k)).collect();
    let known: BTreeMap<String, &str> = previous
        .iter()
        .map(|(k, e)| (maildir_doc_path(k), e.hash.as_str()))
        .collect();
    let mut out = MaildirScan::default();
    let mut queued = BTreeSet::new();
    for c in &report.changed {
        let doc = maildir_doc_path(&c.path);
        if !opts.full && c.new && known.get(&doc) == Some(&c.entry.hash.as_str()) {
            out.renamed += 1;
            continue;
        }
        if queued.insert(doc.clone()) {
            out.ingest.push((c.clone(), doc));
        }
    }
    let gone: BTreeSet<String> = report
        .vanished
        .iter()
        .map(|v| maildir_doc_path(v))
        .filter(|d| !current.contains(d))
        .collect();
    out.remove = gone.into_iter().collect();
    out.report = report;
    Ok(out)
}

/// Finds a maildir message again after it moved (`new/X` → `cur/X:2,S`, or a flag change):
/// the file of the same folder and unique name, relative to the root.
pub fn find_maildir_message(root: &Path, rel: &str) -> Option<String> {
    let doc = maildir_doc_path(rel);
    let (folder, unique) = match doc.rsplit_once('/') {
        Some((f, u)) => (format!("{f}/"), u.to_string()),
        None => (String::new(), doc.clone()),
    };
    for sub in ["cur", "new"] {
        let dir = root.join(format!("{folder}{sub}"));
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == unique
                || name
                    .strip_prefix(&unique)
                    .is_some_and(|r| r.starts_with(':'))
            {
                return Some(format!("{folder}{sub}/{name}"));
            }
        }
    }
    None
}

/// Scans an mbox source: a directory of mbox files (as [`scan`] does), or a single mbox
/// file, compared with the previous index on `stat` and hashed when it differs. The index
/// is keyed by the path relative to [`mbox_base`].
pub fn scan_mbox(
    root: &Path,
    previous: &FileIndex,
    opts: &ScanOptions,
) -> Result<ScanReport, IngestError> {
    let meta = fs::metadata(root).map_err(|e| IngestError::RootUnavailable {
        reason: match io_reason(&e) {
            QuarantineReason::PermissionDenied => QuarantineReason::PermissionDenied,
            _ => QuarantineReason::ConnectorError,
        },
        message: e.to_string(),
    })?;
    if meta.is_dir() {
        return scan(root, previous, opts);
    }
    let name = file_name(root);
    let mut report = ScanReport {
        files_seen: 1,
        ..ScanReport::default()
    };
    let (mtime_ns, inode) = stat_fields(&meta);
    let prev = previous.get(&name);
    if let Some(p) = prev.filter(|p| {
        !opts.full && p.size == meta.len() && p.mtime_ns == mtime_ns && p.inode == inode
    }) {
        report.unchanged = 1;
        report.index.insert(name, p.clone());
        return Ok(report);
    }
    match hash_file(root) {
        Ok((hash, n)) => {
            report.files_hashed = 1;
            report.bytes_hashed = n;
            let entry = IndexEntry {
                size: n,
                mtime_ns,
                inode,
                hash,
            };
            if opts.full || prev.is_none_or(|p| p.hash != entry.hash) {
                report.changed.push(ChangedFile {
                    path: name.clone(),
                    entry: entry.clone(),
                    new: prev.is_none(),
                });
            }
            report.index.insert(name, entry);
        }
        Err(e) => {
            if let Some(p) = prev {
                report.index.insert(name.clone(), p.clone());
            }
            report.errors.push(FileError {
                path: name,
                reason: io_reason(&e),
                message: e.to_string(),
            });
        }
    }
    Ok(report)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The directory an mbox source's relative paths start from: the root itself when it is a
/// directory, else the directory holding the mbox file.
pub fn mbox_base(root: &Path) -> &Path {
    if root.is_dir() {
        root
    } else {
        root.parent().unwrap_or(root)
    }
}

/// One message of an mbox file: its document path (`FILE#<message-id>`, or `FILE#<n>` when
/// it has none or repeats one) and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Reads the mbox file `base/rel` message by message (mail-parser's mbox reader; one
/// message in memory at a time) and hands each one, unparsed, to `each` (the caller sends it
/// to the isolated extractor). Fails only when the file cannot be opened or read; returns
/// the bytes of all messages.
pub fn read_mbox(
    base: &Path,
    rel: &str,
    mut each: impl FnMut(RawMessage),
) -> Result<u64, ExtractError> {
    let f = fs::File::open(base.join(rel)).map_err(|e| ExtractError::io(&e))?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut bytes = 0u64;
    let reader = mail_parser::mailbox::mbox::MessageIterator::new(BufReader::new(f));
    for (i, msg) in reader.enumerate() {
        let msg = msg.map_err(|e| ExtractError::io(&e))?;
        let raw = msg.contents();
        bytes += raw.len() as u64;
        let n = i + 1;
        let id = message_id_of(raw).filter(|id| seen.insert(id.clone()));
        let path = match id {
            Some(id) => format!("{rel}#{id}"),
            None => format!("{rel}#{n}"),
        };
        each(RawMessage {
            path,
            bytes: raw.to_vec(),
        });
    }
    Ok(bytes)
}

/// The Message-ID of a raw message, from its header block alone (without parsing the body).
fn message_id_of(raw: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::new()
        .with_message_ids()
        .parse_headers(raw)?;
    msg.message_id()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::parse_message;
    use crate::{FileMeta, Limits};

    #[test]
    fn maildir_names_map_to_stable_document_paths() {
        assert!(is_maildir_message("cur/1.M1.host:2,S"));
        assert!(is_maildir_message(".Sent/new/2.M2.host"));
        assert!(!is_maildir_message("tmp/3.M3.host"));
        assert!(!is_maildir_message("dovecot-uidlist"));
        assert!(!is_maildir_message("cur"));
        assert_eq!(maildir_doc_path("cur/1.M1.host:2,S"), "1.M1.host");
        assert_eq!(maildir_doc_path("new/1.M1.host"), "1.M1.host");
        assert_eq!(
            maildir_doc_path(".Sent/cur/2.M2.host:2,RS"),
            ".Sent/2.M2.host"
        );
        assert_eq!(maildir_doc_path("a/b/new/3"), "a/b/3");
    }

    #[test]
    fn a_flag_change_is_neither_a_removal_nor_a_re_ingest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        fs::write(root.join("new/100.M1.h"), "Subject: a\n\nx\n").expect("write");
        fs::write(root.join("tmp/101.M2.h"), "Subject: b\n\ny\n").expect("write");
        let opts = ScanOptions::default();
        let first = scan_maildir(root, &FileIndex::new(), &opts).expect("scan");
        let docs: Vec<&str> = first.ingest.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(docs, ["100.M1.h"]);
        fs::rename(root.join("new/100.M1.h"), root.join("cur/100.M1.h:2,S")).expect("mv");
        let second = scan_maildir(root, &first.report.index, &opts).expect("scan");
        assert!(second.ingest.is_empty(), "{second:?}");
        assert!(second.remove.is_empty(), "{second:?}");
        assert_eq!(second.renamed, 1);
        assert_eq!(
            find_maildir_message(root, "new/100.M1.h").as_deref(),
            Some("cur/100.M1.h:2,S")
        );
        fs::remove_file(root.join("cur/100.M1.h:2,S")).expect("rm");
        let third = scan_maildir(root, &second.report.index, &opts).expect("scan");
        assert_eq!(third.remove, ["100.M1.h"]);
    }

    #[test]
    fn an_mbox_file_is_scanned_on_stat_and_read_message_by_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mbox = dir.path().join("inbox.mbox");
        fs::write(
            &mbox,
            "From a@b Tue Jul  1 10:00:00 2025\nMessage-ID: <one@x>\nSubject: first\n\nalpha\n\n\
             From a@b Tue Jul  1 10:00:00 2025\nSubject: second\n\n>From the start\n\n\
             From a@b Tue Jul  1 10:00:00 2025\nMessage-ID: <one@x>\nSubject: dup\n\ngamma\n",
        )
        .expect("write");
        let opts = ScanOptions::default();
        let r = scan_mbox(&mbox, &FileIndex::new(), &opts).expect("scan");
        assert_eq!(r.changed.len(), 1);
        assert_eq!(r.changed[0].path, "inbox.mbox");
        let again = scan_mbox(&mbox, &r.index, &opts).expect("scan");
        assert!(again.changed.is_empty() && again.bytes_hashed == 0);
        let mut paths = Vec::new();
        read_mbox(mbox_base(&mbox), "inbox.mbox", |m| {
            let meta = FileMeta::default();
            let d =
                parse_message("m", &m.path, &m.bytes, meta, &Limits::default()).expect("parsed");
            paths.push((d.path.clone(), d.title.clone()));
        })
        .expect("read");
        assert_eq!(
            paths,
            [
                ("inbox.mbox#one@x".to_string(), "first".to_string()),
                ("inbox.mbox#2".to_string(), "second".to_string()),
                ("inbox.mbox#3".to_string(), "dup".to_string()),
            ]
        );
    }
}
