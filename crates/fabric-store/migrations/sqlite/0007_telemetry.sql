-- Fabric schema v7 (SQLite): ingestion telemetry, one sample per ingest job (or scan).
CREATE TABLE telemetry (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    job_id      INTEGER,
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT
);
CREATE INDEX telemetry_at ON telemetry (at);
