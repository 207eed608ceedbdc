-- 0002: metrics count failures, expiries and retries by event type without scanning the log.
CREATE INDEX events_type ON events (type, actor);
