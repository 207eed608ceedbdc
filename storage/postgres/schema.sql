-- The current schema of the PostgreSQL store, applied whole to a new database (its migrations are
-- then recorded as applied); tests/test_migrations.py proves it equals migrations/ applied in order.
-- Everything lives in the store's own schema (mcp_tasks unless the URL says ?schema=NAME), set as
-- the search_path of every connection, so no other application's tables are touched.
-- Times are epoch seconds (double precision) as in the SQLite store; JSON columns are jsonb.

CREATE TABLE tasks (
    num                  BIGSERIAL PRIMARY KEY,          -- insertion order; tie-break after created_at
    id                   TEXT    NOT NULL UNIQUE,
    title                TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    type                 TEXT    NOT NULL,
    priority             INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 10),
    tags                 JSONB   NOT NULL DEFAULT '[]',   -- array of strings
    state                TEXT    NOT NULL CHECK (state IN ('BACKLOG', 'PENDING', 'ASSIGNED', 'ACTIVE',
                                 'PAUSED', 'REVIEW', 'APPROVED', 'DONE', 'FAILED', 'CANCELLED')),
    assignee             TEXT,
    created_at           DOUBLE PRECISION NOT NULL,
    assigned_at          DOUBLE PRECISION,
    started_at           DOUBLE PRECISION,
    completed_at         DOUBLE PRECISION,
    retry_count          INTEGER NOT NULL DEFAULT 0,
    max_retries          INTEGER NOT NULL DEFAULT 3,
    error_log            JSONB   NOT NULL DEFAULT '[]',
    checkpoint_data      JSONB,
    checkpoint_note      TEXT,
    progress             INTEGER,
    checkpoint_timestamp DOUBLE PRECISION,
    cycle_time           DOUBLE PRECISION,
    wait_time            DOUBLE PRECISION,
    work_time            DOUBLE PRECISION,
    result               JSONB,
    artifacts            JSONB   NOT NULL DEFAULT '[]',   -- array of strings
    version              INTEGER NOT NULL,
    schema_version       INTEGER NOT NULL,
    created_by           TEXT    NOT NULL,
    requires_review      SMALLINT NOT NULL DEFAULT 0 CHECK (requires_review IN (0, 1)),
    reviewer             TEXT,
    lease_hash           TEXT,
    lease_expires_at     DOUBLE PRECISION,
    lease_seconds        DOUBLE PRECISION,
    not_before           DOUBLE PRECISION,
    unmet_deps           INTEGER NOT NULL DEFAULT 0 CHECK (unmet_deps >= 0),
    usage_tokens         BIGINT  NOT NULL DEFAULT 0,
    usage_api_calls      BIGINT  NOT NULL DEFAULT 0,
    usage_cost           DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at           DOUBLE PRECISION NOT NULL,
    lease_end            TEXT                             -- how the latest lease ended; NULL while it holds
);

-- Ready work in claim order; blocked tasks are not in this index at all.
CREATE INDEX tasks_ready ON tasks (priority DESC, created_at, num) WHERE state = 'PENDING' AND unmet_deps = 0;
-- What the reaper scans.
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE state IN ('ASSIGNED', 'ACTIVE');
CREATE INDEX tasks_state ON tasks (state, created_at);
CREATE INDEX tasks_assignee ON tasks (assignee, state) WHERE assignee IS NOT NULL;
CREATE INDEX tasks_created ON tasks (created_at, num);
-- Retry backoffs by their end (the reaper undoes backward clock steps with it).
CREATE INDEX tasks_backoff ON tasks (not_before) WHERE state = 'PENDING' AND not_before IS NOT NULL;

CREATE TABLE deps (
    task_id    TEXT NOT NULL REFERENCES tasks (id),
    depends_on TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX deps_reverse ON deps (depends_on, task_id);

-- The event log. Writers commit in parallel, so the global number `seq` cannot be handed out as
-- they write: a number taken before commit may commit after a higher one, and a follower that
-- moved past it would miss it for good. Each event is written with its position `pos` and its
-- transaction `xid`; the sequencer (storage/postgres/sequencer.sql) later numbers committed events
-- 1, 2, 3 ... in position order, up to the first one whose transaction is not yet below every
-- running transaction, so seq is gapless, never reordered, and per task in the order of the changes.
CREATE TABLE events (
    pos        BIGSERIAL PRIMARY KEY,
    seq        BIGINT UNIQUE,                                  -- NULL until the sequencer numbers it
    xid        XID8   NOT NULL DEFAULT pg_current_xact_id(),
    task_id    TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    actor      TEXT   NOT NULL,
    at         DOUBLE PRECISION NOT NULL,
    data       JSONB  NOT NULL DEFAULT '{}'                    -- data.set = fields assigned
);
CREATE INDEX events_task ON events (task_id, pos);
CREATE INDEX events_type ON events (type, actor);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_unnumbered ON events (pos) WHERE seq IS NULL;

-- The highest seq handed out; only the sequencer (holding its advisory lock) changes it.
CREATE TABLE event_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq BIGINT  NOT NULL
);
INSERT INTO event_head (one, seq) VALUES (true, 0);

-- Append-only: the only change allowed is the sequencer giving an event its number, once.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (NEW.pos, NEW.xid, NEW.task_id, NEW.type, NEW.from_state, NEW.to_state, NEW.actor, NEW.at, NEW.data)
           IS NOT DISTINCT FROM
           (OLD.pos, OLD.xid, OLD.task_id, OLD.type, OLD.from_state, OLD.to_state, OLD.actor, OLD.at, OLD.data) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are append-only';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE requests (
    client     TEXT NOT NULL,     -- who asked: a connection, process or token, never just a name
    request_id TEXT NOT NULL,
    actor      TEXT NOT NULL,
    op         TEXT NOT NULL,
    args_hash  TEXT NOT NULL,
    response   TEXT NOT NULL,     -- JSON of the first answer, returned again on replay
    at         DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, request_id)
);
CREATE INDEX requests_at ON requests (at);

-- Only a token's SHA-256 is stored, never the token. A name is a token's identity (the agent
-- name of every call made with it); a revoked or expired name may be given a new token.
CREATE TABLE tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'agent', 'planner', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   DOUBLE PRECISION NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   DOUBLE PRECISION,
    revoked_at   DOUBLE PRECISION,
    revoked_by   TEXT,
    last_used_at DOUBLE PRECISION
);

-- Who created or revoked which token name, and when (append-only, never the secret).
CREATE TABLE token_events (
    id    BIGSERIAL PRIMARY KEY,
    name  TEXT NOT NULL,
    type  TEXT NOT NULL CHECK (type IN ('created', 'revoked')),
    actor TEXT NOT NULL,
    at    DOUBLE PRECISION NOT NULL,
    data  JSONB NOT NULL DEFAULT '{}'
);
CREATE FUNCTION token_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'token_events are append-only';
END $$;
CREATE TRIGGER token_events_no_update BEFORE UPDATE ON token_events FOR EACH ROW EXECUTE FUNCTION token_events_append_only();
CREATE TRIGGER token_events_no_delete BEFORE DELETE ON token_events FOR EACH ROW EXECUTE FUNCTION token_events_append_only();
