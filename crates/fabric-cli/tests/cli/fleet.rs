//! Scale-out end to end: three daemons on one PostgreSQL schema, 20,000 jobs, `kill -9` of
//! the leading daemon mid-run. Skipped (and says so) without `FABRIC_TEST_POSTGRES_URL`.

use std::collections::HashMap;
use std::process::Command;

use fabric_store::testing::TestSchema;
use serde_json::Value;

use super::Home;

const JOBS: usize = 20_000;

fn daemon_home(schema: &TestSchema, id: &str) -> Home {
    Home::new()
        .with("FABRIC__STORE__BACKEND", "postgres")
        .with("FABRIC__STORE__URL", &schema.url)
        .with("FABRIC__STORE__SCHEMA", &schema.name)
        .with("FABRIC__NODE__ID", id)
        .with("FABRIC__NODE__HEARTBEAT_MS", "200")
        .with("FABRIC__NODE__TIMEOUT_MS", "2000")
        .with("FABRIC__NODE__LEADER_LEASE_MS", "1000")
        .with("FABRIC__WORKERS__LEASE_SECONDS", "5")
        .with("FABRIC__WORKERS__MAX_WORKERS", "16")
}

fn leader(h: &Home) -> Option<String> {
    h.json(&["nodes", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["leader"] == true)
        .map(|n| n["id"].as_str().unwrap().to_string())
}

#[test]
fn three_daemons_survive_the_kill_of_their_leader() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let homes: Vec<(String, Home)> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|id| (id.to_string(), daemon_home(&schema, id)))
        .collect();
    let record = homes[0].1.path().join("executions.log");
    let lines: String = (0..JOBS)
        .map(|_| {
            format!(
                "{{\"kind\": \"record\", \"payload\": {{\"path\": \"{}\", \"ms\": 5, \"fsync\": false}}}}\n",
                record.display()
            )
        })
        .collect();
    let file = homes[0].1.path().join("jobs.jsonl");
    std::fs::write(&file, lines).unwrap();
    let h0 = &homes[0].1;
    h0.expect(0, &["db", "migrate"]);
    assert_eq!(
        h0.json(&["jobs", "submit", "--file", file.to_str().unwrap()])["count"],
        JOBS
    );
    for (_, h) in &homes {
        h.expect(0, &["start"]);
    }
    h0.wait_until("three nodes and a leader", || {
        h0.json(&["nodes", "list"]).as_array().unwrap().len() == 3 && leader(h0).is_some()
    });
    h0.wait_until("a good part of the jobs ran", || {
        std::fs::read_to_string(&record)
            .map(|t| t.lines().count() > JOBS / 6)
            .unwrap_or(false)
    });
    let dead = leader(h0).unwrap();
    let dead_home = &homes.iter().find(|(id, _)| *id == dead).unwrap().1;
    let pid = dead_home.json(&["status"])["pid"].as_u64().unwrap();
    // One read may fall between two claim batches of every worker; a few reads cannot.
    let running = (0..20)
        .map(|_| h0.json(&["status"])["queue"]["running"].as_u64().unwrap())
        .find(|r| *r > 0)
        .unwrap_or(0);
    assert!(running > 0, "jobs must be in flight at the kill");
    // Each daemon reports its own busy slots, never the fleet's.
    for (id, h) in &homes {
        let workers = &h.json(&["status"])["workers"];
        assert_eq!(workers["max"], 16, "{id}");
        assert!(workers["active"].as_u64().unwrap() <= 16, "{id}: {workers}");
        assert!(workers["claimed"].as_u64().is_some(), "{id}: {workers}");
    }
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();

    let survivor = &homes.iter().find(|(id, _)| *id != dead).unwrap().1;
    survivor.wait_until("a new leader", || {
        leader(survivor).is_some_and(|l| l != dead)
    });
    survivor.wait_until("every job succeeded", || {
        survivor.json(&["status"])["queue"]["succeeded"]
            .as_u64()
            .unwrap()
            == JOBS as u64
    });
    let nodes = survivor.json(&["nodes", "list"]);
    let dead_row = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == dead.as_str())
        .unwrap();
    assert_eq!(dead_row["effective_health"], "offline", "{nodes}");
    for (id, h) in &homes {
        if *id != dead {
            h.expect(0, &["stop"]);
        }
    }

    // Per job: its final attempt and every execution (attempt, lease owner) recorded.
    let jobs = survivor.json(&["jobs", "list", "--limit", "100000"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), JOBS);
    let mut runs: HashMap<i64, Vec<(u64, String)>> = HashMap::new();
    for line in std::fs::read_to_string(&record).unwrap().lines() {
        let mut it = line.split(' ');
        let id: i64 = it.next().unwrap().parse().unwrap();
        let attempt: u64 = it.next().unwrap().parse().unwrap();
        let owner = it.next().unwrap().to_string();
        runs.entry(id).or_default().push((attempt, owner));
    }
    let (mut reassigned, mut ran_twice) = (0, 0);
    for j in jobs {
        let id = j["id"].as_i64().unwrap();
        assert_eq!(j["state"], "succeeded", "{j}");
        let r = runs
            .get(&id)
            .unwrap_or_else(|| panic!("job {id} never ran"));
        assert!(r.len() <= 2, "job {id} ran more than twice: {r:?}");
        let mut attempts: Vec<u64> = r.iter().map(|(a, _)| *a).collect();
        attempts.sort();
        attempts.dedup();
        assert_eq!(
            attempts.len(),
            r.len(),
            "job {id} ran twice in one attempt: {r:?}"
        );
        // The completion applied is the one of the last attempt, and only that one.
        assert_eq!(j["attempt"].as_u64(), attempts.last().copied(), "{j} {r:?}");
        assert_eq!(j["last_error"], Value::Null, "{j}");
        if j["attempt"].as_u64().unwrap() > 1 {
            // Rescued from the dead daemon (which may or may not have run it before dying).
            reassigned += 1;
        }
        if r.len() == 2 {
            let first = r.iter().min_by_key(|(a, _)| *a).unwrap();
            let last = r.iter().max_by_key(|(a, _)| *a).unwrap();
            assert!(first.1.starts_with(&format!("{dead}/")), "{id}: {r:?}");
            assert!(!last.1.starts_with(&format!("{dead}/")), "{id}: {r:?}");
            ran_twice += 1;
        }
    }
    assert!(reassigned > 0, "the dead daemon's jobs were reassigned");
    eprintln!("{reassigned} jobs of {dead} were reassigned, {ran_twice} of them ran twice");
}

