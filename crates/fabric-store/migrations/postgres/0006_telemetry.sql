-- Fabric schema v6 (PostgreSQL): ingestion telemetry, one sample per ingest job (or scan).
CREATE TABLE telemetry (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    source      TEXT   NOT NULL,
    job_id      BIGINT,
    files       BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome     TEXT   NOT NULL,
    reason      TEXT
);
CREATE INDEX telemetry_at ON telemetry (at);
