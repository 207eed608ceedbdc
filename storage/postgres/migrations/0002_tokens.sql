-- 0002: bearer tokens for the HTTP service, and their lifecycle.
-- Only a token's SHA-256 is stored, never the token. A name is a token's identity (the agent
-- name of every call made with it); a revoked or expired name may be given a new token.
CREATE TABLE tokens (
    name         TEXT PRIMARY KEY,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'agent', 'planner', 'admin')),
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   DOUBLE PRECISION NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   DOUBLE PRECISION,
    revoked_at   DOUBLE PRECISION,
    revoked_by   TEXT,
    last_used_at DOUBLE PRECISION
);

-- Who created or revoked which token name, and when (append-only, never the secret).
CREATE TABLE token_events (
    id    BIGSERIAL PRIMARY KEY,
    name  TEXT NOT NULL,
    type  TEXT NOT NULL CHECK (type IN ('created', 'revoked')),
    actor TEXT NOT NULL,
    at    DOUBLE PRECISION NOT NULL,
    data  JSONB NOT NULL DEFAULT '{}'
);
CREATE FUNCTION token_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'token_events are append-only';
END $$;
CREATE TRIGGER token_events_no_update BEFORE UPDATE ON token_events FOR EACH ROW EXECUTE FUNCTION token_events_append_only();
CREATE TRIGGER token_events_no_delete BEFORE DELETE ON token_events FOR EACH ROW EXECUTE FUNCTION token_events_append_only();
