-- Named queries of the SQLite store. Each starts with "-- name: NAME"; the PostgreSQL store
-- has a file with the same names. List parameters are passed as JSON arrays.

-- name: get_task
SELECT * FROM tasks WHERE id = :id;

-- name: get_task_for_update
-- A write transaction's read of a task it may change (SQLite has one writer: nothing to lock).
SELECT * FROM tasks WHERE id = :id;

-- name: task_depends_on
SELECT depends_on FROM deps WHERE task_id = :id ORDER BY depends_on;

-- name: dependency_states
SELECT d.depends_on AS id, t.state AS state
FROM deps d JOIN tasks t ON t.id = d.depends_on
WHERE d.task_id = :id;

-- name: states_of
SELECT id, state FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- name: states_of_for_share
-- A write transaction's read of the tasks a new dependency names (SQLite: nothing to lock).
SELECT id, state FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- name: depends_on_many
SELECT task_id, depends_on FROM deps WHERE task_id IN (SELECT value FROM json_each(:ids));

-- name: dependents
SELECT task_id FROM deps WHERE depends_on = :id ORDER BY task_id;

-- name: lock_dependency_graph
-- Edges are added under the single writer's lock already: nothing more to hold.
SELECT 1 AS held;

-- name: next_ready
-- INDEXED BY: walk the ready index in claim order; blocked tasks are not in it at all. :skip
-- names damaged rows the store has already stepped over.
SELECT * FROM tasks INDEXED BY tasks_ready
WHERE state = 'PENDING' AND unmet_deps = 0
  AND (not_before IS NULL OR not_before <= :now)
  AND (:caps IS NULL OR type IN (SELECT value FROM json_each(:caps)))
  AND (:tags IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:tags) AS want
        WHERE want.value NOT IN (SELECT value FROM json_each(tasks.tags))))
  AND id NOT IN (SELECT value FROM json_each(:skip))
ORDER BY priority DESC, created_at, num
LIMIT 1;

-- name: list_ready
SELECT id, title, type, priority, tags, created_at, retry_count,
       checkpoint_data IS NOT NULL AS has_checkpoint, num
FROM tasks INDEXED BY tasks_ready
WHERE state = 'PENDING' AND unmet_deps = 0
  AND (not_before IS NULL OR not_before <= :now)
  AND (:caps IS NULL OR type IN (SELECT value FROM json_each(:caps)))
  AND (:tags IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:tags) AS want
        WHERE want.value NOT IN (SELECT value FROM json_each(tasks.tags))))
  AND (:after_priority IS NULL OR priority < :after_priority
       OR (priority = :after_priority
           AND (created_at > :after_created OR (created_at = :after_created AND num > :after_num))))
ORDER BY priority DESC, created_at, num
LIMIT :limit;

-- name: expired_leases
SELECT * FROM tasks INDEXED BY tasks_lease
WHERE state IN ('ASSIGNED', 'ACTIVE') AND lease_expires_at <= :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: leases_from_the_future
-- Running leases that expire further ahead than their length: set by a clock that has since
-- stepped back. The reaper brings them back to at most one lease length from now.
SELECT * FROM tasks INDEXED BY tasks_lease
WHERE state IN ('ASSIGNED', 'ACTIVE') AND lease_expires_at > :now + :shortest
  AND lease_expires_at > :now + COALESCE(lease_seconds, :default_length)
LIMIT :limit;

-- name: backoffs_from_the_future
-- Retry backoffs that end further ahead than the longest backoff (a backward clock step).
SELECT * FROM tasks INDEXED BY tasks_backoff
WHERE state = 'PENDING' AND not_before > :now + :cap
LIMIT :limit;

-- name: insert_task
INSERT INTO tasks (
    id, title, description, type, priority, tags, state, assignee, created_at, assigned_at,
    started_at, completed_at, retry_count, max_retries, error_log, checkpoint_data,
    checkpoint_note, progress, checkpoint_timestamp, cycle_time, wait_time, work_time, result,
    artifacts, version, schema_version, created_by, requires_review, reviewer, lease_hash,
    lease_expires_at, lease_seconds, not_before, unmet_deps, usage_tokens, usage_api_calls,
    usage_cost, updated_at, lease_end)
