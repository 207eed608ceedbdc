-- Checks of a SQLite backup before it replaces its destination (mcp_tasks/backups.py).

-- name: integrity_check
-- One row 'ok', or one row per problem SQLite finds in the file's pages, indexes and constraints.
PRAGMA integrity_check;
