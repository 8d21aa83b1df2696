//! Git sources, without store access (`gix`, object database only: the work tree is never
//! read). [`scan_git`] reads HEAD and compares its tree with the last seen commit's: files
//! added or changed (blob ids differ, honouring the include and exclude globs) are to be
//! ingested from their blobs ([`read_blob`]), files gone lose their documents, and the commits
//! new since the last seen one become [`DocType::Commit`] documents ([`commit_documents`],
//! path `commit/<sha>`, meta author, date, sha).
//!
//! Only regular and executable files are documents; symlinks and submodules are skipped.
//! A document's mtime is the commit time of the HEAD it was read at.

use std::collections::BTreeMap;
use std::path::Path;

use fabric_core::doc::{DocType, NewDocument};
use fabric_core::quarantine::QuarantineReason;
use gix::bstr::ByteSlice;
use gix::ObjectId;
use globset::GlobSet;
use serde::{Deserialize, Serialize};

use crate::chunk::{chunk_blocks, Block};
use crate::error::{ExtractError, IngestError};
use crate::extract::paragraphs;
use crate::scan::globset;
use crate::{Limits, ScanOptions};

/// What a git source remembers between scans (kept by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    /// The HEAD commit the last scan read (hex).
    pub commit: String,
    /// Files (documents) at that commit, after the globs.
    pub files: u64,
}

/// A file at HEAD to (re)ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitFile {
    /// Path in the tree, `/`-separated.
    pub path: String,
    /// Its blob id (hex).
    pub blob: String,
    /// Not in the last seen commit's tree.
    pub new: bool,
}

/// What a git scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitScan {
    /// HEAD and the file count at it; `None` for a repository without commits.
    pub state: Option<GitState>,
    /// HEAD's commit time, epoch ms.
    pub head_time_ms: i64,
    /// Files added or changed since the last seen commit (every file on a first or full scan).
    pub changed: Vec<GitFile>,
    /// Files gone since the last seen commit.
    pub deleted: Vec<String>,
    /// HEAD differs from the last seen commit: its new commits are to become documents.
    pub new_commits: bool,
    /// The last seen commit could not be read (history rewritten and collected): every file
    /// was taken as changed, and no deletion could be known.
    pub lost_last: bool,
}

/// Opens the repository at `root` (a work tree or a bare repository; never searching the
/// parents), isolated from the user's and system's git configuration.
fn open(root: &Path) -> Result<gix::Repository, String> {
    gix::open_opts(root, gix::open::Options::isolated()).map_err(|e| e.to_string())
}

fn redacted(root: &Path) -> String {
    fabric_engine::sources::redact_user_paths(&root.display().to_string(), &[])
}

/// A repository that cannot be opened or read: `connector_error`, naming the path (the
/// user's home redacted).
fn unavailable(root: &Path, what: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::RootUnavailable {
        reason: QuarantineReason::ConnectorError,
        message: format!("{} {what}: {e}", redacted(root)),
    }
}

type Entries = BTreeMap<String, (gix::objs::tree::EntryMode, ObjectId)>;

fn tree_entries(repo: &gix::Repository, id: ObjectId) -> Result<Entries, String> {
    let tree = repo.find_tree(id).map_err(|e| e.to_string())?;
    let decoded = tree.decode().map_err(|e| e.to_string())?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| {
            (
                e.filename.to_str_lossy().into_owned(),
                (e.mode, e.oid.to_owned()),
            )
        })
        .collect())
}

struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    fn file(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(path))
            && self.exclude.as_ref().is_none_or(|g| !g.is_match(path))
    }
    fn dir(&self, path: &str) -> bool {
        self.exclude.as_ref().is_none_or(|g| !g.is_match(path))
    }
}

