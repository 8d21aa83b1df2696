//! HTML and PDF through the isolated extractor: real `fabric __extractor` children, real
//! files. The pool on its own (each way a child can fail, and its replacement), then the
//! daemon: the words of each format found by search, every poison file quarantined with its
//! reason, the next files still extracted and the daemon healthy.
//!
//! The misbehaving files use the child's test hooks (`FABRIC_EXTRACTOR_TEST_HOOKS=1`, see
//! `fabric_ingest::isolate`): a file that makes the child sleep, allocate, overflow its stack
//! or abort.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use fabric_core::doc::{DocType, NewDocument};
use fabric_core::quarantine::QuarantineReason;
use fabric_ingest::isolate::{ExtractRequest, ExtractorConfig, ExtractorPool, TEST_HOOKS_ENV};
use fabric_ingest::untrusted::sample_pdf;
use fabric_ingest::{ExtractError, FileMeta, Limits};
use serde_json::Value;

use crate::Home;

fn hook(name: &str) -> Vec<u8> {
    format!("<!-- fabric-extractor-test-hook:{name} -->\n<p>never parsed</p>").into_bytes()
}

fn request(doc_type: DocType, path: &str, bytes: Vec<u8>) -> ExtractRequest {
    ExtractRequest {
        doc_type,
        source: "site".into(),
        path: path.into(),
        meta: FileMeta::default(),
        limits: Limits::default(),
        bytes,
    }
}

