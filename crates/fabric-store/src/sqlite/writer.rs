//! The single SQLite writer, in one of two shapes:
//! - a thread that owns the write connection and commits every write queued while the
//!   previous transaction ran in one transaction (group commit); each caller is answered only
//!   after the shared COMMIT;
//! - write-behind: one connection used on the caller's own thread for every write and read,
//!   with one transaction left open across writes and committed at most an interval later
//!   (and at [`Writer::sync`]), for a store with a single busy owner (a scenario run).
//!
//! Each write that shares its transaction runs inside its own savepoint, so one failing write
//! rolls back alone while its neighbours commit (a single statement is atomic by itself).
//! Write-behind runs the bulk writes of its owner, which fail only on SQLite's own errors,
//! without one ([`Writer::write_bulk`]).

use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::deferred::Deferred;
use crate::{Result, StoreError};

/// Longest wait for the rest of a group of concurrent writers.
const GROUP_LINGER: std::time::Duration = std::time::Duration::from_micros(100);
/// Only groups at least this large (many concurrent writers) make the next one wait.
const LINGER_MIN_GROUP: usize = 4;
/// ... and only while a commit costs at least this much (an fsync: `synchronous = FULL`, or a
/// slow disk). Waiting lets concurrent writers share a dear commit; a cheap one is better
/// repeated than waited for, as the wait only lengthens every writer's round trip
/// (docs/benchmarks.md, 2026-12-04).
const LINGER_MIN_COMMIT: Duration = Duration::from_micros(200);
/// Most writes folded into one transaction.
const MAX_GROUP: usize = 1024;

/// Sends the result of one write once its transaction's fate is known.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write inside the shared transaction: runs, says whether it failed, returns its reply.
/// It gets the connection, or the error that kept the transaction from beginning.
type TxWrite =
    Box<dyn FnOnce(std::result::Result<&Connection, &StoreError>) -> (bool, Reply) + Send>;
/// A write that must run outside any transaction (VACUUM, checkpoints).
type RawWrite = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Cmd {
    Tx(TxWrite),
    Raw(RawWrite),
}

/// For this long after a write-behind commit the writer leaves the write lock free, so that
/// another process (an operator's `fabric shards pause`) gets its turn: its busy handler
/// retries every millisecond (see `busy_retry`). It costs the owner 2 % of its time at a
/// 100 ms interval.
const HANDOVER: Duration = Duration::from_millis(2);

/// Handle to the writer; dropping the last one stops the thread (or commits what a
/// write-behind writer holds).
pub(crate) enum Writer {
    Thread(mpsc::Sender<Cmd>),
    Behind(Arc<Mutex<Behind>>),
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("fabric-sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Self::Thread(tx))
    }

    /// A write-behind writer on `conn`: writes return once applied inside the open
    /// transaction, which commits at most `interval` after it began.
    pub(crate) fn behind(conn: Connection, interval: Duration) -> Self {
        Self::Behind(Arc::new(Mutex::new(Behind {
            conn,
            interval,
            open_since: None,
            committed_at: None,
            broken: None,
            deferred: Deferred::default(),
        })))
    }

    /// The write-behind state and its interval, for the thread that commits it when its
    /// owner goes quiet.
    pub(crate) fn behind_state(&self) -> Option<(std::sync::Weak<Mutex<Behind>>, Duration)> {
        match self {
            Self::Behind(b) => {
                let interval = lock(b).ok()?.interval;
                Some((Arc::downgrade(b), interval))
            }
            Self::Thread(_) => None,
        }
    }

    /// Whether writes return before they commit.
    pub(crate) fn is_behind(&self) -> bool {
        matches!(self, Self::Behind(_))
    }

