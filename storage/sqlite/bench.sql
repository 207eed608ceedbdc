-- Named queries of `mcp-tasks bench` only (mcp_tasks/harness/sqlite_bench.py); the registry never
-- runs these. The bench's raw claim loop runs the registry's own queries from queries.sql.

-- name: bench_naive_pending
-- What a store without the maintained unmet_deps counter has to do: walk every PENDING task in
-- claim order (no ready index exists without the counter, so this sorts) and check each task's
-- dependencies one query at a time (dependency_states) until enough ready ones are found.
SELECT id, title, type, priority, tags, created_at, retry_count,
       checkpoint_data IS NOT NULL AS has_checkpoint, num
FROM tasks
WHERE state = 'PENDING' AND (not_before IS NULL OR not_before <= :now)
ORDER BY priority DESC, created_at, num;

-- name: bench_history_candidates
-- Ready tasks nobody depends on: the bench gives them a finished history (claim ... complete).
SELECT * FROM tasks INDEXED BY tasks_ready
WHERE state = 'PENDING' AND unmet_deps = 0
  AND NOT EXISTS (SELECT 1 FROM deps WHERE deps.depends_on = tasks.id)
ORDER BY priority DESC, created_at, num
LIMIT :limit;

-- name: bench_count_events
SELECT COUNT(*) AS n FROM events;

-- name: bench_count_tasks
SELECT COUNT(*) AS n FROM tasks;

-- name: bench_read_log
-- The reference of the export rows: every event, in order, as the driver reads it.
SELECT * FROM events ORDER BY seq;
