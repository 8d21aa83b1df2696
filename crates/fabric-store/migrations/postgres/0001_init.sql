-- Fabric schema v1 (PostgreSQL). Times are epoch milliseconds.
CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT    NOT NULL,
    shard            TEXT    NOT NULL,
    payload          JSONB   NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           BIGINT  NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    unique_key       TEXT,
    source           TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    last_error       TEXT,
    cancel_reason    TEXT,
    result           JSONB
);
-- The claim path: due pending jobs, highest priority first, then oldest.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state = 'pending';
CREATE INDEX jobs_due ON jobs (run_at) WHERE state = 'pending';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_unique ON jobs (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE job_errors (
    id          BIGSERIAL PRIMARY KEY,
    job_id      BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    failure     TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL
);
CREATE INDEX job_errors_job ON job_errors (job_id);

CREATE TABLE quarantine (
    job_id         BIGINT  PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    reason         TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    failure        TEXT    NOT NULL,
    attempts       INTEGER NOT NULL,
    quarantined_at BIGINT  NOT NULL,
    retries        INTEGER NOT NULL DEFAULT 0,
    notes          JSONB   NOT NULL DEFAULT '[]'
);
CREATE INDEX quarantine_at ON quarantine (quarantined_at);

CREATE TABLE audit (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT   NOT NULL,
    action TEXT   NOT NULL,
    target TEXT   NOT NULL,
    reason TEXT
);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE recovery_reports (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    report JSONB  NOT NULL
);
