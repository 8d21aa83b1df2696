//! Store integration tests: the conformance suite run against every backend, plus what is
//! particular to each backend.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[macro_use]
mod conformance;
mod sqlite_ranking;

/// A SQLite store in a temporary directory (`queue.db`), opened with `options`.
fn sqlite_in_tempdir(
    options: fabric_store::sqlite::SqliteOptions,
) -> Option<(std::sync::Arc<dyn fabric_store::Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = fabric_store::SqliteStore::open(dir.path().join("queue.db"), options).unwrap();
    Some((std::sync::Arc::new(store), dir))
}

/// The conformance suite on a store with the per-shard index (scenario runs), whose claims of
/// one shard take another path.
mod sqlite_shard_index {
    use std::sync::Arc;

    use fabric_store::{sqlite::SqliteOptions, Store};

    async fn make() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        super::sqlite_in_tempdir(SqliteOptions {
            shard_index: true,
            ..Default::default()
        })
    }

    conformance_tests!(make);
}

/// The conformance suite on a write-behind store (scenario runs): writes return before their
/// commit, reads see them at once; plus what write-behind itself promises.
mod sqlite_write_behind {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};

    fn options() -> SqliteOptions {
        SqliteOptions {
            shard_index: true,
            write_behind: Some(Duration::from_millis(50)),
            ..Default::default()
        }
    }

    async fn make() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        super::sqlite_in_tempdir(options())
    }

    conformance_tests!(make);

    /// Jobs another connection (another process) sees in the file.
    fn committed_jobs(path: &std::path::Path) -> i64 {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn writes_commit_at_sync_and_on_their_own_once_the_owner_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.db");
        let store = SqliteStore::open(&path, options()).unwrap();
        store
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        store.sync().await.unwrap();
        assert_eq!(committed_jobs(&path), 1, "sync commits");
        store
            .submit(vec![fabric_core::NewJob::new("noop")], 2)
            .await
            .unwrap();
        assert_eq!(
            store.counts().await.unwrap().pending,
            2,
            "reads see the write"
        );
        // No further call: the store commits by itself once the interval has passed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while committed_jobs(&path) < 2 {
            assert!(Instant::now() < deadline, "the quiet store never committed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn a_claim_held_in_memory_is_written_before_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.db");
        let store = SqliteStore::open(&path, options()).unwrap();
        let mut jobs = vec![fabric_core::NewJob::new("noop"); 3];
        for j in &mut jobs {
            j.shard = "luna".into();
        }
        store.submit(jobs, 1).await.unwrap();
        let req = fabric_store::ClaimRequest {
            owner: "w".into(),
            shards: vec!["luna".into()],
            limit: 2,
            lease_ms: 1_000,
            now: 5,
            ..Default::default()
        };
        let claimed = store.claim(req).await.unwrap();
        store.sync().await.unwrap();
        // Another process sees the claims, not pending jobs.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let running: Vec<(i64, i64, String, i64)> = conn
            .prepare(
                "SELECT id, attempt, lease_owner, started_at FROM jobs
                 WHERE state = 'running' ORDER BY id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<_> = claimed
            .iter()
            .map(|j| (j.id, 1, "w".to_string(), 5))
            .collect();
        assert_eq!(running, want);
    }

    #[tokio::test]
    async fn dropping_the_store_commits_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.db");
        let store = SqliteStore::open(&path, options()).unwrap();
        let ids = store
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        drop(store);
        let again = SqliteStore::open(&path, options()).unwrap();
        assert_eq!(again.job(ids[0].id).await.unwrap().job.kind, "noop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_writer_gets_its_turn_while_the_owner_writes_without_pause() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.db");
        let busy = Arc::new(SqliteStore::open(&path, options()).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let owner = {
            let (busy, stop, rounds) = (busy.clone(), stop.clone(), rounds.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let jobs = (0..20).map(|_| fabric_core::NewJob::new("noop")).collect();
                    busy.submit(jobs, 1).await.unwrap();
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        while rounds.load(Ordering::Relaxed) < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // An operator's command: its own store on the same file (as another process would).
        let operator = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let before = rounds.load(Ordering::Relaxed);
        let put = tokio::time::timeout(
            Duration::from_secs(30),
            operator.fleet().put_setting("tick_interval_ms", "250"),
        )
        .await;
        let during = rounds.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        owner.await.unwrap();
        put.expect("the operator's write timed out")
            .expect("the operator's write failed");
        assert!(during > 0, "the owner kept writing meanwhile");
        assert_eq!(
            busy.fleet()
                .setting("tick_interval_ms")
                .await
                .unwrap()
                .as_deref(),
            Some("250"),
            "the owner sees the operator's write once it committed its own"
        );
    }
}

mod sqlite {
    use std::sync::Arc;

    use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};

    async fn make() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        super::sqlite_in_tempdir(SqliteOptions::default())
    }

    conformance_tests!(make);

    #[tokio::test]
    async fn backup_is_a_consistent_openable_copy() {
        let (store, dir) = make().await.unwrap();
        store
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        let to = dir.path().join("b.db");
        store.backup(&to).await.unwrap();
        assert!(store.backup(&to).await.is_err(), "refuses to overwrite");
        let copy = SqliteStore::open(&to, SqliteOptions::default()).unwrap();
        assert_eq!(copy.counts().await.unwrap().pending, 1);
    }

    #[test]
    fn the_per_shard_index_exists_only_where_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let indexes = |path: &std::path::Path| -> Vec<String> {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn
                .prepare("SELECT name FROM pragma_index_list('jobs')")
                .unwrap();
            let names = stmt.query_map([], |r| r.get(0)).unwrap();
            names.map(|n| n.unwrap()).collect()
        };
        let plain = dir.path().join("plain.db");
        drop(SqliteStore::open(&plain, SqliteOptions::default()).unwrap());
        assert!(!indexes(&plain).contains(&"jobs_shard_ready".to_string()));
        let run = dir.path().join("run.db");
        let options = SqliteOptions {
            shard_index: true,
            ..Default::default()
        };
        drop(SqliteStore::open(&run, options).unwrap());
        assert!(indexes(&run).contains(&"jobs_shard_ready".to_string()));
        assert!(
            !indexes(&run).contains(&"jobs_ready".to_string()),
            "the per-shard index replaces the cross-shard one"
        );
        assert!(!indexes(&run).contains(&"jobs_leased".to_string()));
        assert!(indexes(&plain).contains(&"jobs_leased".to_string()));
        // Opened again without the option (an operator's command), it keeps its indexes.
        drop(SqliteStore::open(&run, SqliteOptions::default()).unwrap());
        assert!(indexes(&run).contains(&"jobs_shard_ready".to_string()));
        assert!(!indexes(&run).contains(&"jobs_ready".to_string()));
    }

    #[tokio::test]
    async fn a_scenario_store_opened_as_a_plain_one_still_claims_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.db");
        let scenario = SqliteOptions {
            shard_index: true,
            ..Default::default()
        };
        drop(SqliteStore::open(&path, scenario).unwrap());
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let mut low = fabric_core::NewJob::new("noop");
        low.shard = "luna".into();
        let mut high = fabric_core::NewJob::new("noop");
        high.shard = "mars".into();
        high.priority = fabric_core::Priority(5);
        let ids = store.submit(vec![low, high], 1).await.unwrap();
        let claimed = store
            .claim(fabric_store::ClaimRequest {
                owner: "w".into(),
                limit: 10,
                lease_ms: 1000,
                now: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<i64> = claimed.iter().map(|j| j.id).collect();
        assert_eq!(
            got,
            vec![ids[1].id, ids[0].id],
            "priority first, across shards"
        );
    }

    #[test]
    fn two_processes_opening_a_new_file_at_once_both_succeed() {
        // A run creates its store while an operator's command opens the same path.
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("new{round}.db"));
            let openers: Vec<_> = (0..3)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        SqliteStore::open(&path, SqliteOptions::default()).map(drop)
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap();
            }
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_store, dir) = make().await.unwrap();
        let mode = std::fs::metadata(dir.path().join("queue.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn an_older_schema_is_refused_until_db_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            s.submit(vec![fabric_core::NewJob::new("noop")], 1)
                .await
                .unwrap();
        }
        // Back to version 1: what a database of the previous release looks like.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE doc_fts; DROP TABLE doc_links; DROP TABLE doc_chunks; DROP TABLE doc_tags; DROP TABLE documents;\n             DROP TABLE nodes; DROP TABLE leases; DROP TABLE shards; DROP TABLE settings; DROP TABLE sources; DROP TABLE telemetry; DROP TABLE outbox;\n             DROP TABLE alert_states; DROP TABLE alert_silences; DROP TABLE alert_notifications; DROP TABLE alert_groups; DROP TABLE alert_deliveries;\n             DROP TABLE job_deps; DROP TABLE batches; DROP INDEX jobs_batch; DROP TABLE schedules;\n             ALTER TABLE jobs DROP COLUMN batch_id; ALTER TABLE jobs DROP COLUMN batch_key; ALTER TABLE jobs DROP COLUMN deps_remaining; ALTER TABLE jobs DROP COLUMN batch_pos;\n             DROP INDEX IF EXISTS jobs_shard_ready;\n             DROP INDEX jobs_quarantined; DROP INDEX jobs_cancelled; DROP INDEX jobs_errors; PRAGMA user_version = 1")
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(&path, SqliteOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, fabric_store::StoreError::Schema(_)), "{err}");
        assert!(err.to_string().contains("run `fabric db migrate`"), "{err}");
        let (from, to) = SqliteStore::migrate(&path, SqliteOptions::default()).unwrap();
        assert_eq!((from, to), (1, 16));
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(s.counts().await.unwrap().pending, 1);
        assert!(s.fleet().nodes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn fts5_is_built_in_and_its_integrity_check_sees_a_stale_index() {
        use fabric_store::DocStore;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let fts5: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_compile_options WHERE compile_options = 'ENABLE_FTS5'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(fts5);
        s.put_document(
            crate::conformance::doc("a", "x.md", "h", &["stale words"]),
            1,
        )
        .await
        .unwrap();
        assert_eq!(s.doc_integrity_check().await.unwrap(), ["ok"]);
        // A chunk deleted behind the index's back leaves a stale entry.
        conn.execute_batch("DROP TRIGGER doc_chunks_ad; DELETE FROM doc_chunks;")
            .unwrap();
        let report = s.doc_integrity_check().await.unwrap();
        assert_ne!(report, ["ok"]);
        assert!(report[0].contains("doc_fts"), "{report:?}");
    }

    #[tokio::test]
    async fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let id = {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            s.submit(vec![fabric_core::NewJob::new("noop")], 1)
                .await
                .unwrap()[0]
                .id
        };
        let s = SqliteStore::open(
            &path,
            SqliteOptions {
                synchronous_full: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.job(id).await.unwrap().job.kind, "noop");
    }
}

