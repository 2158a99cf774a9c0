-- Schema version 2: execution locks as lease rows.
-- A row is a held lock until `expires_at` (milliseconds since the Unix epoch) passes; its
-- holder pushes `expires_at` forward while it runs, and deletes the row to release.
CREATE TABLE execution_locks (
    key         TEXT NOT NULL PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    acquired_at TEXT NOT NULL
) WITHOUT ROWID;
