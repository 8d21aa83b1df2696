//! `fabric schedules`: add with every field checked (bad input exits 2 naming the field),
//! list with the next 5 runs, show, pause, resume, trigger, remove, all audited; and a daemon
//! firing an every-second schedule.

use serde_json::Value;

use super::Home;

fn add(h: &Home, name: &str, cron: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "schedules",
        "add",
        name,
        "--cron",
        cron,
        "--kind",
        "noop",
        "--payload",
        "{}",
    ];
    args.extend(extra);
    h.json(&args)
}

/// Jobs whose unique key starts with `schedule:<name>:`.
fn jobs_of(h: &Home, name: &str) -> Vec<Value> {
    let prefix = format!("schedule:{name}:");
    h.json(&["jobs", "list", "--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["unique_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&prefix))
        })
        .cloned()
        .collect()
}

#[test]
fn schedules_are_added_listed_paused_resumed_triggered_and_removed() {
    let h = Home::new();
    let added = add(
        &h,
        "nightly",
        "30 2 * * *",
        &[
            "--timezone",
            "Europe/Berlin",
            "--overlap",
            "allow",
            "--catch-up",
            "all",
        ],
    );
    assert_eq!(added["name"], "nightly", "{added}");
    assert_eq!(added["timezone"], "Europe/Berlin");
    assert_eq!(added["overlap"], "allow");
    assert_eq!(added["catch_up"], "all");
    assert_eq!(added["paused"], false);
    let upcoming = added["upcoming"].as_array().unwrap();
    assert_eq!(upcoming.len(), 5, "{added}");
    assert_eq!(added["next_due"], upcoming[0]);
    // Defaults: UTC, skip, one.
    let hourly = add(&h, "hourly", "0 * * * *", &[]);
    assert_eq!(
        (&hourly["timezone"], &hourly["overlap"], &hourly["catch_up"]),
        (
            &Value::from("UTC"),
            &Value::from("skip"),
            &Value::from("one")
        )
    );

    // Bad input exits 2 naming the field, and writes nothing.
    let base = [
        "schedules",
        "add",
        "bad",
        "--kind",
        "noop",
        "--payload",
        "{}",
    ];
    for (extra, needle) in [
        (
            vec!["--cron", "61 * * * *"],
            "invalid cron: '61 * * * *' is not a valid cron expression: its minute field '61'",
        ),
        (
            vec!["--cron", "0 0 31 2 *"],
            "invalid cron: '0 0 31 2 *' never fires",
        ),
        (vec!["--cron", "* * *"], "invalid cron"),
        (
            vec!["--cron", "* * * * *", "--timezone", "Mars/Base"],
            "invalid timezone",
        ),
        (
            vec!["--cron", "* * * * *", "--overlap", "never"],
            "invalid overlap",
        ),
        (
            vec!["--cron", "* * * * *", "--catch-up", "some"],
            "invalid catch-up",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(extra);
        let err = h.stderr(2, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = h.stderr(
        2,
        &[
            "schedules",
            "add",
            "bad",
            "--cron",
            "* * * * *",
            "--kind",
            "nope",
            "--payload",
            "{}",
        ],
    );
    assert!(err.contains("invalid kind"), "{err}");
    let err = h.stderr(
        2,
        &[
            "schedules",
            "add",
            "bad",
            "--cron",
            "* * * * *",
            "--kind",
            "noop",
            "--payload",
            "[1",
        ],
    );
    assert!(err.contains("--payload"), "{err}");
    let err = h.stderr(
        1,
        &[
            "schedules",
            "add",
            "hourly",
            "--cron",
            "* * * * *",
            "--kind",
            "noop",
            "--payload",
            "{}",
        ],
    );
    assert!(err.contains("exists"), "{err}");

    let list = h.json(&["schedules", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hourly", "nightly"]);
    let table = h.expect(0, &["schedules", "list"]);
    assert!(
        table.contains("next runs") && table.contains("Europe/Berlin"),
        "{table}"
    );
    let shown = h.expect(0, &["schedules", "show", "nightly"]);
    assert!(
        shown.contains("30 2 * * *") && shown.contains("next runs"),
        "{shown}"
    );
    h.stderr(2, &["schedules", "show", "nope"]);

    let paused = h.json(&["schedules", "pause", "nightly", "--reason", "maintenance"]);
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["pause_reason"], "maintenance");
    let resumed = h.json(&["schedules", "resume", "nightly"]);
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["upcoming"].as_array().unwrap().len(), 5);

    let trig = h.json(&["schedules", "trigger", "hourly"]);
    assert_eq!(trig["created"], true, "{trig}");
    let jobs = jobs_of(&h, "hourly");
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0]["unique_key"]
        .as_str()
        .unwrap()
        .starts_with("schedule:hourly:manual:"));
    assert_eq!(jobs[0]["kind"], "noop");
    assert_eq!(
        h.json(&["schedules", "show", "hourly"])["last_job_id"],
        trig["job_id"]
    );

    h.expect(0, &["schedules", "remove", "hourly"]);
    h.stderr(2, &["schedules", "remove", "hourly"]);
    assert_eq!(h.json(&["schedules", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(jobs_of(&h, "hourly").len(), 1, "its jobs stay");

    let audit = h.json(&["audit", "list"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "schedules.add",
        "schedules.pause",
        "schedules.resume",
        "schedules.trigger",
        "schedules.remove",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
}

#[test]
fn the_daemon_fires_an_every_second_schedule() {
    let h = Home::new();
    add(&h, "tick", "* * * * * *", &[]);
    h.expect(0, &["start"]);
    h.wait_until("two scheduled runs succeeded", || {
        jobs_of(&h, "tick")
            .iter()
            .filter(|j| j["state"] == "succeeded")
            .count()
            >= 2
    });
    h.expect(0, &["stop"]);
    let jobs = jobs_of(&h, "tick");
    let mut keys: Vec<&str> = jobs
        .iter()
        .map(|j| j["unique_key"].as_str().unwrap())
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "one job per due time");
    let rec = h.json(&["schedules", "show", "tick"]);
    assert!(rec["runs"].as_u64().unwrap() >= 2, "{rec}");
}
