//! A read-only look at a SQLite file (a backup about to be restored): its integrity and its
//! schema version, without migrating it, switching it to WAL or creating `-wal`/`-shm` files.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The file's schema version (`PRAGMA user_version`).
    pub schema_version: usize,
    /// This binary's schema version.
    pub current_version: usize,
    /// `PRAGMA integrity_check`: `["ok"]` when sound.
    pub integrity: Vec<String>,
}

/// Opens the Fabric store in `path` read-only and immutable (the file is not changed in any
/// way, and no journal file is created), runs `PRAGMA integrity_check` and reads its schema
/// version. An error when it is not a SQLite database or has no `jobs` table; a file too
/// damaged to be read (SQLite reports it corrupt) fails its integrity check instead.
pub fn inspect(path: &Path) -> Result<FileCheck> {
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
    match read(&conn) {
        Ok(Some(check)) => Ok(check),
        Ok(None) => Err(StoreError::Schema(format!(
            "{}: not a Fabric store (no jobs table)",
            path.display()
        ))),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            Ok(FileCheck {
                schema_version: 0,
                current_version: super::MIGRATIONS.len(),
                integrity: vec![format!("the file is too damaged to read: {e}")],
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The checks of [`inspect`]; `None` when the file has no `jobs` table.
fn read(conn: &Connection) -> rusqlite::Result<Option<FileCheck>> {
    let has_jobs: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs')",
        [],
        |r| r.get(0),
    )?;
    if !has_jobs {
        return Ok(None);
    }
    let schema_version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let integrity = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(FileCheck {
        schema_version,
        current_version: super::MIGRATIONS.len(),
        integrity,
    }))
}

/// `path` as the path of a `file:` URI: the characters a URI gives a meaning escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_query_and_fragment_characters() {
        assert_eq!(uri_path(Path::new("/a b/q?1#2%")), "/a b/q%3F1%232%25");
    }
}
