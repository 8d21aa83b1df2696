//! `fabric sources`: definitions validated and audited, pause with a reason, and the
//! runbook's Data Loss procedure: a source outlives the loss of the queue database.

use serde_json::Value;

use super::Home;

#[test]
fn sources_are_defined_paused_and_outlive_the_queue_database() {
    let h = Home::new();
    let vault = h.path().join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    let vault = vault.to_str().unwrap();
    let added = h.json(&[
        "sources",
        "add",
        "notes",
        "--type",
        "markdown_vault",
        "--path",
        vault,
        "--include",
        "**/*.md",
        "--exclude",
        ".trash/**",
        "--schedule",
        "every 15m",
        "--priority",
        "high",
    ]);
    assert_eq!(added["name"], "notes", "{added}");
    assert_eq!(added["type"], "markdown_vault");
    assert_eq!(added["state"], "active");
    assert_eq!(added["include"], serde_json::json!(["**/*.md"]));

    // Bad input names the field and writes nothing.
    for (args, needle) in [
        (vec!["--type", "ftp", "--path", vault], "invalid type"),
        (
            vec!["--type", "local_files", "--path", "/no/such/dir"],
            "invalid path",
        ),
        (
            vec![
                "--type",
                "local_files",
                "--path",
                vault,
                "--schedule",
                "sometimes",
            ],
            "invalid schedule",
        ),
        (
            vec![
                "--type",
                "local_files",
                "--path",
                vault,
                "--priority",
                "urgent",
            ],
            "invalid priority",
        ),
        (
            vec![
                "--type",
                "local_files",
                "--path",
                vault,
                "--retry-policy",
                "nonexistentpolicy",
            ],
            "invalid retry_policy: 'nonexistentpolicy' is neither a policy of retry_policies nor a preset",
        ),
    ] {
        let mut all = vec!["sources", "add", "other"];
        all.extend(args);
        let err = h.stderr(2, &all);
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    let err = h.stderr(
        1,
        &[
            "sources",
            "add",
            "notes",
            "--type",
            "local_files",
            "--path",
            vault,
        ],
    );
    assert!(err.contains("exists"), "{err}");
    assert_eq!(h.json(&["sources", "list"]).as_array().unwrap().len(), 1);

    let paused = h.json(&["sources", "pause", "notes", "--reason", "disk swap"]);
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["pause_reason"], "disk swap");
    assert!(h.expect(0, &["sources", "list"]).contains("paused"));
    let status = h.json(&["status"]);
    assert_eq!(status["sources"][0]["name"], "notes", "{status}");
    assert_eq!(status["sources"][0]["state"], "paused", "{status}");
    let audit = h.json(&["audit", "list"]);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "sources.pause" && e["reason"] == "disk swap"));

    // Data Loss: the queue database is gone; the definition is not.
    h.expect(0, &["db", "check"]);
    for f in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        let _ = std::fs::remove_file(h.path().join(f));
    }
    let list = h.json(&["sources", "list"]);
    let names: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(names, ["notes"], "{list}");
    let shown = h.json(&["sources", "show", "notes"]);
    assert_eq!(shown["schedule"], "every 15m");
    assert_eq!(shown["priority"], 3);
    // Runtime state lived in the lost database: active again.
    assert_eq!(shown["state"], "active");

    h.expect(0, &["sources", "remove", "notes"]);
    assert!(h.json(&["sources", "list"]).as_array().unwrap().is_empty());
    assert!(h.stderr(2, &["sources", "show", "notes"]).contains("notes"));
}

