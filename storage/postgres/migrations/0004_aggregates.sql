-- 0004: maintained aggregates (tables, triggers), filled from the tasks and events already there.
-- Creating a trigger locks its table against writers until this migration commits, so the fill
-- below counts every row written before, and the triggers every row written after.

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

INSERT INTO task_totals (type, assignee, state, tasks, unblocked, retries, tokens, api_calls, cost_micros)
SELECT type, coalesce(assignee, ''), state, COUNT(*), COUNT(*) FILTER (WHERE unmet_deps = 0), SUM(retry_count), SUM(usage_tokens),
       SUM(usage_api_calls),
       SUM(floor(usage_cost * 1000000 + 0.5)::bigint)
FROM tasks GROUP BY type, coalesce(assignee, ''), state;

INSERT INTO time_histogram (dimension, name, measure, bucket, tasks)
SELECT d.dimension, d.name, m.measure, floor(ln(greatest(m.t, 0.001)) / ln(1.05::float8))::integer AS bucket, COUNT(*)
FROM tasks,
     LATERAL (VALUES ('type', type), ('agent', coalesce(assignee, ''))) d (dimension, name),
     LATERAL (VALUES ('cycle', cycle_time), ('work', work_time)) m (measure, t)
WHERE state = 'DONE' AND m.t IS NOT NULL
GROUP BY 1, 2, 3, 4;

INSERT INTO event_totals (type, from_state, to_state, actor, holder, events)
SELECT type, coalesce(from_state, ''), coalesce(to_state, ''),
       CASE WHEN type IN ('failed', 'lease_expired', 'retried') THEN actor ELSE '' END,
       CASE WHEN type IN ('failed', 'lease_expired', 'retried') THEN coalesce(data ->> 'holder', '') ELSE '' END,
       COUNT(*)
FROM events GROUP BY 1, 2, 3, 4, 5;
