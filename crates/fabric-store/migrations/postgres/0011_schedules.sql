-- Fabric schema v11 (PostgreSQL): cron schedules. `next_due` is the one value firing moves,
-- forward only, in the transaction that enqueues the due time's job (unique key
-- 'schedule:<name>:<due>'); the row is locked while it does, so two daemons fire a due time
-- once.
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    payload       JSONB   NOT NULL,
    priority      INTEGER,
    max_attempts  INTEGER NOT NULL,
    overlap       TEXT    NOT NULL,
    catch_up      TEXT    NOT NULL,
    paused        BOOLEAN NOT NULL DEFAULT false,
    pause_reason  TEXT,
    paused_at     BIGINT,
    next_due      BIGINT,
    last_due      BIGINT,
    last_fired_at BIGINT,
    last_job_id   BIGINT,
    runs          BIGINT  NOT NULL DEFAULT 0,
    skipped       BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
