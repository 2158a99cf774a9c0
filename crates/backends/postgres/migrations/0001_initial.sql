-- flatmachines-postgres schema version 1. `__SCHEMA__` stands for the configured schema,
-- quoted; the migration runner substitutes it and records the version in schema_migrations.

-- Checkpoints: a key `{execution_id}/{rest}` is stored as execution_id and path = `/{rest}`
-- (empty for a key without `/`), so execution_id || path is the key. The "C" collation makes
-- the primary key's order byte order, the order `list` returns, and lets prefix ranges use it.
-- Values are bytea: the contract stores arbitrary bytes and returns them unchanged.
CREATE TABLE __SCHEMA__.checkpoints (
    execution_id text COLLATE "C" NOT NULL,
    path         text COLLATE "C" NOT NULL,
    value        bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, path)
);

-- Results at flatagents://{execution_id}/{path}. json (not jsonb) keeps the text as written,
-- object key order included.
CREATE TABLE __SCHEMA__.results (
    execution_id text COLLATE "C" NOT NULL,
    path         text COLLATE "C" NOT NULL,
    value        json NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, path)
);

-- Registered workers; `registered` keeps listings in first-registration order.
CREATE SEQUENCE __SCHEMA__.workers_registered;
CREATE TABLE __SCHEMA__.workers (
    worker_id       text PRIMARY KEY,
    status          text NOT NULL,
    last_heartbeat  timestamptz NOT NULL,
    host            text,
    pid             bigint,
    capabilities    text[],
    pool_id         text,
    started_at      text,
    current_task_id text,
    metadata        jsonb,
    registered      bigint NOT NULL DEFAULT nextval('__SCHEMA__.workers_registered')
);

-- Work items of every pool. `queue_order` is taken again when an item goes back to pending,
-- so it queues behind those already waiting. `claim_token` lets a claim whose answer was lost
-- with its connection find the item it took.
CREATE SEQUENCE __SCHEMA__.work_queue_order;
CREATE TABLE __SCHEMA__.work_items (
    pool         text NOT NULL,
    id           text NOT NULL,
    data         json NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'claimed', 'done', 'poisoned')),
    claimed_by   text,
    claimed_at   timestamptz,
    attempts     bigint NOT NULL DEFAULT 0,
    max_retries  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    error        text,
    result       json,
    claim_token  text,
    queue_order  bigint NOT NULL DEFAULT nextval('__SCHEMA__.work_queue_order'),
    PRIMARY KEY (pool, id)
);
-- Only pending items are in the claim index, so done and poisoned items, however many, cost
-- a claim nothing.
CREATE INDEX work_items_pending ON __SCHEMA__.work_items (pool, queue_order)
    WHERE status = 'pending';
CREATE INDEX work_items_claimed ON __SCHEMA__.work_items (pool, claimed_by)
    WHERE status = 'claimed';
