//! Ingestion telemetry on PostgreSQL (see `0006_telemetry.sql`).

use deadpool_postgres::GenericClient;

use crate::{Result, TelemetrySample, TelemetryTotal};

/// A count or sum as stored (BIGINT) to the unsigned figure shown.
fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

pub(crate) async fn record<C: GenericClient>(c: &C, samples: &[TelemetrySample]) -> Result<()> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO telemetry (at, source, job_id, files, bytes, duration_ms, outcome, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    for t in samples {
        let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        c.execute(
            &stmt,
            &[
                &t.at,
                &t.source,
                &t.job_id,
                &big(t.files),
                &big(t.bytes),
                &big(t.duration_ms),
                &t.outcome,
                &t.reason,
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn totals<C: GenericClient>(
    c: &C,
    since: i64,
    source: Option<&str>,
) -> Result<Vec<TelemetryTotal>> {
    c.query(
        "SELECT source, outcome, reason, count(*)::bigint, sum(files)::bigint,
                sum(bytes)::bigint, sum(duration_ms)::bigint, min(at), max(at)
         FROM telemetry WHERE at >= $1 AND ($2::text IS NULL OR source = $2)
         GROUP BY source, outcome, reason ORDER BY source, outcome, reason",
        &[&since, &source],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(TelemetryTotal {
            source: r.try_get(0)?,
            outcome: r.try_get(1)?,
            reason: r.try_get(2)?,
            samples: unsigned(r.try_get(3)?),
            files: unsigned(r.try_get(4)?),
            bytes: unsigned(r.try_get(5)?),
            duration_ms: unsigned(r.try_get(6)?),
            first_at: r.try_get(7)?,
            last_at: r.try_get(8)?,
        })
    })
    .collect()
}

pub(crate) async fn prune<C: GenericClient>(c: &C, before: i64, dry_run: bool) -> Result<u64> {
    if dry_run {
        let n: i64 = c
            .query_one("SELECT count(*) FROM telemetry WHERE at < $1", &[&before])
            .await?
            .try_get(0)?;
        return Ok(unsigned(n));
    }
    Ok(c.execute("DELETE FROM telemetry WHERE at < $1", &[&before])
        .await?)
}
