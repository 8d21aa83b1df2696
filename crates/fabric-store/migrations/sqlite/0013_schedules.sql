-- Fabric schema v13 (SQLite): cron schedules. `next_due` is the one value firing moves,
-- forward only, in the transaction that enqueues the due time's job (unique key
-- 'schedule:<name>:<due>').
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    priority      INTEGER,
    max_attempts  INTEGER NOT NULL,
    overlap       TEXT    NOT NULL,
    catch_up      TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    pause_reason  TEXT,
    paused_at     INTEGER,
    next_due      INTEGER,
    last_due      INTEGER,
    last_fired_at INTEGER,
    last_job_id   INTEGER,
    runs          INTEGER NOT NULL DEFAULT 0,
    skipped       INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
