-- Fabric schema v1 (SQLite). Times are epoch milliseconds.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL,
    shard            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    unique_key       TEXT,
    source           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    last_error       TEXT,
    cancel_reason    TEXT,
    result           TEXT
);
-- The claim path: due pending jobs, highest priority first, then oldest.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state = 'pending';
-- Rescuer and recovery: running jobs by lease deadline.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'running';
-- no index on state alone: every transition would pay for it; counts scan the table
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE job_errors (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    failure     TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL
);
CREATE INDEX job_errors_job ON job_errors (job_id);

CREATE TABLE quarantine (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    reason         TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    failure        TEXT    NOT NULL,
    attempts       INTEGER NOT NULL,
    quarantined_at INTEGER NOT NULL,
    retries        INTEGER NOT NULL DEFAULT 0,
    notes          TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX quarantine_at ON quarantine (quarantined_at);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    reason TEXT
);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE recovery_reports (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    report TEXT    NOT NULL
);
