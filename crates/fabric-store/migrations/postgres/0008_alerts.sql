-- Fabric schema v8 (PostgreSQL): alerting. The evaluation state of each alert (rule + labels),
-- silences, the durable notification queue with each group's last flush, and the history of
-- every delivery attempt.
CREATE TABLE alert_states (
    fingerprint      TEXT    PRIMARY KEY,
    rule             TEXT    NOT NULL,
    labels           TEXT    NOT NULL,
    metric           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    breaches         BIGINT  NOT NULL,
    since            BIGINT  NOT NULL,
    last_value       DOUBLE PRECISION NOT NULL,
    last_at          BIGINT  NOT NULL,
    notified_firing  BOOLEAN NOT NULL,
    notified_routes  TEXT    NOT NULL,
    last_notified_at BIGINT,
    acked_by         TEXT,
    acked_at         BIGINT,
    ack_comment      TEXT
);

CREATE TABLE alert_silences (
    id         BIGSERIAL PRIMARY KEY,
    matchers   TEXT    NOT NULL,
    starts_at  BIGINT  NOT NULL,
    ends_at    BIGINT  NOT NULL,
    author     TEXT    NOT NULL,
    comment    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE alert_notifications (
    id              BIGSERIAL PRIMARY KEY,
    route           TEXT    NOT NULL,
    group_key       TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    alert           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    owner           TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    settled_at      BIGINT
);
-- The delivery worker's queue: what is waiting or claimed.
CREATE INDEX alert_notifications_open ON alert_notifications (id)
    WHERE state IN ('queued', 'sending');
CREATE INDEX alert_notifications_settled ON alert_notifications (settled_at)
    WHERE settled_at IS NOT NULL;

CREATE TABLE alert_groups (
    route         TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    last_flush_at BIGINT  NOT NULL,
    PRIMARY KEY (route, group_key)
);

CREATE TABLE alert_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    at            BIGINT  NOT NULL,
    route         TEXT    NOT NULL,
    group_key     TEXT    NOT NULL,
    notifications TEXT    NOT NULL,
    summary       TEXT    NOT NULL,
    attempt       BIGINT  NOT NULL,
    outcome       TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    duration_ms   BIGINT  NOT NULL
);
CREATE INDEX alert_deliveries_at ON alert_deliveries (at);