mod postgres {
    //! The same suite on PostgreSQL (`FABRIC_TEST_POSTGRES_URL`), each test in its own schema,
    //! dropped at the end.

    use std::sync::Arc;

    use fabric_store::testing::{
        postgres_url as url, unique_schema as schema_name, TestSchema as Schema,
    };
    use fabric_store::{PostgresStore, Store, StoreError};

    async fn make() -> Option<(Arc<dyn Store>, Schema)> {
        let url = url()?;
        let name = schema_name();
        let guard = Schema {
            url: url.clone(),
            name: name.clone(),
        };
        let store = PostgresStore::open(&url, &name).await.unwrap();
        Some((Arc::new(store), guard))
    }

    conformance_tests!(make);

    #[tokio::test]
    async fn docs_integrity_check_sees_a_missing_index_and_miscounted_chunks() {
        let Some((store, guard)) = make().await else {
            return;
        };
        let docs = store.docs();
        docs.put_document(
            crate::conformance::doc("a", "x.md", "h", &["one", "two"]),
            1,
        )
        .await
        .unwrap();
        assert_eq!(docs.doc_integrity_check().await.unwrap(), ["ok"]);
        let (client, conn) = tokio_postgres::connect(&guard.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!(
                "SET search_path = {}; DROP INDEX doc_chunks_tsv;
                 DELETE FROM doc_chunks WHERE ord = 1",
                guard.name
            ))
            .await
            .unwrap();
        let report = docs.doc_integrity_check().await.unwrap();
        assert!(report.iter().any(|l| l.contains("missing")), "{report:?}");
        assert!(report.iter().any(|l| l.contains("count")), "{report:?}");
    }

