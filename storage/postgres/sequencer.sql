-- The sequencer of the PostgreSQL event log (see the events table in schema.sql): it gives
-- committed events their global number seq, 1, 2, 3 ... Any server may run it; an advisory lock
-- makes one pass at a time. Writers never touch event_head, so they commit in parallel.

-- name: any_unnumbered
SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL) AS found;

-- name: sequencer_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: number_events
-- Unnumbered events in the order they were written, up to (not including) the first whose
-- transaction is not yet below every running transaction (pg_snapshot_xmin): an event written
-- earlier may still be committing, and numbering past it could put two changes of one task out of
-- order. Events of transactions still running are invisible here; they get their numbers later.
WITH pending AS (
    SELECT pos, xid < pg_snapshot_xmin(pg_current_snapshot()) AS settled
    FROM events WHERE seq IS NULL ORDER BY pos LIMIT %(limit)s
), upto AS (
    SELECT COALESCE(MIN(pos) FILTER (WHERE NOT settled), 9223372036854775807) AS stop FROM pending
), numbered AS (
    SELECT pos, row_number() OVER (ORDER BY pos) AS rn FROM pending WHERE pos < (SELECT stop FROM upto)
)
UPDATE events e SET seq = (SELECT seq FROM event_head) + numbered.rn
FROM numbered WHERE e.pos = numbered.pos
RETURNING e.seq;

-- name: advance_head
UPDATE event_head SET seq = seq + %(n)s RETURNING seq;

-- name: announce
-- Tell every server's followers that numbered events are waiting (delivered at commit).
SELECT pg_notify('mcp_tasks', 'numbered');

-- name: listen
LISTEN mcp_tasks;

-- name: now
SELECT extract(epoch FROM now())::float8 AS t;
