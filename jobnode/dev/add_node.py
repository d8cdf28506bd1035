"""`jobnode dev add-node`: one more node for a running `jobnode dev` cluster, joined through SEEDS.

Everything the new node needs is in `<data-dir>/cluster.json` (written 0600 by `jobnode dev`):
the settings every node shares (CLUSTER_SECRET, the data servers, the algorithm, auth under
--secure) and the nodes' URLs, which become its SEEDS. Under --secure it gets a certificate from
the cluster's development CA. It starts in its own session (so it outlives this command), and
this command returns once the node is healthy, which includes being in the cluster (its `seeds`
check); the new node is then listed in cluster.json, and `jobnode dev` stops it with the rest.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from jobnode.core.settings import VARIABLES
from jobnode.dev.certs import write_dev_certs
from jobnode.dev.cluster import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    MAX_WORKERS,
    READY_POLL_INTERVAL_S,
    DevError,
    NodePlan,
    _get_json,
    _say,
    _start_node,
    port_is_free,
    write_cluster_document,
)

ADD_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--data-dir", dest="data_dir", type=Path, default=Path(".jobnode-dev"), metavar="DIR",
        help="the running cluster's data dir, where cluster.json is (default ./.jobnode-dev)")
    add("--port", type=int, default=None, metavar="PORT", help="API port (default: after the highest in use)")
    add("--metrics-port", dest="metrics_port", type=int, default=None, metavar="PORT",
        help="metrics port (default: after the highest in use)")
    add("--workers", type=int, default=None, metavar="W", help="workers of the new node (default: as the others)")
    add("--timeout", dest="timeout_s", type=float, default=ADD_TIMEOUT_S, metavar="SECONDS",
        help=f"how long to wait for the node to be healthy and in the cluster (default {ADD_TIMEOUT_S:g})")


def run(args: argparse.Namespace) -> int:
    try:
        node = add_node(args)
    except DevError as error:
        print(f"jobnode dev add-node: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, _UsageError) else EXIT_FAILED
    print(f"jobnode dev: {node['id']} joined: {node['url']}  pid {node['pid']}  log {node['log']}", flush=True)
    return EXIT_OK


class _UsageError(DevError):
    """A bad option rather than a cluster that cannot take the node."""


def add_node(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir).resolve()
    cluster_file = data_dir / "cluster.json"
    _require_running(data_dir)
    try:
        document = json.loads(cluster_file.read_text())
    except (OSError, ValueError) as error:
        raise DevError(f"cannot read {cluster_file}: {error}; is `jobnode dev` still starting?") from None
    shared = document.get("node_environment")
    if not isinstance(shared, dict) or not shared.get("CLUSTER_SECRET"):
        raise DevError(f"{cluster_file} has no node_environment with a CLUSTER_SECRET: it was written by an "
                       "older jobnode; restart `jobnode dev`")
    nodes = document["nodes"]
    plan = _plan(args, data_dir, nodes, secure=shared.get("TLS_ENABLED") == "true")
    env = {**_inherited(), **shared, **_own_settings(plan, nodes, shared, data_dir)}
    if args.workers is not None:
        if not 0 <= args.workers <= MAX_WORKERS:
            raise _UsageError(f"--workers must be between 0 and {MAX_WORKERS}, got {args.workers}")
        env["WORKER_COUNT"] = str(args.workers)
    process = _start_node(plan, env)
    tls = ssl.create_default_context(cafile=shared["TLS_CA_FILE"]) if shared.get("TLS_CA_FILE") else None
    _wait_joined(plan, process, args.timeout_s, tls)
    entry = {"id": plan.id, "url": plan.url, "metrics_url": plan.metrics_url, "pid": process.process.pid}
    document["nodes"] = [*nodes, entry]
    write_cluster_document(cluster_file, document)
    return {**entry, "log": str(plan.log_path)}


def _require_running(data_dir: Path) -> None:
    lock_path = data_dir / ".dev.lock"
    if not lock_path.exists():
        raise DevError(f"no `jobnode dev` cluster at {data_dir}; start one with `jobnode dev --data-dir {data_dir}`")
    with open(lock_path) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # held: the cluster runs
        fcntl.flock(lock, fcntl.LOCK_UN)
    raise DevError(f"the `jobnode dev` cluster at {data_dir} is not running; start it first")


def _plan(args: argparse.Namespace, data_dir: Path, nodes: list[dict[str, Any]], secure: bool) -> NodePlan:
    numbers = [int(n["id"].rsplit("-", 1)[1]) for n in nodes if n["id"].rsplit("-", 1)[-1].isdigit()]
    node_id = f"node-{max(numbers, default=0) + 1}"
    used_api = [int(n["url"].rsplit(":", 1)[1]) for n in nodes]
    used_metrics = [int(n["metrics_url"].rsplit(":", 1)[1].split("/", 1)[0]) for n in nodes]
    port = args.port if args.port is not None else _next_free(max(used_api) + 1, set(used_metrics))
    metrics_port = (args.metrics_port if args.metrics_port is not None
                    else _next_free(max(used_metrics) + 1, {port, *used_api}))
    for flag, value in (("--port", port), ("--metrics-port", metrics_port)):
        if not 1 <= value <= 65535:
            raise _UsageError(f"{flag} must be between 1 and 65535, got {value}")
        if not port_is_free(value):
            raise _UsageError(f"port {value} is already in use; choose another with {flag}")
    if port == metrics_port:
        raise _UsageError(f"--port and --metrics-port must differ, both are {port}")
    return NodePlan(node_id, port, metrics_port, data_dir / node_id, "https" if secure else "http")


def _next_free(start: int, avoid: set[int]) -> int:
    port = start
    while port in avoid or not port_is_free(port):
        port += 1
    return port


def _own_settings(plan: NodePlan, nodes: list[dict[str, Any]], shared: dict[str, str],
                  data_dir: Path) -> dict[str, str]:
    own = {"NODE_ID": plan.id, "SERVER_HOST": "127.0.0.1", "SERVER_PORT": str(plan.port),
           "METRICS_PORT": str(plan.metrics_port), "ADVERTISE_URL": plan.url, "PEERS": "",
           "SEEDS": ",".join(n["url"] for n in nodes), "DATA_DIR": str(plan.data_dir), "PYTHONUNBUFFERED": "1"}
    if shared.get("TLS_ENABLED") == "true":
        pair = write_dev_certs(data_dir / "tls", [plan.id]).nodes[plan.id]
        own |= {"TLS_CERT_FILE": str(pair.cert_file), "TLS_KEY_FILE": str(pair.key_file)}
    return own


def _inherited() -> dict[str, str]:
    # The process basics (PATH, HOME, PYTHONPATH...), not the developer's own jobnode settings.
    names = {variable.name for variable in VARIABLES}
    return {key: value for key, value in os.environ.items() if key not in names}


def _wait_joined(plan: NodePlan, process: Any, timeout_s: float, tls: ssl.SSLContext | None) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        code = process.exit_code
        if code is not None:
            raise DevError(f"{plan.id} exited with code {code} while joining; last lines of "
                           f"{plan.log_path}:\n{process.log_tail()}")
        status, body = _get_json(f"{plan.url}/health", tls)
        if status == 200:
            return
        last = (body or {}).get("checks", {}).get("seeds") if isinstance(body, dict) else body
        if time.monotonic() >= deadline:
            raise DevError(f"{plan.id} did not join within {timeout_s:g}s (seeds check: {last}); it keeps "
                           f"trying, pid {process.process.pid}, log {plan.log_path}")
        time.sleep(READY_POLL_INTERVAL_S)
