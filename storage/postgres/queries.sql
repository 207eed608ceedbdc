-- Named queries of the PostgreSQL store: the same names as storage/sqlite/queries.sql (a test holds
-- the two files to that). Parameters are %(name)s; lists are arrays; JSON travels as text and is
-- stored as jsonb (the store reads jsonb back as text). Parameters that may be NULL are cast, so
-- PostgreSQL knows their type. Reads that a write transaction decides on lock what they read.

-- name: get_task
SELECT * FROM tasks WHERE id = %(id)s;

-- name: get_task_for_update
-- A write transaction's read of a task it may change: locked until commit, so two writers never
-- both decide on the same version (the second reads what the first committed).
SELECT * FROM tasks WHERE id = %(id)s FOR UPDATE;

-- name: task_depends_on
SELECT depends_on FROM deps WHERE task_id = %(id)s ORDER BY depends_on;

-- name: dependency_states
SELECT d.depends_on AS id, t.state AS state
FROM deps d JOIN tasks t ON t.id = d.depends_on
WHERE d.task_id = %(id)s;

-- name: states_of
SELECT id, state FROM tasks WHERE id = ANY(%(ids)s::text[]);

-- name: states_of_for_share
-- The tasks a new dependency names, locked against change until commit: a dependency cannot
-- become DONE between reading its state and writing the edge (its unmet_deps would be lost).
SELECT id, state FROM tasks WHERE id = ANY(%(ids)s::text[]) ORDER BY id FOR SHARE;

-- name: depends_on_many
SELECT task_id, depends_on FROM deps WHERE task_id = ANY(%(ids)s::text[]);

-- name: dependents
SELECT task_id FROM deps WHERE depends_on = %(id)s ORDER BY task_id;

-- name: lock_dependency_graph
-- One transaction at a time adds dependency edges (until it commits), so each cycle check sees
-- the edges the others added: two concurrent edits A -> B and B -> A cannot both pass.
SELECT pg_advisory_xact_lock(5571413298880675843) AS held;

-- name: next_ready
-- The best ready task no other transaction holds: SKIP LOCKED passes over rows another claim is
-- taking at this moment, so concurrent claims never wait for or collide with each other.
SELECT * FROM tasks
WHERE state = 'PENDING' AND unmet_deps = 0
  AND (not_before IS NULL OR not_before <= %(now)s)
  AND (%(caps)s::text[] IS NULL OR type = ANY(%(caps)s::text[]))
  AND (%(tags)s::text[] IS NULL OR tags @> to_jsonb(%(tags)s::text[]))
  AND NOT (id = ANY(%(skip)s::text[]))
ORDER BY priority DESC, created_at, num
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: list_ready
SELECT id, title, type, priority, tags, created_at, retry_count,
       checkpoint_data IS NOT NULL AS has_checkpoint, num
FROM tasks
WHERE state = 'PENDING' AND unmet_deps = 0
  AND (not_before IS NULL OR not_before <= %(now)s)
  AND (%(caps)s::text[] IS NULL OR type = ANY(%(caps)s::text[]))
  AND (%(tags)s::text[] IS NULL OR tags @> to_jsonb(%(tags)s::text[]))
  AND (%(after_priority)s::integer IS NULL OR priority < %(after_priority)s::integer
       OR (priority = %(after_priority)s::integer
           AND (created_at > %(after_created)s::float8
                OR (created_at = %(after_created)s::float8 AND num > %(after_num)s::bigint))))
ORDER BY priority DESC, created_at, num
LIMIT %(limit)s;

-- name: expired_leases
SELECT * FROM tasks
WHERE state IN ('ASSIGNED', 'ACTIVE') AND lease_expires_at <= %(now)s
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: leases_from_the_future
-- Running leases that expire further ahead than their length: set by a clock that has since
-- stepped back. The reaper brings them back to at most one lease length from now.
SELECT * FROM tasks
WHERE state IN ('ASSIGNED', 'ACTIVE') AND lease_expires_at > %(now)s + %(shortest)s
  AND lease_expires_at > %(now)s + COALESCE(lease_seconds, %(default_length)s)
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: backoffs_from_the_future
-- Retry backoffs that end further ahead than the longest backoff (a backward clock step).
SELECT * FROM tasks
WHERE state = 'PENDING' AND not_before > %(now)s + %(cap)s
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: insert_task
INSERT INTO tasks (
    id, title, description, type, priority, tags, state, assignee, created_at, assigned_at,
    started_at, completed_at, retry_count, max_retries, error_log, checkpoint_data,
    checkpoint_note, progress, checkpoint_timestamp, cycle_time, wait_time, work_time, result,
    artifacts, version, schema_version, created_by, requires_review, reviewer, lease_hash,
    lease_expires_at, lease_seconds, not_before, unmet_deps, usage_tokens, usage_api_calls,
    usage_cost, updated_at, lease_end)