VALUES (
    :id, :title, :description, :type, :priority, :tags, :state, :assignee, :created_at, :assigned_at,
    :started_at, :completed_at, :retry_count, :max_retries, :error_log, :checkpoint_data,
    :checkpoint_note, :progress, :checkpoint_timestamp, :cycle_time, :wait_time, :work_time, :result,
    :artifacts, :version, :schema_version, :created_by, :requires_review, :reviewer, :lease_hash,
    :lease_expires_at, :lease_seconds, :not_before, :unmet_deps, :usage_tokens, :usage_api_calls,
    :usage_cost, :updated_at, :lease_end);

-- name: update_task
-- Compare-and-set: applies only if nobody changed the task since it was read.
UPDATE tasks SET
    title = :title, description = :description, type = :type, priority = :priority, tags = :tags,
    state = :state, assignee = :assignee, assigned_at = :assigned_at, started_at = :started_at,
    completed_at = :completed_at, retry_count = :retry_count, max_retries = :max_retries,
    error_log = :error_log, checkpoint_data = :checkpoint_data, checkpoint_note = :checkpoint_note,
    progress = :progress, checkpoint_timestamp = :checkpoint_timestamp, cycle_time = :cycle_time,
    wait_time = :wait_time, work_time = :work_time, result = :result, artifacts = :artifacts,
    version = :version, schema_version = :schema_version, requires_review = :requires_review,
    reviewer = :reviewer, lease_hash = :lease_hash, lease_expires_at = :lease_expires_at,
    lease_seconds = :lease_seconds, not_before = :not_before, unmet_deps = :unmet_deps,
    usage_tokens = :usage_tokens, usage_api_calls = :usage_api_calls, usage_cost = :usage_cost,
    updated_at = :updated_at, lease_end = :lease_end
WHERE id = :id AND version = :expected_version AND state = :expected_state;

-- name: insert_dep
INSERT INTO deps (task_id, depends_on) VALUES (:task_id, :depends_on);

-- name: delete_dep
DELETE FROM deps WHERE task_id = :task_id AND depends_on = :depends_on;

-- name: insert_event
INSERT INTO events (task_id, type, from_state, to_state, actor, at, data)
VALUES (:task_id, :type, :from_state, :to_state, :actor, :at, :data);

-- name: events_of_task
SELECT * FROM events WHERE task_id = :id AND seq > :after ORDER BY seq LIMIT :limit;

-- name: events_of_task_latest
SELECT * FROM (SELECT * FROM events WHERE task_id = :id ORDER BY seq DESC LIMIT :limit) ORDER BY seq;

-- name: events_since
SELECT * FROM events WHERE seq > :after ORDER BY seq LIMIT :limit;

-- name: last_seq
SELECT COALESCE(MAX(seq), 0) AS seq FROM events;

-- name: event_totals
-- Every event counted by type and the states it moved between, from the aggregates.
SELECT type, NULLIF(from_state, '') AS from_state, NULLIF(to_state, '') AS to_state, SUM(events) AS n
FROM event_totals GROUP BY type, from_state, to_state HAVING SUM(events) > 0;

-- name: events_of_tasks
-- The columns in the order verify takes them (rows.EVENT_COLUMNS).
SELECT seq, task_id, type, from_state, to_state, actor, at, data FROM events WHERE task_id IN (SELECT value FROM json_each(:ids)) ORDER BY task_id, seq;

-- name: depends_on_of_tasks
SELECT task_id, depends_on FROM deps WHERE task_id IN (SELECT value FROM json_each(:ids))
ORDER BY task_id, depends_on;

-- name: find_tasks
SELECT * FROM tasks
WHERE (:state IS NULL OR state = :state)
  AND (:assignee IS NULL OR assignee = :assignee)
  AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = :tag))
  AND (:text IS NULL OR instr(lower(title), lower(:text)) > 0 OR instr(lower(description), lower(:text)) > 0)
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
  AND (:after_created IS NULL OR created_at < :after_created
       OR (created_at = :after_created AND num < :after_num))
