//! Integration tests of fabric-ingest on real trees generated in a tempdir: scans (ignore
//! files, globs, unchanged, edit, delete, full), extraction of a vault and the poison files,
//! chunking, and a property test that no input panics the parsers.

use std::fs;
use std::path::Path;

use fabric_core::quarantine::QuarantineReason;
use fabric_ingest::{
    extract, read_capped, scan, DocType, ExtractError, FileIndex, FileMeta, Limits, NewDocument,
    ScanOptions,
};
use proptest::prelude::*;

fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

fn ingest(root: &Path, rel: &str, limits: &Limits) -> Result<NewDocument, ExtractError> {
    let bytes = read_capped(root, Path::new(rel), limits)?;
    extract("vault", Path::new(rel), &bytes, FileMeta::default(), limits)
}

fn paths(r: &fabric_ingest::ScanReport) -> Vec<&str> {
    r.changed.iter().map(|c| c.path.as_str()).collect()
}

const NOTE: &str = "---
title: Project Alpha
tags:
  - project
  - \"#active\"
status: draft
---
# Alpha

The plan links to [[Roadmap]] and [[People/Ann|Ann]] with #planning and #2024 (no tag).

![[diagram.png]]

See [the site](https://example.com/alpha).

## Tasks

- [ ] write #docs/howto
";

fn vault(root: &Path) {
    write(root, "Project Alpha.md", NOTE);
    write(root, "Roadmap.md", "# Roadmap\n\nQ1 then Q2.\n");
    write(root, "People/Ann.md", "Ann works on [[Project Alpha]].\n");
    write(root, ".obsidian/workspace.json", "{}");
}

#[test]
fn an_obsidian_vault_yields_titles_tags_links_and_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    vault(root);
    let r = scan(root, &FileIndex::new(), &ScanOptions::default()).expect("scan");
    assert_eq!(
        paths(&r),
        vec!["People/Ann.md", "Project Alpha.md", "Roadmap.md"],
        "hidden .obsidian skipped"
    );
    let limits = Limits::default();
    let d = ingest(root, "Project Alpha.md", &limits).expect("note");
    assert_eq!(d.doc_type, DocType::Markdown);
    assert_eq!(d.title, "Project Alpha");
    assert_eq!(d.tags, vec!["project", "active", "planning", "docs/howto"]);
    assert_eq!(d.meta.get("status"), Some(&serde_json::json!("draft")));
    let links: Vec<(&str, &str)> = d
        .links
        .iter()
        .map(|l| (l.target.as_str(), l.kind.as_str()))
        .collect();
    assert_eq!(
        links,
        vec![
            ("Roadmap", "wikilink"),
            ("People/Ann", "wikilink"),
            ("diagram.png", "embed"),
            ("https://example.com/alpha", "link"),
        ]
    );
    let heads: Vec<&str> = d.chunks.iter().map(|c| c.heading.as_str()).collect();
    assert_eq!(heads, vec!["Alpha", "Alpha > Tasks"]);
    assert!(d.chunks[0].text.contains("[[Roadmap]]"));
    assert!(!d.chunks.iter().any(|c| c.text.contains("status: draft")));

    let d = ingest(root, "People/Ann.md", &limits).expect("ann");
    assert_eq!(d.title, "Ann", "no front matter, no heading: the file name");
    assert_eq!(d.path, "People/Ann.md");
    let d = ingest(root, "Roadmap.md", &limits).expect("roadmap");
    assert_eq!(d.title, "Roadmap", "the first heading");
}

#[test]
fn gitignore_fabricignore_and_globs_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, ".gitignore", "build/\n*.log\n");
    write(root, ".fabricignore", "secret.md\n");
    write(root, "keep.md", "k");
    write(root, "notes.txt", "n");
    write(root, "run.log", "l");
    write(root, "build/out.md", "b");
    write(root, "secret.md", "s");
    write(root, "drafts/d.md", "d");
    write(root, "img.bin", "i");
    write(root, "sub/deep.md", "x");
    let opts = ScanOptions {
        include: vec!["*.md".into(), "*.txt".into()],
        exclude: vec!["drafts".into()],
        full: false,
    };
    let r = scan(root, &FileIndex::new(), &opts).expect("scan");
    assert_eq!(paths(&r), vec!["keep.md", "notes.txt", "sub/deep.md"]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.files_seen, 3);
}

