//! The web console in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against a real daemon, one user journey per test, each asserting what the user sees and
//! leaving a screenshot (`FABRIC_SCREENSHOT_DIR`, default `target/ui-screenshots`).
//! Without Chromium the journeys are skipped, unless `FABRIC_REQUIRE_BROWSER=1` (CI).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::Home;

const ADMIN: &str = "admin-token-1";
const READER: &str = "read-token-1";

/// A daemon with the API (and the console) on a free port, and the two tokens.
fn daemon(extra: &[(&str, &str)], tokens: bool) -> (Home, String) {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let mut h = Home::new()
        .with("FABRIC__API__ENABLED", "true")
        .with("FABRIC__API__LISTEN", &listen);
    for (k, v) in extra {
        h = h.with(k, v);
    }
    if tokens {
        let dir = h.path().join("config");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("fabric.yaml"),
            format!(
                "api:\n  tokens:\n    - {{name: alice, token: {ADMIN}, role: admin}}\n    - {{name: viewer, token: {READER}, role: read}}\n"
            ),
        )
        .unwrap();
    }
    (h, format!("http://{listen}"))
}

fn start(h: &Home, base: &str) {
    h.expect(0, &["start"]);
    let url = format!("{base}/api/v1/ping");
    h.wait_within("the API", Duration::from_secs(30), || {
        Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
}

/// chromedriver and a headless Chromium session; both end when it drops.
struct Browser {
    driver: Child,
    client: Option<Client>,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// None when Chromium is not installed (and CI does not require it).
    fn start() -> Option<Self> {
        let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(driver_bin) = driver_bin else {
            assert!(
                std::env::var("FABRIC_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "FABRIC_REQUIRE_BROWSER=1 but chromedriver is not installed"
            );
            eprintln!("skipped: chromium-driver is not installed");
            return None;
        };
        let port = crate::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let client = rt.block_on(async {
            let t0 = Instant::now();
            loop {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                match ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(c) => break c,
                    Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => panic!("cannot open a Chromium session: {e}"),
                }
            }
        });
        Some(Self {
            driver,
            client: Some(client),
            rt,
            _profile: profile,
        })
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn goto(&self, url: &str) {
        self.rt.block_on(self.c().goto(url)).unwrap();
    }

    /// The text of the first element matching `css`.
    fn text(&self, css: &str) -> String {
        self.with(css, "text of", |el| {
            Box::pin(async move { el.text().await })
        })
    }

    fn exists(&self, css: &str) -> bool {
        self.rt
            .block_on(self.c().find_all(Locator::Css(css)))
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    }

    /// Runs `act` on the element `css` finds, again if a live refresh replaced the element
    /// between finding and acting (live pages replace their parts in place).
    fn with<T, F>(&self, css: &str, what: &str, act: F) -> T
    where
        F: Fn(
            fantoccini::elements::Element,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, fantoccini::error::CmdError>>>,
        >,
    {
        let mut tries = 0;
        loop {
            let out = self
                .rt
                .block_on(async { act(self.c().find(Locator::Css(css)).await?).await });
            match out {
                Ok(v) => return v,
                Err(e) if tries < 10 && e.to_string().contains("stale element") => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{what} {css}: {e}\n{}", self.source()),
            }
        }
    }

    fn click(&self, css: &str) {
        self.with(css, "click", |el| Box::pin(async move { el.click().await }));
    }

    fn fill(&self, css: &str, text: &str) {
        let text = text.to_string();
        self.with(css, "fill", move |el| {
            let text = text.clone();
            Box::pin(async move {
                el.clear().await?;
                el.send_keys(&text).await
            })
        });
    }

    fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.rt
            .block_on(async { self.c().find(Locator::Css(css)).await?.attr(name).await })
            .unwrap()
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.c().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script: {e}"))
    }

    fn source(&self) -> String {
        self.rt.block_on(self.c().source()).unwrap_or_default()
    }

    fn url(&self) -> String {
        self.rt
            .block_on(self.c().current_url())
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Waits up to 20 s for `f` (the page may be refreshing itself).
    fn wait_for(&self, what: &str, mut f: impl FnMut(&Self) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "timed out waiting: {what}\n{}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/ui/login"));
        self.fill("#token", token);
        self.click("form button[type=submit]");
        self.wait_for("signed in", |b| b.exists("#whoami"));
    }

    /// Keeps what the user sees now as `<journey>.png`.
    fn screenshot(&self, journey: &str) {
        let png = self.rt.block_on(self.c().screenshot()).unwrap();
        let dir = std::env::var_os("FABRIC_SCREENSHOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots")
            });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{journey}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn submit(h: &Home, args: &[&str]) -> String {
    let mut all = vec!["jobs", "submit"];
    all.extend(args);
    h.json(&all)["id"].as_i64().unwrap().to_string()
}

#[test]
fn find_a_failed_job_and_retry_it() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    start(&h, &base);
    let id = submit(
        &h,
        &[
            "--kind",
            "shell",
            "--payload",
            r#"{"cmd": ["sh", "-c", "echo disk on fire >&2; exit 3"]}"#,
            "--max-attempts",
            "1",
        ],
    );
    h.wait_until("quarantined", || {
        h.json(&["jobs", "show", &id])["state"] == "quarantined"
    });
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/jobs?q=disk+on+fire"));
    assert_eq!(b.text("#match-count"), "1");
    b.click(&format!("#jobs tr[data-id='{id}'] a"));
    assert!(b.text("#job-state").contains("quarantined"));
    assert!(
        b.text("#attempts").contains("disk on fire"),
        "the attempt's error"
    );
    b.click("form[action$='/retry'] button");
    b.wait_for("the retry's banner", |b| b.exists("#flash"));
    assert!(
        b.text("#flash").contains("pending again"),
        "{}",
        b.text("#flash")
    );
    b.screenshot("01-retry-failed-job");
    let job = h.json(&["jobs", "show", &id]);
    assert_eq!(job["max_attempts"], 2, "a fresh attempt: {job}");
    let audit = h.expect(0, &["audit", "list", "--format", "json"]);
    assert!(
        audit.contains("\"actor\":\"alice\"") || audit.contains("\"actor\": \"alice\""),
        "{audit}"
    );
}

#[test]
fn bulk_cancel_by_filter_acts_on_every_match_once() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    h.expect(0, &["shards", "add", "parked"]);
    h.expect(0, &["shards", "pause", "parked", "--reason", "hold"]);
    let jobs: Vec<Value> = (0..120)
        .map(|i| json!({"kind": "noop", "shard": "parked", "payload": {"i": i}, "run_at": 4_102_444_800_000_i64}))
        .collect();
    let file = h.path().join("jobs.jsonl");
    std::fs::write(
        &file,
        jobs.iter()
            .map(|j| j.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    h.expect(0, &["jobs", "submit", "--file", file.to_str().unwrap()]);
    start(&h, &base);
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/jobs?shard=parked&state=pending"));
    let jobs = h.expect(0, &["jobs", "list", "--limit", "3", "--format", "json"]);
    assert_eq!(
        b.text("#match-count"),
        "120",
        "more than one page of 50 matches: {jobs}"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#jobs tbody tr').length"),
        json!(50)
    );
    b.fill("#bulk form:nth-of-type(2) input[name=reason]", "not needed");
    b.click("#bulk-cancel");
    b.wait_for("the bulk job to finish", |b| {
        b.exists("#bulk-state")
            && b.text("#bulk-state").contains("succeeded")
            && b.text("#bulk-done") == "120"
    });
    assert_eq!(
        b.text("#bulk-matched"),
        "120",
        "the count when it was submitted"
    );
    let first = b.url();
    b.screenshot("02-bulk-cancel");
    // The same form sent again (back, click again) is the same request: no second job.
    b.rt.block_on(b.c().back()).unwrap();
    b.click("#bulk-cancel");
    b.wait_for("the bulk page", |b| b.url().contains("/ui/bulk/"));
    assert_eq!(b.url(), first, "a second click shows the first bulk job");
    let cancelled = h.json(&[
        "jobs",
        "list",
        "--status",
        "cancelled",
        "--shard",
        "parked",
        "--limit",
        "1000",
    ]);
    assert_eq!(cancelled.as_array().unwrap().len(), 120);
    let audit = h.expect(0, &["audit", "list", "--format", "json"]);
    assert_eq!(
        audit.matches("jobs.bulk-cancel").count(),
        1,
        "audited once: {audit}"
    );
}

#[test]
fn pause_a_shard_and_see_it_in_shards_list() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    h.expect(0, &["shards", "add", "vega"]);
    start(&h, &base);
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/shards"));
    b.fill("tr[data-shard=vega] input[name=reason]", "dust storm");
    b.click("#pause-vega");
    b.wait_for("the banner", |b| b.exists("#flash"));
    assert!(b
        .text("tr[data-shard=vega] .shard-state")
        .contains("paused"));
    b.screenshot("03-pause-shard");
    let shards = h.json(&["shards", "list"]);
    let vega = shards
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "vega")
        .unwrap()
        .clone();
    assert_eq!(vega["paused"], true, "{vega}");
}

