//! Incremental scans of a source root: walk the tree (honouring `.gitignore`,
//! `.fabricignore` and the include and exclude globs; hidden files and symlinks are skipped),
//! compare each file's `stat` (size, mtime, inode) with the previous [`FileIndex`], hash only
//! what differs (BLAKE3, streamed) and report the changes. An unchanged file is never opened.
//! Problems with one file become a [`FileError`] and the scan goes on; only an unusable root
//! or glob fails the whole scan. No store access: the caller persists [`ScanReport::index`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use fabric_core::quarantine::QuarantineReason;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{io_reason, IngestError};

/// What a scan remembers of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub size: u64,
    /// Modification time, epoch nanoseconds.
    pub mtime_ns: i64,
    /// Inode number (0 where the platform has none).
    pub inode: u64,
    /// BLAKE3 of the content, hex.
    pub hash: String,
}

/// The file index of a source: relative path (`/`-separated) → entry.
pub type FileIndex = BTreeMap<String, IndexEntry>;

/// How to scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Only files matching one of these globs (relative paths; `*` crosses `/`); all when empty.
    pub include: Vec<String>,
    /// Files and directories matching one of these are skipped.
    pub exclude: Vec<String>,
    /// Re-hash every file and report every file as changed (`--full`).
    pub full: bool,
}

/// A new or changed file, hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFile {
    /// Relative path, `/`-separated.
    pub path: String,
    #[serde(flatten)]
    pub entry: IndexEntry,
    /// Not in the previous index.
    pub new: bool,
}

/// A file the scan could not look at; the scan went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// Relative path (never the absolute one: the root stays out of messages).
    pub path: String,
    pub reason: QuarantineReason,
    pub message: String,
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// New or changed files (every file with `full`), in path order.
    pub changed: Vec<ChangedFile>,
    /// Files in the previous index that are gone (or now ignored), in path order.
    pub vanished: Vec<String>,
    pub errors: Vec<FileError>,
    /// Files seen (matched by the globs, not ignored).
    pub files_seen: u64,
    /// Files skipped on `stat` alone, never opened.
    pub unchanged: u64,
    /// Files opened and hashed.
    pub files_hashed: u64,
    /// Bytes read to hash them.
    pub bytes_hashed: u64,
    /// The index to persist for the next scan. A file that failed keeps its previous entry
    /// (so it is not reported vanished), or is absent if it had none (so it is retried).
    pub index: FileIndex,
}

pub(crate) fn globset(globs: &[String]) -> Result<Option<GlobSet>, IngestError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| IngestError::InvalidGlob {
            glob: g.clone(),
            message: e.kind().to_string(),
        })?);
    }
    b.build().map(Some).map_err(|e| IngestError::InvalidGlob {
        glob: globs.join(", "),
        message: e.to_string(),
    })
}

fn rel_string(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(unix)]
pub(crate) fn stat_fields(m: &fs::Metadata) -> (i64, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        m.mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec()),
        m.ino(),
    )
}

#[cfg(not(unix))]
pub(crate) fn stat_fields(m: &fs::Metadata) -> (i64, u64) {
    let ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (ns, 0)
}

/// Streams a file through BLAKE3; returns the hex hash and the bytes read.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((h.finalize().to_hex().to_string(), n))
}

/// Scans `root` against the previous index (see the module doc).
pub fn scan(
    root: &Path,
    previous: &FileIndex,
    opts: &ScanOptions,
) -> Result<ScanReport, IngestError> {
    scan_filtered(root, previous, opts, false, &|_| true)
}

