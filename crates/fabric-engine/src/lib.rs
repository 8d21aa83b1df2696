//! The Fabric runtime: the worker pool with leases, heartbeats and the rescuer, the built-in
//! handlers, crash recovery, metrics, the home directory, and the [`Console`], the one service
//! layer through which every operator action (CLI or HTTP) is validated, applied and audited,
//! and the outbox publisher that sends job lifecycle events and telemetry to the bus.

pub mod access;
pub mod batches;
pub mod bulk;
pub mod console;
pub mod docs;
mod error;
pub mod external;
pub mod fleet;
pub mod handlers;
pub mod health;
pub mod home;
pub mod http_job;
mod levers;
pub mod logfile;
pub mod measured;
pub mod metrics;
pub mod outbox;
pub mod recovery;
pub mod reports;
pub mod retention;
pub mod runtime;
pub mod schedules;
pub mod slo;
pub mod sources;
pub mod telemetry;

pub use console::Console;
pub use error::EngineError;
pub use fleet::FleetOptions;
pub use handlers::{Handler, Registry};
pub use health::{Check, Health, HealthInput};
pub use home::FabricHome;
pub use metrics::Metrics;
pub use outbox::OutboxOptions;
pub use runtime::{Engine, EngineOptions, Waker};

use std::sync::Arc;

use fabric_core::config::Config;
use fabric_store::{sqlite::SqliteOptions, PostgresStore, SqliteStore, Store};

fn sqlite_options(config: &Config) -> SqliteOptions {
    SqliteOptions {
        synchronous_full: config.store.synchronous == "full",
        ..Default::default()
    }
}

fn postgres_url(config: &Config) -> Result<&str, EngineError> {
    config
        .store
        .url
        .as_deref()
        .ok_or_else(|| EngineError::invalid("store.url", "is required for postgres"))
}

fn unknown_backend(other: &str) -> EngineError {
    EngineError::invalid(
        "store.backend",
        format!("'{other}' is not a backend (sqlite or postgres)"),
    )
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config, home: &FabricHome) -> Result<Arc<dyn Store>, EngineError> {
    match config.store.backend.as_str() {
        "sqlite" => Ok(Arc::new(SqliteStore::open(
            home.db_path(config),
            sqlite_options(config),
        )?)),
        "postgres" => {
            let store = PostgresStore::open(postgres_url(config)?, &config.store.schema).await?;
            Ok(Arc::new(if config.store.synchronous == "full" {
                store.fully_synchronous()
            } else {
                store
            }))
        }
        other => Err(unknown_backend(other)),
    }
}

/// Brings the configured store to this binary's schema version (`fabric db migrate`);
/// returns the versions before and after.
pub async fn migrate_store(
    config: &Config,
    home: &FabricHome,
) -> Result<(usize, usize), EngineError> {
    match config.store.backend.as_str() {
        "sqlite" => Ok(SqliteStore::migrate(
            home.db_path(config),
            sqlite_options(config),
        )?),
        "postgres" => Ok(
            PostgresStore::migrate(postgres_url(config)?, &config.store.schema)
                .await?
                .1,
        ),
        other => Err(unknown_backend(other)),
    }
}