/// Two daemons from one home (two config files, node ids a and b) on one PostgreSQL schema.
#[test]
fn two_daemons_of_one_home_share_a_postgres_schema() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let h = Home::new()
        .with("FABRIC__STORE__BACKEND", "postgres")
        .with("FABRIC__STORE__URL", &schema.url)
        .with("FABRIC__STORE__SCHEMA", &schema.name)
        .with("FABRIC__NODE__HEARTBEAT_MS", "200")
        .with("FABRIC__NODE__TIMEOUT_MS", "2000");
    let config = |id: &str| {
        let p = h.path().join(format!("{id}.yaml"));
        std::fs::write(&p, format!("node:\n  id: {id}\n")).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (a, b) = (config("a"), config("b"));
    h.expect(0, &["db", "migrate"]);
    h.expect(0, &["start", "--config", &a]);
    h.expect(0, &["start", "--config", &b]);
    let live = |h: &Home| -> Vec<String> {
        let mut ids: Vec<String> = h
            .json(&["nodes", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["effective_health"] != "offline" && n["stopped_at"].is_null())
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    h.wait_until("both nodes heartbeat", || live(&h) == ["a", "b"]);
    let pa = h.json(&["status", "--config", &a])["pid"].as_u64().unwrap();
    let err = h.stderr(1, &["start", "--config", &a]);
    assert!(err.contains(&format!("pid {pa}")), "{err}");

    h.expect(0, &["stop", "--node", "a"]);
    assert_eq!(live(&h), ["b"]);
    let daemons = h.json(&["status"])["daemons"].clone();
    assert_eq!(daemons.as_array().unwrap().len(), 1, "{daemons}");
    assert_eq!(daemons[0]["node"], "b", "{daemons}");
    let id = h.json(&["jobs", "submit", "--kind", "noop"])["id"]
        .as_i64()
        .unwrap()
        .to_string();
    h.wait_until("node b runs the job", || {
        h.json(&["jobs", "show", &id])["state"] == "succeeded"
    });
    h.expect(0, &["stop", "--node", "b"]);
    assert_eq!(live(&h), Vec::<String>::new());
}
