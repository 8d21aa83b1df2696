//! Test support for crates that build on the store: the PostgreSQL test database named by
//! `FABRIC_TEST_POSTGRES_URL`, a unique schema per test, dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable naming the PostgreSQL test database (`.ci/run` sets it).
pub const POSTGRES_URL_VAR: &str = "FABRIC_TEST_POSTGRES_URL";

/// The test database URL, or `None` (and a note on stderr) when it is not set.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: {POSTGRES_URL_VAR} is not set (.ci/run sets it)");
            None
        }
    }
}

/// A schema name no other test (in this or another process) uses.
pub fn unique_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "fabric_test_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Drops its schema over a fresh connection when dropped (also when the test panics).
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name on the test database, or `None` when there is none.
    pub fn new() -> Option<Self> {
        Some(Self {
            url: postgres_url()?,
            name: unique_schema(),
        })
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A thread of its own: the test's runtime may be gone or be the current thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let sql = format!("SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {name} CASCADE");
                if let Err(e) = client.batch_execute(&sql).await {
                    eprintln!("could not drop test schema {name}: {e}");
                }
            });
        })
        .join();
    }
}
