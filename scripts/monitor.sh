#!/usr/bin/env bash
# Watch a jobnode cluster: nodes, roles, leader, term, workers, job counts and queue depths,
# redrawn every few seconds until Ctrl-C.
#
#   scripts/monitor.sh [-n SECONDS] [--once] [URL ...]
#
# Which nodes: the URLs given, else JOBNODE_URL (one URL or several separated by commas), else
# every node of the `jobnode dev` cluster described in $JOBNODE_DEV_DIR/cluster.json (default
# ./.jobnode-dev), else http://127.0.0.1:8080. With several URLs the screen comes from the first
# node that answers, so the watch carries on when that node dies: kill the leader and watch the
# failover. -n sets the refresh interval (default 2s); --once prints the status once and exits.
#
# This wraps `jobnode status --watch`; --token/JOBNODE_TOKEN and --ca-file/JOBNODE_CA_FILE work
# as for any jobnode command (set the variables), and a token stored by `jobnode login` is used.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

interval=2
once=false
urls=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -n|--interval)
            [[ $# -ge 2 ]] || { echo "monitor.sh: $1 needs a number of seconds" >&2; exit 2; }
            interval="$2"; shift 2 ;;
        --once) once=true; shift ;;
        -*) echo "monitor.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) urls+=("$1"); shift ;;
    esac
done

# The project's environment if scripts/test or a dev install made one, else a jobnode on PATH.
if [[ -x "$ROOT/.venv/bin/jobnode" ]]; then
    JOBNODE=("$ROOT/.venv/bin/jobnode")
elif command -v jobnode >/dev/null 2>&1; then
    JOBNODE=(jobnode)
elif python3 -c 'import jobnode.cli.main' >/dev/null 2>&1; then
    JOBNODE=(python3 -m jobnode)
else
    echo "monitor.sh: jobnode is not installed; run scripts/test once, or pip install -e ." >&2
    exit 2
fi

dev_cluster_urls() {
    local file="${JOBNODE_DEV_DIR:-.jobnode-dev}/cluster.json" python=python3
    [[ -f "$file" ]] || return 0
    [[ -x "$ROOT/.venv/bin/python" ]] && python="$ROOT/.venv/bin/python"
    "$python" -c 'import json, sys; print(",".join(n["url"] for n in json.load(open(sys.argv[1]))["nodes"]))' \
        "$file" 2>/dev/null || true
}

if [[ ${#urls[@]} -gt 0 ]]; then
    url_list=$(IFS=,; echo "${urls[*]}")
elif [[ -n "${JOBNODE_URL:-}" ]]; then
    url_list="$JOBNODE_URL"
else
    url_list=$(dev_cluster_urls)
    url_list="${url_list:-http://127.0.0.1:8080}"
fi

if $once; then
    exec "${JOBNODE[@]}" status --url "$url_list"
fi
exec "${JOBNODE[@]}" status --url "$url_list" --watch "$interval"
