-- Fabric schema (PostgreSQL): the outbox of messages bound for the bus. Job lifecycle events
-- are written into it by statement-level triggers on `jobs` in the transaction of the change
-- itself (so an event is never lost and never sent for a change that did not commit); the
-- triggers exist only while event capture is on (`bus.events`, see src/postgres/outbox.rs).
-- The leader's publisher sends rows in `id` order and deletes them once the bus took them.
CREATE TABLE outbox (
    id         BIGSERIAL PRIMARY KEY,  -- the message's sequence number
    lane       TEXT    NOT NULL,       -- normal | emergency | telemetry
    event      TEXT    NOT NULL,       -- job.submitted, job.started, ..., telemetry
    job_id     BIGINT,
    kind       TEXT,
    shard      TEXT,
    attempt    INTEGER,
    from_state TEXT,
    detail     TEXT,                   -- error or cancel reason; a telemetry sample's JSON
    at         BIGINT  NOT NULL
);

-- One row per inserted job (rows skipped by ON CONFLICT are not in the transition table).
CREATE FUNCTION outbox_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (lane, event, job_id, kind, shard, attempt, at)
    SELECT 'normal', 'job.submitted', n.id, n.kind, n.shard, n.attempt, n.created_at
    FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END $$;

-- One row per job whose state changed; heartbeats and other updates add nothing.
CREATE FUNCTION outbox_jobs_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (lane, event, job_id, kind, shard, attempt, from_state, detail, at)
    SELECT CASE n.state WHEN 'quarantined' THEN 'emergency' ELSE 'normal' END,
           'job.' || CASE n.state WHEN 'running' THEN 'started'
                                  WHEN 'pending' THEN 'requeued' ELSE n.state END,
           n.id, n.kind, n.shard, n.attempt, o.state,
           CASE WHEN n.state = 'cancelled' THEN left(n.cancel_reason, 500)
                WHEN n.state IN ('failed', 'quarantined') THEN left(n.last_error, 500) END,
           n.updated_at
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.state <> o.state ORDER BY n.id;
    RETURN NULL;
END $$;
