//! Field reports through the binary: a daemon writes the outcome of every job; `reports
//! tail` reads them back, reports a torn tail without failing, and `reports.enabled: false`
//! writes none.

use std::io::Write;

use serde_json::Value;

use super::Home;

fn day_files(h: &Home) -> Vec<std::path::PathBuf> {
    let dir = h.path().join("reports");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("field-"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn job_outcomes_are_field_reports_and_a_torn_tail_is_reported_not_fatal() {
    let h = Home::new();
    h.expect(0, &["start"]);
    let ok = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap();
    let bad = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "shell",
        "--max-attempts",
        "1",
        "--payload",
        r#"{"cmd": ["false"]}"#,
    ])["id"]
        .as_i64()
        .unwrap();
    h.wait_until("both jobs finish", || {
        let s = |id: i64| h.json(&["jobs", "show", &id.to_string()])["state"].clone();
        s(ok) == "succeeded" && s(bad) == "quarantined"
    });
    h.expect(0, &["stop"]);
    let tail = h.json(&["reports", "tail"]);
    let records = tail["records"].as_array().unwrap();
    let event_of = |id: i64| {
        records
            .iter()
            .find(|r| r["job_id"] == id)
            .unwrap_or_else(|| panic!("no report of job {id}: {tail}"))
    };
    assert_eq!(event_of(ok)["event"], "job_succeeded");
    assert_eq!(event_of(bad)["event"], "job_quarantined");
    assert_eq!(event_of(bad)["attempt"], 1);
    assert!(event_of(bad)["detail"]["reason"].is_string(), "{tail}");
    assert_eq!(tail["torn"], Value::Array(vec![]));

    // A crash mid-write leaves half a record: the whole ones are still read, the damage named.
    let files = day_files(&h);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
    drop(f);
    let torn = h.json(&["reports", "tail"]);
    assert_eq!(torn["records"], tail["records"]);
    assert_eq!(torn["torn"][0]["problem"], "incomplete record", "{torn}");
    let out = h.run(&["reports", "tail"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("incomplete record at byte"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("job_quarantined"));
    // --limit keeps the newest.
    let one = h.json(&["reports", "tail", "--limit", "1"]);
    assert_eq!(one["records"].as_array().unwrap().len(), 1);
    assert_eq!(one["records"][0], *records.last().unwrap());
    h.stderr(2, &["reports", "tail", "--limit", "0"]);
}

#[test]
fn reports_enabled_false_writes_none() {
    let h = Home::new().with("FABRIC__REPORTS__ENABLED", "false");
    h.expect(0, &["start"]);
    let id = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap();
    h.wait_until("the job succeeds", || {
        h.json(&["jobs", "show", &id.to_string()])["state"] == "succeeded"
    });
    h.expect(0, &["stop"]);
    assert!(day_files(&h).is_empty());
    assert_eq!(
        h.json(&["reports", "tail"])["records"],
        Value::Array(vec![])
    );
}
