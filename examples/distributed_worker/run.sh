#!/usr/bin/env bash
# The whole pattern on one machine, in one command: produce jobs, let the checker start
# workers, reap any that die, and wait until the pool is drained.
#
#   examples/distributed_worker/run.sh                       # SQLite, in a temporary directory
#   STORE=redis://127.0.0.1:6379/0 examples/distributed_worker/run.sh
#   STORE=postgres://postgres@127.0.0.1:5432/test examples/distributed_worker/run.sh
#
# FLATMACHINES names the executable (default: flatmachines on the PATH).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
flatmachines=${FLATMACHINES:-flatmachines}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
store=${STORE:-sqlite://$work/jobs.db}
pool=${POOL:-collatz-$$}
jobs=${JOBS:-40}

FLATMACHINES=$flatmachines "$here/producer.sh" "$store" "$pool" "$jobs" 27
$flatmachines run "$here/checker.yml" --store "$store" \
    --input "{\"pool_id\": \"$pool\", \"max_workers\": 4}"
# Workers beat after every job; one silent for 30 s is gone, and its job goes back.
for _ in $(seq 1 600); do
    $flatmachines run "$here/reaper.yml" --store "$store" \
        --input "{\"pool_id\": \"$pool\", \"stale_threshold_seconds\": 30}" > /dev/null
    if $flatmachines pool drain "$pool" --store "$store" --timeout 1 > /dev/null 2>&1; then
        break
    fi
done
$flatmachines pool status "$pool" --store "$store"
