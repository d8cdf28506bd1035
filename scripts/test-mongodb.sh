#!/usr/bin/env bash
# Check that the MongoDB a node would use is reachable and writable:
#
#   scripts/test-mongodb.sh [MONGODB_URI]
#
# The URI comes from the argument, else MONGODB_URI (environment, then ./.env, as for a node),
# else the node's default mongodb://localhost:27017. MONGODB_DATABASE (default jobprocessor)
# names the database of the probe, and PROBE_TIMEOUT (default 5s) bounds every step: a
# connectivity check should answer in seconds, not wait out the node's 30s MONGODB_TIMEOUT.
#
# It pings the server, prints its version and the ping round-trip time, then writes a probe
# document with the node's write concern (journaled), reads it back and deletes it.
#
# Exit codes: 0 all good; 1 the server cannot be reached (or answers nothing sensible);
# 3 it is reachable but the probe write/read/delete failed (e.g. no write permission);
# 2 usage error or no Python with pymongo.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
fi
if [[ $# -gt 1 ]]; then
    echo "usage: scripts/test-mongodb.sh [MONGODB_URI]" >&2
    exit 2
fi

# The project's own environment first (scripts/test creates it), then whatever python3 is on PATH.
PYTHON=""
for candidate in "${JOBNODE_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import pymongo' >/dev/null 2>&1; then
        PYTHON="$candidate"
        break
    fi
done
if [[ -z "$PYTHON" ]]; then
    echo "test-mongodb.sh: no Python with pymongo found; run scripts/test once, or pip install pymongo" >&2
    exit 2
fi

exec "$PYTHON" - "$@" <<'PY'
import os
import re
import socket
import statistics
import sys
import time
import uuid

from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI, OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

PINGS = 5
PROBE_COLLECTION = "jobnode_connectivity_probe"


def settings_from_env_file():
    """KEY=value pairs of ./.env, read the way a node reads them (when jobnode is installed)."""
    try:
        from jobnode.core.settings import read_env_file
    except ImportError:
        return {}
    try:
        return read_env_file(".env")
    except Exception as exc:  # a broken .env must not hide the connectivity answer
        print(f"warning: ignoring .env: {exc}", file=sys.stderr)
        return {}


def seconds(text):
    """`5s`, `500ms`, `1m` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", text)
    if not match:
        raise SystemExit(f"test-mongodb.sh: PROBE_TIMEOUT={text!r} is not a duration such as 5s or 500ms")
    number, unit = float(match[1]), match[2] or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def masked(uri):
    """The URI with its password replaced, so it can be printed."""
    return re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", uri)


def fail(code, message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(code)


def main():
    file_values = settings_from_env_file()
    setting = lambda name, default: os.environ.get(name) or file_values.get(name) or default  # noqa: E731
    uri = sys.argv[1] if len(sys.argv) > 1 else setting("MONGODB_URI", "mongodb://localhost:27017")
    database = setting("MONGODB_DATABASE", "jobprocessor")
    timeout_ms = int(seconds(os.environ.get("PROBE_TIMEOUT", "5s")) * 1000)
    print(f"MongoDB    {masked(uri)}  (database {database}, timeout {timeout_ms / 1000:g}s)")
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        fail(2, f"{masked(uri)!r} is not a MongoDB URI: expected mongodb://host:port or mongodb+srv://host")
    try:
        client = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms,
            appname="jobnode-test-mongodb",
        )
    except (ConfigurationError, InvalidURI, ValueError) as exc:
        fail(2, f"MONGODB_URI {masked(uri)} is not a usable MongoDB URI: {exc}")
    with client:
        check_server(client, uri, timeout_ms)
        check_probe(client[database])
    print("OK")


def check_server(client, uri, timeout_ms):
    round_trips_ms = []
    try:
        for _ in range(PINGS):
            started = time.perf_counter()
            client.admin.command("ping")
            round_trips_ms.append((time.perf_counter() - started) * 1000)
        info = client.admin.command("buildInfo")
    except OperationFailure as exc:
        fail(1, f"MongoDB at {masked(uri)} refused the ping: {exc.details.get('errmsg', exc) if exc.details else exc}")
    except PyMongoError as exc:
        # pymongo appends its timeouts and topology to the cause; keep the cause.
        reason = re.split(r" \(configured timeouts|, Timeout:", str(exc))[0]
        fail(1, f"cannot reach MongoDB at {masked(uri)} within {timeout_ms / 1000:g}s: {masked(reason)}")
    # The first ping opens the connection; the median of the rest is the steady round trip.
    steady = round_trips_ms[1:]
    print(f"ping       ok, round trip {statistics.median(steady):.2f} ms median "
          f"(min {min(steady):.2f}, max {max(steady):.2f}; first, with connect: {round_trips_ms[0]:.2f} ms)")
    print(f"version    {info.get('version', 'unknown')}")


def check_probe(db):
    probe_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # The node acknowledges jobs only once a majority of MongoDB has journaled them (w=majority,
    # j=true); probe the same way.
    collection = db.get_collection(PROBE_COLLECTION, write_concern=WriteConcern(w="majority", j=True))
    step = "write"
    try:
        started = time.perf_counter()
        collection.insert_one({"_id": probe_id, "written_at": time.time()})
        written_ms = (time.perf_counter() - started) * 1000
        step = "read"
        found = collection.find_one({"_id": probe_id})
        if found is None:
            fail(3, f"the probe document written to {db.name}.{PROBE_COLLECTION} could not be read back")
        step = "delete"
        deleted = collection.delete_one({"_id": probe_id}).deleted_count
        total_ms = (time.perf_counter() - started) * 1000
    except PyMongoError as exc:
        fail(3, f"probe {step} in {db.name}.{PROBE_COLLECTION} failed: {exc}")
    if deleted != 1:
        fail(3, f"the probe document in {db.name}.{PROBE_COLLECTION} could not be deleted")
    print(f"probe      write {written_ms:.2f} ms (journaled), write+read+delete {total_ms:.2f} ms "
          f"in {db.name}.{PROBE_COLLECTION}")


main()
PY
