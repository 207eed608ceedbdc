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
