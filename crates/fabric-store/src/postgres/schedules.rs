//! Cron schedules on PostgreSQL (see `0011_schedules.sql`): definitions, pause, and firing
//! in one transaction that locks the schedule's row, so of two daemons firing the same due
//! time the second waits, finds `next_due` moved on, and writes nothing (the unique key of
//! the job would refuse a second insert anyway).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fabric_core::cron_schedule::{manual_key, CatchUp, Overlap, ScheduleDef};
use fabric_core::Priority;
use tokio_postgres::Row;

use super::{insert_unique, PostgresStore};
use crate::schedule::{due_job, job_of, overlaps};
use crate::{
    NewSchedule, Result, ScheduleFired, ScheduleFiring, ScheduleRecord, ScheduleStore, StoreError,
    Submitted,
};

const COLS: &str = "name, cron, timezone, kind, payload, priority, max_attempts, overlap, \
     catch_up, paused, pause_reason, paused_at, next_due, last_due, last_fired_at, last_job_id, \
     runs, skipped, created_at, updated_at";

fn row_to_schedule(r: &Row) -> Result<ScheduleRecord> {
    let overlap: String = r.try_get(7)?;
    let catch_up: String = r.try_get(8)?;
    Ok(ScheduleRecord {
        def: ScheduleDef {
            name: r.try_get(0)?,
            cron: r.try_get(1)?,
            timezone: r.try_get(2)?,
            kind: r.try_get(3)?,
            payload: r.try_get(4)?,
            priority: r.try_get::<_, Option<i32>>(5)?.map(Priority),
            overlap: Overlap::parse(&overlap)?,
            catch_up: CatchUp::parse(&catch_up)?,
        },
        max_attempts: r.try_get::<_, i32>(6)?.max(0) as u32,
        paused: r.try_get(9)?,
        pause_reason: r.try_get(10)?,
        paused_at: r.try_get(11)?,
        next_due: r.try_get(12)?,
        last_due: r.try_get(13)?,
        last_fired_at: r.try_get(14)?,
        last_job_id: r.try_get(15)?,
        runs: r.try_get::<_, i64>(16)?.max(0) as u64,
        skipped: r.try_get::<_, i64>(17)?.max(0) as u64,
        created_at: r.try_get(18)?,
        updated_at: r.try_get(19)?,
    })
}