VALUES (
    %(id)s, %(title)s, %(description)s, %(type)s, %(priority)s, %(tags)s::jsonb, %(state)s, %(assignee)s,
    %(created_at)s, %(assigned_at)s, %(started_at)s, %(completed_at)s, %(retry_count)s, %(max_retries)s,
    %(error_log)s::jsonb, %(checkpoint_data)s::jsonb, %(checkpoint_note)s, %(progress)s,
    %(checkpoint_timestamp)s, %(cycle_time)s, %(wait_time)s, %(work_time)s, %(result)s::jsonb,
    %(artifacts)s::jsonb, %(version)s, %(schema_version)s, %(created_by)s, %(requires_review)s, %(reviewer)s,
    %(lease_hash)s, %(lease_expires_at)s, %(lease_seconds)s, %(not_before)s, %(unmet_deps)s,
    %(usage_tokens)s, %(usage_api_calls)s, %(usage_cost)s, %(updated_at)s, %(lease_end)s);

-- name: update_task
-- Compare-and-set: applies only if nobody changed the task since it was read.
UPDATE tasks SET
    title = %(title)s, description = %(description)s, type = %(type)s, priority = %(priority)s,
    tags = %(tags)s::jsonb, state = %(state)s, assignee = %(assignee)s, assigned_at = %(assigned_at)s,
    started_at = %(started_at)s, completed_at = %(completed_at)s, retry_count = %(retry_count)s,
    max_retries = %(max_retries)s, error_log = %(error_log)s::jsonb,
    checkpoint_data = %(checkpoint_data)s::jsonb, checkpoint_note = %(checkpoint_note)s,
    progress = %(progress)s, checkpoint_timestamp = %(checkpoint_timestamp)s, cycle_time = %(cycle_time)s,
    wait_time = %(wait_time)s, work_time = %(work_time)s, result = %(result)s::jsonb,
    artifacts = %(artifacts)s::jsonb, version = %(version)s, schema_version = %(schema_version)s,
    requires_review = %(requires_review)s, reviewer = %(reviewer)s, lease_hash = %(lease_hash)s,
    lease_expires_at = %(lease_expires_at)s, lease_seconds = %(lease_seconds)s, not_before = %(not_before)s,
    unmet_deps = %(unmet_deps)s, usage_tokens = %(usage_tokens)s, usage_api_calls = %(usage_api_calls)s,
    usage_cost = %(usage_cost)s, updated_at = %(updated_at)s, lease_end = %(lease_end)s
WHERE id = %(id)s AND version = %(expected_version)s AND state = %(expected_state)s;

-- name: insert_dep
INSERT INTO deps (task_id, depends_on) VALUES (%(task_id)s, %(depends_on)s);

-- name: delete_dep
DELETE FROM deps WHERE task_id = %(task_id)s AND depends_on = %(depends_on)s;

-- name: insert_event
-- seq stays NULL: the sequencer numbers the event once its transaction has committed.
INSERT INTO events (task_id, type, from_state, to_state, actor, at, data)
VALUES (%(task_id)s, %(type)s, %(from_state)s, %(to_state)s, %(actor)s, %(at)s, %(data)s::jsonb)
RETURNING pos;

-- name: events_of_task
SELECT * FROM events WHERE task_id = %(id)s AND seq > %(after)s ORDER BY seq LIMIT %(limit)s;

-- name: events_of_task_latest
SELECT * FROM (SELECT * FROM events WHERE task_id = %(id)s AND seq IS NOT NULL ORDER BY seq DESC LIMIT %(limit)s) AS e
ORDER BY seq;

-- name: events_since
SELECT * FROM events WHERE seq > %(after)s ORDER BY seq LIMIT %(limit)s;

-- name: last_seq
SELECT seq FROM event_head;