#[test]
fn search_documents_and_inspect_a_quarantined_file() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    let vault = h.path().join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    std::fs::write(
        vault.join("a.md"),
        "# Alpha\n\nA zebra crossing near the quokka.\n",
    )
    .unwrap();
    std::fs::write(vault.join("bad.md"), b"\x00\x01binary\x00pretending").unwrap();
    h.expect(
        0,
        &[
            "sources",
            "add",
            "notes",
            "--type",
            "markdown_vault",
            "--path",
            vault.to_str().unwrap(),
        ],
    );
    start(&h, &base);
    let _ = h.run(&["sources", "trigger", "notes", "--wait"]);
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/docs"));
    b.fill("#doc-search input[name=q]", "zebra");
    b.click("#doc-search button");
    b.wait_for("hits", |b| b.exists("#hits li"));
    assert!(b.text("#hits li").contains("Alpha"));
    assert_eq!(b.text("#hits mark"), "zebra", "the matched word is marked");
    b.screenshot("04-search-documents");
    b.goto(&format!("{base}/ui/quarantine"));
    b.click("#quarantine tbody tr a");
    assert_eq!(b.text("#entry-reason"), "parse_error");
    assert_eq!(b.text("#entry-file"), "bad.md", "the file is named");
    b.screenshot("05-quarantined-file");
}