ORDER BY created_at DESC, num DESC
LIMIT :limit;

-- name: count_by_state
-- Tasks by state, from the aggregates (maintained by triggers, see schema.sql).
SELECT state, SUM(tasks) AS n FROM task_totals GROUP BY state HAVING SUM(tasks) > 0;

-- name: blocked_by_failed
SELECT d.task_id AS id, d.depends_on AS dep, x.state AS dep_state
FROM deps d
JOIN tasks x ON x.id = d.depends_on
JOIN tasks t ON t.id = d.task_id
WHERE x.state IN ('CANCELLED', 'FAILED') AND t.state IN ('BACKLOG', 'PENDING')
ORDER BY d.task_id, d.depends_on
LIMIT :limit;

-- name: unmet_mismatches
SELECT id, unmet_deps, actual FROM (
    SELECT t.id AS id, t.unmet_deps AS unmet_deps,
           (SELECT COUNT(*) FROM deps d JOIN tasks x ON x.id = d.depends_on
            WHERE d.task_id = t.id AND x.state <> 'DONE') AS actual
    FROM tasks t)
WHERE unmet_deps <> actual;

-- name: task_ids_with_prefix
SELECT id FROM tasks WHERE id >= :prefix AND id < :prefix || '~' ORDER BY id LIMIT :limit;

-- name: get_request
SELECT op, args_hash, response FROM requests WHERE client = :client AND request_id = :request_id;

-- name: put_request
-- A request answered again as new (a claim whose lease has ended) replaces its stored answer.
INSERT INTO requests (client, request_id, actor, op, args_hash, response, at)
VALUES (:client, :request_id, :actor, :op, :args_hash, :response, :at)
ON CONFLICT (client, request_id) DO UPDATE SET
    actor = excluded.actor, op = excluded.op, args_hash = excluded.args_hash,
    response = excluded.response, at = excluded.at;

-- name: prune_requests
DELETE FROM requests WHERE at < :before;

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: applied_migrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: table_names
SELECT name FROM sqlite_master WHERE type = 'table';

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :at);

-- name: schema_objects
SELECT type, name, tbl_name, sql FROM sqlite_master
WHERE name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'
ORDER BY type, name;

-- name: tasks_in_state
SELECT * FROM tasks WHERE state = :state ORDER BY updated_at DESC LIMIT :limit;

-- name: oldest_ready
-- The oldest ready task of each priority (the first of each in the ready index that is not in a
-- retry backoff), then the oldest of those: ten short index reads, however long the queue.
WITH RECURSIVE p (priority) AS (SELECT 1 UNION ALL SELECT priority + 1 FROM p WHERE priority < 10)
SELECT MIN((SELECT created_at FROM tasks INDEXED BY tasks_ready
            WHERE state = 'PENDING' AND unmet_deps = 0 AND priority = p.priority
              AND (not_before IS NULL OR not_before <= :now)
            ORDER BY priority DESC, created_at LIMIT 1)) AS created_at
FROM p;

-- name: task_totals
-- Tasks by type, assignee and state: how many, retries and usage (the aggregates).
SELECT type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros FROM task_totals
WHERE tasks > 0;

-- name: time_histogram
-- DONE tasks' cycle and work times by type and by agent, in log-scale buckets (the aggregates).
SELECT dimension, name, measure, bucket, tasks FROM time_histogram WHERE tasks > 0;

-- name: failure_counts
SELECT type, actor, NULLIF(holder, '') AS holder, SUM(events) AS n FROM event_totals
WHERE type IN ('failed', 'lease_expired', 'retried') GROUP BY type, actor, holder HAVING SUM(events) > 0;

-- name: assignees_with_prefix
SELECT DISTINCT assignee FROM tasks INDEXED BY tasks_assignee
WHERE assignee IS NOT NULL AND substr(assignee, 1, length(:prefix)) = :prefix
ORDER BY assignee LIMIT :limit;