#[test]
fn telemetry_reports_throughput_with_the_runbook_keys_and_cleans_old_samples() {
    let h = Home::new();
    // Empty: every figure is 0, every key there.
    let t = h.json(&["telemetry", "throughput"]);
    let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "bytes_processed",
            "duration_seconds",
            "files_processed",
            "throughput_bytes_per_second",
            "throughput_files_per_second",
            "throughput_mbps"
        ]
    );
    // Samples as ingest jobs write them: two ok, one quarantined, one 10 days old.
    let now = chrono::Utc::now().timestamp_millis();
    let conn = rusqlite::Connection::open(h.path().join("queue.db")).unwrap();
    for (at, source, files, bytes, ms, outcome, reason) in [
        (now - 1000, "notes", 10, 3 << 20, 1000, "ok", None),
        (now - 500, "notes", 10, 1 << 20, 1000, "ok", None),
        (
            now - 100,
            "mail",
            1,
            100,
            0,
            "quarantined",
            Some("parse_error"),
        ),
        (now - 10 * 86_400_000, "mail", 7, 7, 7, "ok", None),
    ] {
        conn.execute(
            "INSERT INTO telemetry (at, source, files, bytes, duration_ms, outcome, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![at, source, files, bytes, ms, outcome, reason],
        )
        .unwrap();
    }
    drop(conn);
    let t = h.json(&[
        "telemetry",
        "throughput",
        "--since",
        "1h",
        "--source",
        "notes",
    ]);
    assert_eq!(t["files_processed"], 20, "{t}");
    assert_eq!(t["bytes_processed"], 4 << 20);
    assert_eq!(t["duration_seconds"], 2.0);
    assert_eq!(t["throughput_mbps"], 2.0);
    let failures = h.json(&["telemetry", "failures"]);
    assert_eq!(failures[0]["source"], "mail", "{failures}");
    assert_eq!(failures[0]["reason"], "parse_error");
    let by = h.json(&["telemetry", "by-source", "--since", "30d"]);
    assert_eq!(by.as_array().unwrap().len(), 2, "{by}");
    let summary = h.json(&["telemetry", "summary"]);
    assert_eq!(summary["jobs"]["quarantined"], 1, "{summary}");
    assert_eq!(
        h.json(&["telemetry", "clean", "--older-than-days", "7", "--dry-run"])["would_delete"],
        1
    );
    assert_eq!(
        h.json(&["telemetry", "clean", "--older-than-days", "7"])["deleted"],
        1
    );
    assert_eq!(
        h.json(&["telemetry", "by-source", "--since", "30d"])[0]["ok"],
        0
    );
    let err = h.stderr(2, &["telemetry", "clean", "--older-than-days", "0"]);
    assert!(err.contains("older-than-days"), "{err}");
}