#[test]
fn silence_an_alert() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    std::fs::write(
        h.path().join("config/fabric.yaml"),
        format!(
            "api:\n  tokens:\n    - {{name: alice, token: {ADMIN}, role: admin}}\nalerts:\n  interval_ms: 200\n  rules:\n    - {{name: queue_depth_high, metric: queue_depth, comparator: \">\", threshold: 1, for_count: 1, routes: [log]}}\n"
        ),
    )
    .unwrap();
    for _ in 0..3 {
        h.expect(0, &["jobs", "submit", "--kind", "noop", "--run-at", "1h"]);
    }
    start(&h, &base);
    h.wait_within("the alert fires", Duration::from_secs(60), || {
        h.json(&["alerts", "list"]).to_string().contains("firing")
    });
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/alerts"));
    assert!(b
        .text("tr[data-rule=queue_depth_high] .phase")
        .contains("firing"));
    b.fill(
        "tr[data-rule=queue_depth_high] input[name=comment]",
        "known: backlog drill",
    );
    b.click("tr[data-rule=queue_depth_high] button.silence");
    b.wait_for("the silence", |b| b.exists("#silences tr[data-id]"));
    assert!(b.text("#silences").contains("alertname=queue_depth_high"));
    assert!(b
        .text("tr[data-rule=queue_depth_high] .held")
        .contains("silenced"));
    b.screenshot("06-silence-alert");
    let silences = h.json(&["alerts", "silence"]);
    assert_eq!(silences[0]["author"], "alice", "{silences}");
}

