-- Named queries of `mcp-tasks bench --postgres` only (mcp_tasks/harness/postgres_bench.py); the
-- registry never runs these. The raw claim loops run the registry's own reap, pick and
-- compare-and-set queries from queries.sql and write their events here instead: to a table whose
-- id is a plain bigserial, numbered as it is inserted (no sequencer, no commit-order cost).
-- Every bench run works in schemas of its own, created and dropped by the bench; `{name}` is
-- filled in with a quoted schema name.

-- name: bench_tables
-- The reference event log: the registry's event columns and secondary indexes, with the id taken
-- at insert (no seq to assign later, no transaction id, no trigger); and the counter row of the
-- other commit-order design (every writer updates it as its last statement).
CREATE TABLE bench_events (
    id         BIGSERIAL PRIMARY KEY,
    task_id    TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    actor      TEXT   NOT NULL,
    at         DOUBLE PRECISION NOT NULL,
    data       JSONB  NOT NULL DEFAULT '{}'
);
CREATE INDEX bench_events_task ON bench_events (task_id, id);
CREATE INDEX bench_events_type ON bench_events (type, actor);
CREATE TABLE bench_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq BIGINT  NOT NULL
);
INSERT INTO bench_head (one, seq) VALUES (true, 0);

-- name: bench_insert_event
-- The registry's insert_event, into the reference log.
INSERT INTO bench_events (task_id, type, from_state, to_state, actor, at, data)
VALUES (%(task_id)s, %(type)s, %(from_state)s, %(to_state)s, %(actor)s, %(at)s, %(data)s::jsonb)
RETURNING id;

-- name: bench_take_seq
-- The counter-row design: the writer's last statement takes the next number from one row, whose
-- lock it then holds until its commit is flushed, so writers commit one at a time.
UPDATE bench_head SET seq = seq + 1 RETURNING seq;

-- name: bench_naive_pending
-- What a store without the maintained unmet_deps counter has to do: walk every PENDING task in
-- claim order (no ready index exists without the counter, so this sorts) and check each task's
-- dependencies one query at a time (dependency_states) until enough ready ones are found.
SELECT id, title, type, priority, tags, created_at, retry_count,
       checkpoint_data IS NOT NULL AS has_checkpoint, num
FROM tasks
WHERE state = 'PENDING' AND (not_before IS NULL OR not_before <= %(now)s)
ORDER BY priority DESC, created_at, num;

-- name: bench_copy
-- A new registry schema (made by the store) filled with the rows of a populated one, {template}.
INSERT INTO tasks SELECT * FROM {template}.tasks;
INSERT INTO deps SELECT * FROM {template}.deps;
INSERT INTO events SELECT * FROM {template}.events;
UPDATE event_head SET seq = (SELECT seq FROM {template}.event_head);
SELECT setval(pg_get_serial_sequence('tasks', 'num'), (SELECT COALESCE(MAX(num), 0) + 1 FROM tasks), false);
SELECT setval(pg_get_serial_sequence('events', 'pos'), (SELECT COALESCE(MAX(pos), 0) + 1 FROM events), false);
ANALYZE tasks;
ANALYZE deps;
ANALYZE events;

-- name: bench_schemas
-- The schemas a bench run made (their names start with the run's prefix).
SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, %(prefix)s) ORDER BY nspname;

-- name: bench_drop_schema
DROP SCHEMA IF EXISTS {schema} CASCADE;

-- name: bench_server
SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync,
       current_setting('max_connections')::int AS max_connections;

-- name: bench_count_tasks
SELECT COUNT(*) AS n FROM tasks;

-- name: bench_count_events
SELECT COUNT(*) AS n FROM events;

-- name: bench_listen
LISTEN mcp_tasks_bench;

-- name: bench_notify
-- The reference of cross-server latency: a bare notification from one connection to another.
SELECT pg_notify('mcp_tasks_bench', %(payload)s);

-- name: bench_read_log
-- The reference of the export rows: every event, in order, as the driver reads it.
SELECT * FROM events ORDER BY seq;