/// [`scan`], looking into hidden files and directories too when `hidden` (a Maildir++
/// folder is `.Sent`), and only at the files whose relative path `keep` accepts.
pub(crate) fn scan_filtered(
    root: &Path,
    previous: &FileIndex,
    opts: &ScanOptions,
    hidden: bool,
    keep: &dyn Fn(&str) -> bool,
) -> Result<ScanReport, IngestError> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(IngestError::RootUnavailable {
                reason: QuarantineReason::ConnectorError,
                message: "the source root is not a directory".into(),
            })
        }
        Err(e) => {
            return Err(IngestError::RootUnavailable {
                reason: match io_reason(&e) {
                    QuarantineReason::PermissionDenied => QuarantineReason::PermissionDenied,
                    _ => QuarantineReason::ConnectorError,
                },
                message: e.to_string(),
            })
        }
    }
    let include = globset(&opts.include)?;
    let exclude = globset(&opts.exclude)?;

    let mut walk = ignore::WalkBuilder::new(root);
    walk.hidden(!hidden)
        .parents(false)
        .ignore(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(".fabricignore")
        .sort_by_file_name(|a, b| a.cmp(b));
    if let Some(ex) = exclude.clone() {
        let root = root.to_path_buf();
        walk.filter_entry(move |e| {
            let rel = rel_string(&root, e.path());
            rel.is_empty() || !ex.is_match(&rel)
        });
    }

    let mut report = ScanReport::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for item in walk.build() {
        let entry = match item {
            Ok(e) => e,
            Err(e) => {
                let (path, reason, message) = walk_error(root, &e);
                if let Some(p) = &path {
                    seen.insert(p.clone());
                }
                report.errors.push(FileError {
                    path: path.unwrap_or_default(),
                    reason,
                    message,
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = rel_string(root, entry.path());
        if !keep(&rel) || include.as_ref().is_some_and(|inc| !inc.is_match(&rel)) {
            continue;
        }
        report.files_seen += 1;
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                let (_, reason, message) = walk_error(root, &e);
                seen.insert(rel.clone());
                report.errors.push(FileError {
                    path: rel,
                    reason,
                    message,
                });
                continue;
            }
        };
        let (mtime_ns, inode) = stat_fields(&meta);
        let size = meta.len();
        let prev = previous.get(&rel);
        if !opts.full {
            if let Some(p) =
                prev.filter(|p| p.size == size && p.mtime_ns == mtime_ns && p.inode == inode)
            {
                seen.insert(rel.clone());
                report.unchanged += 1;
                report.index.insert(rel, p.clone());
                continue;
            }
        }
        match hash_file(entry.path()) {
            Ok((hash, n)) => {
                seen.insert(rel.clone());
                report.files_hashed += 1;
                report.bytes_hashed += n;
                let entry = IndexEntry {
                    size: n,
                    mtime_ns,
                    inode,
                    hash,
                };
                // Touched but identical content: remember the new stat, nothing to ingest.
                let same = prev.is_some_and(|p| p.hash == entry.hash);
                if opts.full || !same {
                    report.changed.push(ChangedFile {
                        path: rel.clone(),
                        entry: entry.clone(),
                        new: prev.is_none(),
                    });
                }
                report.index.insert(rel, entry);
            }
            // Gone between the walk and the open: vanished if it was known.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                seen.insert(rel.clone());
                if let Some(p) = prev {
                    report.index.insert(rel.clone(), p.clone());
                }
                report.errors.push(FileError {
                    path: rel,
                    reason: io_reason(&e),
                    message: e.to_string(),
                });
            }
        }
    }
    // A file under an unreadable directory keeps its entry rather than vanishing.
    for e in &report.errors {
        if e.path.is_empty() {
            continue;
        }
        let prefix = format!("{}/", e.path);
        for (k, v) in previous.range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            seen.insert(k.clone());
            report.index.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    report.vanished = previous
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    Ok(report)
}

/// The relative path, reason and message of a walk error (paths stay relative).
fn walk_error(root: &Path, e: &ignore::Error) -> (Option<String>, QuarantineReason, String) {
    let mut path = None;
    let mut cur = e;
    let mut depth = 0;
    // ignore::Error nests; find the path and the I/O error inside.
    loop {
        depth += 1;
        match cur {
            ignore::Error::WithPath { path: p, err } => {
                path = Some(rel_string(root, p));
                cur = err;
            }
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                cur = err;
            }
            _ => break,
        }
        if depth > 8 {
            break;
        }
    }
    match cur.io_error() {
        Some(io) => (path, io_reason(io), io.to_string()),
        None => (path, QuarantineReason::ParseError, cur.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_root_is_a_connector_error() {
        let err = scan(
            Path::new("/nonexistent/fabric-root"),
            &FileIndex::new(),
            &ScanOptions::default(),
        )
        .expect_err("missing root");
        assert_eq!(err.reason(), QuarantineReason::ConnectorError);
        assert!(!err.to_string().contains("fabric-root"));
    }

    #[test]
    fn a_bad_glob_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = ScanOptions {
            include: vec!["a[".into()],
            ..ScanOptions::default()
        };
        assert!(matches!(
            scan(dir.path(), &FileIndex::new(), &opts),
            Err(IngestError::InvalidGlob { .. })
        ));
    }

    #[test]
    fn a_known_file_that_is_gone_vanishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut prev = FileIndex::new();
        let e = IndexEntry {
            size: 1,
            mtime_ns: 1,
            inode: 1,
            hash: "h".into(),
        };
        prev.insert("gone.txt".into(), e.clone());
        let r = scan(dir.path(), &prev, &ScanOptions::default()).expect("scan");
        assert_eq!(r.vanished, vec!["gone.txt".to_string()]);
        assert!(r.index.is_empty());
    }
}
