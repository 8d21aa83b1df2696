-- Fabric schema v2 (PostgreSQL): the fleet's nodes and named leases (the maintenance leader).
CREATE TABLE nodes (
    id           TEXT    PRIMARY KEY,
    shard        TEXT    NOT NULL,
    capacity     INTEGER NOT NULL,
    specialties  JSONB   NOT NULL DEFAULT '[]',
    health       TEXT    NOT NULL DEFAULT 'healthy',
    draining     BOOLEAN NOT NULL DEFAULT FALSE,
    load         INTEGER NOT NULL DEFAULT 0,
    heartbeat_at BIGINT  NOT NULL,
    started_at   BIGINT  NOT NULL,
    stopped_at   BIGINT,
    host         TEXT    NOT NULL DEFAULT '',
    pid          INTEGER NOT NULL DEFAULT 0,
    version      TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE leases (
    name        TEXT   PRIMARY KEY,
    holder      TEXT   NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

