-- Fabric schema v2 (PostgreSQL): the fleet's nodes, named leases (the maintenance leader),
-- and a wake-up for listening daemons whenever jobs are inserted.
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

-- One notification per inserting statement (not per row); the payload names the schema so
-- daemons of other schemas on the same database ignore it.
CREATE FUNCTION fabric_jobs_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fabric_jobs', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION fabric_jobs_inserted();
