#!/usr/bin/env bash
# The job producer: push COUNT Collatz jobs (n = FIRST, FIRST+1, …) to the pool, one JSON
# object per line through `flatmachines pool push`.
#
#   examples/distributed_worker/producer.sh sqlite://jobs.db collatz 200 27
set -euo pipefail
store=${1:?usage: producer.sh STORE_URL [POOL] [COUNT] [FIRST]}
pool=${2:-collatz}
count=${3:-200}
first=${4:-27}
flatmachines=${FLATMACHINES:-flatmachines}
for ((i = 0; i < count; i++)); do
    printf '{"n": %d}\n' $((first + i))
done | $flatmachines pool push "$pool" --store "$store" --file - > /dev/null
echo "pushed $count jobs to pool \`$pool\`" >&2
