#!/bin/sh
# Bare SKIP LOCKED claims with pgbench, 1 and 4 clients, 2 000 claims each run, on the
# schema of migrations/0001_initial.sql. Usage: benches/pgbench_claim.sh [CONNINFO]
# (default `host=127.0.0.1 port=5432 user=postgres dbname=test`). Prints pgbench's tps.
# PGBENCH_CLAIM_ITEMS sets the claims per run (default 2 000; `cargo xtask bench` sizes it).
set -eu
here=$(dirname "$0")
conninfo=${1:-"host=127.0.0.1 port=5432 user=postgres dbname=test"}
schema=fmbench_pgbench
items=${PGBENCH_CLAIM_ITEMS:-2000}
psql() { PGOPTIONS=--client-min-messages=warning command psql -X -q -v ON_ERROR_STOP=1 "$conninfo" "$@"; }
trap 'psql -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true' EXIT
psql -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema"
sed "s/__SCHEMA__/$schema/g" "$here/../migrations/0001_initial.sql" | psql
for clients in 1 4; do
    psql -c "TRUNCATE $schema.work_items" -c "INSERT INTO $schema.work_items
        (pool, id, data, status, max_retries)
        SELECT 'bench', n::text, '{\"n\": 1}', 'pending', 3 FROM generate_series(1, $items) n" \
        -c "VACUUM ANALYZE $schema.work_items"
    printf '%s clients: ' "$clients"
    pgbench -n -M prepared -c "$clients" -j "$clients" -t $((items / clients)) \
        -f "$here/pgbench_claim.sql" "$conninfo" | grep 'tps'
    left=$(psql -At -c "SELECT count(*) FROM $schema.work_items WHERE status = 'pending'")
    [ "$left" = 0 ] || { echo "pending items left: $left" >&2; exit 1; }
done
