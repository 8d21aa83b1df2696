//! Cron schedules on SQLite (see `0013_schedules.sql`): definitions, pause, and firing in
//! one write of the group-committing writer (the job insert and the move of `next_due`
//! commit together).

use async_trait::async_trait;
use fabric_core::cron_schedule::{manual_key, CatchUp, Overlap, ScheduleDef};
use fabric_core::Priority;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{insert_jobs, SqliteStore};
use crate::schedule::{due_job, job_of, overlaps};
use crate::{
    NewSchedule, Result, ScheduleFired, ScheduleFiring, ScheduleRecord, ScheduleStore, StoreError,
    Submitted,
};

const COLS: &str = "name, cron, timezone, kind, payload, priority, max_attempts, overlap, \
     catch_up, paused, pause_reason, paused_at, next_due, last_due, last_fired_at, last_job_id, \
     runs, skipped, created_at, updated_at";

fn row_to_schedule(r: &Row<'_>) -> Result<ScheduleRecord> {
    let name: String = r.get(0)?;
    let payload: String = r.get(4)?;
    let payload = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Backend(format!("schedule {name}: payload: {e}")))?;
    let overlap: String = r.get(7)?;
    let catch_up: String = r.get(8)?;
    Ok(ScheduleRecord {
        def: ScheduleDef {
            cron: r.get(1)?,
            timezone: r.get(2)?,
            kind: r.get(3)?,
            payload,
            priority: r.get::<_, Option<i32>>(5)?.map(Priority),
            overlap: Overlap::parse(&overlap)?,
            catch_up: CatchUp::parse(&catch_up)?,
            name,
        },
        max_attempts: r.get(6)?,
        paused: r.get(9)?,
        pause_reason: r.get(10)?,
        paused_at: r.get(11)?,
        next_due: r.get(12)?,
        last_due: r.get(13)?,
        last_fired_at: r.get(14)?,
        last_job_id: r.get(15)?,
        runs: r.get::<_, i64>(16)?.max(0) as u64,
        skipped: r.get::<_, i64>(17)?.max(0) as u64,
        created_at: r.get(18)?,
        updated_at: r.get(19)?,
    })
}

fn get(conn: &Connection, name: &str) -> Result<Option<ScheduleRecord>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLS} FROM schedules WHERE name = ?1"))?;
    let mut rows = stmt.query([name])?;
    rows.next()?.map(row_to_schedule).transpose()
}

fn get_or_404(conn: &Connection, name: &str) -> Result<ScheduleRecord> {
    get(conn, name)?.ok_or_else(|| StoreError::schedule_not_found(name))
}

fn job_state(conn: &Connection, id: Option<i64>) -> Result<Option<String>> {
    let Some(id) = id else { return Ok(None) };
    Ok(conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

fn fire(conn: &Connection, f: &ScheduleFiring, now: i64) -> Result<ScheduleFired> {
    let Some(rec) = get(conn, &f.name)? else {
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
        if overlaps(rec.def.overlap, job_state(conn, last_job)?.as_deref()) {
            out.skipped += 1;
            continue;
        }
        let submitted = insert_jobs(conn, &[due_job(&rec, due)], now)?;
        if let Some(s) = submitted.first() {
            if s.created {
                out.jobs.push((due, s.id));
            }
            last_job = Some(s.id);
            last_due = Some(due);
        }
    }
    conn.prepare_cached(
        "UPDATE schedules SET next_due = ?2, last_due = ?3, last_job_id = ?4,
             last_fired_at = CASE WHEN ?5 > 0 THEN ?7 ELSE last_fired_at END,
             runs = runs + ?5, skipped = skipped + ?6, updated_at = ?7
         WHERE name = ?1 AND next_due = ?8",
    )?
    .execute(params![
        f.name,
        f.next_due,
        last_due,
        last_job,
        out.jobs.len() as i64,
        out.skipped as i64,
        now,
        f.expected_next_due
    ])?;
    Ok(out)
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn put_schedule(&self, s: NewSchedule, now: i64) -> Result<bool> {
        let payload = s.def.payload.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let d = &s.def;
                let n = conn
                    .prepare_cached(
                        "INSERT INTO schedules (name, cron, timezone, kind, payload, priority,
                             max_attempts, overlap, catch_up, next_due, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
                         ON CONFLICT (name) DO NOTHING",
                    )?
                    .execute(params![
                        d.name,
                        d.cron,
                        d.timezone,
                        d.kind,
                        payload,
                        d.priority.map(|p| p.0),
                        s.max_attempts,
                        d.overlap.as_str(),
                        d.catch_up.as_str(),
                        s.next_due,
                        now
                    ])?;
                Ok(n == 1)
            })
            .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {COLS} FROM schedules ORDER BY name"))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(row_to_schedule(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn schedule(&self, name: &str) -> Result<ScheduleRecord> {
        let name = name.to_string();
        self.read(move |conn| get_or_404(conn, &name)).await
    }

    async fn set_schedule_paused(
        &self,
        name: &str,
        pause: Option<String>,
        next_due: Option<i64>,
        now: i64,
    ) -> Result<ScheduleRecord> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let n = match &pause {
                    Some(reason) => conn
                        .prepare_cached(
                            "UPDATE schedules SET paused = 1, pause_reason = ?2, paused_at = ?3,
                                 updated_at = ?3 WHERE name = ?1",
                        )?
                        .execute(params![name, reason, now])?,
                    None => conn
                        .prepare_cached(
                            "UPDATE schedules SET paused = 0, pause_reason = NULL,
                                 paused_at = NULL, next_due = ?2, updated_at = ?3
                             WHERE name = ?1",
                        )?
                        .execute(params![name, next_due, now])?,
                };
                if n == 0 {
                    return Err(StoreError::schedule_not_found(&name));
                }
                get_or_404(conn, &name)
            })
            .await
    }

    async fn remove_schedule(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| {
                match conn
                    .prepare_cached("DELETE FROM schedules WHERE name = ?1")?
                    .execute([&name])?
                {
                    0 => Err(StoreError::schedule_not_found(&name)),
                    _ => Ok(()),
                }
            })
            .await
    }

    async fn fire_schedule(&self, firing: ScheduleFiring, now: i64) -> Result<ScheduleFired> {
        self.inner
            .writer
            .write(move |conn| fire(conn, &firing, now))
            .await
    }

    async fn trigger_schedule(&self, name: &str, now: i64) -> Result<Submitted> {
        let name = name.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let rec = get_or_404(conn, &name)?;
                let job = job_of(&rec, manual_key(&name, now));
                let s = insert_jobs(conn, &[job], now)?
                    .pop()
                    .ok_or_else(|| StoreError::Backend("a triggered job got no id".into()))?;
                conn.prepare_cached(
                    "UPDATE schedules SET last_job_id = ?2, runs = runs + ?3, updated_at = ?4
                     WHERE name = ?1",
                )?
                .execute(params![name, s.id, i64::from(s.created), now])?;
                Ok(s)
            })
            .await
    }
}