-- name: next_backoff_end
SELECT MIN(not_before) AS at FROM tasks INDEXED BY tasks_ready
WHERE state = 'PENDING' AND unmet_deps = 0 AND not_before > :now;

-- name: count_ready
-- PENDING tasks no dependency holds back (the aggregates), less those still in a retry backoff.
SELECT COALESCE((SELECT SUM(unblocked) FROM task_totals WHERE state = 'PENDING'), 0)
     - (SELECT COUNT(*) FROM tasks INDEXED BY tasks_backoff
        WHERE state = 'PENDING' AND not_before IS NOT NULL AND not_before > :now AND unmet_deps = 0) AS n;

-- name: ready_types
-- Ready tasks by type, counting at most :limit of them (why a filtered claim found nothing).
SELECT type, COUNT(*) AS n FROM (
    SELECT type FROM tasks INDEXED BY tasks_ready
    WHERE state = 'PENDING' AND unmet_deps = 0 AND (not_before IS NULL OR not_before <= :now)
    LIMIT :limit)
GROUP BY type ORDER BY n DESC, type;

-- name: pending_outlook
-- What PENDING tasks that are not ready wait for: a retry backoff, dependencies still in
-- progress, or a dependency that is CANCELLED or dead-lettered (blocked for good).
SELECT
    COALESCE(SUM(unmet_deps = 0 AND not_before > :now), 0) AS backoff,
    COALESCE(SUM(unmet_deps > 0 AND NOT blocked), 0) AS waiting,
    COALESCE(SUM(unmet_deps > 0 AND blocked), 0) AS blocked
FROM (
    SELECT unmet_deps, not_before,
           EXISTS (SELECT 1 FROM deps d JOIN tasks x ON x.id = d.depends_on
                   WHERE d.task_id = t.id AND x.state IN ('CANCELLED', 'FAILED')) AS blocked
    FROM tasks t WHERE state = 'PENDING');

-- ---------------------------------------------------------------- verification
-- What `verify` asks besides replaying every task: each query is paged or an aggregate, so its
-- memory does not grow with the log. The PostgreSQL file has the same names.

-- name: tasks_page
-- Task rows in insertion order (num never fails to read, unlike a damaged id).
SELECT * FROM tasks WHERE num > :after ORDER BY num LIMIT :limit;

-- name: task_marks
-- Every Nth task row's num in insertion order (N = the every parameter): the bounds of slices of
-- the task rows of equal size, which verify checks in separate processes.
SELECT num FROM (SELECT num, row_number() OVER (ORDER BY num) AS r FROM tasks) AS numbered
WHERE r % :every = 0 ORDER BY num;

-- name: tasks_of_ids
SELECT * FROM tasks WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY num;

-- name: tasks_touched_after
-- The tasks of the first `limit` events after seq `after`, each once, with its highest seq among them.
SELECT task_id, MAX(seq) AS last_seq
FROM (SELECT task_id, seq FROM events WHERE seq > :after ORDER BY seq LIMIT :limit) AS page
GROUP BY task_id
ORDER BY task_id;

-- name: event_seq_summary
-- Enough to prove the sequence is exactly 1..last without reading it: separate subqueries,
-- because SQLite answers MIN and MAX of the rowid from the b-tree's ends only one at a time.
-- seq_is_key: seq is still the INTEGER PRIMARY KEY (the rowid), so it cannot repeat.
SELECT (SELECT COUNT(*) FROM events) AS n,
       (SELECT MIN(seq) FROM events) AS first,
       (SELECT MAX(seq) FROM events) AS last,
       (SELECT pk = 1 AND upper(type) = 'INTEGER' FROM pragma_table_info('events')
        WHERE name = 'seq') AS seq_is_key;

-- name: event_seq_high_water
-- The highest seq ever handed out (AUTOINCREMENT never reuses one), even if those events are gone.
SELECT seq FROM sqlite_sequence WHERE name = 'events';