#[test]
fn a_triggered_scan_ingests_changes_only_and_search_follows_edits_and_deletions() {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen);
    let vault = h.path().join("vault");
    std::fs::create_dir_all(vault.join("notes")).unwrap();
    std::fs::write(vault.join("a.md"), "# Alpha\n\nA zebra crossing.\n").unwrap();
    std::fs::write(
        vault.join("notes/b.md"),
        "---\ntags: [zoo]\n---\nThe quokka smiles.\n",
    )
    .unwrap();
    std::fs::write(vault.join("bad.md"), b"\x00\x01binary\x00pretending").unwrap();
    let v = vault.to_str().unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "notes",
            "--type",
            "markdown_vault",
            "--path",
            v,
        ],
    );
    h.expect(0, &["start"]);

    // The binary named .md is quarantined as a parse error: exit 1, the rest ingested.
    let out = h.run(&["sources", "trigger", "notes", "--wait", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["ingested"].as_u64(),
            summary["quarantined"].as_u64()
        ),
        (Some(2), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["scan"]["changed"], 3);
    let q = h.json(&["quarantine", "list", "--reason", "parse_error"]);
    assert_eq!(q.as_array().unwrap().len(), 1, "{q}");
    // The daemon's metrics count the files by outcome, their bytes and the jobs' durations.
    let metrics = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("http://{listen}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .to_string()
    };
    assert_eq!(
        sample(r#"fabric_ingest_files_total{outcome="ok",source="notes"}"#),
        "2"
    );
    assert_eq!(
        sample(r#"fabric_ingest_files_total{outcome="quarantined",source="notes"}"#),
        "1"
    );
    let ok_bytes = "# Alpha\n\nA zebra crossing.\n".len()
        + "---\ntags: [zoo]\n---\nThe quokka smiles.\n".len();
    assert_eq!(
        sample(r#"fabric_ingest_bytes_total{source="notes"}"#),
        ok_bytes.to_string()
    );
    // A batch of three, then the binary's job of its own.
    assert_eq!(
        sample(r#"fabric_ingest_duration_seconds_count{source="notes"}"#),
        "2"
    );
    let hits = h.json(&["docs", "search", "zebra"]);
    assert_eq!(hits[0]["path"], "a.md", "{hits}");
    assert_eq!(
        h.json(&["docs", "search", "quokka", "--tag", "zoo"])[0]["path"],
        "notes/b.md"
    );
    let shown = h.json(&["sources", "show", "notes"]);
    assert_eq!(
        (shown["files"].as_u64(), shown["documents"].as_u64()),
        (Some(3), Some(2)),
        "{shown}"
    );
    assert_eq!(shown["last_outcome"], "ok");

    // Unchanged: nothing is enqueued or written.
    let again = h.json(&["sources", "trigger", "notes", "--wait"]);
    assert_eq!(
        (
            again["scan"]["changed"].as_u64(),
            again["ingested"].as_u64()
        ),
        (Some(0), Some(0)),
        "{again}"
    );
    assert_eq!(again["scan"]["bytes_hashed"], 0, "{again}");
    // --full reads every file again (and quarantines the binary again: exit 1).
    let out = h.run(&[
        "sources", "trigger", "notes", "--wait", "--full", "--format", "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let full: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            full["scan"]["changed"].as_u64(),
            full["ingested"].as_u64(),
            full["quarantined"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{full}"
    );

    // An edit re-ingests that one file; a deletion removes its hits.
    std::fs::write(vault.join("notes/b.md"), "Now a wombat lives here.\n").unwrap();
    std::fs::remove_file(vault.join("a.md")).unwrap();
    let edit = h.json(&["sources", "trigger", "notes", "--wait"]);
    assert_eq!(
        (
            edit["scan"]["changed"].as_u64(),
            edit["scan"]["vanished"].as_u64()
        ),
        (Some(1), Some(1)),
        "{edit}"
    );
    assert_eq!(edit["ingested"], 1);
    assert!(h
        .json(&["docs", "search", "quokka"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(h
        .json(&["docs", "search", "zebra"])
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        h.json(&["docs", "search", "wombat"])[0]["path"],
        "notes/b.md"
    );

    // Every ingest job left a telemetry sample.
    let t = h.json(&["telemetry", "throughput", "--source", "notes"]);
    assert_eq!(t["files_processed"], 7, "{t}");
    let failures = h.json(&["telemetry", "failures"]);
    assert_eq!(failures[0]["reason"], "parse_error", "{failures}");
    // Health: the search index, and the source (a third of its files quarantined).
    assert_eq!(h.json(&["health", "check", "docs"])["status"], "ok");
    let check = h.json(&["health", "check", "notes"]);
    assert_eq!(check["status"], "warning", "{check}");
    assert!(
        check["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("quarantined"),
        "{check}"
    );
    let names: Vec<Value> = h.json(&["health"])["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert!(names.contains(&Value::from("notes")) && names.contains(&Value::from("docs")));
    std::fs::rename(&vault, h.path().join("moved")).unwrap();
    let gone = h.run(&["health", "check", "notes", "--format", "json"]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    h.expect(0, &["stop"]);
    let removed = h.json(&["sources", "remove", "notes", "--purge-docs"]);
    assert_eq!(removed["documents_deleted"], 1, "{removed}");
    assert!(h
        .json(&["docs", "search", "wombat"])
        .as_array()
        .unwrap()
        .is_empty());
}
