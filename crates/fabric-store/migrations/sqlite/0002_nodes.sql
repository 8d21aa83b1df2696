-- Fabric schema v2 (SQLite): the fleet's nodes and named leases (the maintenance leader).
CREATE TABLE nodes (
    id           TEXT    PRIMARY KEY,
    shard        TEXT    NOT NULL,
    capacity     INTEGER NOT NULL,
    specialties  TEXT    NOT NULL DEFAULT '[]',
    health       TEXT    NOT NULL DEFAULT 'healthy',
    draining     INTEGER NOT NULL DEFAULT 0,
    load         INTEGER NOT NULL DEFAULT 0,
    heartbeat_at INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    stopped_at   INTEGER,
    host         TEXT    NOT NULL DEFAULT '',
    pid          INTEGER NOT NULL DEFAULT 0,
    version      TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
