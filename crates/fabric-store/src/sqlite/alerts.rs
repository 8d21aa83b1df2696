//! Alert state, silences, the notification queue and delivery history on SQLite (see
//! `0010_alerts.sql`).

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::SqliteStore;
use crate::alerts::{alert_not_found, from_json, silence_not_found, to_json};
use crate::{
    sql_limit, AlertPhase, AlertState, AlertStore, DeliveryAttempt, GroupFlush, JobSignals,
    NewDeliveryAttempt, NewNotification, NewSilence, Notification, NotifyStatus, QueueState,
    Result, Settle, Silence,
};

const STATE_COLS: &str = "fingerprint, rule, labels, metric, state, breaches, since, last_value, \
     last_at, notified_firing, notified_routes, last_notified_at, acked_by, acked_at, ack_comment";

const NOTIFICATION_COLS: &str = "id, route, group_key, fingerprint, rule, status, alert, \
     created_at, state, attempts, next_attempt_at, last_error, settled_at";

const DELIVERY_COLS: &str =
    "id, at, route, group_key, notifications, summary, attempt, outcome, detail, duration_ms";

const SILENCE_COLS: &str = "id, matchers, starts_at, ends_at, author, comment, created_at";

/// A stored value that does not decode (a column conversion error).
fn bad(col: usize, e: crate::StoreError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_state(r: &Row<'_>) -> rusqlite::Result<AlertState> {
    Ok(AlertState {
        fingerprint: r.get(0)?,
        rule: r.get(1)?,
        labels: from_json(&r.get::<_, String>(2)?).map_err(|e| bad(2, e))?,
        metric: r.get(3)?,
        phase: AlertPhase::parse(&r.get::<_, String>(4)?).map_err(|e| bad(4, e))?,
        breaches: r.get(5)?,
        since: r.get(6)?,
        last_value: r.get(7)?,
        last_at: r.get(8)?,
        notified_firing: r.get(9)?,
        notified_routes: from_json(&r.get::<_, String>(10)?).map_err(|e| bad(10, e))?,
        last_notified_at: r.get(11)?,
        acked_by: r.get(12)?,
        acked_at: r.get(13)?,
        ack_comment: r.get(14)?,
    })
}

fn row_to_notification(r: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        new: NewNotification {
            route: r.get(1)?,
            group_key: r.get(2)?,
            fingerprint: r.get(3)?,
            rule: r.get(4)?,
            status: NotifyStatus::parse(&r.get::<_, String>(5)?).map_err(|e| bad(5, e))?,
            alert: from_json(&r.get::<_, String>(6)?).map_err(|e| bad(6, e))?,
            created_at: r.get(7)?,
        },
        state: QueueState::parse(&r.get::<_, String>(8)?).map_err(|e| bad(8, e))?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
        last_error: r.get(11)?,
        settled_at: r.get(12)?,
    })
}

fn row_to_delivery(r: &Row<'_>) -> rusqlite::Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        id: r.get(0)?,
        attempt: NewDeliveryAttempt {
            at: r.get(1)?,
            route: r.get(2)?,
            group_key: r.get(3)?,
            notifications: from_json(&r.get::<_, String>(4)?).map_err(|e| bad(4, e))?,
            summary: r.get(5)?,
            attempt: r.get(6)?,
            outcome: r.get(7)?,
            detail: r.get(8)?,
            duration_ms: r.get(9)?,
        },
    })
}

fn row_to_silence(r: &Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: r.get(0)?,
        new: NewSilence {
            matchers: from_json(&r.get::<_, String>(1)?).map_err(|e| bad(1, e))?,
            starts_at: r.get(2)?,
            ends_at: r.get(3)?,
            author: r.get(4)?,
            comment: r.get(5)?,
        },
        created_at: r.get(6)?,
    })
}

fn upsert_state(conn: &Connection, s: &AlertState) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO alert_states ({STATE_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (fingerprint) DO UPDATE SET rule = excluded.rule,
             labels = excluded.labels, metric = excluded.metric, state = excluded.state,
             breaches = excluded.breaches, since = excluded.since,
             last_value = excluded.last_value, last_at = excluded.last_at,
             notified_firing = excluded.notified_firing,
             notified_routes = excluded.notified_routes,
             last_notified_at = excluded.last_notified_at, acked_by = excluded.acked_by,
             acked_at = excluded.acked_at, ack_comment = excluded.ack_comment"
    ))?
    .execute(params![
        s.fingerprint,
        s.rule,
        to_json(&s.labels)?,
        s.metric,
        s.phase.as_str(),
        s.breaches,
        s.since,
        s.last_value,
        s.last_at,
        s.notified_firing,
        to_json(&s.notified_routes)?,
        s.last_notified_at,
        s.acked_by,
        s.acked_at,
        s.ack_comment,
    ])?;
    Ok(())
}

