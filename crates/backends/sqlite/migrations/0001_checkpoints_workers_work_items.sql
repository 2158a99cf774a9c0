-- Schema version 1: checkpoints, worker registration and work pools.
-- Applied migrations are never edited: a change to the schema is a new numbered file.

-- The checkpoint store (PersistenceBackend): one row per key. Keys compare as bytes
-- (BINARY collation on UTF-8), which is the order `list` promises.
CREATE TABLE checkpoints (
    key   TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
);

-- Registered workers (RegistrationBackend). `register` of a known id updates the row in
-- place, so rowid order is first-registration order, the order `list` returns.
CREATE TABLE workers (
    worker_id       TEXT NOT NULL PRIMARY KEY,
    status          TEXT NOT NULL,
    last_heartbeat  TEXT NOT NULL,
    host            TEXT,
    pid             INTEGER,
    capabilities    TEXT,  -- JSON array of strings
    pool_id         TEXT,
    started_at      TEXT,
    current_task_id TEXT,
    metadata        TEXT   -- JSON object
);

-- Work items of every pool (WorkPool). `queue_seq` orders the pending items of a pool: a
-- push or a return to pending puts the item behind every item already pending.
CREATE TABLE work_items (
    pool        TEXT NOT NULL,
    id          TEXT NOT NULL,
    data        TEXT NOT NULL,  -- JSON
    status      TEXT NOT NULL CHECK (status IN ('pending', 'claimed', 'done', 'poisoned')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_retries INTEGER NOT NULL CHECK (max_retries >= 0),
    claimed_by  TEXT,
    claimed_at  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    error       TEXT,
    result      TEXT,           -- JSON; NULL when `complete` stored none
    queue_seq   INTEGER NOT NULL,
    PRIMARY KEY (pool, id)
);

-- The next pending item of a pool, and the newest queue position, are one index seek. Only
-- pending items are in it, so items that are claimed, done or poisoned cost it nothing.
CREATE INDEX work_items_pending ON work_items (pool, queue_seq) WHERE status = 'pending';

-- `release_by_worker` finds a worker's claims without scanning the pool.
CREATE INDEX work_items_claims ON work_items (pool, claimed_by) WHERE status = 'claimed';
