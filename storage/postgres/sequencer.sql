-- The sequencer of the PostgreSQL event log (see the events table in schema.sql): it gives
-- committed events their global number seq, 1, 2, 3 ... Any server may run it; an advisory lock
-- makes one pass at a time. Writers never touch event_head, so they commit in parallel.

-- name: lock_if_unnumbered
-- The sequencer's lock, taken only when some committed event has no number yet: one row when it
-- was taken, none when there is nothing to do. The numbering runs in the next statement, whose
-- snapshot is taken after the lock (READ COMMITTED), so it sees what an earlier pass numbered.
SELECT pg_advisory_xact_lock(%(key)s) AS locked
WHERE EXISTS (SELECT 1 FROM events WHERE seq IS NULL);

-- name: number_events
-- Unnumbered events in the order they were written, up to (not including) the first whose
-- transaction is not yet below every running transaction (pg_snapshot_xmin): an event written
-- earlier may still be committing, and numbering past it could put two changes of one task out of
-- order. Events of transactions still running are invisible here; they get their numbers later.
-- The same statement moves event_head past the numbers given (every part of it reads the head as
-- it was before) and, when it numbered any, tells every server's followers (delivered at commit).
WITH pending AS (
    SELECT pos, xid < pg_snapshot_xmin(pg_current_snapshot()) AS settled
    FROM events WHERE seq IS NULL ORDER BY pos LIMIT %(limit)s
), upto AS (
    SELECT COALESCE(MIN(pos) FILTER (WHERE NOT settled), 9223372036854775807) AS stop FROM pending
), numbered AS (
    SELECT pos, row_number() OVER (ORDER BY pos) AS rn FROM pending WHERE pos < (SELECT stop FROM upto)
), given AS (
    UPDATE events e SET seq = (SELECT seq FROM event_head) + numbered.rn
    FROM numbered WHERE e.pos = numbered.pos
    RETURNING e.seq
), counted AS (
    SELECT COUNT(*) AS n FROM given
), head AS (
    UPDATE event_head SET seq = seq + (SELECT n FROM counted) WHERE (SELECT n FROM counted) > 0
    RETURNING seq
)
SELECT (SELECT n FROM counted) AS n, (SELECT seq FROM head) AS head,
       CASE WHEN (SELECT n FROM counted) > 0 THEN pg_notify('mcp_tasks', 'numbered') END AS announced;

-- name: fold_deltas
-- Moves the aggregates' deltas (schema.sql) that have committed into their totals, in one
-- statement, under the sequencer's lock: only this pass ever updates a totals row, so writers never
-- wait for one. Readers see the deltas before or after the move, never both (one transaction).
WITH tasks_moved AS (
    DELETE FROM task_deltas RETURNING *
), tasks_added AS (
    INSERT INTO task_totals AS t (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
    SELECT type, assignee, state, SUM(tasks), SUM(unblocked), SUM(retries), SUM(tokens), SUM(api_calls),
           SUM(cost_micros)
    FROM tasks_moved GROUP BY type, assignee, state
    ON CONFLICT (type, assignee, state) DO UPDATE SET tasks = t.tasks + excluded.tasks,
        unblocked = t.unblocked + excluded.unblocked, retries = t.retries + excluded.retries, tokens = t.tokens + excluded.tokens,
        api_calls = t.api_calls + excluded.api_calls, cost_micros = t.cost_micros + excluded.cost_micros
), times_moved AS (
    DELETE FROM time_deltas RETURNING *
), times_added AS (
    INSERT INTO time_histogram AS h (dimension, name, measure, bucket, tasks)
    SELECT dimension, name, measure, bucket, SUM(tasks) FROM times_moved GROUP BY dimension, name, measure, bucket
    ON CONFLICT (dimension, name, measure, bucket) DO UPDATE SET tasks = h.tasks + excluded.tasks
), events_moved AS (
    DELETE FROM event_deltas RETURNING *
), events_added AS (
    INSERT INTO event_totals AS e (type, from_state, to_state, actor, holder, events)
    SELECT type, from_state, to_state, actor, holder, SUM(events) FROM events_moved
    GROUP BY type, from_state, to_state, actor, holder
    ON CONFLICT (type, from_state, to_state, actor, holder) DO UPDATE SET events = e.events + excluded.events
)
SELECT (SELECT COUNT(*) FROM tasks_moved) + (SELECT COUNT(*) FROM times_moved) + (SELECT COUNT(*) FROM events_moved)
    AS n;

-- name: listen
LISTEN mcp_tasks;

-- name: now
SELECT extract(epoch FROM now())::float8 AS t;
