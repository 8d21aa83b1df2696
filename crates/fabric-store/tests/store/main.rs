//! Store integration tests: the conformance suite run against every backend, plus what is
//! particular to each backend.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[macro_use]
mod conformance;

mod sqlite {
    use std::sync::Arc;

    use fabric_store::{sqlite::SqliteOptions, SqliteStore, Store};

    async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(dir.path().join("queue.db"), SqliteOptions::default()).unwrap();
        (Arc::new(store), dir)
    }

    conformance_tests!(make);

    #[tokio::test]
    async fn backup_is_a_consistent_openable_copy() {
        let (store, dir) = make().await;
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

    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_store, dir) = make().await;
        let mode = std::fs::metadata(dir.path().join("queue.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
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
            },
        )
        .unwrap();
        assert_eq!(s.job(id).await.unwrap().job.kind, "noop");
    }
}