fn insert_attempt(conn: &Connection, a: &NewDeliveryAttempt) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO alert_deliveries (at, route, group_key, notifications, summary, attempt,
             outcome, detail, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        a.at,
        a.route,
        a.group_key,
        to_json(&a.notifications)?,
        a.summary,
        a.attempt,
        a.outcome,
        a.detail,
        a.duration_ms
    ])?;
    Ok(())
}

fn save(
    conn: &Connection,
    states: &[AlertState],
    remove: &[String],
    notifications: &[NewNotification],
) -> Result<Vec<i64>> {
    for s in states {
        upsert_state(conn, s)?;
    }
    let mut del = conn.prepare_cached("DELETE FROM alert_states WHERE fingerprint = ?1")?;
    for f in remove {
        del.execute([f])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO alert_notifications (route, group_key, fingerprint, rule, status, alert,
             created_at, state, attempts, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', 0, ?7)",
    )?;
    let mut ids = Vec::with_capacity(notifications.len());
    for n in notifications {
        insert.execute(params![
            n.route,
            n.group_key,
            n.fingerprint,
            n.rule,
            n.status.as_str(),
            to_json(&n.alert)?,
            n.created_at
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

fn get_silence(conn: &Connection, id: i64) -> Result<Silence> {
    conn.prepare_cached(&format!(
        "SELECT {SILENCE_COLS} FROM alert_silences WHERE id = ?1"
    ))?
    .query_row([id], row_to_silence)
    .optional()?
    .ok_or_else(|| silence_not_found(id))
}

fn settle(
    conn: &Connection,
    ids: &[i64],
    owner: &str,
    how: &Settle,
    attempt: &NewDeliveryAttempt,
) -> Result<()> {
    let ids_json = to_json(&ids)?;
    let held = "id IN (SELECT value FROM json_each(?1)) AND state = 'sending' AND owner = ?2";
    match how {
        Settle::Delivered { at } => {
            conn.prepare_cached(&format!(
                "UPDATE alert_notifications SET state = 'delivered', attempts = attempts + 1,
                     settled_at = ?3, owner = NULL, lease_until = NULL WHERE {held}"
            ))?
            .execute(params![ids_json, owner, at])?;
            conn.prepare_cached(
                "INSERT INTO alert_groups (route, group_key, last_flush_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (route, group_key) DO UPDATE SET last_flush_at = excluded.last_flush_at",
            )?
            .execute(params![attempt.route, attempt.group_key, at])?;
        }
        Settle::Retry { next_at, error } => {
            conn.prepare_cached(&format!(
                "UPDATE alert_notifications SET state = 'queued', attempts = attempts + 1,
                     next_attempt_at = ?3, last_error = ?4, owner = NULL, lease_until = NULL
                 WHERE {held}"
            ))?
            .execute(params![ids_json, owner, next_at, error])?;
        }
        Settle::Failed { at, error } => {
            conn.prepare_cached(&format!(
                "UPDATE alert_notifications SET state = 'failed', attempts = attempts + 1,
                     settled_at = ?3, last_error = ?4, owner = NULL, lease_until = NULL
                 WHERE {held}"
            ))?
            .execute(params![ids_json, owner, at, error])?;
        }
    }
    insert_attempt(conn, attempt)
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {STATE_COLS} FROM alert_states ORDER BY rule, fingerprint"
            ))?;
            let rows = stmt.query_map([], row_to_state)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn save_evaluation(
        &self,
        states: Vec<AlertState>,
        remove: Vec<String>,
        notifications: Vec<NewNotification>,
    ) -> Result<Vec<i64>> {
        self.inner
            .writer
            .write(move |conn| save(conn, &states, &remove, &notifications))
            .await
    }

    async fn ack_alert(
        &self,
        fingerprint: &str,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> Result<AlertState> {
        let (fingerprint, by, comment) = (
            fingerprint.to_string(),
            by.to_string(),
            comment.map(String::from),
        );
        self.inner
            .writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE alert_states SET acked_by = ?2, acked_at = ?3, ack_comment = ?4
                         WHERE fingerprint = ?1",
                    )?
                    .execute(params![fingerprint, by, now, comment])?;
                if n == 0 {
                    return Err(alert_not_found(&fingerprint));
                }
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {STATE_COLS} FROM alert_states WHERE fingerprint = ?1"
                    ))?
                    .query_row([&fingerprint], row_to_state)?)
            })
            .await
    }

    async fn add_silence(&self, s: NewSilence, now: i64) -> Result<Silence> {
        self.inner
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO alert_silences (matchers, starts_at, ends_at, author, comment,
                         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    to_json(&s.matchers)?,
                    s.starts_at,
                    s.ends_at,
                    s.author,
                    s.comment,
                    now
                ])?;
                get_silence(conn, conn.last_insert_rowid())
            })
            .await
    }

    async fn silences(&self) -> Result<Vec<Silence>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SILENCE_COLS} FROM alert_silences ORDER BY id DESC"
            ))?;
            let rows = stmt.query_map([], row_to_silence)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn expire_silence(&self, id: i64, now: i64) -> Result<Silence> {
        self.inner
            .writer
            .write(move |conn| {
                get_silence(conn, id)?;
                conn.prepare_cached(
                    "UPDATE alert_silences SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2",
                )?
                .execute(params![id, now])?;
                get_silence(conn, id)
            })
            .await
    }

    async fn notification_queue(&self, now: i64, limit: usize) -> Result<Vec<Notification>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLS} FROM alert_notifications
                 WHERE state = 'queued' OR (state = 'sending' AND lease_until < ?1)
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, sql_limit(limit)], row_to_notification)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn group_flushes(&self) -> Result<Vec<GroupFlush>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT route, group_key, last_flush_at FROM alert_groups ORDER BY route, group_key",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(GroupFlush {
                    route: r.get(0)?,
                    group_key: r.get(1)?,
                    at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn claim_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>> {
        let owner = owner.to_string();
        self.inner
            .writer
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE alert_notifications SET state = 'sending', owner = ?2,
                         lease_until = ?4
                     WHERE id IN (SELECT value FROM json_each(?1))
                       AND (state = 'queued' OR (state = 'sending' AND lease_until < ?3))
                     RETURNING id",
                )?;
                let rows = stmt
                    .query_map(params![to_json(&ids)?, owner, now, lease_until], |r| {
                        r.get(0)
                    })?;
                let mut got: Vec<i64> = rows.collect::<rusqlite::Result<_>>()?;
                got.sort_unstable();
                Ok(got)
            })
            .await
    }

    async fn settle_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        how: Settle,
        attempt: NewDeliveryAttempt,
    ) -> Result<()> {
        let owner = owner.to_string();
        self.inner
            .writer
            .write(move |conn| settle(conn, &ids, &owner, &how, &attempt))
            .await
    }

    async fn record_delivery(&self, attempt: NewDeliveryAttempt) -> Result<()> {
        self.inner
            .writer
            .write(move |conn| insert_attempt(conn, &attempt))
            .await
    }

    async fn deliveries(
        &self,
        since: Option<i64>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        let route = route.map(String::from);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLS} FROM alert_deliveries
                 WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR route = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![since, route, sql_limit(limit)], row_to_delivery)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn notifications(&self, limit: usize) -> Result<Vec<Notification>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLS} FROM alert_notifications ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = stmt.query_map([sql_limit(limit)], row_to_notification)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn job_signals(&self, since: i64, now: i64) -> Result<JobSignals> {
        self.read(move |conn| {
            let (succeeded, started, wait_ms_sum): (i64, i64, i64) = conn
                .prepare_cached(
                    "SELECT coalesce(sum(state = 'succeeded' AND finished_at >= ?1), 0),
                            coalesce(sum(started_at >= ?1), 0),
                            coalesce(sum(CASE WHEN started_at >= ?1
                                         THEN max(started_at - run_at, 0) ELSE 0 END), 0)
                     FROM jobs",
                )?
                .query_row([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let (queued, oldest_due_at): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT count(*), min(CASE WHEN run_at <= ?1 THEN run_at END) FROM jobs
                     WHERE state IN ('pending', 'failed')",
                )?
                .query_row([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let count = |sql: &str| -> Result<u64> {
                let n: i64 = conn.prepare_cached(sql)?.query_row([since], |r| r.get(0))?;
                Ok(n.max(0) as u64)
            };
            Ok(JobSignals {
                queued: queued.max(0) as u64,
                succeeded: succeeded.max(0) as u64,
                quarantined: count("SELECT count(*) FROM quarantine WHERE quarantined_at >= ?1")?,
                failed_attempts: count("SELECT count(*) FROM job_errors WHERE finished_at >= ?1")?,
                started: started.max(0) as u64,
                wait_ms_sum,
                oldest_due_at,
            })
        })
        .await
    }

    async fn prune_alert_history(&self, before: i64) -> Result<u64> {
        self.inner
            .writer
            .write(move |conn| {
                let mut n = conn
                    .prepare_cached(
                        "DELETE FROM alert_notifications
                         WHERE state IN ('delivered', 'failed') AND settled_at < ?1",
                    )?
                    .execute([before])?;
                n += conn
                    .prepare_cached("DELETE FROM alert_deliveries WHERE at < ?1")?
                    .execute([before])?;
                n += conn
                    .prepare_cached("DELETE FROM alert_silences WHERE ends_at < ?1")?
                    .execute([before])?;
                Ok(n as u64)
            })
            .await
    }
}