/// Compares tree `old` with tree `new` (either may be absent), descending only into
/// subtrees whose ids differ: files of `new` that are new or changed go to `changed`, files
/// of `old` that `new` lacks go to `deleted`.
fn diff_trees(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    prefix: &str,
    filter: &Filter,
    out: &mut GitScan,
) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let a = old.map(|id| tree_entries(repo, id)).transpose()?;
    let b = new.map(|id| tree_entries(repo, id)).transpose()?;
    let empty = Entries::new();
    let (a, b) = (a.as_ref().unwrap_or(&empty), b.as_ref().unwrap_or(&empty));
    let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let path = format!("{prefix}{name}");
        let before = a.get(name).copied();
        let after = b.get(name).copied();
        let tree_of = |e: Option<(gix::objs::tree::EntryMode, ObjectId)>| {
            e.filter(|(m, _)| m.is_tree()).map(|(_, id)| id)
        };
        let file_of = |e: Option<(gix::objs::tree::EntryMode, ObjectId)>| {
            e.filter(|(m, _)| m.is_blob()).map(|(_, id)| id)
        };
        let (ta, tb) = (tree_of(before), tree_of(after));
        if (ta.is_some() || tb.is_some()) && filter.dir(&path) {
            diff_trees(repo, ta, tb, &format!("{path}/"), filter, out)?;
        }
        let (fa, fb) = (file_of(before), file_of(after));
        if !filter.file(&path) {
            continue;
        }
        match (fa, fb) {
            (Some(x), Some(y)) if x == y => {}
            (x, Some(y)) => out.changed.push(GitFile {
                path,
                blob: y.to_string(),
                new: x.is_none(),
            }),
            (Some(_), None) => out.deleted.push(path),
            (None, None) => {}
        }
    }
    Ok(())
}

/// Scans the repository at `root` against the last seen state (see the module doc).
/// `opts.full` re-reads every file at HEAD and every commit.
pub fn scan_git(
    root: &Path,
    last: Option<&GitState>,
    opts: &ScanOptions,
) -> Result<GitScan, IngestError> {
    if let Err(e) = std::fs::metadata(root) {
        return Err(unavailable(root, "cannot be read", e));
    }
    let repo = open(root).map_err(|e| unavailable(root, "is not a git repository", e))?;
    let filter = Filter {
        include: globset(&opts.include)?,
        exclude: globset(&opts.exclude)?,
    };
    let head = repo
        .head()
        .map_err(|e| unavailable(root, "has no readable HEAD", e))?;
    let mut out = GitScan::default();
    if head.is_unborn() {
        return Ok(out);
    }
    let head_id = head
        .into_peeled_id()
        .map_err(|e| unavailable(root, "has no readable HEAD", e))?
        .detach();
    let commit = repo
        .find_commit(head_id)
        .map_err(|e| unavailable(root, "has a HEAD that is no commit", e))?;
    let tree = commit
        .tree_id()
        .map_err(|e| unavailable(root, "has an unreadable HEAD commit", e))?
        .detach();
    out.head_time_ms = commit
        .time()
        .map(|t| t.seconds.saturating_mul(1000))
        .unwrap_or(0);
    let head_hex = head_id.to_string();
    let last = last.filter(|l| !opts.full && !l.commit.is_empty());
    if last.is_some_and(|l| l.commit == head_hex) {
        out.state = last.cloned();
        return Ok(out);
    }
    out.new_commits = true;
    let old_tree = match last {
        None => None,
        Some(l) => {
            let old = ObjectId::from_hex(l.commit.as_bytes())
                .ok()
                .and_then(|id| repo.find_commit(id).ok())
                .and_then(|c| c.tree_id().ok().map(|t| t.detach()));
            if old.is_none() {
                out.lost_last = true;
            }
            old
        }
    };
    diff_trees(&repo, old_tree, Some(tree), "", &filter, &mut out)
        .map_err(|e| unavailable(root, "has an unreadable tree", e))?;
    let before = last.filter(|_| !out.lost_last).map_or(0, |l| l.files);
    let added = out.changed.iter().filter(|f| f.new).count() as u64;
    let files = (before + added).saturating_sub(out.deleted.len() as u64);
    out.state = Some(GitState {
        commit: head_hex,
        files,
    });
    Ok(out)
}

/// Reads blob `blob` (hex) of the repository at `root`, refusing one over the size cap
/// before reading it.
pub fn read_blob(root: &Path, blob: &str, limits: &Limits) -> Result<Vec<u8>, ExtractError> {
    let conn = |m: String| ExtractError::Io {
        reason: QuarantineReason::ConnectorError,
        message: m,
    };
    let repo = open(root).map_err(|e| conn(format!("not a git repository: {e}")))?;
    let id = ObjectId::from_hex(blob.as_bytes())
        .map_err(|e| ExtractError::Parse(format!("bad blob id '{blob}': {e}")))?;
    let header = repo
        .find_header(id)
        .map_err(|e| conn(format!("blob {blob}: {e}")))?;
    limits.check_size(header.size())?;
    let b = repo
        .find_blob(id)
        .map_err(|e| conn(format!("blob {blob}: {e}")))?;
    Ok(b.detach().data)
}

