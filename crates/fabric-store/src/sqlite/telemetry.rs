//! Ingestion telemetry on SQLite (see `0007_telemetry.sql`).

use rusqlite::{params, Connection};

use crate::{Result, TelemetrySample, TelemetryTotal};

pub(crate) fn record(conn: &Connection, samples: &[TelemetrySample]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO telemetry (at, source, job_id, files, bytes, duration_ms, outcome, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for t in samples {
        stmt.execute(params![
            t.at,
            t.source,
            t.job_id,
            t.files,
            t.bytes,
            t.duration_ms,
            t.outcome,
            t.reason
        ])?;
    }
    Ok(())
}

pub(crate) fn totals(
    conn: &Connection,
    since: i64,
    source: Option<&str>,
) -> Result<Vec<TelemetryTotal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT source, outcome, reason, count(*), sum(files), sum(bytes), sum(duration_ms),
                min(at), max(at)
         FROM telemetry WHERE at >= ?1 AND (?2 IS NULL OR source = ?2)
         GROUP BY source, outcome, reason ORDER BY source, outcome, reason",
    )?;
    let rows = stmt.query_map(params![since, source], |r| {
        Ok(TelemetryTotal {
            source: r.get(0)?,
            outcome: r.get(1)?,
            reason: r.get(2)?,
            samples: r.get(3)?,
            files: r.get(4)?,
            bytes: r.get(5)?,
            duration_ms: r.get(6)?,
            first_at: r.get(7)?,
            last_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn prune(conn: &Connection, before: i64, dry_run: bool) -> Result<u64> {
    Ok(if dry_run {
        conn.prepare_cached("SELECT count(*) FROM telemetry WHERE at < ?1")?
            .query_row([before], |r| r.get(0))?
    } else {
        conn.prepare_cached("DELETE FROM telemetry WHERE at < ?1")?
            .execute([before])? as u64
    })
}