    #[tokio::test]
    async fn an_older_schema_is_refused_until_db_migrate() {
        let Some(url) = url() else { return };
        let name = schema_name();
        let _guard = Schema {
            url: url.clone(),
            name: name.clone(),
        };
        let first = PostgresStore::open(&url, &name).await.unwrap();
        first
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        // Back to version 1: what a database of the previous release looks like.
        client
            .batch_execute(&format!(
                "SET search_path = {name}; DROP TABLE doc_links, doc_chunks, documents;
                 DROP TABLE nodes, leases, shards, settings, sources, telemetry, outbox;
                 DROP TABLE alert_states, alert_silences, alert_notifications, alert_groups,
                     alert_deliveries;
                 DROP FUNCTION outbox_jobs_inserted, outbox_jobs_moved CASCADE;
                 DROP FUNCTION outbox_capturing;
                 DROP INDEX jobs_shard_ready;
                 DROP TABLE job_deps, batches, schedules;
                 DROP INDEX jobs_quarantined, jobs_cancelled, jobs_errors;
                 ALTER TABLE jobs DROP COLUMN batch_id, DROP COLUMN batch_key,
                     DROP COLUMN deps_remaining, DROP COLUMN batch_pos;
                 UPDATE fabric_schema SET version = 1"
            ))
            .await
            .unwrap();
        let err = PostgresStore::open(&url, &name).await.err().unwrap();
        assert!(matches!(err, StoreError::Schema(_)), "{err}");
        assert!(err.to_string().contains("run `fabric db migrate`"), "{err}");
        let (store, (from, to)) = PostgresStore::migrate(&url, &name).await.unwrap();
        assert_eq!((from, to), (1, 13));
        assert_eq!(store.counts().await.unwrap().pending, 1);
        assert!(store.fleet().nodes().await.unwrap().is_empty());
        PostgresStore::open(&url, &name).await.unwrap();
    }

