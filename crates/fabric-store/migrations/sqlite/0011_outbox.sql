-- Fabric schema (SQLite): the outbox of messages bound for the bus. Job lifecycle events are
-- written into it by triggers on `jobs` in the transaction of the change itself (so an event
-- is never lost and never sent for a change that did not commit); the triggers exist only
-- while event capture is on (`bus.events`, see src/sqlite/outbox.rs). The daemon's publisher
-- sends rows in `id` order and deletes them once the bus took them.
CREATE TABLE outbox (
    -- The message's sequence number: global, increasing, never reused (AUTOINCREMENT: an
    -- emptied table does not start again at 1).
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    lane       TEXT    NOT NULL,  -- normal | emergency | telemetry
    event      TEXT    NOT NULL,  -- job.submitted, job.started, ..., telemetry
    job_id     INTEGER,
    kind       TEXT,
    shard      TEXT,
    attempt    INTEGER,
    from_state TEXT,
    detail     TEXT,              -- error or cancel reason; a telemetry sample's JSON
    at         INTEGER NOT NULL
);