-- name: event_totals
-- Every event counted by type and the states it moved between, from the aggregates.
SELECT type, NULLIF(from_state, '') AS from_state, NULLIF(to_state, '') AS to_state, SUM(events)::bigint AS n
FROM (SELECT type, from_state, to_state, actor, holder, events FROM event_totals
      UNION ALL SELECT type, from_state, to_state, actor, holder, events FROM event_deltas) x
GROUP BY type, from_state, to_state HAVING SUM(events) > 0;

-- name: events_of_tasks
-- Every committed event of the tasks, numbered or not, in the order they were written; the
-- columns in the order verify takes them (rows.EVENT_COLUMNS).
SELECT seq, task_id, type, from_state, to_state, actor, at, data
FROM events WHERE task_id = ANY(%(ids)s::text[]) ORDER BY task_id, pos;

-- name: depends_on_of_tasks
SELECT task_id, depends_on FROM deps WHERE task_id = ANY(%(ids)s::text[]) ORDER BY task_id, depends_on;

-- name: find_tasks
SELECT * FROM tasks
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(assignee)s::text IS NULL OR assignee = %(assignee)s::text)
  AND (%(tag)s::text IS NULL OR tags ? %(tag)s::text)
  AND (%(text)s::text IS NULL OR strpos(lower(title), lower(%(text)s::text)) > 0
       OR strpos(lower(description), lower(%(text)s::text)) > 0)
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND (%(after_created)s::float8 IS NULL OR created_at < %(after_created)s::float8
       OR (created_at = %(after_created)s::float8 AND num < %(after_num)s::bigint))
ORDER BY created_at DESC, num DESC
LIMIT %(limit)s;

-- name: count_by_state
-- Tasks by state, from the aggregates (schema.sql: totals and the deltas not yet moved).
SELECT state, SUM(tasks)::bigint AS n
FROM (SELECT state, tasks FROM task_totals UNION ALL SELECT state, tasks FROM task_deltas) x
GROUP BY state HAVING SUM(tasks) > 0;

-- name: blocked_by_failed
SELECT d.task_id AS id, d.depends_on AS dep, x.state AS dep_state
FROM deps d
JOIN tasks x ON x.id = d.depends_on
JOIN tasks t ON t.id = d.task_id
WHERE x.state IN ('CANCELLED', 'FAILED') AND t.state IN ('BACKLOG', 'PENDING')
ORDER BY d.task_id, d.depends_on
LIMIT %(limit)s;

-- name: unmet_mismatches
SELECT id, unmet_deps, actual FROM (
    SELECT t.id AS id, t.unmet_deps AS unmet_deps,
           (SELECT COUNT(*) FROM deps d JOIN tasks x ON x.id = d.depends_on
            WHERE d.task_id = t.id AND x.state <> 'DONE') AS actual
    FROM tasks t) AS counted
WHERE unmet_deps <> actual;

-- name: task_ids_with_prefix
SELECT id FROM tasks WHERE id >= %(prefix)s AND id < %(prefix)s || '~' ORDER BY id LIMIT %(limit)s;

-- name: get_request
-- Locks the request's key first: a repeat that arrives while the first call still runs waits for
-- it, then finds its answer (instead of running a second time).
SELECT r.op, r.args_hash, r.response
FROM (SELECT pg_advisory_xact_lock(hashtextextended(%(client)s || chr(31) || %(request_id)s, 0))) AS locked
LEFT JOIN requests r ON r.client = %(client)s AND r.request_id = %(request_id)s
WHERE r.client IS NOT NULL;

-- name: put_request
-- A request answered again as new (a claim whose lease has ended) replaces its stored answer.
INSERT INTO requests (client, request_id, actor, op, args_hash, response, at)
VALUES (%(client)s, %(request_id)s, %(actor)s, %(op)s, %(args_hash)s, %(response)s, %(at)s)
ON CONFLICT (client, request_id) DO UPDATE SET
    actor = excluded.actor, op = excluded.op, args_hash = excluded.args_hash,
    response = excluded.response, at = excluded.at;

-- name: prune_requests
DELETE FROM requests WHERE at < %(before)s;

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

-- name: applied_migrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: table_names
SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema();

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (%(version)s, %(name)s, %(at)s);

