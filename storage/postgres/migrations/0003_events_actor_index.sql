-- 0003: the board lists an agent's events, newest first, without scanning the log.
CREATE INDEX events_actor ON events (actor, seq);
