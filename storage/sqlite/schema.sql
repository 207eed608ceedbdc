-- The current schema, applied whole to a new database (all migrations are then recorded as applied).
-- tests/test_migrations.py proves it equals the result of applying migrations/ in order.

CREATE TABLE tasks (
    num                  INTEGER PRIMARY KEY,       -- insertion order; tie-break after created_at
    id                   TEXT    NOT NULL UNIQUE,
    title                TEXT    NOT NULL,
    description          TEXT    NOT NULL DEFAULT '',
    type                 TEXT    NOT NULL,
    priority             INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 10),
    tags                 TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    state                TEXT    NOT NULL CHECK (state IN ('BACKLOG', 'PENDING', 'ASSIGNED', 'ACTIVE',
                                 'PAUSED', 'REVIEW', 'APPROVED', 'DONE', 'FAILED', 'CANCELLED')),
    assignee             TEXT,
    created_at           REAL    NOT NULL,
    assigned_at          REAL,
    started_at           REAL,
    completed_at         REAL,
    retry_count          INTEGER NOT NULL DEFAULT 0,
    max_retries          INTEGER NOT NULL DEFAULT 3,
    error_log            TEXT    NOT NULL DEFAULT '[]',   -- JSON array
    checkpoint_data      TEXT,                            -- JSON
    checkpoint_note      TEXT,
    progress             INTEGER,
    checkpoint_timestamp REAL,
    cycle_time           REAL,
    wait_time            REAL,
    work_time            REAL,
    result               TEXT,                            -- JSON
    artifacts            TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    version              INTEGER NOT NULL,
    schema_version       INTEGER NOT NULL,
    created_by           TEXT    NOT NULL,
    requires_review      INTEGER NOT NULL DEFAULT 0,
    reviewer             TEXT,
    lease_hash           TEXT,
    lease_expires_at     REAL,
    lease_seconds        REAL,
    not_before           REAL,
    unmet_deps           INTEGER NOT NULL DEFAULT 0 CHECK (unmet_deps >= 0),
    usage_tokens         INTEGER NOT NULL DEFAULT 0,
    usage_api_calls      INTEGER NOT NULL DEFAULT 0,
    usage_cost           REAL    NOT NULL DEFAULT 0,
    updated_at           REAL    NOT NULL,
    lease_end            TEXT                             -- how the latest lease ended; NULL while it holds
);

-- Ready work in claim order; blocked tasks are not in this index at all.
CREATE INDEX tasks_ready ON tasks (priority DESC, created_at, num)
    WHERE state = 'PENDING' AND unmet_deps = 0;
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
) WITHOUT ROWID;
CREATE INDEX deps_reverse ON deps (depends_on, task_id);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,   -- global, monotonic, never reused
    task_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    actor      TEXT NOT NULL,
    at         REAL NOT NULL,
    data       TEXT NOT NULL DEFAULT '{}'           -- JSON object; data.set = fields assigned
);
CREATE INDEX events_task ON events (task_id, seq);
CREATE INDEX events_type ON events (type, actor);
CREATE INDEX events_actor ON events (actor, seq);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TABLE requests (
    client     TEXT NOT NULL,     -- who asked: a connection, process or token, never just a name
    request_id TEXT NOT NULL,
    actor      TEXT NOT NULL,
    op         TEXT NOT NULL,
    args_hash  TEXT NOT NULL,
    response   TEXT NOT NULL,     -- JSON of the first answer, returned again on replay
    at         REAL NOT NULL,
    PRIMARY KEY (client, request_id)
) WITHOUT ROWID;
CREATE INDEX requests_at ON requests (at);

-- Only a token's SHA-256 is stored, never the token. A name is a token's identity (the agent
-- name of every call made with it); a revoked or expired name may be given a new token.
CREATE TABLE tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'agent', 'planner', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    revoked_by   TEXT,
    last_used_at REAL
) WITHOUT ROWID;

