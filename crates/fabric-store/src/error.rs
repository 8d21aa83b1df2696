//! The one error enum of the store crate.

use fabric_core::CoreError;

/// What a store call can fail with; every variant is something a caller can act on.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// No such job (or record).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The input broke a domain rule (bad field, illegal transition).
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// The store cannot be reached or is shutting down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database schema is not the one this binary speaks (the message says whether to
    /// run `fabric db migrate` or to upgrade fabric).
    #[error("{0}")]
    Schema(String),
    /// The backend failed (I/O, corruption, SQL error).
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// The database's schema is older than this binary's.
    pub fn schema_older(found: usize, expected: usize) -> Self {
        StoreError::Schema(format!(
            "the database is at schema version {found}, older than this fabric ({expected}); \
             run `fabric db migrate` (take a backup first: `fabric db backup`)"
        ))
    }

    /// The database's schema is newer than this binary's.
    pub fn schema_newer(found: usize, expected: usize) -> Self {
        StoreError::Schema(format!(
            "the database is at schema version {found}, newer than this fabric knows \
             ({expected}); upgrade fabric"
        ))
    }

    /// A missing shard.
    pub fn shard_not_found(name: &str) -> Self {
        StoreError::NotFound {
            what: "shard",
            id: name.to_string(),
        }
    }

    /// A missing node.
    pub fn node_not_found(id: &str) -> Self {
        StoreError::NotFound {
            what: "node",
            id: id.to_string(),
        }
    }

    /// A missing source.
    pub fn source_not_found(name: &str) -> Self {
        StoreError::NotFound {
            what: "source",
            id: name.to_string(),
        }
    }

    /// A missing cron schedule.
    pub fn schedule_not_found(name: &str) -> Self {
        StoreError::NotFound {
            what: "schedule",
            id: name.to_string(),
        }
    }

    /// A missing batch.
    pub fn batch_not_found(id: i64) -> Self {
        StoreError::NotFound {
            what: "batch",
            id: id.to_string(),
        }
    }

    /// A missing job.
    pub fn job_not_found(id: i64) -> Self {
        StoreError::NotFound {
            what: "job",
            id: id.to_string(),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}
