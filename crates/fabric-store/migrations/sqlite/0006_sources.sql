-- Fabric schema v6 (SQLite): ingestion sources. The definition (JSON of fabric_core's
-- SourceDef) is also kept in the home's config/sources.yaml, so it outlives this file; the
-- runtime state (paused, scans) lives only here.
CREATE TABLE sources (
    name         TEXT    PRIMARY KEY,
    def          TEXT    NOT NULL,
    paused       INTEGER NOT NULL DEFAULT 0,
    pause_reason TEXT,
    paused_at    INTEGER,
    last_scan_at INTEGER,
    last_outcome TEXT,
    next_run_at  INTEGER,
    files        INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