#[test]
fn rescans_skip_unchanged_files_and_report_edits_and_deletions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    vault(root);
    let opts = ScanOptions::default();
    let first = scan(root, &FileIndex::new(), &opts).expect("first");
    assert_eq!(first.changed.len(), 3);
    assert!(first.changed.iter().all(|c| c.new));
    assert_eq!(first.files_hashed, 3);

    // Unchanged: nothing hashed, nothing read, nothing reported.
    let again = scan(root, &first.index, &opts).expect("again");
    assert!(again.changed.is_empty() && again.vanished.is_empty());
    assert_eq!((again.files_hashed, again.bytes_hashed), (0, 0));
    assert_eq!(again.unchanged, 3);
    assert_eq!(again.index, first.index);

    // One edit: exactly that file.
    write(root, "Roadmap.md", "# Roadmap\n\nQ1, Q2 and Q3.\n");
    let edited = scan(root, &again.index, &opts).expect("edited");
    assert_eq!(paths(&edited), vec!["Roadmap.md"]);
    assert!(!edited.changed[0].new);
    assert_eq!(edited.files_hashed, 1);
    assert_ne!(
        edited.index["Roadmap.md"].hash,
        first.index["Roadmap.md"].hash
    );

    // A deletion is reported vanished and leaves the index.
    fs::remove_file(root.join("People/Ann.md")).expect("rm");
    let deleted = scan(root, &edited.index, &opts).expect("deleted");
    assert!(deleted.changed.is_empty());
    assert_eq!(deleted.vanished, vec!["People/Ann.md".to_string()]);
    assert!(!deleted.index.contains_key("People/Ann.md"));

    // --full re-reads everything.
    let full = scan(
        root,
        &deleted.index,
        &ScanOptions {
            full: true,
            ..opts.clone()
        },
    )
    .expect("full");
    assert_eq!(full.changed.len(), 2);
    assert_eq!(full.files_hashed, 2);

    // A touch without a content change is hashed once but needs no ingest.
    let mut stale = deleted.index.clone();
    if let Some(e) = stale.get_mut("Roadmap.md") {
        e.mtime_ns -= 1;
    }
    let touched = scan(root, &stale, &opts).expect("touched");
    assert!(touched.changed.is_empty());
    assert_eq!(touched.files_hashed, 1);
    assert_eq!(touched.index, deleted.index);
}

#[test]
fn a_missing_root_is_one_connector_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = scan(
        &dir.path().join("gone"),
        &FileIndex::new(),
        &ScanOptions::default(),
    )
    .expect_err("missing");
    assert_eq!(err.reason(), QuarantineReason::ConnectorError);
}

/// Set when this binary re-runs a test as an unprivileged user.
const UNPRIVILEGED_ENV: &str = "FABRIC_INGEST_TEST_UNPRIVILEGED";