/// One schedule; `lock` takes its row lock for the rest of the transaction.
async fn get<C: GenericClient>(c: &C, name: &str, lock: bool) -> Result<Option<ScheduleRecord>> {
    let sql = format!(
        "SELECT {COLS} FROM schedules WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let stmt = c.prepare_cached(&sql).await?;
    c.query_opt(&stmt, &[&name])
        .await?
        .as_ref()
        .map(row_to_schedule)
        .transpose()
}

async fn get_or_404<C: GenericClient>(c: &C, name: &str, lock: bool) -> Result<ScheduleRecord> {
    get(c, name, lock)
        .await?
        .ok_or_else(|| StoreError::schedule_not_found(name))
}

async fn job_state<C: GenericClient>(c: &C, id: Option<i64>) -> Result<Option<String>> {
    let Some(id) = id else { return Ok(None) };
    let stmt = c
        .prepare_cached("SELECT state FROM jobs WHERE id = $1")
        .await?;
    Ok(match c.query_opt(&stmt, &[&id]).await? {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

async fn fire<C: GenericClient>(c: &C, f: &ScheduleFiring, now: i64) -> Result<ScheduleFired> {
    let Some(rec) = get(c, &f.name, true).await? else {
        return Ok(ScheduleFired::default());
    };
    if rec.paused || rec.next_due != Some(f.expected_next_due) {
        return Ok(ScheduleFired::default());
    }
    let mut out = ScheduleFired {
        applied: true,
        jobs: Vec::new(),
        skipped: f.missed,
    };
    let mut last_job = rec.last_job_id;
    let mut last_due = rec.last_due;
    for &due in &f.due {
        if overlaps(rec.def.overlap, job_state(c, last_job).await?.as_deref()) {
            out.skipped += 1;
            continue;
        }
        let s = insert_unique(c, &due_job(&rec, due), now).await?;
        if s.created {
            out.jobs.push((due, s.id));
        }
        last_job = Some(s.id);
        last_due = Some(due);
    }
    let fired = out.jobs.len() as i64;
    let skipped = out.skipped as i64;
    c.execute(
        "UPDATE schedules SET next_due = $2, last_due = $3, last_job_id = $4,
             last_fired_at = CASE WHEN $5::bigint > 0 THEN $7 ELSE last_fired_at END,
             runs = runs + $5::bigint, skipped = skipped + $6::bigint, updated_at = $7
         WHERE name = $1 AND next_due = $8",
        &[
            &f.name,
            &f.next_due,
            &last_due,
            &last_job,
            &fired,
            &skipped,
            &now,
            &f.expected_next_due,
        ],
    )
    .await?;
    Ok(out)
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn put_schedule(&self, s: NewSchedule, now: i64) -> Result<bool> {
        let client = self.pool.get().await?;
        let d = &s.def;
        let n = client
            .execute(
                "INSERT INTO schedules (name, cron, timezone, kind, payload, priority,
                     max_attempts, overlap, catch_up, next_due, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &d.name,
                    &d.cron,
                    &d.timezone,
                    &d.kind,
                    &d.payload,
                    &d.priority.map(|p| p.0),
                    &(s.max_attempts as i32),
                    &d.overlap.as_str(),
                    &d.catch_up.as_str(),
                    &s.next_due,
                    &now,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(&format!("SELECT {COLS} FROM schedules ORDER BY name"), &[])
            .await?;
        rows.iter().map(row_to_schedule).collect()
    }

    async fn schedule(&self, name: &str) -> Result<ScheduleRecord> {
        let client = self.pool.get().await?;
        get_or_404(&client, name, false).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        pause: Option<String>,
        next_due: Option<i64>,
        now: i64,
    ) -> Result<ScheduleRecord> {
        let client = self.pool.get().await?;
        let n = match &pause {
            Some(reason) => {
                client
                    .execute(
                        "UPDATE schedules SET paused = true, pause_reason = $2, paused_at = $3,
                             updated_at = $3 WHERE name = $1",
                        &[&name, reason, &now],
                    )
                    .await?
            }
            None => {
                client
                    .execute(
                        "UPDATE schedules SET paused = false, pause_reason = NULL,
                             paused_at = NULL, next_due = $2, updated_at = $3 WHERE name = $1",
                        &[&name, &next_due, &now],
                    )
                    .await?
            }
        };
        if n == 0 {
            return Err(StoreError::schedule_not_found(name));
        }
        get_or_404(&client, name, false).await
    }

    async fn remove_schedule(&self, name: &str) -> Result<()> {
        let client = self.pool.get().await?;
        match client
            .execute("DELETE FROM schedules WHERE name = $1", &[&name])
            .await?
        {
            0 => Err(StoreError::schedule_not_found(name)),
            _ => Ok(()),
        }
    }

    async fn fire_schedule(&self, firing: ScheduleFiring, now: i64) -> Result<ScheduleFired> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let out = fire(&tx, &firing, now).await?;
        tx.commit().await?;
        drop(client);
        if !out.jobs.is_empty() {
            self.notify_inserted().await;
        }
        Ok(out)
    }

    async fn trigger_schedule(&self, name: &str, now: i64) -> Result<Submitted> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rec = get_or_404(&tx, name, true).await?;
        let s = insert_unique(&tx, &job_of(&rec, manual_key(name, now)), now).await?;
        tx.execute(
            "UPDATE schedules SET last_job_id = $2, runs = runs + $3, updated_at = $4
             WHERE name = $1",
            &[&name, &s.id, &i64::from(s.created), &now],
        )
        .await?;
        tx.commit().await?;
        drop(client);
        if s.created {
            self.notify_inserted().await;
        }
        Ok(s)
    }
}