-- name: schema_objects
-- Tables with their columns, constraints, indexes and triggers, and the functions (the triggers'
-- bodies) in the store's schema, for the migrated-equals-fresh test.
SELECT 'column' AS type, table_name || '.' || column_name AS name, table_name AS tbl_name,
       data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '') AS sql
FROM information_schema.columns WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'
UNION ALL
SELECT 'index', indexname, tablename, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'
UNION ALL
SELECT 'constraint', conname, conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
WHERE connamespace = current_schema()::regnamespace AND conrelid <> 'schema_migrations'::regclass
UNION ALL
SELECT 'trigger', tgname, tgrelid::regclass::text, pg_get_triggerdef(oid) FROM pg_trigger
WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace)
UNION ALL
SELECT 'function', proname, '', pg_get_functiondef(oid) FROM pg_proc
WHERE pronamespace = current_schema()::regnamespace
ORDER BY 1, 2;

-- name: tasks_in_state
SELECT * FROM tasks WHERE state = %(state)s ORDER BY updated_at DESC LIMIT %(limit)s;

-- name: oldest_ready
-- The oldest ready task of each priority (the first of each in the ready index that is not in a
-- retry backoff), then the oldest of those: ten short index reads, however long the queue.
SELECT MIN(oldest) AS created_at FROM generate_series(1, 10) AS p (priority), LATERAL (
    SELECT created_at AS oldest FROM tasks
    WHERE state = 'PENDING' AND unmet_deps = 0 AND priority = p.priority
      AND (not_before IS NULL OR not_before <= %(now)s)
    ORDER BY priority DESC, created_at LIMIT 1) o;

-- name: task_totals
-- Tasks by type, assignee and state: how many, retries and usage (the aggregates).
SELECT type, assignee, state, SUM(tasks)::bigint AS tasks, SUM(unblocked)::bigint AS unblocked,
       SUM(retries)::bigint AS retries, SUM(tokens)::bigint AS tokens, SUM(api_calls)::bigint AS api_calls,
       SUM(cost_micros)::bigint AS cost_micros
FROM (SELECT type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros FROM task_totals
      UNION ALL
      SELECT type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros FROM task_deltas) x
GROUP BY type, assignee, state HAVING SUM(tasks) > 0;

-- name: time_histogram
-- DONE tasks' cycle and work times by type and by agent, in log-scale buckets (the aggregates).
SELECT dimension, name, measure, bucket, SUM(tasks)::bigint AS tasks
FROM (SELECT dimension, name, measure, bucket, tasks FROM time_histogram
      UNION ALL SELECT dimension, name, measure, bucket, tasks FROM time_deltas) x
GROUP BY dimension, name, measure, bucket HAVING SUM(tasks) > 0;

-- name: failure_counts
SELECT type, actor, NULLIF(holder, '') AS holder, SUM(events)::bigint AS n
FROM (SELECT type, from_state, to_state, actor, holder, events FROM event_totals
      UNION ALL SELECT type, from_state, to_state, actor, holder, events FROM event_deltas) x
WHERE type IN ('failed', 'lease_expired', 'retried') GROUP BY type, actor, holder HAVING SUM(events) > 0;

-- name: assignees_with_prefix
SELECT DISTINCT assignee FROM tasks
WHERE assignee IS NOT NULL AND left(assignee, length(%(prefix)s)) = %(prefix)s
ORDER BY assignee LIMIT %(limit)s;

-- name: next_backoff_end
SELECT MIN(not_before) AS at FROM tasks
WHERE state = 'PENDING' AND unmet_deps = 0 AND not_before > %(now)s;

-- name: count_ready
-- PENDING tasks no dependency holds back (the aggregates), less those still in a retry backoff.
SELECT COALESCE((SELECT SUM(unblocked) FROM task_totals WHERE state = 'PENDING'), 0)
     + COALESCE((SELECT SUM(unblocked) FROM task_deltas WHERE state = 'PENDING'), 0)
     - (SELECT COUNT(*) FROM tasks
        WHERE state = 'PENDING' AND not_before IS NOT NULL AND not_before > %(now)s AND unmet_deps = 0) AS n;

-- name: ready_types
-- Ready tasks by type, counting at most :limit of them (why a filtered claim found nothing).
SELECT type, COUNT(*) AS n FROM (
    SELECT type FROM tasks
    WHERE state = 'PENDING' AND unmet_deps = 0 AND (not_before IS NULL OR not_before <= %(now)s)
    LIMIT %(limit)s) AS ready