    #[tokio::test]
    async fn inserts_wake_listeners_of_the_same_schema_only() {
        let Some(url) = url() else { return };
        let (a, b) = (schema_name(), schema_name());
        let _guards = [
            Schema {
                url: url.clone(),
                name: a.clone(),
            },
            Schema {
                url: url.clone(),
                name: b.clone(),
            },
        ];
        let store_a = PostgresStore::open(&url, &a).await.unwrap();
        let store_b = PostgresStore::open(&url, &b).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = store_a
            .listen(Box::new(move |e| tx.send(e).is_ok()))
            .unwrap();
        // One wake-up once listening (notifications before it may have been missed).
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        store_b
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        let other = tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await;
        assert!(other.is_err(), "woken by another schema's insert");
        store_a
            .submit(vec![fabric_core::NewJob::new("noop"); 3], 1)
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        // Cancelling a running job tells the listeners which one, so its daemon stops it;
        // a pending one's cancel needs no wake-up.
        let pending = store_a.claim(fabric_store::ClaimRequest {
            owner: "w".into(),
            limit: 1,
            lease_ms: 60_000,
            now: 2,
            ..Default::default()
        });
        let running = pending.await.unwrap().remove(0);
        store_a
            .cancel(running.id + 1, "not this one", 3)
            .await
            .unwrap();
        store_a.cancel(running.id, "operator", 3).await.unwrap();
        let event = loop {
            let e = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            // Wake-ups of the inserts above may still arrive.
            if e != fabric_store::StoreEvent::Inserted {
                break e;
            }
        };
        assert_eq!(event, fabric_store::StoreEvent::Cancelled(running.id));
        listener.abort();
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_a_newer_schema_is_refused() {
        let Some(url) = url() else { return };
        let name = schema_name();
        let _guard = Schema {
            url: url.clone(),
            name: name.clone(),
        };
        let first = PostgresStore::open(&url, &name).await.unwrap();
        first
            .submit(vec![fabric_core::NewJob::new("noop")], 1)
            .await
            .unwrap();
        let again = PostgresStore::open(&url, &name).await.unwrap();
        assert_eq!(again.counts().await.unwrap().pending, 1);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("UPDATE {name}.fabric_schema SET version = 99"))
            .await
            .unwrap();
        let err = PostgresStore::open(&url, &name).await.err().unwrap();
        assert!(err.to_string().contains("newer than this fabric"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_database_names_host_and_port_but_not_the_password() {
        let err = PostgresStore::open("postgres://fabric:hunter2@127.0.0.1:1/test", "x")
            .await
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{msg}");
        assert!(msg.contains("127.0.0.1:1"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
