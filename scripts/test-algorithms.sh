#!/usr/bin/env bash
# Fail over each election algorithm on a local 3-node `jobnode dev` cluster and time it.
#
#   scripts/test-algorithms.sh [--runs N] [--nodes N] [--rate JOBS_PER_S] [bully] [raft] [gossip]
#
# For each algorithm (default: all three) and each run: start `jobnode dev` with the timers
# of the algorithm's file in configs/, submit jobs at a steady rate through the followers,
# kill -9 the leader, and print (seconds after the kill):
#   election   every surviving node names the same new leader (GET /api/v1/leader)
#   lease      the new leader holds the fenced Redis lease (lease.holder in the same answer)
#   dispatch   the earliest started_at among the jobs submitted after the kill: none of them
#              can have been dispatched by the dead leader, so this is the new leader's first
#              dispatch reaching a worker (the nodes run with LOCAL_START=false, else a survivor
#              would start some of them itself before any new leader exists)
# then check that every acknowledged job completed, and stop the cluster. The table at the
# end shows the median of each over the runs. Exit status 1 if a job was lost or a run failed.
#
# Uses .venv/bin/jobnode if present, else `jobnode` on PATH, else `python3 -m jobnode`
# (set JOBNODE to override). Each run gets its own data folder, Redis and SecantusDB.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=1
NODES=3
RATE=20
ALGORITHMS=()

usage() {
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) RUNS="${2:?--runs needs a number}"; shift 2 ;;
        --nodes) NODES="${2:?--nodes needs a number}"; shift 2 ;;
        --rate) RATE="${2:?--rate needs jobs per second}"; shift 2 ;;
        -h|--help) usage 0 ;;
        bully|raft|gossip) ALGORITHMS+=("$1"); shift ;;
        *) echo "test-algorithms.sh: unknown argument '$1' (algorithms: bully raft gossip)" >&2; usage 2 ;;
    esac
done
[[ ${#ALGORITHMS[@]} -gt 0 ]] || ALGORITHMS=(bully raft gossip)
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "test-algorithms.sh: --runs must be a positive integer" >&2; exit 2; }
[[ "$NODES" =~ ^[1-9][0-9]*$ && "$NODES" -ge 2 ]] || { echo "test-algorithms.sh: --nodes must be 2 or more" >&2; exit 2; }

if [[ -n "${JOBNODE:-}" ]]; then
    read -r -a JOBNODE_CMD <<< "$JOBNODE"
elif [[ -x "$ROOT/.venv/bin/jobnode" ]]; then
    JOBNODE_CMD=("$ROOT/.venv/bin/jobnode")
elif command -v jobnode >/dev/null 2>&1; then
    JOBNODE_CMD=(jobnode)
else
    JOBNODE_CMD=(python3 -m jobnode)
fi
if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
FAILOVER=("$PYTHON" "$ROOT/scripts/failover.py")

config_for() {
    # The shipped config whose timers each algorithm uses (bully-2's timers also suit 3 nodes).
    case "$1" in
        bully) echo "$ROOT/configs/bully-2.env" ;;
        raft) if [[ "$NODES" -ge 5 ]]; then echo "$ROOT/configs/raft-5.env"; else echo "$ROOT/configs/raft-3.env"; fi ;;
        gossip) if [[ "$NODES" -ge 10 ]]; then echo "$ROOT/configs/gossip-10.env"; else echo "$ROOT/configs/gossip-3.env"; fi ;;
    esac
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jobnode-failover.XXXXXX")"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
DEV_PID=""

stop_cluster() {
    if [[ -n "$DEV_PID" ]] && kill -0 "$DEV_PID" 2>/dev/null; then
        kill -TERM "$DEV_PID" 2>/dev/null || true
        wait "$DEV_PID" 2>/dev/null || true
    fi
    DEV_PID=""
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

one_run() {
    local algorithm="$1" run="$2" data="$WORK/$1-$2" ports api metrics status=0
    ports="$("${FAILOVER[@]}" free-ports "$NODES")"
    read -r api metrics <<< "$ports"
    mkdir -p "$data"
    # The config's timers reach the nodes through the environment `jobnode dev` passes on.
    (
        set -a
        # shellcheck disable=SC1090
        . "$(config_for "$algorithm")"
        set +a
        export LOCAL_START=false
        exec "${JOBNODE_CMD[@]}" dev --nodes "$NODES" --algorithm "$algorithm" --port "$api" \
            --metrics-port "$metrics" --data-dir "$data" --workers 4
    ) > "$data/dev.log" 2>&1 &
    DEV_PID=$!
    if ! "${FAILOVER[@]}" measure --cluster-file "$data/cluster.json" --algorithm "$algorithm" \
            --rate "$RATE" --label "run $run" >> "$RESULTS"; then
        status=1
        echo "  run $run failed; last lines of $data/dev.log:" >&2
        tail -n 20 "$data/dev.log" >&2 || true
    fi
    stop_cluster
    rm -rf "$data"
    return "$status"
}

failed=0
for algorithm in "${ALGORITHMS[@]}"; do
    echo "== $algorithm: $NODES nodes, timers from $(basename "$(config_for "$algorithm")"), $RUNS run(s)"
    for ((run = 1; run <= RUNS; run++)); do
        one_run "$algorithm" "$run" || failed=1
    done
done
echo
"${FAILOVER[@]}" summarize "$RESULTS" || failed=1
exit "$failed"
