-- Fabric schema v5 (PostgreSQL): ingestion sources. The definition (JSON of fabric_core's
-- SourceDef) is also kept in the home's config/sources.yaml; the runtime state (paused,
-- scans) lives only here; a source's documents are counted from the documents table.
CREATE TABLE sources (
    name         TEXT    PRIMARY KEY,
    def          TEXT    NOT NULL,
    paused       BOOLEAN NOT NULL DEFAULT false,
    pause_reason TEXT,
    paused_at    BIGINT,
    last_scan_at BIGINT,
    last_outcome TEXT,
    next_run_at  BIGINT,
    files        BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
