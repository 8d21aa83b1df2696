//! Opening a SQLite store file: the connection settings, the migrations, the busy handler,
//! the file's permissions and the WAL checkpointer thread.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::{writer, SqliteOptions, DEFAULT_CACHE_KIB, READER_CACHE_KIB};
use crate::{Result, StoreError};

/// Migrations in order; `PRAGMA user_version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_nodes.sql"),
    include_str!("../../migrations/sqlite/0003_shards.sql"),
    include_str!("../../migrations/sqlite/0004_no_shard_index.sql"),
    include_str!("../../migrations/sqlite/0005_failed_state.sql"),
    include_str!("../../migrations/sqlite/0006_sources.sql"),
    include_str!("../../migrations/sqlite/0007_telemetry.sql"),
    include_str!("../../migrations/sqlite/0008_docs.sql"),
    include_str!("../../migrations/sqlite/0009_fts_per_batch.sql"),
    include_str!("../../migrations/sqlite/0010_alerts.sql"),
    include_str!("../../migrations/sqlite/0011_outbox.sql"),
    include_str!("../../migrations/sqlite/0012_batches.sql"),
    include_str!("../../migrations/sqlite/0013_schedules.sql"),
    include_str!("../../migrations/sqlite/0014_console_reads.sql"),
    include_str!("../../migrations/sqlite/0015_batch_pos.sql"),
    include_str!("../../migrations/sqlite/0016_batches_multi.sql"),
];

/// The indexes of [`SqliteOptions::shard_index`]: pending jobs per shard, in place of the
/// cross-shard index, and no index of leases (the scheduler that owns such a store settles
/// every job it claims; a rescue or recovery on it reads the table).
pub(super) const SHARD_INDEX: &str = "CREATE INDEX IF NOT EXISTS jobs_shard_ready
        ON jobs (shard, priority DESC, id) WHERE state IN ('pending', 'failed');
    DROP INDEX IF EXISTS jobs_ready;
    DROP INDEX IF EXISTS jobs_leased;";

/// How often the checkpointer copies committed WAL pages into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts the thread that checkpoints the WAL every [`CHECKPOINT_EVERY`] and, for a
/// write-behind store (`behind`), commits its open transaction once due even when its owner
/// has gone quiet, so the interval bounds what a crash can lose and no write lock is held
/// for longer.
pub(super) fn start_checkpointer(
    conn: Connection,
    behind: Option<(std::sync::Weak<Mutex<writer::Behind>>, std::time::Duration)>,
) -> Result<std::sync::mpsc::Sender<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let step = behind
        .as_ref()
        .map_or(CHECKPOINT_EVERY, |(_, i)| (*i / 2).min(CHECKPOINT_EVERY));
    std::thread::Builder::new()
        .name("fabric-sqlite-checkpointer".into())
        .spawn(move || {
            let mut checkpointed = std::time::Instant::now();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(step) {
                if let Some(b) = behind.as_ref().and_then(|(b, _)| b.upgrade()) {
                    if let Ok(mut b) = b.lock() {
                        if let Err(e) = b.commit_if_due() {
                            tracing::error!(error = %e, "write-behind commit failed");
                        }
                    }
                }
                if checkpointed.elapsed() < CHECKPOINT_EVERY {
                    continue;
                }
                checkpointed = std::time::Instant::now();
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "passive WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
    Ok(tx)
}

pub(super) fn open_conn(path: &Path, options: &SqliteOptions, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_handler(Some(busy_retry))?;
    let sync = if options.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    // Turning a new file to WAL needs a moment of exclusive access, and SQLite answers
    // "locked" at once (without its busy handler) when another process opens the file at
    // the same time: retried like any other wait for a lock.
    let mut attempt = 0;
    while let Err(e) = conn.execute_batch("PRAGMA journal_mode = WAL") {
        let busy = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy);
        if !busy || !busy_retry(attempt) {
            return Err(e.into());
        }
        attempt += 1;
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache};",
        cache = if create {
            options.cache_kib.unwrap_or(DEFAULT_CACHE_KIB)
        } else {
            // Up to 8 pooled readers and the checkpointer: their caches would add up to over
            // half a gigabyte of a daemon's memory; the OS page cache holds the rest.
            options
                .cache_kib
                .unwrap_or(DEFAULT_CACHE_KIB)
                .min(READER_CACHE_KIB)
        }
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Waits for a lock another connection holds: retries every millisecond for about ten
/// seconds. SQLite's own busy timeout backs off to 100 ms between tries, and so could miss
/// the short moments in which a busy writer (a write-behind scenario run) leaves the lock
/// free.
fn busy_retry(attempt: i32) -> bool {
    if attempt >= BUSY_RETRIES {
        return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(1));
    true
}

/// Tries of [`busy_retry`].
const BUSY_RETRIES: i32 = 10_000;

/// Applies pending migrations to a new database, or to an older one when `upgrade` is set;
/// returns the version found.
pub(super) fn migrate(conn: &mut Connection, upgrade: bool) -> Result<usize> {
    let current = |c: &Connection| -> Result<usize> {
        Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    };
    if current(conn)? == MIGRATIONS.len() {
        return Ok(MIGRATIONS.len());
    }
    // Under the write lock and in one transaction: two processes may open a new file at once
    // (a run and an operator's command); one applies everything, the other then finds it
    // done, and neither sees it half done.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version = current(&tx)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::schema_newer(version, MIGRATIONS.len()));
    }
    if version > 0 && version < MIGRATIONS.len() && !upgrade {
        return Err(StoreError::schema_older(version, MIGRATIONS.len()));
    }
    for sql in MIGRATIONS.iter().skip(version) {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(version)
}

/// Makes the database and its `-wal`/`-shm` files 0600 (best effort: they may not exist yet).
pub(super) fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}