    /// Runs `f` as one atomic write and returns its result once committed (write-behind:
    /// once applied; it commits at most the interval later).
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let tx = match self {
            Self::Thread(tx) => tx,
            Self::Behind(b) => return lock(b)?.write(Guard::Savepoint, f),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: TxWrite = Box::new(move |conn| {
            let res = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(e.clone()),
            };
            let failed = res.is_err();
            let reply: Reply = Box::new(move |commit_err| {
                let out = match commit_err {
                    Some(e) if !failed => Err(e.clone()),
                    _ => res,
                };
                let _ = reply_tx.send(out);
            });
            (failed, reply)
        });
        tx.send(Cmd::Tx(job)).map_err(|_| closed())?;
        reply_rx.await.map_err(|_| closed())?
    }

    /// [`Writer::write`] for an `f` that runs exactly one SQL statement, which is atomic by
    /// itself (the writer then skips its savepoint where it can).
    pub(crate) async fn write_one<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.write_under(Guard::Single, f).await
    }

    /// [`Writer::write`] for an `f` whose statements fail only on SQLite's own errors (I/O,
    /// disk full, out of memory), never on a constraint or a check of its own: a batch of
    /// submits or completions. Write-behind runs it without a savepoint, which copies every
    /// page it touches (5 % of a scenario run's instructions). Should it fail all the same,
    /// what it wrote before failing cannot be told apart, so the open transaction is rolled
    /// back and the store breaks, as after a failed commit.
    pub(crate) async fn write_bulk<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        self.write_under(Guard::None, f).await
    }

    /// Write-behind: `f` under `guard`; the writer thread: [`Writer::write`] (its group
    /// commit gives every write of a shared transaction a savepoint).
    async fn write_under<R, F>(&self, guard: Guard, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        match self {
            Self::Behind(b) => lock(b)?.write(guard, f),
            Self::Thread(_) => self.write(f).await,
        }
    }

    /// Write-behind only (`None` for the writer thread): runs `f`, a claim or a completion
    /// that may hold claims in memory instead of writing them ([`Deferred`]); `bulk` as for
    /// [`Writer::write_bulk`], else `f` writes at most one statement.
    pub(crate) fn with_claims<R>(
        &self,
        bulk: bool,
        f: impl FnOnce(&Connection, &mut Deferred) -> Result<R>,
    ) -> Option<Result<R>> {
        match self {
            Self::Behind(b) => {
                let guard = if bulk { Guard::None } else { Guard::Single };
                Some(lock(b).and_then(|mut b| b.run(guard, false, f)))
            }
            Self::Thread(_) => None,
        }
    }

    /// Write-behind: runs the read `f` on the write connection (it sees every write so far);
    /// the writer thread hands `f` back, as its reads go to the read pool.
    pub(crate) fn read_behind<R, F>(&self, f: F) -> std::result::Result<Result<R>, F>
    where
        F: FnOnce(&Connection) -> Result<R>,
    {
        match self {
            Self::Behind(b) => Ok(lock(b).and_then(|mut b| b.read(f))),
            Self::Thread(_) => Err(f),
        }
    }

    /// Makes every write that has returned durable (write-behind); a no-op for the writer
    /// thread, whose writes commit before they return.
    pub(crate) fn sync(&self) -> Result<()> {
        match self {
            Self::Thread(_) => Ok(()),
            Self::Behind(b) => lock(b)?.commit(),
        }
    }

    /// Runs `f` alone, outside a transaction, on the write connection.
    pub(crate) async fn raw<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let tx = match self {
            Self::Thread(tx) => tx,
            Self::Behind(b) => {
                let mut b = lock(b)?;
                b.commit()?;
                return f(&mut b.conn);
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Cmd::Raw(Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        })))
        .map_err(|_| closed())?;
        reply_rx.await.map_err(|_| closed())?
    }
}

fn lock(b: &Mutex<Behind>) -> Result<MutexGuard<'_, Behind>> {
    b.lock()
        .map_err(|_| StoreError::Unavailable("the SQLite writer stopped: a write panicked".into()))
}

/// How a write-behind write is kept from leaving part of itself behind when it fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// One SQL statement: atomic by itself (SQLite's statement journal).
    Single,
    /// A savepoint of its own, rolled back when it fails.
    Savepoint,
    /// Nothing; a failure rolls back the open transaction and breaks the store.
    None,
}

/// The write-behind writer's connection and its open transaction.
pub(crate) struct Behind {
    conn: Connection,
    interval: Duration,
    /// When the open transaction began; `None` outside one.
    open_since: Option<Instant>,
    committed_at: Option<Instant>,
    /// Set when a commit failed: the writes since the previous commit are lost, and every
    /// later call fails with this rather than carry on as if they were not.
    broken: Option<StoreError>,
    /// Claims applied in memory only, written before anything else touches the store.
    deferred: Deferred,
}

