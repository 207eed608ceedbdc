-- 0003: leases are remembered after they end, and stored answers are scoped to the client.
-- A task keeps its latest lease_hash until the next claim; lease_end says how that lease ended
-- (NULL while it holds), so a repeated complete/fail/release by the same lease answers as the
-- first one did, and a late call by an ended lease hears how it ended.
ALTER TABLE tasks ADD COLUMN lease_end TEXT;

-- Stored answers are keyed by the client that asked (its connection, process or token), not by
-- the agent name, which several clients may share. Answers stored before this version were keyed
-- by agent name; they keep that name as their client.
CREATE TABLE requests_new (
    client     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    actor      TEXT NOT NULL,
    op         TEXT NOT NULL,
    args_hash  TEXT NOT NULL,
    response   TEXT NOT NULL,
    at         REAL NOT NULL,
    PRIMARY KEY (client, request_id)
) WITHOUT ROWID;
INSERT INTO requests_new (client, request_id, actor, op, args_hash, response, at)
    SELECT actor, request_id, actor, op, args_hash, response, at FROM requests;
DROP TABLE requests;
ALTER TABLE requests_new RENAME TO requests;
CREATE INDEX requests_at ON requests (at);

-- What the reaper looks at to undo a backward clock step: retry backoffs that end further ahead
-- than any backoff can.
CREATE INDEX tasks_backoff ON tasks (not_before) WHERE state = 'PENDING' AND not_before IS NOT NULL;
