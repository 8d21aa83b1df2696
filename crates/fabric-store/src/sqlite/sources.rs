//! Ingestion sources on SQLite: definitions and runtime state (see `0006_sources.sql`).

use fabric_core::source::SourceDef;
use rusqlite::{params, Connection, Row};

use crate::{Result, SourceRecord, StoreError};

/// Columns read by [`row_to_source`]: the documents and the quarantined jobs are counted
/// where they live.
const SELECT: &str = "SELECT s.name, s.def, s.paused, s.pause_reason, s.paused_at, s.last_scan_at,
        s.last_outcome, s.next_run_at, s.files, coalesce(d.n, 0), s.created_at, s.updated_at,
        coalesce(q.n, 0)
     FROM sources s LEFT JOIN (
         SELECT j.source AS source, count(*) AS n FROM quarantine qq
         JOIN jobs j ON j.id = qq.job_id WHERE j.state = 'quarantined' GROUP BY j.source
     ) q ON q.source = s.name
     LEFT JOIN (SELECT source, count(*) AS n FROM documents GROUP BY source) d
         ON d.source = s.name";

pub(crate) fn put(conn: &Connection, def: &SourceDef, now: i64) -> Result<()> {
    let json = serde_json::to_string(def).map_err(|e| StoreError::Backend(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO sources (name, def, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at",
    )?
    .execute(params![def.name, json, now])?;
    Ok(())
}

pub(crate) fn list(conn: &Connection) -> Result<Vec<SourceRecord>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY s.name"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_source(r)?);
    }
    Ok(out)
}

pub(crate) fn defs(conn: &Connection) -> Result<Vec<SourceDef>> {
    let mut stmt = conn.prepare_cached("SELECT name, def FROM sources ORDER BY name")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (name, def): (String, String) = (r.get(0)?, r.get(1)?);
        out.push(
            serde_json::from_str(&def)
                .map_err(|e| StoreError::Backend(format!("source {name}: {e}")))?,
        );
    }
    Ok(out)
}

pub(crate) fn remove(conn: &Connection, name: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM settings WHERE substr(key, 1, length(?1)) = ?1")?
        .execute([fabric_core::source::state_prefix(name)])?;
    match conn
        .prepare_cached("DELETE FROM sources WHERE name = ?1")?
        .execute([name])?
    {
        0 => Err(StoreError::source_not_found(name)),
        _ => Ok(()),
    }
}

pub(crate) fn set_paused(
    conn: &Connection,
    name: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE sources SET paused = ?2, pause_reason = ?3,
                 paused_at = CASE WHEN ?2 THEN ?4 ELSE NULL END, updated_at = ?4
             WHERE name = ?1",
        )?
        .execute(params![name, reason.is_some(), reason, now])?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

pub(crate) fn record_scan(
    conn: &Connection,
    name: &str,
    at: i64,
    outcome: &str,
    files: u64,
) -> Result<()> {
    let n = conn
        .prepare_cached(
            "UPDATE sources SET last_scan_at = ?2, last_outcome = ?3, files = ?4,
                 updated_at = ?2
             WHERE name = ?1",
        )?
        .execute(params![name, at, outcome, files])?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

pub(crate) fn set_next_run(conn: &Connection, name: &str, at: Option<i64>) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE sources SET next_run_at = ?2 WHERE name = ?1")?
        .execute(params![name, at])?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

fn row_to_source(r: &Row<'_>) -> Result<SourceRecord> {
    let name: String = r.get(0)?;
    let def: String = r.get(1)?;
    let def: SourceDef = serde_json::from_str(&def)
        .map_err(|e| StoreError::Backend(format!("source {name}: {e}")))?;
    let paused: bool = r.get(2)?;
    Ok(SourceRecord {
        def,
        state: if paused { "paused" } else { "active" }.into(),
        pause_reason: r.get(3)?,
        paused_at: r.get(4)?,
        last_scan_at: r.get(5)?,
        last_outcome: r.get(6)?,
        next_run_at: r.get(7)?,
        files: r.get(8)?,
        documents: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        quarantined: r.get(12)?,
    })
}
