//! Alert state, silences, the notification queue and delivery history on PostgreSQL (see
//! `0008_alerts.sql`).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
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

/// A count kept as BIGINT.
fn count(r: &Row, i: usize) -> Result<u32> {
    Ok(u32::try_from(r.try_get::<_, i64>(i)?.max(0)).unwrap_or(u32::MAX))
}

fn row_to_state(r: &Row) -> Result<AlertState> {
    Ok(AlertState {
        fingerprint: r.try_get(0)?,
        rule: r.try_get(1)?,
        labels: from_json(r.try_get(2)?)?,
        metric: r.try_get(3)?,
        phase: AlertPhase::parse(r.try_get(4)?)?,
        breaches: count(r, 5)?,
        since: r.try_get(6)?,
        last_value: r.try_get(7)?,
        last_at: r.try_get(8)?,
        notified_firing: r.try_get(9)?,
        notified_routes: from_json(r.try_get(10)?)?,
        last_notified_at: r.try_get(11)?,
        acked_by: r.try_get(12)?,
        acked_at: r.try_get(13)?,
        ack_comment: r.try_get(14)?,
    })
}

fn row_to_notification(r: &Row) -> Result<Notification> {
    Ok(Notification {
        id: r.try_get(0)?,
        new: NewNotification {
            route: r.try_get(1)?,
            group_key: r.try_get(2)?,
            fingerprint: r.try_get(3)?,
            rule: r.try_get(4)?,
            status: NotifyStatus::parse(r.try_get(5)?)?,
            alert: from_json(r.try_get(6)?)?,
            created_at: r.try_get(7)?,
        },
        state: QueueState::parse(r.try_get(8)?)?,
        attempts: count(r, 9)?,
        next_attempt_at: r.try_get(10)?,
        last_error: r.try_get(11)?,
        settled_at: r.try_get(12)?,
    })
}

fn row_to_delivery(r: &Row) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        id: r.try_get(0)?,
        attempt: NewDeliveryAttempt {
            at: r.try_get(1)?,
            route: r.try_get(2)?,
            group_key: r.try_get(3)?,
            notifications: from_json(r.try_get(4)?)?,
            summary: r.try_get(5)?,
            attempt: count(r, 6)?,
            outcome: r.try_get(7)?,
            detail: r.try_get(8)?,
            duration_ms: r.try_get(9)?,
        },
    })
}

fn row_to_silence(r: &Row) -> Result<Silence> {
    Ok(Silence {
        id: r.try_get(0)?,
        new: NewSilence {
            matchers: from_json(r.try_get(1)?)?,
            starts_at: r.try_get(2)?,
            ends_at: r.try_get(3)?,
            author: r.try_get(4)?,
            comment: r.try_get(5)?,
        },
        created_at: r.try_get(6)?,
    })
}

/// The count `sql` gives for `since`.
async fn count_since<C: GenericClient>(c: &C, sql: &str, since: i64) -> Result<u64> {
    let n: i64 = c.query_one(sql, &[&since]).await?.try_get(0)?;
    Ok(n.max(0) as u64)
}

