-- Schema version 3: results of executions (ResultBackend).
-- One row per `flatagents://{execution_id}/{path}` URI, keyed `{execution_id}/{path}` (the
-- execution id holds no `/`, so the key names one URI). A write replaces the row; blocked
-- readers in other processes find it by reading the key again. A rowid table, not WITHOUT
-- ROWID: results can be large, and large rows belong in a rowid table's overflow pages.
CREATE TABLE results (
    key        TEXT NOT NULL PRIMARY KEY,
    value      TEXT NOT NULL,  -- JSON
    written_at TEXT NOT NULL   -- ISO 8601, UTC
);
