//! Connecting to PostgreSQL: the pools, the schema and its migrations, and the dedicated
//! connection that listens for the notifications of other processes.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use fabric_core::JobId;
use tokio_postgres::NoTls;

use super::{PostgresStore, CANCEL_MARK, JOBS_CHANNEL};
use crate::{Result, StoreError, StoreEvent};

/// Migrations in order; `fabric_schema.version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_nodes.sql"),
    include_str!("../../migrations/postgres/0003_shards.sql"),
    include_str!("../../migrations/postgres/0004_failed_state.sql"),
    include_str!("../../migrations/postgres/0005_sources.sql"),
    include_str!("../../migrations/postgres/0006_telemetry.sql"),
    include_str!("../../migrations/postgres/0007_docs.sql"),
    include_str!("../../migrations/postgres/0008_alerts.sql"),
    include_str!("../../migrations/postgres/0009_outbox.sql"),
    include_str!("../../migrations/postgres/0010_batches.sql"),
    include_str!("../../migrations/postgres/0011_schedules.sql"),
    include_str!("../../migrations/postgres/0012_console_reads.sql"),
    include_str!("../../migrations/postgres/0013_batch_pos.sql"),
];

/// `host:port` of a URL, for messages that must not carry the password.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

impl PostgresStore {
    /// Connects to `url`; tables live in `schema`. A new schema gets the current tables; one
    /// at an older version is refused (see [`PostgresStore::migrate`]), as is a newer one.
    /// Errors name host and port, never the password.
    pub async fn open(url: &str, schema: &str) -> Result<Self> {
        Ok(Self::connect(url, schema, false).await?.0)
    }

    /// Brings `schema` to this binary's version; returns the store and the versions before
    /// and after.
    pub async fn migrate(url: &str, schema: &str) -> Result<(Self, (usize, usize))> {
        Self::connect(url, schema, true).await
    }

    async fn connect(url: &str, schema: &str, upgrade: bool) -> Result<(Self, (usize, usize))> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Invalid(fabric_core::CoreError::invalid(
                "store.schema",
                format!("'{schema}' must be letters, digits and '_'"),
            )));
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            StoreError::Invalid(fabric_core::CoreError::invalid(
                "store.url",
                "is not a valid PostgreSQL URL (postgres://user@host:port/db)",
            ))
        })?;
        let at = endpoint(&config);
        config.options(format!(
            "-c search_path={schema} -c client_min_messages=warning"
        ));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(12)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL at {at}: {e}")))?;
        let mut relaxed_config = config.clone();
        relaxed_config.options(format!("-c search_path={schema} -c synchronous_commit=off"));
        let relaxed = Pool::builder(Manager::from_config(
            relaxed_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        ))
        .max_size(8)
        .build()
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL at {at}: {e}")))?;
        let store = Self {
            pool,
            relaxed,
            notifier: Default::default(),
            schema: schema.to_string(),
            config,
        };
        let mut client = store.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {at}: {e}"))
        })?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
        let tx = client.transaction().await?;
        // One migrator at a time across every daemon.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema()))",
            &[],
        )
        .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS fabric_schema (version INTEGER NOT NULL)")
            .await?;
        let version: i32 = match tx
            .query_opt("SELECT version FROM fabric_schema", &[])
            .await?
        {
            Some(r) => r.get(0),
            None => {
                tx.execute("INSERT INTO fabric_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let version = version as usize;
        let refusal = if version > MIGRATIONS.len() {
            Some(StoreError::schema_newer(version, MIGRATIONS.len()))
        } else if version > 0 && version < MIGRATIONS.len() && !upgrade {
            Some(StoreError::schema_older(version, MIGRATIONS.len()))
        } else {
            None
        };
        if let Some(e) = refusal {
            // Release the migration lock now, not whenever the connection is reaped.
            tx.rollback().await?;
            return Err(e);
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "UPDATE fabric_schema SET version = $1",
                &[&((i + 1) as i32)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((store, (version, MIGRATIONS.len())))
    }

    /// Makes claims, completions and heartbeats wait for the WAL flush too (`store.synchronous:
    /// full`). By default only they skip it: a database crash may undo the last few hundred
    /// milliseconds of them, and those jobs run again (at-least-once); enqueues and operator
    /// actions always wait.
    pub fn fully_synchronous(mut self) -> Self {
        self.relaxed = self.pool.clone();
        self
    }

    /// Tells listening daemons (of this schema) that jobs were inserted; see [`Notifier`].
    /// A failure only costs them a poll interval, so it is logged, not returned.
    pub(super) async fn notify_inserted(&self) {
        use std::sync::atomic::Ordering;
        let mine = self.notifier.committed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut sent = self.notifier.sent_upto.lock().await;
        if *sent >= mine {
            return;
        }
        let upto = self.notifier.committed.load(Ordering::SeqCst);
        let result = async {
            let client = self.relaxed.get().await?;
            let stmt = client.prepare_cached("SELECT pg_notify($1, $2)").await?;
            client
                .execute(&stmt, &[&JOBS_CHANNEL, &self.schema])
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => *sent = upto,
            Err(e) => tracing::debug!(error = %e, "NOTIFY failed; listeners fall back to polling"),
        }
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it (tests).
    pub async fn drop_schema(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .await?;
        Ok(())
    }
}

/// Holds a dedicated connection that LISTENs on [`JOBS_CHANNEL`] and calls `wake` for each
/// notification of `schema` (and once after every reconnect, as notifications sent while
/// disconnected are lost), until `wake` returns false.
pub(super) async fn listen_loop(
    config: tokio_postgres::Config,
    schema: String,
    wake: Box<dyn Fn(StoreEvent) -> bool + Send + Sync>,
) {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(msg) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                        match msg {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost");
                                return;
                            }
                        }
                    }
                });
                match client
                    .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
                    .await
                {
                    Ok(()) => {
                        delay = std::time::Duration::from_millis(100);
                        // Notifications sent while disconnected are lost: say so once.
                        let mut wanted = wake(StoreEvent::Inserted);
                        let cancelled = format!("{schema}{CANCEL_MARK}");
                        while wanted {
                            match rx.recv().await {
                                Some(payload) if payload == schema => {
                                    wanted = wake(StoreEvent::Inserted)
                                }
                                Some(payload) => {
                                    let id = payload
                                        .strip_prefix(&cancelled)
                                        .and_then(|id| id.parse::<JobId>().ok());
                                    if let Some(id) = id {
                                        wanted = wake(StoreEvent::Cancelled(id));
                                    }
                                }
                                None => break,
                            }
                        }
                        if !wanted {
                            driver.abort();
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}
