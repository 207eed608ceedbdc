-- 0006: maintained aggregates (tables, triggers), filled from the tasks and events already there.

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

INSERT INTO task_totals (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
SELECT type, coalesce(assignee, ''), state, COUNT(*), SUM(unmet_deps = 0), SUM(retry_count), SUM(usage_tokens),
       SUM(usage_api_calls),
       SUM(CAST(floor(usage_cost * 1000000 + 0.5) AS INTEGER))
FROM tasks GROUP BY type, coalesce(assignee, ''), state;

INSERT INTO time_histogram (dimension, name, measure, bucket, tasks)
SELECT dimension, name, measure, CAST(floor(ln(max(t, 0.001)) / ln(1.05)) AS INTEGER) AS bucket, COUNT(*)
FROM (SELECT 'type' AS dimension, type AS name, 'cycle' AS measure, cycle_time AS t FROM tasks WHERE state = 'DONE'
      UNION ALL SELECT 'type', type, 'work', work_time FROM tasks WHERE state = 'DONE'
      UNION ALL SELECT 'agent', coalesce(assignee, ''), 'cycle', cycle_time FROM tasks WHERE state = 'DONE'
      UNION ALL SELECT 'agent', coalesce(assignee, ''), 'work', work_time FROM tasks WHERE state = 'DONE')
WHERE typeof(t) IN ('integer', 'real')
GROUP BY dimension, name, measure, bucket;

INSERT INTO event_totals (type, from_state, to_state, actor, holder, events)
SELECT type, coalesce(from_state, ''), coalesce(to_state, ''),
       CASE WHEN type IN ('failed', 'lease_expired', 'retried') THEN actor ELSE '' END AS who,
       CASE WHEN type IN ('failed', 'lease_expired', 'retried') AND json_valid(data)
            THEN coalesce(json_extract(data, '$.holder'), '') ELSE '' END AS holder,
       COUNT(*)
FROM events GROUP BY 1, 2, 3, 4, 5;