impl Behind {
    fn check(&self) -> Result<()> {
        self.broken.clone().map_or(Ok(()), Err)
    }

    /// Runs the write `f` under `guard`, after writing the claims held.
    fn write<R>(&mut self, guard: Guard, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        self.run(guard, true, |conn, _| f(conn))
    }

    /// Writes the claims held (inside the open transaction); a failure breaks the store.
    fn flush(&mut self) -> Result<()> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.deferred.flush(&self.conn) {
            return Err(self.abandon(&format!(
                "writing the claims held failed ({e}), so the open write-behind transaction \
                 was rolled back and the writes since the previous commit are lost"
            )));
        }
        Ok(())
    }

    /// Runs the write `f` under `guard`; `flush`: write the claims held first.
    fn run<R>(
        &mut self,
        guard: Guard,
        flush: bool,
        f: impl FnOnce(&Connection, &mut Deferred) -> Result<R>,
    ) -> Result<R> {
        self.check()?;
        if self.open_since.is_none() {
            // Just after a commit the lock stays free for a moment, so that another
            // process's writer gets its turn before this one takes the lock again.
            if let Some(wait) = self
                .committed_at
                .and_then(|t| HANDOVER.checked_sub(t.elapsed()))
            {
                std::thread::sleep(wait);
            }
            exec(&self.conn, "BEGIN IMMEDIATE")?;
            self.open_since = Some(Instant::now());
        }
        if flush {
            self.flush()?;
        }
        let savepoint = guard == Guard::Savepoint;
        if savepoint {
            exec(&self.conn, "SAVEPOINT w")?;
        }
        let out = f(&self.conn, &mut self.deferred);
        self.check_open()?;
        if savepoint {
            if out.is_err() {
                exec(&self.conn, "ROLLBACK TO w")?;
            }
            exec(&self.conn, "RELEASE w")?;
        }
        if let (Guard::None, Err(e)) = (guard, &out) {
            return Err(self.abandon(&format!(
                "a bulk write failed part way ({e}), so the open write-behind transaction was \
                 rolled back and the writes since the previous commit are lost"
            )));
        }
        self.commit_if_due()?;
        out
    }

    /// Rolls the open transaction back and breaks the store with `why`.
    fn abandon(&mut self, why: &str) -> StoreError {
        self.open_since = None;
        self.deferred.clear();
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let err = StoreError::Unavailable(why.to_string());
        self.broken = Some(err.clone());
        err
    }

    /// After an I/O, disk-full or out-of-memory error SQLite may have rolled back the whole
    /// open transaction by itself: the writes since the last commit are then lost.
    fn check_open(&mut self) -> Result<()> {
        if self.open_since.is_some() && self.conn.is_autocommit() {
            return Err(self.abandon(
                "SQLite rolled back the open write-behind transaction after an error; the \
                 writes since the previous commit are lost",
            ));
        }
        Ok(())
    }

    fn read<R>(&mut self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        self.check()?;
        // Claims are held only inside an open transaction, so a read sees them once written.
        self.flush()?;
        let out = f(&self.conn);
        self.commit_if_due()?;
        out
    }

    /// Commits the open transaction once it is `interval` old.
    pub(crate) fn commit_if_due(&mut self) -> Result<()> {
        match self.open_since {
            Some(t) if t.elapsed() >= self.interval => self.commit(),
            _ => Ok(()),
        }
    }

    /// Commits the open transaction, if any.
    fn commit(&mut self) -> Result<()> {
        self.check()?;
        if self.open_since.is_none() {
            return Ok(());
        }
        self.flush()?;
        self.open_since = None;
        match exec(&self.conn, "COMMIT") {
            Ok(()) => {
                self.committed_at = Some(Instant::now());
                Ok(())
            }
            Err(e) => Err(self.abandon(&format!(
                "a write-behind commit failed and the writes since the previous commit are \
                 lost: {e}"
            ))),
        }
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(error = %e, "the SQLite store closed with uncommitted writes");
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Cmd>) {
    let mut group: Vec<TxWrite> = Vec::with_capacity(MAX_GROUP);
    // Size of the last group: when writers were concurrent a moment ago, wait briefly for
    // as many again so they share one commit instead of alternating small ones. A lone
    // writer, or two or three (an engine's claim and completion), never waits.
    let mut last = 1usize;
    // What the last commit took: lingering pays only when commits are dear.
    let mut commit_cost = Duration::ZERO;
    while let Ok(first) = rx.recv() {
        let deadline = std::time::Instant::now() + GROUP_LINGER;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Cmd::Tx(w)) => group.push(w),
                Some(Cmd::Raw(w)) => {
                    commit_group(&conn, &mut group);
                    w(&mut conn);
                }
                None => break,
            }
            if group.len() >= MAX_GROUP {
                break;
            }
            next = rx.try_recv().ok();
            if next.is_none()
                && last >= LINGER_MIN_GROUP
                && group.len() < last
                && commit_cost >= LINGER_MIN_COMMIT
            {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                next = rx.recv_timeout(left).ok();
            }
        }
        last = group.len().max(1);
        if let Some(took) = commit_group(&conn, &mut group) {
            commit_cost = took;
        }
    }
}