-- Who created or revoked which token name, and when (append-only, never the secret).
CREATE TABLE token_events (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT NOT NULL,
    type  TEXT NOT NULL CHECK (type IN ('created', 'revoked')),
    actor TEXT NOT NULL,
    at    REAL NOT NULL,
    data  TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER token_events_no_update BEFORE UPDATE ON token_events
BEGIN SELECT RAISE(ABORT, 'token_events are append-only'); END;
CREATE TRIGGER token_events_no_delete BEFORE DELETE ON token_events
BEGIN SELECT RAISE(ABORT, 'token_events are append-only'); END;

-- Aggregates for stats, metrics://summary, /metrics and the board, kept by the triggers below in
-- the transaction of every change, so reading them costs a few hundred rows at any size.
-- Tasks by type, assignee ('' for none) and state: how many, how many of them no dependency holds
-- back (unmet_deps = 0), their retries, and the usage they reported (cost in millionths, rounded
-- per task, so that sums are exact).
CREATE TABLE task_totals (
    type        TEXT    NOT NULL,
    assignee    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    tasks       INTEGER NOT NULL,
    unblocked   INTEGER NOT NULL,
    retries     INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    api_calls   INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL,
    PRIMARY KEY (type, assignee, state)
) WITHOUT ROWID;

-- DONE tasks' cycle and work times per type and per agent ('' for none), counted in log-scale
-- buckets: bucket b holds times from 1.05^b up to 1.05^(b+1) seconds (mcp_tasks/aggregates.py).
CREATE TABLE time_histogram (
    dimension TEXT    NOT NULL CHECK (dimension IN ('type', 'agent')),
    name      TEXT    NOT NULL,
    measure   TEXT    NOT NULL CHECK (measure IN ('cycle', 'work')),
    bucket    INTEGER NOT NULL,
    tasks     INTEGER NOT NULL,
    PRIMARY KEY (dimension, name, measure, bucket)
) WITHOUT ROWID;

-- Events by type and the states they moved between ('' for none); for failures, lease expiries
-- and retries also by actor and by holder (data.holder), '' for every other type.
CREATE TABLE event_totals (
    type       TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    holder     TEXT    NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (type, from_state, to_state, actor, holder)
) WITHOUT ROWID;

CREATE TRIGGER task_totals_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_totals (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
    VALUES (NEW.type, coalesce(NEW.assignee, ''), NEW.state, 1, NEW.unmet_deps = 0, NEW.retry_count,
            NEW.usage_tokens, NEW.usage_api_calls, CAST(floor(NEW.usage_cost * 1000000 + 0.5) AS INTEGER))
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks, unblocked = unblocked + excluded.unblocked,
        retries = retries + excluded.retries,
        tokens = tokens + excluded.tokens, api_calls = api_calls + excluded.api_calls,
        cost_micros = cost_micros + excluded.cost_micros;
    INSERT INTO time_histogram (dimension, name, measure, bucket, tasks)
    SELECT d.dimension, d.name, m.measure, CAST(floor(ln(max(m.t, 0.001)) / ln(1.05)) AS INTEGER), 1
    FROM (SELECT 'type' AS dimension, NEW.type AS name UNION ALL SELECT 'agent', coalesce(NEW.assignee, '')) d,
         (SELECT 'cycle' AS measure, NEW.cycle_time AS t UNION ALL SELECT 'work', NEW.work_time) m
    WHERE NEW.state = 'DONE' AND typeof(m.t) IN ('integer', 'real')
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks;
END;

-- Only the changes that move a task between groups or change what it adds (not checkpoints).
CREATE TRIGGER task_totals_update AFTER UPDATE ON tasks
WHEN OLD.state IS NOT NEW.state OR OLD.type IS NOT NEW.type OR OLD.assignee IS NOT NEW.assignee
    OR (OLD.unmet_deps = 0) IS NOT (NEW.unmet_deps = 0) OR OLD.retry_count IS NOT NEW.retry_count
    OR OLD.usage_tokens IS NOT NEW.usage_tokens
    OR OLD.usage_api_calls IS NOT NEW.usage_api_calls OR OLD.usage_cost IS NOT NEW.usage_cost
    OR OLD.cycle_time IS NOT NEW.cycle_time OR OLD.work_time IS NOT NEW.work_time
BEGIN
    INSERT INTO task_totals (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
    SELECT * FROM (
        SELECT OLD.type, coalesce(OLD.assignee, ''), OLD.state, -1, -(OLD.unmet_deps = 0), -OLD.retry_count,
               -OLD.usage_tokens, -OLD.usage_api_calls, -CAST(floor(OLD.usage_cost * 1000000 + 0.5) AS INTEGER)
        UNION ALL
        SELECT NEW.type, coalesce(NEW.assignee, ''), NEW.state, 1, NEW.unmet_deps = 0, NEW.retry_count,
               NEW.usage_tokens, NEW.usage_api_calls, CAST(floor(NEW.usage_cost * 1000000 + 0.5) AS INTEGER)
    ) WHERE true
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks, unblocked = unblocked + excluded.unblocked,
        retries = retries + excluded.retries,
        tokens = tokens + excluded.tokens, api_calls = api_calls + excluded.api_calls,
        cost_micros = cost_micros + excluded.cost_micros;
    INSERT INTO time_histogram (dimension, name, measure, bucket, tasks)
    SELECT d.dimension, d.name, m.measure, CAST(floor(ln(max(m.t, 0.001)) / ln(1.05)) AS INTEGER), d.sign
    FROM (SELECT 'type' AS dimension, OLD.type AS name, -1 AS sign, OLD.state AS state
          UNION ALL SELECT 'agent', coalesce(OLD.assignee, ''), -1, OLD.state
          UNION ALL SELECT 'type', NEW.type, 1, NEW.state
          UNION ALL SELECT 'agent', coalesce(NEW.assignee, ''), 1, NEW.state) d,
         (SELECT 'cycle' AS measure, OLD.cycle_time AS t, -1 AS sign UNION ALL SELECT 'work', OLD.work_time, -1
          UNION ALL SELECT 'cycle', NEW.cycle_time, 1 UNION ALL SELECT 'work', NEW.work_time, 1) m
    WHERE d.sign = m.sign AND d.state = 'DONE' AND typeof(m.t) IN ('integer', 'real')
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks;
END;

CREATE TRIGGER task_totals_delete AFTER DELETE ON tasks
BEGIN
    INSERT INTO task_totals (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
    VALUES (OLD.type, coalesce(OLD.assignee, ''), OLD.state, -1, -(OLD.unmet_deps = 0), -OLD.retry_count,
            -OLD.usage_tokens, -OLD.usage_api_calls, -CAST(floor(OLD.usage_cost * 1000000 + 0.5) AS INTEGER))
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks, unblocked = unblocked + excluded.unblocked,
        retries = retries + excluded.retries,
        tokens = tokens + excluded.tokens, api_calls = api_calls + excluded.api_calls,
        cost_micros = cost_micros + excluded.cost_micros;
    INSERT INTO time_histogram (dimension, name, measure, bucket, tasks)
    SELECT d.dimension, d.name, m.measure, CAST(floor(ln(max(m.t, 0.001)) / ln(1.05)) AS INTEGER), -1
    FROM (SELECT 'type' AS dimension, OLD.type AS name UNION ALL SELECT 'agent', coalesce(OLD.assignee, '')) d,
         (SELECT 'cycle' AS measure, OLD.cycle_time AS t UNION ALL SELECT 'work', OLD.work_time) m
    WHERE OLD.state = 'DONE' AND typeof(m.t) IN ('integer', 'real')
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks;
END;

CREATE TRIGGER event_totals_insert AFTER INSERT ON events
BEGIN
    INSERT INTO event_totals (type, from_state, to_state, actor, holder, events)
    SELECT NEW.type, coalesce(NEW.from_state, ''), coalesce(NEW.to_state, ''), counted.actor, counted.holder, 1
    FROM (SELECT CASE WHEN NEW.type IN ('failed', 'lease_expired', 'retried') THEN NEW.actor ELSE '' END AS actor,
                 CASE WHEN NEW.type IN ('failed', 'lease_expired', 'retried') AND json_valid(NEW.data)
                      THEN coalesce(json_extract(NEW.data, '$.holder'), '') ELSE '' END AS holder) counted
    WHERE true
    ON CONFLICT DO UPDATE SET events = events + excluded.events;
END;