/// As root, `chmod 000` denies nothing: re-runs the named test of this binary as `nobody`
/// (setpriv) so it meets a real EACCES. Returns false when that is impossible here.
fn rerun_unprivileged(test: &str) -> bool {
    assert!(
        std::env::var_os(UNPRIVILEGED_ENV).is_none(),
        "still privileged after dropping to nobody"
    );
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() {
        eprintln!("no setpriv: cannot produce a real EACCES as root; skipped");
        return false;
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(["--exact", test, "--test-threads=1"])
        .env(UNPRIVILEGED_ENV, "1")
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "unprivileged run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn an_unreadable_file_is_one_error_and_the_scan_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "a.md", "a");
    write(root, "locked.md", "l");
    write(root, "z.md", "z");
    fs::set_permissions(root.join("locked.md"), fs::Permissions::from_mode(0o000)).expect("chmod");
    if fs::read(root.join("locked.md")).is_ok() {
        rerun_unprivileged("an_unreadable_file_is_one_error_and_the_scan_goes_on");
        return;
    }
    let r = scan(root, &FileIndex::new(), &ScanOptions::default()).expect("scan");
    assert_eq!(paths(&r), vec!["a.md", "z.md"]);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].path, "locked.md");
    assert_eq!(r.errors[0].reason, QuarantineReason::PermissionDenied);
    assert!(r.index.contains_key("a.md") && !r.index.contains_key("locked.md"));
    // The reader classifies the same EACCES.
    let e = read_capped(root, Path::new("locked.md"), &Limits::default()).expect_err("denied");
    assert_eq!(e.reason(), QuarantineReason::PermissionDenied);
}

#[test]
fn poison_files_are_refused_with_the_right_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let limits = Limits {
        max_bytes: 10_000,
        ..Limits::default()
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..2000u32).map(|i| (i * 7 % 256) as u8));
    write(root, "image.md", &png);
    let noise: Vec<u8> = (0..4000u32)
        .map(|i| if i % 3 == 0 { 0xC3 } else { b'a' })
        .collect();
    write(root, "latin.md", &noise);
    write(root, "big.txt", "x".repeat(10_001));
    let mut few_bad = "a readable note. ".repeat(200).into_bytes();
    few_bad.extend_from_slice(b"caf\xe9\n");
    write(root, "mostly.txt", &few_bad);

    let reason = |rel: &str| {
        ingest(root, rel, &limits)
            .map(|_| ())
            .map_err(|e| e.reason())
    };
    assert_eq!(reason("image.md"), Err(QuarantineReason::ParseError));
    assert!(matches!(
        ingest(root, "image.md", &limits),
        Err(ExtractError::Parse(m)) if m.contains("png")
    ));
    assert_eq!(reason("latin.md"), Err(QuarantineReason::ParseError));
    // Clean for the first 8 KiB that detection sniffs, then mostly invalid: decoding refuses.
    let mut late = "clean text here. ".repeat(500).into_bytes();
    late.extend((0..1000u32).map(|i| if i % 2 == 0 { 0xff } else { b'x' }));
    write(root, "late.md", &late);
    assert!(matches!(
        ingest(root, "late.md", &limits),
        Err(ExtractError::Parse(m)) if m.contains("invalid UTF-8")
    ));
    assert_eq!(reason("big.txt"), Err(QuarantineReason::ResourceExhausted));
    // The reader refuses it on its size, and extract refuses it too.
    assert!(matches!(
        read_capped(root, Path::new("big.txt"), &limits),
        Err(ExtractError::TooLarge {
            size: 10_001,
            cap: 10_000
        })
    ));
    let big = fs::read(root.join("big.txt")).expect("read");
    assert!(matches!(
        extract(
            "v",
            Path::new("big.txt"),
            &big,
            FileMeta::default(),
            &limits
        ),
        Err(ExtractError::TooLarge {
            size: 10_001,
            cap: 10_000
        })
    ));
    let d = ingest(root, "mostly.txt", &limits).expect("a few bad bytes are decoded lossily");
    assert_eq!(d.meta.get("lossy_utf8_bytes"), Some(&serde_json::json!(1)));
    assert!(d.chunks.iter().any(|c| c.text.contains("caf\u{FFFD}")));
    assert_eq!(reason("vanished.md"), Err(QuarantineReason::ConnectorError));
}

fn section(n: usize, word: &str) -> String {
    format!(
        "## Part {n}\n\n{}\n\n",
        format!("{word} sentence number {n}. ").repeat(60)
    )
}

