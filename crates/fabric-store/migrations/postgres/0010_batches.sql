-- Fabric schema v10 (PostgreSQL): batches (the forge's write-ahead log: every item is written
-- in one transaction before any runs) and the dependencies between their items. An item
-- waits in state 'waiting' with the count of dependencies still to succeed; the completion
-- that succeeds its last dependency moves it to 'pending' in the same statement.
CREATE TABLE batches (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT,
    state           TEXT    NOT NULL,
    items           BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    on_complete     JSONB,
    callback_job_id BIGINT,
    cancel_reason   TEXT,
    generation      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batches_open ON batches (id) WHERE state = 'running';
ALTER TABLE jobs ADD COLUMN batch_id BIGINT;
ALTER TABLE jobs ADD COLUMN batch_key TEXT;
ALTER TABLE jobs ADD COLUMN deps_remaining INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE job_deps (
    depends_on BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    job_id     BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX job_deps_job ON job_deps (job_id);
