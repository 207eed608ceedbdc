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

-- Aggregates for stats, metrics://summary, /metrics and the board, kept by the triggers below in
-- the transaction of every change, so reading them costs a few hundred rows at any size. Writers
-- never update a shared row (that would serialise every claim on its lock): their triggers append
-- rows to the *_deltas tables, and the sequencer's pass (sequencer.sql, fold_deltas) moves them into
-- the totals. Readers add the totals and the deltas not yet moved, in one snapshot.
-- Tasks by type, assignee ('' for none) and state: how many, how many of them no dependency holds
-- back (unmet_deps = 0), their retries, and the usage they reported (cost in millionths, rounded
-- per task, so that sums are exact).
CREATE TABLE task_totals (
    type        TEXT   NOT NULL,
    assignee    TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    tasks       BIGINT NOT NULL,
    unblocked   BIGINT NOT NULL,
    retries     BIGINT NOT NULL,
    tokens      BIGINT NOT NULL,
    api_calls   BIGINT NOT NULL,
    cost_micros BIGINT NOT NULL,
    PRIMARY KEY (type, assignee, state)
);
CREATE TABLE task_deltas (LIKE task_totals);

-- DONE tasks' cycle and work times per type and per agent ('' for none), counted in log-scale
-- buckets: bucket b holds times from 1.05^b up to 1.05^(b+1) seconds (mcp_tasks/aggregates.py).
CREATE TABLE time_histogram (
    dimension TEXT    NOT NULL CHECK (dimension IN ('type', 'agent')),
    name      TEXT    NOT NULL,
    measure   TEXT    NOT NULL CHECK (measure IN ('cycle', 'work')),
    bucket    INTEGER NOT NULL,
    tasks     BIGINT  NOT NULL,
    PRIMARY KEY (dimension, name, measure, bucket)
);
CREATE TABLE time_deltas (LIKE time_histogram);

-- Events by type and the states they moved between ('' for none); for failures, lease expiries
-- and retries also by actor and by holder (data.holder), '' for every other type.
CREATE TABLE event_totals (
    type       TEXT   NOT NULL,
    from_state TEXT   NOT NULL,
    to_state   TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    holder     TEXT   NOT NULL,
    events     BIGINT NOT NULL,
    PRIMARY KEY (type, from_state, to_state, actor, holder)
);
CREATE TABLE event_deltas (LIKE event_totals);

-- A task row's part in the aggregates: taken away (sign -1) or added (sign 1).
CREATE FUNCTION task_part(t tasks, sign INTEGER) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_deltas (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
    VALUES (t.type, coalesce(t.assignee, ''), t.state, sign, sign * (t.unmet_deps = 0)::integer, sign * t.retry_count,
            sign * t.usage_tokens, sign * t.usage_api_calls, sign * floor(t.usage_cost * 1000000 + 0.5)::bigint);
    IF t.state = 'DONE' THEN
        INSERT INTO time_deltas (dimension, name, measure, bucket, tasks)
        SELECT d.dimension, d.name, m.measure, floor(ln(greatest(m.t, 0.001)) / ln(1.05::float8))::integer, sign
        FROM (VALUES ('type', t.type), ('agent', coalesce(t.assignee, ''))) d (dimension, name),
             (VALUES ('cycle', t.cycle_time), ('work', t.work_time)) m (measure, t)
        WHERE m.t IS NOT NULL;
    END IF;
END $$;
CREATE FUNCTION tasks_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM task_part(OLD, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM task_part(NEW, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tasks_count AFTER INSERT OR DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION tasks_count();
-- Only the changes that move a task between groups or change what it adds (not checkpoints).
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks FOR EACH ROW
WHEN ((OLD.state, OLD.type, OLD.assignee, OLD.unmet_deps = 0, OLD.retry_count, OLD.usage_tokens, OLD.usage_api_calls,
       OLD.usage_cost, OLD.cycle_time, OLD.work_time) IS DISTINCT FROM
      (NEW.state, NEW.type, NEW.assignee, NEW.unmet_deps = 0, NEW.retry_count, NEW.usage_tokens, NEW.usage_api_calls,
       NEW.usage_cost, NEW.cycle_time, NEW.work_time))
EXECUTE FUNCTION tasks_count();

CREATE FUNCTION events_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_deltas (type, from_state, to_state, actor, holder, events)
    VALUES (NEW.type, coalesce(NEW.from_state, ''), coalesce(NEW.to_state, ''),
            CASE WHEN NEW.type IN ('failed', 'lease_expired', 'retried') THEN NEW.actor ELSE '' END,
            CASE WHEN NEW.type IN ('failed', 'lease_expired', 'retried') THEN coalesce(NEW.data ->> 'holder', '')
                 ELSE '' END, 1);
    RETURN NULL;
END $$;
CREATE TRIGGER events_count AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_count();