GROUP BY type ORDER BY n DESC, type;

-- name: pending_outlook
-- What PENDING tasks that are not ready wait for: a retry backoff, dependencies still in
-- progress, or a dependency that is CANCELLED or dead-lettered (blocked for good).
SELECT
    COUNT(*) FILTER (WHERE unmet_deps = 0 AND not_before > %(now)s) AS backoff,
    COUNT(*) FILTER (WHERE unmet_deps > 0 AND NOT blocked) AS waiting,
    COUNT(*) FILTER (WHERE unmet_deps > 0 AND blocked) AS blocked
FROM (
    SELECT unmet_deps, not_before,
           EXISTS (SELECT 1 FROM deps d JOIN tasks x ON x.id = d.depends_on
                   WHERE d.task_id = t.id AND x.state IN ('CANCELLED', 'FAILED')) AS blocked
    FROM tasks t WHERE state = 'PENDING') AS pending;

-- ---------------------------------------------------------------- verification
-- What `verify` asks besides replaying every task (see the SQLite file). Numbered events only:
-- verify lets the sequencer catch up first and reports events it could not number.

-- name: tasks_page
-- Task rows in insertion order (num never fails to read, unlike a damaged id).
SELECT * FROM tasks WHERE num > %(after)s ORDER BY num LIMIT %(limit)s;

-- name: task_marks
-- Every Nth task row's num in insertion order (N = the every parameter): the bounds of slices of
-- the task rows of equal size, which verify checks in separate processes.
SELECT num FROM (SELECT num, row_number() OVER (ORDER BY num) AS r FROM tasks) AS numbered
WHERE r %% %(every)s = 0 ORDER BY num;

-- name: tasks_of_ids
SELECT * FROM tasks WHERE id = ANY(%(ids)s::text[]) ORDER BY num;

-- name: tasks_touched_after
-- The tasks of the first `limit` events after seq `after`, each once, with its highest seq among them.
SELECT task_id, MAX(seq) AS last_seq
FROM (SELECT task_id, seq FROM events WHERE seq > %(after)s::bigint ORDER BY seq LIMIT %(limit)s) AS page
GROUP BY task_id
ORDER BY task_id;

-- name: event_seq_summary
-- seq_is_key: seq still has its unique index, so it cannot repeat.
SELECT (SELECT COUNT(seq) FROM events) AS n,
       (SELECT MIN(seq) FROM events) AS first,
       (SELECT MAX(seq) FROM events) AS last,
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = 'events'::regclass AND i.indisunique AND i.indnatts = 1
                 AND a.attname = 'seq') AS seq_is_key;

-- name: event_seq_high_water
-- The highest seq ever handed out (the sequencer's head), even if those events are gone.
SELECT seq FROM event_head;

-- name: event_seq_breaks
-- Each numbered event from seq `first` on whose seq is not one more than the seq before it (`prev`
-- before the first).
SELECT prev, seq FROM (SELECT seq, LAG(seq, 1, %(prev)s::bigint) OVER (ORDER BY seq) AS prev
                       FROM events WHERE seq >= %(first)s::bigint) AS s
WHERE seq <> prev + 1
ORDER BY seq
LIMIT %(limit)s;

-- name: event_tasks_without_row
SELECT task_id, n, first_seq, last_seq FROM (
    SELECT task_id, COUNT(*) AS n, MIN(seq) AS first_seq, MAX(seq) AS last_seq
    FROM events WHERE task_id > %(after)s GROUP BY task_id) AS g
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = g.task_id)
ORDER BY task_id
LIMIT %(limit)s;

-- name: deps_without_rows
SELECT d.task_id, d.depends_on,
       EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id) AS task_has_row,
       EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.depends_on) AS dependency_has_row
FROM deps d
WHERE (d.task_id, d.depends_on) > (%(after_task)s, %(after_dep)s)
  AND (NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id)
       OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.depends_on))
ORDER BY d.task_id, d.depends_on
LIMIT %(limit)s;