/// The commits reachable from `head` and not from `since` (every commit reachable from
/// `head` when `None`), newest first, each as a document handed to `each`. Returns how many.
pub fn commit_documents(
    root: &Path,
    source: &str,
    head: &str,
    since: Option<&str>,
    limits: &Limits,
    mut each: impl FnMut(NewDocument),
) -> Result<u64, ExtractError> {
    let conn = |m: String| ExtractError::Io {
        reason: QuarantineReason::ConnectorError,
        message: m,
    };
    let parse_id = |s: &str| {
        ObjectId::from_hex(s.as_bytes())
            .map_err(|e| ExtractError::Parse(format!("bad commit id '{s}': {e}")))
    };
    let repo = open(root).map_err(|e| conn(format!("not a git repository: {e}")))?;
    let head = parse_id(head)?;
    let mut hidden = Vec::new();
    if let Some(s) = since {
        let id = parse_id(s)?;
        // A last seen commit that is gone (history rewritten) hides nothing.
        if repo.find_header(id).is_ok() {
            hidden.push(id);
        }
    }
    let walk = repo
        .rev_walk([head])
        .with_hidden(hidden)
        .all()
        .map_err(|e| conn(format!("cannot walk the history: {e}")))?;
    let mut n = 0;
    for info in walk {
        let info = info.map_err(|e| conn(format!("cannot walk the history: {e}")))?;
        let commit = repo
            .find_commit(info.id)
            .map_err(|e| conn(format!("commit {}: {e}", info.id)))?;
        each(commit_document(source, &commit, limits)?);
        n += 1;
    }
    Ok(n)
}

fn commit_document(
    source: &str,
    commit: &gix::Commit<'_>,
    limits: &Limits,
) -> Result<NewDocument, ExtractError> {
    let sha = commit.id.to_string();
    let decoded = commit
        .decode()
        .map_err(|e| ExtractError::Parse(format!("commit {sha}: {e}")))?;
    let message = decoded.message.to_str_lossy().into_owned();
    let title = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut meta = BTreeMap::new();
    meta.insert("sha".into(), serde_json::Value::from(sha.as_str()));
    let mut mtime = 0;
    if let Ok(a) = decoded.author() {
        let who = format!(
            "{} <{}>",
            a.name.to_str_lossy().trim(),
            a.email.to_str_lossy()
        );
        meta.insert("author".into(), serde_json::Value::from(who));
        if let Ok(t) = a.time() {
            mtime = t.seconds.saturating_mul(1000);
            meta.insert(
                "date".into(),
                serde_json::Value::from(t.format_or_unix(gix::date::time::format::ISO8601_STRICT)),
            );
        }
    }
    let path = format!("commit/{sha}");
    let mut blocks = vec![Block::text("", format!("commit {sha}"))];
    blocks.extend(paragraphs(&message));
    Ok(NewDocument {
        source: source.to_string(),
        chunks: chunk_blocks(&path, blocks, limits),
        path,
        doc_type: DocType::Commit,
        title: if title.is_empty() { sha.clone() } else { title },
        size: message.len() as u64,
        mtime,
        hash: blake3::hash(&commit.data).to_hex().to_string(),
        tags: Vec::new(),
        meta,
        links: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_a_connector_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("not-a-repo");
        std::fs::create_dir_all(&plain).expect("mkdir");
        let e = scan_git(&plain, None, &ScanOptions::default()).expect_err("no repo");
        assert_eq!(e.reason(), QuarantineReason::ConnectorError);
        assert!(e.to_string().contains("not-a-repo"), "{e}");
        assert!(e.to_string().contains("not a git repository"), "{e}");
        let gone = scan_git(&dir.path().join("gone"), None, &ScanOptions::default());
        assert_eq!(
            gone.expect_err("gone").reason(),
            QuarantineReason::ConnectorError
        );
    }

    #[test]
    fn a_repository_without_commits_has_nothing_to_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("git")
            .args(["init", "-q"])
            .arg(dir.path())
            .output()
            .expect("git");
        assert!(out.status.success(), "{out:?}");
        let scan = scan_git(dir.path(), None, &ScanOptions::default()).expect("scan");
        assert_eq!(scan, GitScan::default());
    }
}