#[test]
fn code_fences_are_never_split_and_chunks_stay_in_size() {
    let fence = format!(
        "```rust\n{}```",
        "let value = compute(1, 2, 3);\n".repeat(150)
    );
    let para = "Plain words go here. ".repeat(300);
    let md = format!(
        "# Doc\n\n{para}\n\n{fence}\n\nshort tail\n\n{}",
        "tiny\n\n".repeat(5)
    );
    let d = extract(
        "v",
        Path::new("d.md"),
        md.as_bytes(),
        FileMeta::default(),
        &Limits::default(),
    )
    .expect("doc");
    let with_fence: Vec<_> = d.chunks.iter().filter(|c| c.text.contains("```")).collect();
    assert_eq!(with_fence.len(), 1, "the fence is in one chunk");
    assert!(with_fence[0].text.contains(&fence));
    for c in &d.chunks {
        assert_eq!(c.text.matches("```").count() % 2, 0, "balanced fences");
        if !c.text.contains("```") {
            assert!(c.text.chars().count() <= 2000, "{} chars", c.text.len());
        }
        assert_eq!(c.heading, "Doc");
    }
    assert!(d.chunks.len() >= 5, "the long paragraph was split");
    let ords: Vec<u32> = d.chunks.iter().map(|c| c.ord).collect();
    assert_eq!(ords, (0..d.chunks.len() as u32).collect::<Vec<_>>());
}

#[test]
fn chunk_keys_are_stable_when_another_paragraph_changes() {
    let doc = |middle: &str| {
        let md = format!(
            "# T\n\n{}{}{}",
            section(1, "alpha"),
            section(2, middle),
            section(3, "gamma")
        );
        extract(
            "v",
            Path::new("n.md"),
            md.as_bytes(),
            FileMeta::default(),
            &Limits::default(),
        )
        .expect("doc")
    };
    let a = doc("beta");
    let again = doc("beta");
    let b = doc("delta");
    let keys = |d: &NewDocument| d.chunks.iter().map(|c| c.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&again), "same content, same keys");
    assert_eq!(a.chunks.len(), b.chunks.len());
    let differing: Vec<usize> = (0..a.chunks.len())
        .filter(|&i| a.chunks[i].key != b.chunks[i].key)
        .collect();
    assert!(!differing.is_empty());
    assert!(
        differing
            .iter()
            .all(|&i| a.chunks[i].heading == "T > Part 2"),
        "only Part 2's chunks changed: {differing:?}"
    );
    assert!(a.chunks.iter().any(|c| c.heading == "T > Part 3"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        ext in prop::sample::select(vec!["md", "txt", "rs", "json", "jsonl", "csv", "tsv", "html", "pdf", "bin", ""]),
    ) {
        let name = if ext.is_empty() { "file".to_string() } else { format!("file.{ext}") };
        let limits = Limits { max_bytes: 1 << 20, chunk_min: 50, chunk_max: 120 };
        if let Ok(d) = extract("s", Path::new(&name), &bytes, FileMeta::default(), &limits) {
            prop_assert_eq!(d.size, bytes.len() as u64);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(
        s in "\\PC{0,800}",
        ext in prop::sample::select(vec!["md", "txt", "rs", "json", "csv", ""]),
    ) {
        let name = if ext.is_empty() { "file".to_string() } else { format!("file.{ext}") };
        let limits = Limits { max_bytes: 1 << 20, chunk_min: 20, chunk_max: 60 };
        let _ = extract("s", Path::new(&name), s.as_bytes(), FileMeta::default(), &limits);
    }

    #[test]
    fn markdownish_text_never_panics(
        s in "([#>*`\\-\\[\\]!|: \\n]|[a-z]{1,8}|é日本|---\\n|```\\n|\\[\\[[a-z]{0,5}\\]\\]){0,200}",
    ) {
        let limits = Limits { max_bytes: 1 << 20, chunk_min: 20, chunk_max: 60 };
        let d = extract("s", Path::new("n.md"), s.as_bytes(), FileMeta::default(), &limits);
        prop_assert!(d.is_ok());
    }
}