-- ---------------------------------------------------------------- bearer tokens
-- name: token_create
-- A name whose token was revoked or has expired is given the new one; a live name is left alone
-- (no row changes, and the caller says so).
INSERT INTO tokens (name, role, token_hash, created_at, created_by, expires_at)
VALUES (%(name)s, %(role)s, %(token_hash)s, %(now)s, %(actor)s, %(expires_at)s)
ON CONFLICT (name) DO UPDATE SET
    role = excluded.role, token_hash = excluded.token_hash, created_at = excluded.created_at,
    created_by = excluded.created_by, expires_at = excluded.expires_at,
    revoked_at = NULL, revoked_by = NULL, last_used_at = NULL
WHERE tokens.revoked_at IS NOT NULL OR (tokens.expires_at IS NOT NULL AND tokens.expires_at <= %(now)s);

-- name: token_revoke
UPDATE tokens SET revoked_at = %(now)s, revoked_by = %(actor)s WHERE name = %(name)s AND revoked_at IS NULL;

-- name: token_by_hash
SELECT name, role, token_hash, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at
FROM tokens WHERE token_hash = %(token_hash)s;

-- name: token_list
SELECT name, role, token_hash, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at
FROM tokens ORDER BY name;

-- name: token_touch
UPDATE tokens SET last_used_at = %(at)s WHERE name = %(name)s AND (last_used_at IS NULL OR last_used_at < %(at)s);

-- name: tokens_live
SELECT count(*) AS n FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > %(now)s);

-- name: token_event_insert
INSERT INTO token_events (name, type, actor, at, data) VALUES (%(name)s, %(type)s, %(actor)s, %(at)s, %(data)s::jsonb);

-- name: token_events_latest
SELECT id, name, type, actor, at, data FROM token_events ORDER BY id DESC LIMIT %(limit)s;

-- ---- the board (mcp_tasks/overview.py)

-- name: dependents_many
SELECT task_id, depends_on FROM deps WHERE depends_on = ANY(%(ids)s::text[])
ORDER BY depends_on, task_id LIMIT %(limit)s;

-- name: count_dependents
SELECT COUNT(*) AS n FROM deps WHERE depends_on = %(id)s;

-- name: task_nodes
SELECT id, title, state FROM tasks WHERE id = ANY(%(ids)s::text[]);

-- name: count_tasks
-- find_tasks' filters, counted up to cap (a page says "more than" beyond it).
SELECT COUNT(*) AS n FROM (
    SELECT 1 FROM tasks
    WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
      AND (%(assignee)s::text IS NULL OR assignee = %(assignee)s::text)
      AND (%(tag)s::text IS NULL OR tags ? %(tag)s::text)
      AND (%(text)s::text IS NULL OR strpos(lower(title), lower(%(text)s::text)) > 0
           OR strpos(lower(description), lower(%(text)s::text)) > 0)
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
    LIMIT %(cap)s) AS matching;

-- name: events_page
SELECT * FROM events
WHERE seq < %(before)s AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
ORDER BY seq DESC LIMIT %(limit)s;

-- name: events_page_of_task
SELECT * FROM events
WHERE task_id = %(task)s AND seq < %(before)s AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s::text)
ORDER BY seq DESC LIMIT %(limit)s;

-- name: events_page_of_actor
SELECT * FROM events
WHERE actor = %(actor)s AND seq < %(before)s AND (%(type)s::text IS NULL OR type = %(type)s::text)
ORDER BY seq DESC LIMIT %(limit)s;

-- name: agent_states
-- Tasks by holder (or last holder) and state, from the aggregates.
SELECT assignee, state, SUM(tasks)::bigint AS n
FROM (SELECT assignee, state, tasks FROM task_totals UNION ALL SELECT assignee, state, tasks FROM task_deltas) x
WHERE assignee <> '' GROUP BY assignee, state HAVING SUM(tasks) > 0;

-- name: actor_last_seen
SELECT at FROM events WHERE actor = %(actor)s AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1;

-- name: recent_done_times
-- The newest finished tasks' holders and times (the agents page's percentiles).
SELECT assignee, wait_time, work_time FROM tasks
WHERE state = 'DONE' ORDER BY created_at DESC LIMIT %(limit)s;

-- name: event_time
SELECT at FROM events WHERE seq = %(seq)s;

-- name: chart_transitions
-- Events numbered after `after` up to `upto`, by time bucket, type and the states they moved between.
SELECT floor(at / %(bucket)s) * %(bucket)s AS bucket, type, from_state, to_state, COUNT(*) AS n
FROM events WHERE seq > %(after)s AND seq <= %(upto)s
GROUP BY 1, type, from_state, to_state;

