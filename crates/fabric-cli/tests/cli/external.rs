//! Kinds served by external workers (`workers.external_kinds`): accepted at submit without a
//! built-in handler, never claimed by the daemon's own workers; an undeclared unknown kind
//! stays bad input.

use crate::Home;

#[test]
fn a_declared_external_kind_waits_for_an_external_worker() {
    let h = Home::new().with("FABRIC__WORKERS__EXTERNAL_KINDS", "[ocr]");
    let ext = h.json(&[
        "jobs",
        "submit",
        "--kind",
        "ocr",
        "--payload",
        r#"{"page": 3}"#,
    ])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let err = h.stderr(2, &["jobs", "submit", "--kind", "transcode"]);
    assert!(err.contains("unknown handler kind 'transcode'"), "{err}");
    assert!(err.contains("workers.external_kinds"), "{err}");
    h.expect(0, &["start"]);
    let noop = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("the later built-in job ran", || {
        h.json(&["jobs", "show", &noop])["state"] == "succeeded"
    });
    // Submitted first, yet untouched by the daemon's workers.
    let job = h.json(&["jobs", "show", &ext]);
    assert_eq!(job["state"], "pending", "{job}");
    assert_eq!(job["attempt"], 0);
    h.expect(0, &["stop"]);
}

#[test]
fn an_external_kind_must_be_a_kind_name() {
    let h = Home::new().with("FABRIC__WORKERS__EXTERNAL_KINDS", "[\"no good\"]");
    let err = h.stderr(2, &["config", "validate"]);
    assert!(err.contains("workers.external_kinds[0]"), "{err}");
}