#[test]
fn a_read_only_token_sees_everything_and_changes_nothing() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    h.expect(0, &["shards", "add", "vega"]);
    start(&h, &base);
    b.login(&base, READER);
    b.goto(&format!("{base}/ui/shards"));
    assert!(b.text("#readonly").contains("read role"));
    assert_eq!(b.attr("#pause-vega", "disabled").as_deref(), Some("true"));
    b.screenshot("07-read-only");
    // Sending the form anyway (its button is disabled; the form is sent by hand, in one step
    // so that a live refresh cannot come between) is refused.
    b.js("document.querySelector('#pause-vega').form.submit();");
    b.wait_for("the refusal", |b| b.exists(".error-message"));
    assert_eq!(
        b.attr(".error-message", "data-status").as_deref(),
        Some("403")
    );
    assert!(b.text(".error-message").contains("read role"));
    let shards = h.json(&["shards", "list"]).to_string();
    assert!(!shards.contains("\"paused\":true"), "{shards}");
}

#[test]
fn a_post_without_the_csrf_token_is_refused() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    h.expect(0, &["shards", "add", "vega"]);
    start(&h, &base);
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/shards"));
    // The form sent without its CSRF field (in one step, so that a live refresh cannot put it
    // back in between).
    b.js("var f = document.querySelector('#pause-vega').form; f.querySelector('input[name=csrf]').remove(); f.submit();");
    b.wait_for("the refusal", |b| b.exists(".error-message"));
    assert_eq!(
        b.attr(".error-message", "data-status").as_deref(),
        Some("403")
    );
    assert!(b.text(".error-message").contains("CSRF"));
    b.screenshot("08-csrf-refused");
    let vega = h.json(&["shards", "list"]);
    assert!(vega.to_string().contains("\"paused\":false"), "{vega}");
    // An action's URL opened in the browser is the console's 405 page, not a blank one; the
    // console with a trailing slash is the console.
    b.goto(&format!("{base}/ui/shards"));
    let action = b.js("return document.querySelector('#pause-vega').form.action");
    b.goto(action.as_str().unwrap());
    assert_eq!(
        b.attr(".error-message", "data-status").as_deref(),
        Some("405")
    );
    assert!(
        b.text(".error-message").contains("/ui/shards/"),
        "the path as asked for"
    );
    assert!(b.text(".error-message").contains("is an action"));
    b.goto(&format!("{base}/ui/"));
    assert!(b.url().ends_with("/ui"), "{}", b.url());
    assert!(b.exists("#counts"), "{}", b.source());
    // The sign-in form carries a CSRF token too: sent without it, no session is opened.
    b.goto(&format!("{base}/ui/login"));
    b.fill("#token", ADMIN);
    b.js("var f = document.querySelector('#token').form; f.querySelector('input[name=csrf]').remove(); f.submit();");
    b.wait_for("the refusal", |b| b.exists(".error-message"));
    assert!(b.text(".error-message").contains("CSRF"), "{}", b.source());
}

#[test]
fn without_tokens_the_console_is_read_only_and_says_so() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], false);
    let id = submit(&h, &["--kind", "noop", "--run-at", "1h"]);
    start(&h, &base);
    b.goto(&format!("{base}/ui/jobs/{id}"));
    assert!(b.text("#readonly").contains("no API token is configured"));
    assert_eq!(b.attr("#cancel", "disabled").as_deref(), Some("true"));
    b.screenshot("09-no-token-read-only");
    b.goto(&format!("{base}/ui/login"));
    assert!(b.text(".banner").contains("read-only"));
}

