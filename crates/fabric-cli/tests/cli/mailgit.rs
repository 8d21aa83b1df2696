//! Mail and git sources through the binary and its daemon, over real trees the tests make:
//! a maildir and an mbox with mixed charsets and attachments, and a git repository built
//! with the `git` command.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::Home;

/// The paths of the hits of `query`.
fn paths(h: &Home, query: &str) -> Vec<String> {
    h.json(&["docs", "search", query, "--limit", "50"])
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["path"].as_str().unwrap().to_string())
        .collect()
}

fn trigger(h: &Home, name: &str) -> Value {
    h.json(&["sources", "trigger", name, "--wait"])
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A message with an ISO-8859-1 body and a named attachment.
fn latin1_with_attachment() -> Vec<u8> {
    let mut m = b"From: =?ISO-8859-1?Q?Ren=E9e?= <renee@example.org>\n\
To: team@example.org\nSubject: Budget\nDate: Tue, 1 Jul 2025 09:00:00 +0200\n\
Message-ID: <budget@example.org>\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n\
Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
        .to_vec();
    m.extend_from_slice(b"Le walrus aime le caf\xe9 cr\xe9meux.\n");
    m.extend_from_slice(
        b"--b1\nContent-Type: application/vnd.ms-excel; name=\"budget2025.xls\"\n\
Content-Disposition: attachment; filename=\"budget2025.xls\"\n\
Content-Transfer-Encoding: base64\n\nAAAA\n--b1--\n",
    );
    m
}

#[test]
fn maildir_and_mbox_messages_are_searchable_and_follow_moves_edits_and_deletions() {
    let h = Home::new();
    let md = h.path().join("Maildir");
    for d in ["cur", "new", "tmp", ".Work/cur", ".Work/new", ".Work/tmp"] {
        std::fs::create_dir_all(md.join(d)).unwrap();
    }
    write(
        &md.join("new/1000.M1.host"),
        "From: Ann <ann@example.org>\nTo: bob@example.org\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\nMessage-ID: <gruss@example.org>\n\
Content-Type: text/plain; charset=UTF-8\n\nThe zeppelin lands at dawn, sagt Jürgen.\n"
            .as_bytes(),
    );
    write(&md.join("cur/1001.M2.host:2,S"), &latin1_with_attachment());
    write(
        &md.join(".Work/cur/1003.M4.host:2,"),
        b"From: c@example.org\nSubject: Report\nIn-Reply-To: <budget@example.org>\n\
Content-Type: text/html; charset=UTF-8\n\n<html><body><p>The <b>ocelot</b> report.</p></body></html>\n",
    );
    write(
        &md.join("tmp/1002.M3.host"),
        b"Subject: draft\n\nunfinished tmpword\n",
    );
    let mbox = h.path().join("archive.mbox");
    let msg1 = "From a@x Tue Jul  1 10:00:00 2025\nFrom: a@x\n\
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=\nMessage-ID: <m1@x>\n\nA narwhal surfaced.\n\n";
    let msg2 = "From b@x Tue Jul  1 11:00:00 2025\nFrom: b@x\nSubject: plain\n\
Content-Type: text/plain; charset=UTF-8\n\nThe pangolin is naïve.\n\n";
    let msg3 = "From c@x Tue Jul  1 12:00:00 2025\nFrom: c@x\nSubject: pics\n\
Message-ID: <m3@x>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"q\"\n\n\
--q\nContent-Type: text/plain\n\nSee the axolotl.\n--q\nContent-Type: image/png\n\
Content-Disposition: attachment; filename=\"diagram.png\"\n\
Content-Transfer-Encoding: base64\n\niVBORw0K\n--q--\n\n";
    write(&mbox, format!("{msg1}{msg2}{msg3}").as_bytes());
    let (m, b) = (md.to_str().unwrap(), mbox.to_str().unwrap());
    h.expect(
        0,
        &["sources", "add", "box", "--type", "maildir", "--path", m],
    );
    h.expect(
        0,
        &["sources", "add", "arch", "--type", "mbox", "--path", b],
    );
    h.expect(0, &["start"]);

    let first = trigger(&h, "box");
    assert_eq!(
        (
            first["ingested"].as_u64(),
            first["scan"]["changed"].as_u64()
        ),
        (Some(3), Some(3)),
        "tmp/ is no message: {first}"
    );
    assert_eq!(paths(&h, "zeppelin"), ["1000.M1.host"]);
    assert_eq!(
        paths(&h, "München"),
        ["1000.M1.host"],
        "encoded-word subject"
    );
    assert_eq!(paths(&h, "crémeux"), ["1001.M2.host"], "ISO-8859-1 body");
    assert_eq!(paths(&h, "budget2025"), ["1001.M2.host"], "attachment name");
    assert_eq!(paths(&h, "ocelot"), [".Work/1003.M4.host"], "HTML part");
    assert!(paths(&h, "tmpword").is_empty());
    let hit = &h.json(&["docs", "search", "walrus"])[0];
    let shown = h.json(&["docs", "show", &hit["doc_id"].to_string()]);
    assert_eq!(shown["title"], "Budget", "{shown}");
    assert_eq!(shown["doc_type"], "email");
    assert_eq!(
        shown["meta"]["from"], "Renée <renee@example.org>",
        "{shown}"
    );
    assert_eq!(shown["meta"]["to"], "team@example.org");
    assert_eq!(shown["meta"]["message_id"], "budget@example.org");
    assert_eq!(shown["meta"]["date"], "2025-07-01T09:00:00+02:00");
    assert_eq!(shown["meta"]["attachments"][0], "budget2025.xls");
    let table = h.expect(0, &["docs", "show", &hit["doc_id"].to_string()]);
    assert!(table.contains("renee@example.org"), "{table}");
    let reply = &h.json(&["docs", "search", "ocelot"])[0];
    let reply = h.json(&["docs", "show", &reply["doc_id"].to_string()]);
    assert_eq!(reply["links_out"][0]["target"], "budget@example.org");
    assert_eq!(reply["links_out"][0]["kind"], "reply");

    let first = trigger(&h, "arch");
    assert_eq!(first["ingested"], 1, "one job for the mbox file: {first}");
    assert_eq!(paths(&h, "narwhal"), ["archive.mbox#m1@x"]);
    assert_eq!(paths(&h, "crème"), ["archive.mbox#m1@x"], "encoded-word");
    assert_eq!(paths(&h, "naïve"), ["archive.mbox#2"], "no Message-ID");
    assert_eq!(paths(&h, "diagram.png"), ["archive.mbox#m3@x"]);
    assert_eq!(h.json(&["sources", "show", "arch"])["documents"], 3);

    // Unchanged: nothing enqueued, nothing read.
    for name in ["box", "arch"] {
        let again = trigger(&h, name);
        assert_eq!(
            (
                again["scan"]["enqueued"].as_u64(),
                again["ingested"].as_u64(),
                again["scan"]["bytes_hashed"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{name}: {again}"
        );
    }

    // Read in a mail client: new/ → cur/ with a flag. Same document, nothing re-ingested.
    std::fs::rename(md.join("new/1000.M1.host"), md.join("cur/1000.M1.host:2,S")).unwrap();
    let moved = trigger(&h, "box");
    assert_eq!(
        (
            moved["scan"]["renamed"].as_u64(),
            moved["scan"]["enqueued"].as_u64(),
            moved["scan"]["documents_removed"].as_u64()
        ),
        (Some(1), Some(0), Some(0)),
        "{moved}"
    );
    assert_eq!(paths(&h, "zeppelin"), ["1000.M1.host"]);
    assert_eq!(h.json(&["sources", "show", "box"])["documents"], 3);
    // A deleted message loses its document.
    std::fs::remove_file(md.join("cur/1001.M2.host:2,S")).unwrap();
    let deleted = trigger(&h, "box");
    assert_eq!(deleted["scan"]["documents_removed"], 1, "{deleted}");
    assert!(paths(&h, "walrus").is_empty());

    // The mbox loses a message and gains one: their documents follow.
    let msg4 = "From d@x Wed Jul  2 10:00:00 2025\nFrom: d@x\nSubject: new\n\
Message-ID: <m4@x>\n\nA quokka waved.\n";
    write(&mbox, format!("{msg1}{msg3}{msg4}").as_bytes());
    let edited = trigger(&h, "arch");
    assert_eq!(edited["ingested"], 1, "{edited}");
    assert!(paths(&h, "pangolin").is_empty());
    assert_eq!(paths(&h, "quokka"), ["archive.mbox#m4@x"]);
    assert_eq!(paths(&h, "narwhal"), ["archive.mbox#m1@x"]);
    assert_eq!(h.json(&["sources", "show", "arch"])["documents"], 3);
    h.expect(0, &["stop"]);
}

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.org",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn commit(repo: &Path, message: &str) {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
}

#[test]
fn a_git_source_reads_head_incrementally_from_the_object_database() {
    let h = Home::new();
    let repo = h.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    write(&repo.join("README.md"), b"# Guide\n\nThe capybara guide.\n");
    write(&repo.join("src/lib.rs"), b"fn marmot() {}\n");
    write(&repo.join("old.txt"), b"a mastodon note\n");
    write(&repo.join("secret/key.txt"), b"hushword\n");
    commit(&repo, "Initial import of the wildebeest project");
    let r = repo.to_str().unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "code",
            "--type",
            "git",
            "--path",
            r,
            "--exclude",
            "secret/**",
        ],
    );
    h.expect(0, &["start"]);

    let first = trigger(&h, "code");
    // Three files (the excluded one not) and one job for the history.
    assert_eq!(
        (
            first["scan"]["enqueued"].as_u64(),
            first["ingested"].as_u64()
        ),
        (Some(4), Some(4)),
        "{first}"
    );
    assert_eq!(paths(&h, "capybara"), ["README.md"]);
    assert_eq!(paths(&h, "marmot"), ["src/lib.rs"]);
    assert_eq!(paths(&h, "mastodon"), ["old.txt"]);
    assert!(paths(&h, "hushword").is_empty(), "excluded");
    let hits = paths(&h, "wildebeest");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].starts_with("commit/"), "{hits:?}");
    let hit = &h.json(&["docs", "search", "wildebeest"])[0];
    let shown = h.json(&["docs", "show", &hit["doc_id"].to_string()]);
    assert_eq!(shown["doc_type"], "commit");
    assert_eq!(shown["meta"]["author"], "Test Author <author@example.org>");
    assert_eq!(
        format!("commit/{}", shown["meta"]["sha"].as_str().unwrap()),
        hits[0]
    );

    // A commit that deletes a file and edits another: only the edit is read again.
    std::fs::remove_file(repo.join("old.txt")).unwrap();
    write(
        &repo.join("README.md"),
        b"# Guide\n\nThe capybara and the tapir.\n",
    );
    commit(&repo, "Drop the old note");
    let second = trigger(&h, "code");
    assert_eq!(
        (
            second["scan"]["changed"].as_u64(),
            second["scan"]["vanished"].as_u64(),
            second["ingested"].as_u64()
        ),
        (Some(1), Some(1), Some(2)),
        "README and the new commit: {second}"
    );
    assert!(
        paths(&h, "mastodon").is_empty(),
        "deleted file's words gone"
    );
    assert_eq!(paths(&h, "tapir"), ["README.md"]);
    assert_eq!(paths(&h, "Drop old note").len(), 1);
    assert_eq!(h.json(&["sources", "show", "code"])["files"], 2);

    // The work tree is not read: an uncommitted edit changes nothing, and an unchanged
    // re-trigger enqueues nothing.
    write(&repo.join("README.md"), b"an uncommitted ferret\n");
    let again = trigger(&h, "code");
    assert_eq!(
        (
            again["scan"]["enqueued"].as_u64(),
            again["ingested"].as_u64(),
            again["scan"]["new_commits"].as_bool()
        ),
        (Some(0), Some(0), Some(false)),
        "{again}"
    );
    assert!(paths(&h, "ferret").is_empty());
    git(&repo, &["checkout", "--", "README.md"]);

    // --full reads everything again.
    let full = h.json(&["sources", "trigger", "code", "--wait", "--full"]);
    assert_eq!(full["ingested"], 3, "two files and the history: {full}");

    // A path that is no repository: connector_error, the root redacted as in every message
    // (git's own error quotes the absolute path).
    let plain = h.path().join("plain-dir");
    std::fs::create_dir_all(&plain).unwrap();
    let p = plain.to_str().unwrap();
    h.expect(
        0,
        &["sources", "add", "nogit", "--type", "git", "--path", p],
    );
    let out = h.run(&["sources", "trigger", "nogit", "--wait", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let shown = h.json(&["sources", "show", "nogit"]);
    let outcome = shown["last_outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("connector_error") && outcome.contains("<root>"),
        "{outcome}"
    );
    assert!(!outcome.contains(p), "{outcome}");
    h.expect(0, &["stop"]);
}