-- name: event_seq_breaks
-- Each event from seq `first` on whose seq is not one more than the seq before it (`prev` before
-- the first).
SELECT prev, seq FROM (SELECT seq, LAG(seq, 1, :prev) OVER (ORDER BY seq) AS prev FROM events WHERE seq >= :first)
WHERE seq <> prev + 1
ORDER BY seq
LIMIT :limit;

-- name: event_tasks_without_row
SELECT task_id, n, first_seq, last_seq FROM (
    SELECT task_id, COUNT(*) AS n, MIN(seq) AS first_seq, MAX(seq) AS last_seq
    FROM events WHERE task_id > :after GROUP BY task_id) AS g
WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = g.task_id)
ORDER BY task_id
LIMIT :limit;

-- name: deps_without_rows
SELECT d.task_id, d.depends_on,
       EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id) AS task_has_row,
       EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.depends_on) AS dependency_has_row
FROM deps d
WHERE (d.task_id, d.depends_on) > (:after_task, :after_dep)
  AND (NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id)
       OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.depends_on))
ORDER BY d.task_id, d.depends_on
LIMIT :limit;

-- ---------------------------------------------------------------- bearer tokens
-- name: token_create
-- A name whose token was revoked or has expired is given the new one; a live name is left alone
-- (no row changes, and the caller says so).
INSERT INTO tokens (name, role, token_hash, created_at, created_by, expires_at)
VALUES (:name, :role, :token_hash, :now, :actor, :expires_at)
ON CONFLICT (name) DO UPDATE SET
    role = excluded.role, token_hash = excluded.token_hash, created_at = excluded.created_at,
    created_by = excluded.created_by, expires_at = excluded.expires_at,
    revoked_at = NULL, revoked_by = NULL, last_used_at = NULL
WHERE tokens.revoked_at IS NOT NULL OR (tokens.expires_at IS NOT NULL AND tokens.expires_at <= :now);

-- name: token_revoke
UPDATE tokens SET revoked_at = :now, revoked_by = :actor WHERE name = :name AND revoked_at IS NULL;

-- name: token_by_hash
SELECT name, role, token_hash, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at
FROM tokens WHERE token_hash = :token_hash;

-- name: token_list
SELECT name, role, token_hash, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at
FROM tokens ORDER BY name;

-- name: token_touch
UPDATE tokens SET last_used_at = :at WHERE name = :name AND (last_used_at IS NULL OR last_used_at < :at);

-- name: tokens_live
SELECT count(*) AS n FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now);

-- name: token_event_insert
INSERT INTO token_events (name, type, actor, at, data) VALUES (:name, :type, :actor, :at, :data);

-- name: token_events_latest
SELECT id, name, type, actor, at, data FROM token_events ORDER BY id DESC LIMIT :limit;

-- ---- the board (mcp_tasks/overview.py)

-- name: dependents_many
SELECT task_id, depends_on FROM deps WHERE depends_on IN (SELECT value FROM json_each(:ids))
ORDER BY depends_on, task_id LIMIT :limit;

-- name: count_dependents
SELECT COUNT(*) AS n FROM deps WHERE depends_on = :id;

-- name: task_nodes
SELECT id, title, state FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- name: count_tasks
-- find_tasks' filters, counted up to :cap (a page says "more than" beyond it).
SELECT COUNT(*) AS n FROM (
    SELECT 1 FROM tasks
    WHERE (:state IS NULL OR state = :state)
      AND (:assignee IS NULL OR assignee = :assignee)
      AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE value = :tag))
      AND (:text IS NULL OR instr(lower(title), lower(:text)) > 0 OR instr(lower(description), lower(:text)) > 0)
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
    LIMIT :cap);

-- name: events_page
SELECT * FROM events
WHERE seq < :before AND (:type IS NULL OR type = :type) AND (:actor IS NULL OR actor = :actor)
ORDER BY seq DESC LIMIT :limit;

-- name: events_page_of_task
SELECT * FROM events
WHERE task_id = :task AND seq < :before AND (:type IS NULL OR type = :type) AND (:actor IS NULL OR actor = :actor)
ORDER BY seq DESC LIMIT :limit;