#[test]
fn a_job_shows_its_payload_attempts_lease_and_timeline() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[("FABRIC__RETRY__BASE_DELAY_SECONDS", "3600")], true);
    let id = submit(
        &h,
        &[
            "--kind",
            "shell",
            "--payload",
            r#"{"cmd": ["sh", "-c", "echo flaky upstream >&2; exit 1"], "tag": "nightly"}"#,
            "--max-attempts",
            "3",
        ],
    );
    start(&h, &base);
    h.wait_until("the first attempt failed", || {
        h.json(&["jobs", "show", &id])["state"] == "failed"
    });
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/jobs/{id}"));
    assert!(b.text("#job-state").contains("failed"));
    assert!(b.text("#attempts").contains("flaky upstream"));
    assert!(b.text(".timeline").contains("attempt 1 failed"));
    assert!(b.source().contains("nightly"), "the payload is shown");
    assert_eq!(b.text("#lease"), "none");
    b.screenshot("10-job-detail");
}

#[test]
fn pages_follow_changes_live_without_a_reload() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    h.expect(0, &["shards", "add", "parked"]);
    h.expect(0, &["shards", "pause", "parked"]);
    start(&h, &base);
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui/jobs?shard=parked"));
    assert_eq!(b.text("#match-count"), "0");
    b.js("window.__marker = 'same page';");
    b.wait_for("the live stream", |b| b.exists("#live-status.on"));
    for _ in 0..3 {
        submit(&h, &["--kind", "noop", "--shard", "parked"]);
    }
    b.wait_for("the count to follow", |b| b.text("#match-count") == "3");
    assert_eq!(
        b.js("return window.__marker"),
        json!("same page"),
        "no reload"
    );
    b.screenshot("11-live-update");
}

#[test]
fn overview_batches_schedules_and_audit_pages() {
    let Some(b) = Browser::start() else { return };
    let (h, base) = daemon(&[], true);
    let file = h.path().join("batch.jsonl");
    std::fs::write(&file, "{\"key\": \"a\", \"kind\": \"noop\"}\n{\"key\": \"b\", \"kind\": \"noop\", \"depends_on\": [\"a\"]}\n").unwrap();
    let batch = h.json(&["batch", "submit", file.to_str().unwrap()]);
    let batch_id = batch["id"].as_i64().unwrap_or_else(|| panic!("{batch}"));
    h.expect(
        0,
        &[
            "schedules",
            "add",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--kind",
            "noop",
            "--payload",
            "{}",
        ],
    );
    start(&h, &base);
    h.wait_until("the batch ends", || {
        h.json(&["batch", "show", &batch_id.to_string()])["state"] == "succeeded"
    });
    b.login(&base, ADMIN);
    b.goto(&format!("{base}/ui"));
    b.wait_for("the counts", |b| b.text("#counts").contains("succeeded"));
    assert_eq!(b.text("[data-state=succeeded]"), "2");
    assert!(b.exists("#chart-completed"));
    b.screenshot("12-overview");
    b.goto(&format!("{base}/ui/batches/{batch_id}"));
    assert_eq!(b.text("#batch-state"), "succeeded");
    assert!(b.text("#batch-items").contains("a"));
    b.screenshot("13-batch");
    b.goto(&format!("{base}/ui/schedules"));
    b.fill(
        "tr[data-schedule=nightly] input[name=reason]",
        "maintenance",
    );
    b.click("tr[data-schedule=nightly] form[action$='/pause'] button");
    b.wait_for("paused", |b| b.exists("#flash"));
    assert!(b
        .text("tr[data-schedule=nightly]")
        .contains("paused (maintenance)"));
    assert_eq!(h.json(&["schedules", "show", "nightly"])["paused"], true);
    // The bus: every lane with its length, and pending and lag per consumer group.
    b.goto(&format!("{base}/ui/bus"));
    for lane in ["normal", "emergency", "telemetry", "policy"] {
        assert!(
            b.exists(&format!("#bus-streams tr[data-lane={lane}]")),
            "{lane}: {}",
            b.text("#bus-live")
        );
    }
    b.goto(&format!("{base}/ui/audit"));
    assert!(b.text("#audit").contains("schedules.pause"));
    assert!(b.text("#audit .actor").contains("alice"));
    b.screenshot("14-audit");
}
