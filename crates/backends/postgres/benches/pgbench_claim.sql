-- The bare claim, for pgbench: the statement flatmachines-postgres's claim wraps, on the same
-- table and partial index, without its claim token, pool checkout or JSON decoding.
-- Run by pgbench_claim.sh, which creates the schema `fmbench_pgbench` and drops it after.
UPDATE fmbench_pgbench.work_items SET status = 'claimed', claimed_by = 'pgbench'
WHERE pool = 'bench' AND id = (
    SELECT id FROM fmbench_pgbench.work_items WHERE pool = 'bench' AND status = 'pending'
    ORDER BY queue_order LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id;