-- name: events_page_of_actor
SELECT * FROM events INDEXED BY events_actor
WHERE actor = :actor AND seq < :before AND (:type IS NULL OR type = :type)
ORDER BY seq DESC LIMIT :limit;

-- name: agent_states
-- Tasks by holder (or last holder) and state, from the aggregates.
SELECT assignee, state, SUM(tasks) AS n FROM task_totals WHERE assignee <> ''
GROUP BY assignee, state HAVING SUM(tasks) > 0;

-- name: actor_last_seen
SELECT at FROM events INDEXED BY events_actor WHERE actor = :actor ORDER BY seq DESC LIMIT 1;

-- name: recent_done_times
-- The newest :limit finished tasks' holders and times (the agents page's percentiles).
SELECT assignee, wait_time, work_time FROM tasks INDEXED BY tasks_state
WHERE state = 'DONE' ORDER BY created_at DESC LIMIT :limit;

-- name: event_time
SELECT at FROM events WHERE seq = :seq;

-- name: chart_transitions
-- Events numbered after :after up to :upto, by time bucket, type and the states they moved between.
SELECT CAST(at / :bucket AS INTEGER) * :bucket AS bucket, type, from_state, to_state, COUNT(*) AS n
FROM events WHERE seq > :after AND seq <= :upto
GROUP BY 1, type, from_state, to_state;

-- name: chart_times
-- Wait and work times of the tasks completed in those events, by time bucket.
SELECT CAST(at / :bucket AS INTEGER) * :bucket AS bucket,
       json_extract(data, '$.set.wait_time') AS wait_time, json_extract(data, '$.set.work_time') AS work_time
FROM events WHERE seq > :after AND seq <= :upto AND to_state = 'DONE';

-- ---- export and import (mcp_tasks/transfer.py)

-- name: registry_size
-- What a registry holds, for an export's header and an import's check that the target is empty.
-- SQLite numbers every event as it is written, so none is ever unnumbered.
SELECT (SELECT COUNT(*) FROM tasks) AS tasks,
       (SELECT COUNT(*) FROM deps) AS deps,
       (SELECT COUNT(*) FROM events) AS events,
       0 AS unnumbered,
       (SELECT COALESCE(MAX(seq), 0) FROM events) AS last_seq,
       COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) AS high_water,
       (SELECT at FROM events ORDER BY seq DESC LIMIT 1) AS last_at;

-- name: tasks_by_id
SELECT * FROM tasks WHERE id > :after ORDER BY id LIMIT :limit;

-- name: unnumbered_events
-- Committed events without a seq yet, by position: never any on SQLite (seq is the rowid).
SELECT seq AS pos, * FROM events WHERE seq IS NULL AND seq > :after ORDER BY seq LIMIT :limit;

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
    :num, :id, :title, :description, :type, :priority, :tags, :state, :assignee, :created_at, :assigned_at,
    :started_at, :completed_at, :retry_count, :max_retries, :error_log, :checkpoint_data,
    :checkpoint_note, :progress, :checkpoint_timestamp, :cycle_time, :wait_time, :work_time, :result,
    :artifacts, :version, :schema_version, :created_by, :requires_review, :reviewer, :lease_hash,
    :lease_expires_at, :lease_seconds, :not_before, :unmet_deps, :usage_tokens, :usage_api_calls,
    :usage_cost, :updated_at, :lease_end);

-- name: import_place
-- An imported task moved from its placeholder to its place in insertion order.
UPDATE tasks SET num = :num WHERE id = :id;

-- name: import_event
-- An event as exported, keeping its seq (AUTOINCREMENT's high-water mark follows it).
INSERT INTO events (seq, task_id, type, from_state, to_state, actor, at, data)
VALUES (:seq, :task_id, :type, :from_state, :to_state, :actor, :at, :data);

-- name: import_counters
-- After an import: new events are numbered after `seq` (sqlite_sequence already follows the
-- explicit seqs; this only makes sure), new tasks after the highest num (the rowid does that).
UPDATE sqlite_sequence SET seq = :seq WHERE name = 'events' AND seq < :seq;
