//! The single SQLite writer: one thread owns the write connection and commits every write
//! queued while the previous transaction ran in one transaction (group commit).
//!
//! Each queued write runs inside its own savepoint, so one failing write rolls back alone
//! while its neighbours commit; every caller is answered only after the shared COMMIT.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// Longest wait for the rest of a group of concurrent writers.
const GROUP_LINGER: std::time::Duration = std::time::Duration::from_micros(100);
/// Only groups at least this large (many concurrent writers) make the next one wait.
const LINGER_MIN_GROUP: usize = 4;
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

enum Cmd {
    Tx(TxWrite),
    Raw(RawWrite),
}

/// Handle to the writer thread; dropping the last one stops the thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Cmd>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("fabric-sqlite-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Self { tx })
    }

    /// Runs `f` in the next group transaction and returns its result once committed.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
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
        self.send(Cmd::Tx(job))?;
        reply_rx.await.map_err(|_| closed())?
    }

    /// Runs `f` alone, outside a transaction, on the write connection.
    pub(crate) async fn raw<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(Cmd::Raw(Box::new(move |conn| {
            let _ = reply_tx.send(f(conn));
        })))?;
        reply_rx.await.map_err(|_| closed())?
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).map_err(|_| closed())
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
            if next.is_none() && last >= LINGER_MIN_GROUP && group.len() < last {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                next = rx.recv_timeout(left).ok();
            }
        }
        last = group.len().max(1);
        commit_group(&conn, &mut group);
    }
}

fn commit_group(conn: &Connection, group: &mut Vec<TxWrite>) {
    if group.is_empty() {
        return;
    }
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        for w in group.drain(..) {
            let (_, reply) = w(Err(&err));
            reply(None);
        }
        return;
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
    let commit = if all_failed {
        exec(conn, "ROLLBACK").map_err(StoreError::from)
    } else {
        exec(conn, "COMMIT").map_err(StoreError::from)
    };
    if commit.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(commit.as_ref().err());
    }
}

/// Runs a transaction-control statement through the statement cache (no re-parsing).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