/// A pool of real children of the `fabric` binary, with the test hooks on (through `env`, so
/// this test's own environment stays as it is).
fn pool(workers: usize, output_cap_bytes: u64) -> ExtractorPool {
    let mut c = ExtractorConfig::new(
        "/usr/bin/env",
        vec![
            OsString::from(format!("{TEST_HOOKS_ENV}=1")),
            env!("CARGO_BIN_EXE_fabric").into(),
            "__extractor".into(),
        ],
    );
    c.workers = workers;
    c.timeout = Duration::from_secs(3);
    c.memory_bytes = 256 << 20;
    c.output_cap_bytes = output_cap_bytes;
    ExtractorPool::new(c)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const GOOD: &str = "<title>Fine</title><h1>Ok</h1><p>An ordinary okapi page.</p>";

async fn good(pool: &ExtractorPool) -> NewDocument {
    let d = pool
        .extract(&request(DocType::Html, "good.html", GOOD.into()))
        .await
        .expect("a good page after a bad one");
    assert!(d.chunks[0].text.contains("okapi"), "{d:?}");
    d
}

#[test]
fn the_pool_replaces_children_that_overrun_die_or_blow_their_caps() {
    runtime().block_on(async {
        let pool = pool(1, 64 << 10);
        let d = good(&pool).await;
        assert_eq!(d.title, "Fine");
        let pdf = pool
            .extract(&request(
                DocType::Pdf,
                "r.pdf",
                sample_pdf("Report", &["The pangolin census"]),
            ))
            .await
            .unwrap();
        assert_eq!(pdf.title, "Report");
        assert!(pdf.chunks[0].text.contains("pangolin"), "{pdf:?}");
        assert_eq!(pool.spawned(), 1, "one child served both");

        // Each failure with its reason; the dead or killed child is replaced for the next file.
        let cases: [(&str, Vec<u8>, QuarantineReason, bool); 8] = [
            ("sleep", hook("sleep"), QuarantineReason::Timeout, true),
            (
                "alloc",
                hook("alloc"),
                QuarantineReason::ResourceExhausted,
                true,
            ),
            (
                "stack",
                hook("stack"),
                QuarantineReason::ResourceExhausted,
                true,
            ),
            ("abort", hook("abort"), QuarantineReason::ParseError, true),
            // Caught in the child, which lives on.
            ("panic", hook("panic"), QuarantineReason::ParseError, false),
            (
                "too much output",
                format!("<p>{}</p>", "wordy ".repeat(30_000)).into_bytes(),
                QuarantineReason::ResourceExhausted,
                false,
            ),
            (
                "deep",
                "<div>".repeat(100_000).into_bytes(),
                QuarantineReason::ParseError,
                false,
            ),
            (
                "truncated pdf",
                sample_pdf("t", &["cut short"])[..200].to_vec(),
                QuarantineReason::ParseError,
                false,
            ),
        ];
        for (what, bytes, reason, replaced) in cases {
            let t = if what.contains("pdf") {
                DocType::Pdf
            } else {
                DocType::Html
            };
            let before = pool.spawned();
            let e = pool
                .extract(&request(t, "bad", bytes))
                .await
                .expect_err(what);
            assert_eq!(e.reason(), reason, "{what}: {e}");
            good(&pool).await;
            assert_eq!(pool.spawned() - before, u64::from(replaced), "{what}: {e}");
        }

        // The memory cap is the configured one: 300 MiB do not fit under 256 MiB, and fit
        // under 1 GiB.
        let e = pool
            .extract(&request(DocType::Html, "big", hook("alloc300")))
            .await
            .expect_err("300 MiB under a 256 MiB cap");
        assert_eq!(e.reason(), QuarantineReason::ResourceExhausted, "{e}");
        let mut roomy = pool.config().clone();
        roomy.memory_bytes = 1 << 30;
        let d = ExtractorPool::new(roomy)
            .extract(&request(DocType::Html, "big", hook("alloc300")))
            .await
            .expect("300 MiB under a 1 GiB cap");
        assert!(d.chunks[0].text.contains("never parsed"), "{d:?}");

        // A cap below what the child maps at start-up cannot be enforced: refused, loudly.
        let mut tiny = pool.config().clone();
        tiny.memory_bytes = 1 << 20;
        let e = ExtractorPool::new(tiny)
            .extract(&request(DocType::Html, "a.html", GOOD.into()))
            .await
            .expect_err("1 MiB cap");
        assert!(
            matches!(e, ExtractError::ExtractorUnavailable(ref m) if m.contains("over the memory cap")),
            "{e:?}"
        );

        // Several children at once, never more than `workers`.
        let pool = std::sync::Arc::new(self::pool(2, 1 << 20));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let p = pool.clone();
            tasks.push(tokio::spawn(async move { good(&p).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(pool.spawned() <= 2, "{}", pool.spawned());
    });
}

#[test]
fn a_pool_that_cannot_start_an_extractor_is_unavailable_not_the_files_fault() {
    runtime().block_on(async {
        for program in ["/no/such/fabric", "/bin/true"] {
            let pool = ExtractorPool::new(ExtractorConfig::new(program, Vec::new()));
            let e = pool
                .extract(&request(DocType::Html, "a.html", GOOD.into()))
                .await
                .expect_err(program);
            assert!(matches!(e, ExtractError::ExtractorUnavailable(_)), "{e:?}");
            assert!(!e.failure().permanent, "retried, not quarantined");
        }
    });
}

fn write(root: &Path, rel: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(root.join(rel), bytes).unwrap();
}

fn quarantined(h: &Home) -> Vec<(String, String)> {
    let q = h.json(&["quarantine", "list", "--limit", "100"]);
    let mut v: Vec<(String, String)> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["payload"]["path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                j["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_daemon_extracts_html_and_pdf_in_children_and_quarantines_poison_with_its_reason() {
    let h = Home::new().with(TEST_HOOKS_ENV, "1");
    let site = h.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    write(
        &site,
        "page.html",
        "<html><head><title>Field guide</title></head><body><h1>Mammals</h1>\
         <p>The aardvark digs at night.</p><a href=\"https://example.org/burrows\">burrows</a>\
         </body></html>",
    );
    write(
        &site,
        "report.pdf",
        sample_pdf("Census", &["The pangolin census", "A second page"]),
    );
    write(&site, "truncated.pdf", &sample_pdf("t", &["cut"])[..200]);
    write(&site, "deep.html", "<div>".repeat(100_000));
    write(&site, "hog.html", hook("alloc"));
    write(&site, "crash.html", hook("stack"));
    write(&site, "slow.html", hook("sleep"));
    write(&site, "after.html", "<p>The narwhal surfaces.</p>");
    let s = site.to_str().unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "site",
            "--type",
            "local_files",
            "--path",
            s,
        ],
    );
    h.expect(0, &["start"]);

    let out = h.run(&["sources", "trigger", "site", "--wait", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["ingested"].as_u64(),
            summary["quarantined"].as_u64()
        ),
        (Some(3), Some(5)),
        "{summary}"
    );
    let q = quarantined(&h);
    let expected = [
        ("crash.html", "resource_exhausted"),
        ("deep.html", "parse_error"),
        ("hog.html", "resource_exhausted"),
        ("slow.html", "timeout"),
        ("truncated.pdf", "parse_error"),
    ]
    .map(|(p, r)| (p.to_string(), r.to_string()));
    assert_eq!(q, expected);
    let hits = h.json(&["docs", "search", "aardvark"]);
    assert_eq!(hits[0]["path"], "page.html", "{hits}");
    let hits = h.json(&["docs", "search", "pangolin"]);
    assert_eq!(hits[0]["path"], "report.pdf", "{hits}");
    assert_eq!(
        h.json(&["docs", "search", "narwhal"])[0]["path"],
        "after.html"
    );
    assert_eq!(hits[0]["title"], "Census", "{hits}");
    assert_eq!(hits[0]["heading"], "page 1", "{hits}");
    h.expect(0, &["health"]);

    // The pool replaced its children: a new file is extracted, the daemon still healthy.
    write(
        &site,
        "later.html",
        "<h2>Late</h2><p>A quetzal arrives.</p>",
    );
    let later = h.json(&["sources", "trigger", "site", "--wait"]);
    assert_eq!(later["ingested"], 1, "{later}");
    assert_eq!(
        h.json(&["docs", "search", "quetzal"])[0]["path"],
        "later.html"
    );
    h.expect(0, &["health"]);
    h.expect(0, &["stop"]);
}
