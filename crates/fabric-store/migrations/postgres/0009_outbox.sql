-- Fabric schema (PostgreSQL): the outbox of messages bound for the bus. While capture is on
-- (the setting `bus.events`), statement-level triggers on `jobs` add, in the transaction of
-- the change, one message per lane and statement (at most 1,000 events each) holding its
-- lifecycle events as a JSON array (kind and shard on `job.submitted` only); the leader adds
-- telemetry samples. The leader's publisher
-- sends messages in `id` order and deletes them once the bus took them.
CREATE TABLE outbox (
    id     BIGSERIAL PRIMARY KEY,  -- the message's sequence number
    lane   TEXT    NOT NULL,       -- normal | emergency | telemetry
    events INTEGER NOT NULL,       -- lifecycle events in body (0: a telemetry sample)
    body   TEXT    NOT NULL,       -- JSON: an array of events, or a sample
    at     BIGINT  NOT NULL
);

CREATE FUNCTION outbox_capturing() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM settings WHERE key = 'bus.events' AND value = 'on')
$$;

-- One message per 1,000 inserted jobs (rows skipped by ON CONFLICT are not in new_rows).
CREATE FUNCTION outbox_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT outbox_capturing() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (lane, events, body, at)
    SELECT 'normal', count(*),
           json_agg(json_build_object('event', 'job.submitted', 'job_id', id, 'kind', kind,
               'shard', shard, 'attempt', attempt, 'at', created_at) ORDER BY id)::text,
           max(created_at)
    FROM (SELECT n.*, (row_number() OVER (ORDER BY n.id) - 1) / 1000 AS chunk
          FROM new_rows n) c
    GROUP BY chunk ORDER BY chunk;
    RETURN NULL;
END $$;

-- One message per lane and 1,000 jobs whose state changed; claims (to running), heartbeats
-- and other updates add nothing.
CREATE FUNCTION outbox_jobs_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT outbox_capturing() THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (lane, events, body, at)
    SELECT lane, count(*), json_agg(ev ORDER BY id)::text, max(at)
    FROM (
        SELECT n.id, n.updated_at AS at,
               CASE n.state WHEN 'quarantined' THEN 'emergency' ELSE 'normal' END AS lane,
               json_strip_nulls(json_build_object(
                   'event', 'job.' || CASE n.state WHEN 'pending' THEN 'requeued'
                                                   ELSE n.state END,
                   'job_id', n.id, 'attempt', n.attempt, 'from', o.state,
                   'detail', CASE WHEN n.state = 'cancelled' THEN left(n.cancel_reason, 500)
                                  WHEN n.state IN ('failed', 'quarantined')
                                  THEN left(n.last_error, 500) END,
                   'at', n.updated_at)) AS ev,
               (row_number() OVER (PARTITION BY n.state = 'quarantined' ORDER BY n.id) - 1)
                   / 1000 AS chunk
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.state <> o.state AND n.state <> 'running'
    ) e
    GROUP BY lane, chunk ORDER BY min(id);
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_jobs_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_jobs_inserted();
CREATE TRIGGER outbox_jobs_moved AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_jobs_moved();
