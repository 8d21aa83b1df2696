//! Ingestion sources on PostgreSQL: definitions and runtime state (see `0005_sources.sql`).

use deadpool_postgres::GenericClient;
use fabric_core::source::SourceDef;
use tokio_postgres::Row;

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

pub(crate) async fn put<C: GenericClient>(c: &C, def: &SourceDef, now: i64) -> Result<()> {
    let json = serde_json::to_string(def).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.execute(
        "INSERT INTO sources (name, def, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (name) DO UPDATE SET def = excluded.def, updated_at = excluded.updated_at",
        &[&def.name, &json, &now],
    )
    .await?;
    Ok(())
}

pub(crate) async fn list<C: GenericClient>(c: &C) -> Result<Vec<SourceRecord>> {
    c.query(&format!("{SELECT} ORDER BY s.name"), &[])
        .await?
        .iter()
        .map(row_to_source)
        .collect()
}

pub(crate) async fn defs<C: GenericClient>(c: &C) -> Result<Vec<SourceDef>> {
    c.query("SELECT name, def FROM sources ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| {
            let (name, def): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            serde_json::from_str(&def)
                .map_err(|e| StoreError::Backend(format!("source {name}: {e}")))
        })
        .collect()
}

pub(crate) async fn remove<C: GenericClient>(c: &C, name: &str) -> Result<()> {
    c.execute(
        "DELETE FROM settings WHERE starts_with(key, $1)",
        &[&fabric_core::source::state_prefix(name)],
    )
    .await?;
    match c
        .execute("DELETE FROM sources WHERE name = $1", &[&name])
        .await?
    {
        0 => Err(StoreError::source_not_found(name)),
        _ => Ok(()),
    }
}

pub(crate) async fn set_paused<C: GenericClient>(
    c: &C,
    name: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<()> {
    let n = c
        .execute(
            "UPDATE sources SET paused = $2, pause_reason = $3,
                 paused_at = CASE WHEN $2 THEN $4::bigint ELSE NULL END, updated_at = $4
             WHERE name = $1",
            &[&name, &reason.is_some(), &reason, &now],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

pub(crate) async fn record_scan<C: GenericClient>(
    c: &C,
    name: &str,
    at: i64,
    outcome: &str,
    files: u64,
) -> Result<()> {
    let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let n = c
        .execute(
            "UPDATE sources SET last_scan_at = $2, last_outcome = $3, files = $4,
                 updated_at = $2
             WHERE name = $1",
            &[&name, &at, &outcome, &big(files)],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

pub(crate) async fn set_next_run<C: GenericClient>(
    c: &C,
    name: &str,
    at: Option<i64>,
) -> Result<()> {
    let n = c
        .execute(
            "UPDATE sources SET next_run_at = $2 WHERE name = $1",
            &[&name, &at],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::source_not_found(name));
    }
    Ok(())
}

fn row_to_source(r: &Row) -> Result<SourceRecord> {
    let name: String = r.try_get(0)?;
    let def: String = r.try_get(1)?;
    let def: SourceDef = serde_json::from_str(&def)
        .map_err(|e| StoreError::Backend(format!("source {name}: {e}")))?;
    let paused: bool = r.try_get(2)?;
    let count = |i: usize| -> Result<u64> { Ok(r.try_get::<_, i64>(i)?.max(0) as u64) };
    Ok(SourceRecord {
        def,
        state: if paused { "paused" } else { "active" }.into(),
        pause_reason: r.try_get(3)?,
        paused_at: r.try_get(4)?,
        last_scan_at: r.try_get(5)?,
        last_outcome: r.try_get(6)?,
        next_run_at: r.try_get(7)?,
        files: count(8)?,
        documents: count(9)?,
        created_at: r.try_get(10)?,
        updated_at: r.try_get(11)?,
        quarantined: count(12)?,
    })
}
