-- Fabric schema (SQLite): the outbox of messages bound for the bus. A write that changes jobs
-- while capture is on (the setting `bus.events`) adds, in its own transaction, one message per
-- lane with its lifecycle events as a JSON array (src/sqlite/outbox.rs); the leader adds
-- telemetry samples. The daemon's publisher sends messages in `id` order and deletes them
-- once the bus took them.
CREATE TABLE outbox (
    -- The message's sequence number: global, increasing, never reused (AUTOINCREMENT: an
    -- emptied table does not start again at 1).
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    lane   TEXT    NOT NULL,  -- normal | emergency | telemetry
    events INTEGER NOT NULL,  -- lifecycle events in body (0: a telemetry sample)
    body   TEXT    NOT NULL,  -- JSON: an array of events, or a sample
    at     INTEGER NOT NULL
);