/// Runs `group` in one transaction; returns what its COMMIT took (`None` when nothing was
/// committed).
fn commit_group(conn: &Connection, group: &mut Vec<TxWrite>) -> Option<Duration> {
    if group.is_empty() {
        return None;
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        for w in group.drain(..) {
            let (_, reply) = w(Err(&err));
            reply(None);
        }
        return None;
    }
    let single = group.len() == 1;
    let mut replies: Vec<Reply> = Vec::with_capacity(group.len());
    let mut all_failed = true;
    for w in group.drain(..) {
        if single {
            let (failed, reply) = w(Ok(conn));
            all_failed = failed;
            replies.push(reply);
            continue;
        }
        let _ = exec(conn, "SAVEPOINT w");
        let (failed, reply) = w(Ok(conn));
        if failed {
            let _ = exec(conn, "ROLLBACK TO w");
        } else {
            all_failed = false;
        }
        let _ = exec(conn, "RELEASE w");
        replies.push(reply);
    }
    let started = Instant::now();
    let commit = if all_failed {
        exec(conn, "ROLLBACK").map_err(StoreError::from)
    } else {
        exec(conn, "COMMIT").map_err(StoreError::from)
    };
    let took = (!all_failed).then(|| started.elapsed());
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(commit.as_ref().err());
    }
    took
}

/// Runs a transaction-control statement through the statement cache (no re-parsing).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> (Writer, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        (Writer::behind(conn, Duration::from_secs(60)), path)
    }

    fn rows(path: &std::path::Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_failing_bulk_write_breaks_the_store_and_commits_nothing_of_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = store(&dir);
        w.write(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?))
            .await
            .unwrap();
        w.sync().unwrap();
        w.write(|c| Ok(c.execute("INSERT INTO t VALUES (2)", [])?))
            .await
            .unwrap();
        let err = w
            .write_bulk(|c| {
                c.execute("INSERT INTO t VALUES (3)", [])?;
                c.execute("INSERT INTO t VALUES (NULL)", [])?;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("bulk write failed part way"),
            "{err}"
        );
        // Every later call fails the same way, and nothing since the last commit lands.
        assert!(w.write(|_| Ok(())).await.is_err());
        assert!(w.sync().is_err());
        drop(w);
        assert_eq!(rows(&path), 1);
    }

    #[tokio::test]
    async fn a_failing_guarded_write_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (w, path) = store(&dir);
        w.write(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?))
            .await
            .unwrap();
        let failed = w
            .write(|c| {
                c.execute("INSERT INTO t VALUES (2)", [])?;
                c.execute("INSERT INTO t VALUES (NULL)", [])?;
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        w.write_bulk(|c| Ok(c.execute("INSERT INTO t VALUES (3)", [])?))
            .await
            .unwrap();
        w.sync().unwrap();
        assert_eq!(rows(&path), 2);
    }
}