-- name: chart_times
-- Wait and work times of the tasks completed in those events, by time bucket.
SELECT floor(at / %(bucket)s) * %(bucket)s AS bucket,
       (data -> 'set' ->> 'wait_time')::float8 AS wait_time, (data -> 'set' ->> 'work_time')::float8 AS work_time
FROM events WHERE seq > %(after)s AND seq <= %(upto)s AND to_state = 'DONE';

-- ---- export and import (mcp_tasks/transfer.py)

-- name: registry_size
-- What a registry holds, for an export's header and an import's check that the target is empty.
-- last_at: the time of the last event in the export's order (committed but unnumbered events
-- come after the numbered ones).
SELECT (SELECT COUNT(*) FROM tasks) AS tasks,
       (SELECT COUNT(*) FROM deps) AS deps,
       (SELECT COUNT(seq) FROM events) AS events,
       (SELECT COUNT(*) FROM events WHERE seq IS NULL) AS unnumbered,
       (SELECT COALESCE(MAX(seq), 0) FROM events) AS last_seq,
       (SELECT seq FROM event_head) AS high_water,
       COALESCE((SELECT at FROM events WHERE seq IS NULL ORDER BY pos DESC LIMIT 1),
                (SELECT at FROM events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1)) AS last_at;

-- name: tasks_by_id
SELECT * FROM tasks WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: unnumbered_events
-- Committed events the sequencer has not numbered yet, in the order it will number them.
SELECT * FROM events WHERE seq IS NULL AND pos > %(after)s ORDER BY pos LIMIT %(limit)s;

-- name: import_task
-- A task row as exported, at its place `num` in insertion order.
INSERT INTO tasks (
    num, id, title, description, type, priority, tags, state, assignee, created_at, assigned_at,
    started_at, completed_at, retry_count, max_retries, error_log, checkpoint_data,
    checkpoint_note, progress, checkpoint_timestamp, cycle_time, wait_time, work_time, result,
    artifacts, version, schema_version, created_by, requires_review, reviewer, lease_hash,
    lease_expires_at, lease_seconds, not_before, unmet_deps, usage_tokens, usage_api_calls,
    usage_cost, updated_at, lease_end)
VALUES (
    %(num)s, %(id)s, %(title)s, %(description)s, %(type)s, %(priority)s, %(tags)s::jsonb, %(state)s,
    %(assignee)s, %(created_at)s, %(assigned_at)s, %(started_at)s, %(completed_at)s, %(retry_count)s,
    %(max_retries)s, %(error_log)s::jsonb, %(checkpoint_data)s::jsonb, %(checkpoint_note)s, %(progress)s,
    %(checkpoint_timestamp)s, %(cycle_time)s, %(wait_time)s, %(work_time)s, %(result)s::jsonb,
    %(artifacts)s::jsonb, %(version)s, %(schema_version)s, %(created_by)s, %(requires_review)s,
    %(reviewer)s, %(lease_hash)s, %(lease_expires_at)s, %(lease_seconds)s, %(not_before)s,
    %(unmet_deps)s, %(usage_tokens)s, %(usage_api_calls)s, %(usage_cost)s, %(updated_at)s, %(lease_end)s);

-- name: import_place
-- An imported task moved from its placeholder to its place in insertion order.
UPDATE tasks SET num = %(num)s WHERE id = %(id)s;

-- name: import_event
-- An event as exported, keeping its seq: the sequencer leaves numbered events alone.
INSERT INTO events (seq, task_id, type, from_state, to_state, actor, at, data)
VALUES (%(seq)s, %(task_id)s, %(type)s, %(from_state)s, %(to_state)s, %(actor)s, %(at)s, %(data)s::jsonb);

-- name: import_counters
-- After an import: the sequencer numbers new events after `seq`, new tasks get a num after the
-- highest imported one.
WITH head AS (UPDATE event_head SET seq = %(seq)s RETURNING seq)
SELECT (SELECT seq FROM head) AS seq,
       setval(pg_get_serial_sequence('tasks', 'num'), COALESCE((SELECT MAX(num) FROM tasks), 1),
              (SELECT MAX(num) FROM tasks) IS NOT NULL) AS num;
