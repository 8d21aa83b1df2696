-- Fabric schema v10 (SQLite): alerting. The evaluation state of each alert (rule + labels),
-- silences, the durable notification queue with each group's last flush, and the history of
-- every delivery attempt.
CREATE TABLE alert_states (
    fingerprint      TEXT    PRIMARY KEY,
    rule             TEXT    NOT NULL,
    labels           TEXT    NOT NULL,
    metric           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    breaches         INTEGER NOT NULL,
    since            INTEGER NOT NULL,
    last_value       REAL    NOT NULL,
    last_at          INTEGER NOT NULL,
    notified_firing  INTEGER NOT NULL,
    notified_routes  TEXT    NOT NULL,
    last_notified_at INTEGER,
    acked_by         TEXT,
    acked_at         INTEGER,
    ack_comment      TEXT
);

CREATE TABLE alert_silences (
    id         INTEGER PRIMARY KEY,
    matchers   TEXT    NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    author     TEXT    NOT NULL,
    comment    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE alert_notifications (
    id              INTEGER PRIMARY KEY,
    route           TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    alert           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    owner           TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    settled_at      INTEGER
);
-- The delivery worker's queue: what is waiting or claimed.
CREATE INDEX alert_notifications_open ON alert_notifications (id)
    WHERE state IN ('queued', 'sending');
CREATE INDEX alert_notifications_settled ON alert_notifications (settled_at)
    WHERE settled_at IS NOT NULL;

CREATE TABLE alert_groups (
    route         TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    last_flush_at INTEGER NOT NULL,
    PRIMARY KEY (route, group_key)
);

CREATE TABLE alert_deliveries (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    route         TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    notifications TEXT    NOT NULL,
    summary       TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX alert_deliveries_at ON alert_deliveries (at);