async fn get_silence<C: GenericClient>(c: &C, id: i64) -> Result<Silence> {
    c.query_opt(
        &format!("SELECT {SILENCE_COLS} FROM alert_silences WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|r| row_to_silence(&r))
    .transpose()?
    .ok_or_else(|| silence_not_found(id))
}

async fn insert_attempt<C: GenericClient>(c: &C, a: &NewDeliveryAttempt) -> Result<()> {
    c.execute(
        "INSERT INTO alert_deliveries (at, route, group_key, notifications, summary, attempt,
             outcome, detail, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &a.at,
            &a.route,
            &a.group_key,
            &to_json(&a.notifications)?,
            &a.summary,
            &i64::from(a.attempt),
            &a.outcome,
            &a.detail,
            &a.duration_ms,
        ],
    )
    .await?;
    Ok(())
}

async fn upsert_state<C: GenericClient>(c: &C, s: &AlertState) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO alert_states ({STATE_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (fingerprint) DO UPDATE SET rule = excluded.rule,
                 labels = excluded.labels, metric = excluded.metric, state = excluded.state,
                 breaches = excluded.breaches, since = excluded.since,
                 last_value = excluded.last_value, last_at = excluded.last_at,
                 notified_firing = excluded.notified_firing,
                 notified_routes = excluded.notified_routes,
                 last_notified_at = excluded.last_notified_at, acked_by = excluded.acked_by,
                 acked_at = excluded.acked_at, ack_comment = excluded.ack_comment"
        ),
        &[
            &s.fingerprint,
            &s.rule,
            &to_json(&s.labels)?,
            &s.metric,
            &s.phase.as_str(),
            &i64::from(s.breaches),
            &s.since,
            &s.last_value,
            &s.last_at,
            &s.notified_firing,
            &to_json(&s.notified_routes)?,
            &s.last_notified_at,
            &s.acked_by,
            &s.acked_at,
            &s.ack_comment,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AlertStore for PostgresStore {
    async fn alert_states(&self) -> Result<Vec<AlertState>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!("SELECT {STATE_COLS} FROM alert_states ORDER BY rule, fingerprint"),
                &[],
            )
            .await?
            .iter()
            .map(row_to_state)
            .collect()
    }

    async fn save_evaluation(
        &self,
        states: Vec<AlertState>,
        remove: Vec<String>,
        notifications: Vec<NewNotification>,
    ) -> Result<Vec<i64>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for s in &states {
            upsert_state(&tx, s).await?;
        }
        if !remove.is_empty() {
            tx.execute(
                "DELETE FROM alert_states WHERE fingerprint = ANY($1)",
                &[&remove],
            )
            .await?;
        }
        let mut ids = Vec::with_capacity(notifications.len());
        for n in &notifications {
            let row = tx
                .query_one(
                    "INSERT INTO alert_notifications (route, group_key, fingerprint, rule, status,
                         alert, created_at, state, attempts, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0, $7) RETURNING id",
                    &[
                        &n.route,
                        &n.group_key,
                        &n.fingerprint,
                        &n.rule,
                        &n.status.as_str(),
                        &to_json(&n.alert)?,
                        &n.created_at,
                    ],
                )
                .await?;
            ids.push(row.try_get(0)?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn ack_alert(
        &self,
        fingerprint: &str,
        by: &str,
        comment: Option<&str>,
        now: i64,
    ) -> Result<AlertState> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &format!(
                    "UPDATE alert_states SET acked_by = $2, acked_at = $3, ack_comment = $4
                     WHERE fingerprint = $1 RETURNING {STATE_COLS}"
                ),
                &[&fingerprint, &by, &now, &comment],
            )
            .await?
            .map(|r| row_to_state(&r))
            .transpose()?
            .ok_or_else(|| alert_not_found(fingerprint))
    }

    async fn add_silence(&self, s: NewSilence, now: i64) -> Result<Silence> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO alert_silences (matchers, starts_at, ends_at, author, comment,
                         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SILENCE_COLS}"
                ),
                &[
                    &to_json(&s.matchers)?,
                    &s.starts_at,
                    &s.ends_at,
                    &s.author,
                    &s.comment,
                    &now,
                ],
            )
            .await?;
        row_to_silence(&row)
    }

    async fn silences(&self) -> Result<Vec<Silence>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!("SELECT {SILENCE_COLS} FROM alert_silences ORDER BY id DESC"),
                &[],
            )
            .await?
            .iter()
            .map(row_to_silence)
            .collect()
    }

    async fn expire_silence(&self, id: i64, now: i64) -> Result<Silence> {
        let client = self.pool.get().await?;
        get_silence(&client, id).await?;
        client
            .execute(
                "UPDATE alert_silences SET ends_at = $2 WHERE id = $1 AND ends_at > $2",
                &[&id, &now],
            )
            .await?;
        get_silence(&client, id).await
    }

    async fn notification_queue(&self, now: i64, limit: usize) -> Result<Vec<Notification>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLS} FROM alert_notifications
                     WHERE state = 'queued' OR (state = 'sending' AND lease_until < $1)
                     ORDER BY id LIMIT $2"
                ),
                &[&now, &sql_limit(limit)],
            )
            .await?
            .iter()
            .map(row_to_notification)
            .collect()
    }

    async fn group_flushes(&self) -> Result<Vec<GroupFlush>> {
        let client = self.pool.get().await?;
        client
            .query(
                "SELECT route, group_key, last_flush_at FROM alert_groups
                 ORDER BY route, group_key",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(GroupFlush {
                    route: r.try_get(0)?,
                    group_key: r.try_get(1)?,
                    at: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn claim_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<i64>> {
        let client = self.pool.get().await?;
        let mut got: Vec<i64> = client
            .query(
                "UPDATE alert_notifications SET state = 'sending', owner = $2, lease_until = $4
                 WHERE id = ANY($1)
                   AND (state = 'queued' OR (state = 'sending' AND lease_until < $3))
                 RETURNING id",
                &[&ids, &owner, &now, &lease_until],
            )
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<_>>()?;
        got.sort_unstable();
        Ok(got)
    }

    async fn settle_notifications(
        &self,
        ids: Vec<i64>,
        owner: &str,
        how: Settle,
        attempt: NewDeliveryAttempt,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let held = "id = ANY($1) AND state = 'sending' AND owner = $2";
        match &how {
            Settle::Delivered { at } => {
                tx.execute(
                    &format!(
                        "UPDATE alert_notifications SET state = 'delivered',
                             attempts = attempts + 1, settled_at = $3, owner = NULL,
                             lease_until = NULL WHERE {held}"
                    ),
                    &[&ids, &owner, at],
                )
                .await?;
                tx.execute(
                    "INSERT INTO alert_groups (route, group_key, last_flush_at) VALUES ($1, $2, $3)
                     ON CONFLICT (route, group_key)
                     DO UPDATE SET last_flush_at = excluded.last_flush_at",
                    &[&attempt.route, &attempt.group_key, at],
                )
                .await?;
            }
            Settle::Retry { next_at, error } => {
                tx.execute(
                    &format!(
                        "UPDATE alert_notifications SET state = 'queued', attempts = attempts + 1,
                             next_attempt_at = $3, last_error = $4, owner = NULL,
                             lease_until = NULL WHERE {held}"
                    ),
                    &[&ids, &owner, next_at, error],
                )
                .await?;
            }
            Settle::Failed { at, error } => {
                tx.execute(
                    &format!(
                        "UPDATE alert_notifications SET state = 'failed', attempts = attempts + 1,
                             settled_at = $3, last_error = $4, owner = NULL, lease_until = NULL
                         WHERE {held}"
                    ),
                    &[&ids, &owner, at, error],
                )
                .await?;
            }
        }
        insert_attempt(&tx, &attempt).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_delivery(&self, attempt: NewDeliveryAttempt) -> Result<()> {
        let client = self.pool.get().await?;
        insert_attempt(&client, &attempt).await
    }

    async fn deliveries(
        &self,
        since: Option<i64>,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!(
                    "SELECT {DELIVERY_COLS} FROM alert_deliveries
                     WHERE ($1::bigint IS NULL OR at >= $1) AND ($2::text IS NULL OR route = $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&since, &route, &sql_limit(limit)],
            )
            .await?
            .iter()
            .map(row_to_delivery)
            .collect()
    }

    async fn notifications(&self, limit: usize) -> Result<Vec<Notification>> {
        let client = self.pool.get().await?;
        client
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLS} FROM alert_notifications ORDER BY id DESC LIMIT $1"
                ),
                &[&sql_limit(limit)],
            )
            .await?
            .iter()
            .map(row_to_notification)
            .collect()
    }

    async fn job_signals(&self, since: i64, now: i64) -> Result<JobSignals> {
        let client = self.pool.get().await?;
        let jobs = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'succeeded' AND finished_at >= $1),
                        count(*) FILTER (WHERE started_at >= $1),
                        coalesce(sum(greatest(started_at - run_at, 0))
                                 FILTER (WHERE started_at >= $1), 0)::bigint
                 FROM jobs",
                &[&since],
            )
            .await?;
        let waiting = client
            .query_one(
                "SELECT count(*), min(run_at) FILTER (WHERE run_at <= $1) FROM jobs
                 WHERE state IN ('pending', 'failed')",
                &[&now],
            )
            .await?;
        let unsigned = |n: i64| n.max(0) as u64;
        Ok(JobSignals {
            queued: unsigned(waiting.try_get(0)?),
            succeeded: unsigned(jobs.try_get(0)?),
            quarantined: count_since(
                &client,
                "SELECT count(*) FROM quarantine WHERE quarantined_at >= $1",
                since,
            )
            .await?,
            failed_attempts: count_since(
                &client,
                "SELECT count(*) FROM job_errors WHERE finished_at >= $1",
                since,
            )
            .await?,
            started: unsigned(jobs.try_get(1)?),
            wait_ms_sum: jobs.try_get(2)?,
            oldest_due_at: waiting.try_get(1)?,
        })
    }

    async fn prune_alert_history(&self, before: i64) -> Result<u64> {
        let client = self.pool.get().await?;
        let mut n = client
            .execute(
                "DELETE FROM alert_notifications
                 WHERE state IN ('delivered', 'failed') AND settled_at < $1",
                &[&before],
            )
            .await?;
        n += client
            .execute("DELETE FROM alert_deliveries WHERE at < $1", &[&before])
            .await?;
        n += client
            .execute("DELETE FROM alert_silences WHERE ends_at < $1", &[&before])
            .await?;
        Ok(n)
    }
}
