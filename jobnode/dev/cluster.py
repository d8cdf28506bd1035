"""`jobnode dev`: a local cluster of N node processes, with private Redis and SecantusDB.

It starts the data servers (unless REDIS_ADDR / MONGODB_URI point elsewhere),
then `python -m jobnode serve` once per node on 127.0.0.1, waits until every
node is healthy and they agree on a leader, writes `<data-dir>/cluster.json`
for scripts and tests, and tears everything down on Ctrl-C or SIGTERM.
Killing one node by hand is allowed: that is how a failover is shown live.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from jobnode.core.settings import VARIABLES
from jobnode.dev.certs import DevCerts, write_dev_certs
from jobnode.dev.embedded import (
    PRIVATE_UMASK,
    EmbeddedMongo,
    EmbeddedRedis,
    EmbeddedServerError,
    log_tail,
    make_private_dir,
    open_private_log,
    port_is_free,
)

ALGORITHMS = ("bully", "raft", "gossip")
STRATEGIES = ("round_robin", "least_loaded", "random", "priority")
MAX_NODES = 50
MAX_WORKERS = 1000
READY_POLL_INTERVAL_S = 0.25
WATCH_INTERVAL_S = 0.5
HTTP_TIMEOUT_S = 2.0
NODE_STOP_GRACE_S = 30.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class DevError(Exception):
    """The dev cluster cannot start or run; the message says why and what to do."""


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived before the cluster was ready."""


# -- command line ----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `jobnode dev` options to a (sub)parser."""
    add = parser.add_argument
    add("--nodes", type=int, default=3, metavar="N", help="number of node processes (default 3)")
    add("--algorithm", choices=ALGORITHMS, default="raft", help="leader election algorithm (default raft)")
    add("--port", type=int, default=8080, metavar="PORT",
        help="API port of node-1; node-i listens on PORT+i-1 (default 8080)")
    add("--metrics-port", dest="metrics_port", type=int, default=9100, metavar="PORT",
        help="metrics port of node-1; node-i uses PORT+i-1 (default 9100)")
    add("--data-dir", dest="data_dir", type=Path, default=Path(".jobnode-dev"), metavar="DIR",
        help="where the servers, the nodes and cluster.json live (default ./.jobnode-dev)")
    add("--workers", type=int, default=10, metavar="W", help="workers per node (default 10)")
    add("--strategy", choices=STRATEGIES, default=None,
        help="load balancer strategy (default: the node's own, round_robin)")
    add("--startup-timeout", dest="startup_timeout_s", type=float, default=60.0, metavar="SECONDS",
        help="how long to wait for healthy nodes that agree on a leader (default 60)")
    add("--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="a module each node imports at start, so the processors it registers are served "
             "(repeatable; added to JOBNODE_IMPORTS; found from the current directory too)")
    add("--secure", action="store_true",
        help="turn on auth (generated JWT secret and admin password, printed and kept in cluster.json) "
             "and TLS with mutual TLS between peers (a development CA and node certificates under DIR/tls)")


ADMIN_USERNAME = "admin"
MONGO_USERNAME = "jobnode"
# Under --secure, unless the environment sets its own: 20 requests a second per client, bursts of 200.
SECURE_RATE_LIMIT = {"RATE_LIMIT": "1200", "RATE_LIMIT_BURST": "200"}


@dataclass(frozen=True)
class Credentials:
    """What `--secure` generates for one run: never reused, never a fixed default."""

    jwt_secret: str
    admin_username: str
    admin_password: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls(jwt_secret=secrets.token_urlsafe(48), admin_username=ADMIN_USERNAME,
                   admin_password=secrets.token_urlsafe(18))

    def __repr__(self) -> str:
        return f"Credentials(admin_username={self.admin_username!r})"

    def node_environment(self) -> dict[str, str]:
        return {"AUTH_ENABLED": "true", "JWT_SECRET": self.jwt_secret,
                "ADMIN_USERNAME": self.admin_username, "ADMIN_PASSWORD": self.admin_password}


@dataclass(frozen=True)
class NodePlan:
    """Where one node of the dev cluster lives."""

    id: str
    port: int
    metrics_port: int
    data_dir: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"


def _plan_nodes(args: argparse.Namespace, data_dir: Path) -> list[NodePlan]:
    count = args.nodes
    if not 1 <= count <= MAX_NODES:
        raise DevError(f"--nodes must be between 1 and {MAX_NODES}, got {count}")
    if not 0 <= args.workers <= MAX_WORKERS:
        raise DevError(f"--workers must be between 0 and {MAX_WORKERS}, got {args.workers}")
    if args.startup_timeout_s <= 0:
        raise DevError(f"--startup-timeout must be positive, got {args.startup_timeout_s:g}")
    for flag, first in (("--port", args.port), ("--metrics-port", args.metrics_port)):
        if not 1 <= first <= 65536 - count:
            raise DevError(f"{flag} must leave room for {count} ports below 65536, got {first}")
    api = range(args.port, args.port + count)
    metrics = range(args.metrics_port, args.metrics_port + count)
    if set(api) & set(metrics):
        raise DevError(f"API ports {api.start}-{api.stop - 1} overlap metrics ports "
                       f"{metrics.start}-{metrics.stop - 1}; change --port or --metrics-port")
    return [
        NodePlan(f"node-{i}", args.port + i - 1, args.metrics_port + i - 1, data_dir / f"node-{i}",
                 "https" if getattr(args, "secure", False) else "http")
        for i in range(1, count + 1)
    ]


def _check_ports_free(plans: list[NodePlan]) -> None:
    for plan in plans:
        for port, flag in ((plan.port, "--port"), (plan.metrics_port, "--metrics-port")):
            if not port_is_free(port):
                raise DevError(f"port {port} ({plan.id}) is already in use; "
                               f"is another cluster running? choose others with {flag}")


# -- Redis and MongoDB -----------------------------------------------------------

@dataclass
class Backends:
    """The Redis and MongoDB the nodes use: given in the environment or started here."""

    redis_url: str
    mongodb_uri: str
    redis: EmbeddedRedis | None = None
    mongo: EmbeddedMongo | None = None

    def stop(self) -> None:
        for server in (self.mongo, self.redis):
            if server is not None:
                server.stop()


def _start_backends(data_dir: Path, environ: Mapping[str, str], secure: bool = False) -> Backends:
    """The embedded servers the environment does not replace; with `secure`, each needs credentials
    (a Redis password new on every run, a SecantusDB user whose password its data directory keeps)."""
    redis_addr = environ.get("REDIS_ADDR", "").strip()
    mongodb_uri = environ.get("MONGODB_URI", "").strip()
    backends = Backends(
        redis_url=redis_addr if "://" in redis_addr else f"redis://{redis_addr}",
        mongodb_uri=mongodb_uri,
    )
    try:
        if not redis_addr:
            password = secrets.token_urlsafe(24) if secure else None
            backends.redis = EmbeddedRedis(data_dir / "redis", password=password).start()
            backends.redis_url = backends.redis.url
            _say(f"redis    {_redact(backends.redis_url)}  (embedded, log {backends.redis.log_path})")
        if not mongodb_uri:
            backends.mongo = EmbeddedMongo(data_dir / "mongodb", username=MONGO_USERNAME if secure else None).start()
            backends.mongodb_uri = backends.mongo.url
            _say(f"mongodb  {_redact(backends.mongodb_uri)}  "
                 f"(embedded SecantusDB, log {backends.mongo.log_path})")
    except EmbeddedServerError as error:
        backends.stop()
        raise DevError(str(error)) from None
    return backends


# -- node processes --------------------------------------------------------------

@dataclass
class NodeProcess:
    """A running `jobnode serve` child and whether its exit was already reported."""

    plan: NodePlan
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_offset: int  # where this run's output starts in the (appended) node.log
    exit_reported: bool = field(default=False)

    def log_tail(self) -> str:
        return log_tail(self.plan.log_path, offset=self.log_offset)

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()


def _node_environment(plan: NodePlan, plans: list[NodePlan], backends: Backends,
                      args: argparse.Namespace, cluster_secret: str,
                      environ: Mapping[str, str], credentials: Credentials | None = None,
                      certs: DevCerts | None = None) -> dict[str, str]:
    env = dict(environ)
    env.update({
        "NODE_ID": plan.id,
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": str(plan.port),
        "METRICS_PORT": str(plan.metrics_port),
        "ADVERTISE_URL": plan.url,
        "PEERS": ",".join(f"{peer.id}={peer.url}" for peer in plans if peer is not plan),
        "CLUSTER_SECRET": cluster_secret,
        "DATA_DIR": str(plan.data_dir),
        "REDIS_ADDR": backends.redis_url,
        "MONGODB_URI": backends.mongodb_uri,
        "ELECTION_ALGORITHM": args.algorithm,
        "WORKER_COUNT": str(args.workers),
        "LOG_FORMAT": "console",
        "DEV_MODE": "true",
        # Without it a node's log reaches node.log in bursts, which hides a crash's last words.
        "PYTHONUNBUFFERED": "1",
    })
    if args.strategy:
        env["LOAD_BALANCER_STRATEGY"] = args.strategy
    imports = [name for name in (env.get("JOBNODE_IMPORTS") or "").split(",") if name.strip()]
    if getattr(args, "imports", None):
        env["JOBNODE_IMPORTS"] = ",".join([*imports, *args.imports])
    if credentials is not None:
        env.update(credentials.node_environment())
        for name, value in SECURE_RATE_LIMIT.items():
            if not env.get(name):
                env[name] = value
    if certs is not None:
        pair = certs.nodes[plan.id]
        env.update({"TLS_ENABLED": "true", "TLS_CERT_FILE": str(pair.cert_file),
                    "TLS_KEY_FILE": str(pair.key_file), "TLS_CA_FILE": str(certs.ca_file)})
    return env


def _start_node(plan: NodePlan, env: dict[str, str]) -> NodeProcess:
    make_private_dir(plan.data_dir)
    log_file = open_private_log(plan.log_path)
    log_offset = log_file.tell()
    log_file.write(f"--- jobnode dev: starting {plan.id} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
    log_file.flush()
    # Its own session: the terminal's Ctrl-C goes to `jobnode dev` alone,
    # which then stops the nodes in order (nodes first, data servers last).
    process = subprocess.Popen(
        [sys.executable, "-m", "jobnode", "serve"],
        env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True, umask=PRIVATE_UMASK,
    )
    _say(f"{plan.id}   {plan.url}  pid {process.pid}  log {plan.log_path}")
    return NodeProcess(plan, process, log_file, log_offset)


def _stop_nodes(nodes: list[NodeProcess], stop: "_StopRequests") -> None:
    running = [node for node in nodes if node.exit_code is None]
    if running:
        _say(f"stopping {len(running)} node(s) (up to {NODE_STOP_GRACE_S:g}s; Ctrl-C again to kill them now)")
    for node in running:
        _signal(node.process, signal.SIGTERM)
    deadline = time.monotonic() + NODE_STOP_GRACE_S
    while any(node.exit_code is None for node in running):
        if time.monotonic() >= deadline or stop.count >= 2:
            # Say which it was: a second signal (a repeated Ctrl-C, or a supervisor such as
            # `timeout` passing one on) is easily taken for a node that hung.
            why = ("a second stop request came" if stop.count >= 2
                   else f"it did not stop within {NODE_STOP_GRACE_S:g}s")
            for node in running:
                if node.exit_code is None:
                    _say(f"killing {node.plan.id}: {why}")
                    _signal(node.process, signal.SIGKILL)
            break
        time.sleep(0.1)
    for node in nodes:
        node.process.wait()
        node.log_file.close()


def _stop_added_nodes(cluster_file: Path, own_pids: set[int], stop: "_StopRequests") -> None:
    """Stop the nodes `jobnode dev add-node` started (listed in cluster.json, not our children):
    first, so they leave the membership while the others still answer."""
    try:
        listed = json.loads(cluster_file.read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return
    added = [(n["id"], n["pid"]) for n in listed if isinstance(n.get("pid"), int) and n["pid"] not in own_pids]
    for node_id, pid in added:
        _say(f"stopping {node_id} (added, pid {pid})")
        _kill_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + NODE_STOP_GRACE_S
    while any(_pid_alive(pid) for _, pid in added):
        if time.monotonic() >= deadline or stop.count >= 2:
            for _, pid in added:
                _kill_group(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # not our child: raises, and we probe with a signal
        return waited == 0
    except ChildProcessError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _state_of(pid) not in ("Z", "X")


def _state_of(pid: int) -> str:
    # An exited process whose parent has not reaped it yet still answers kill(pid, 0).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- readiness -------------------------------------------------------------------

def _get_json(url: str, tls: ssl.SSLContext | None) -> tuple[int | None, Any]:
    """GET url; (status, parsed body) or (None, reason) when nothing usable answered."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S, context=tls) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError) as error:
        return None, str(error)


def _readiness(nodes: list[NodeProcess], check_leader: bool,
               tls: ssl.SSLContext | None) -> tuple[bool, str | None, str]:
    """(ready, agreed leader id or None, what is still awaited).

    Only /health is asked: it names the leader too, and it is exempt from rate limits, so a
    RATE_LIMIT cannot turn this polling into 429s.
    """
    leaders = set()
    for node in nodes:
        status, body = _get_json(f"{node.plan.url}/health", tls)
        if status != 200 or not isinstance(body, dict):
            return False, None, f"{node.plan.id} /health answered {status or 'nothing'}"
        leaders.add(body.get("leader_id"))
    if not check_leader:
        return True, None, ""
    if len(leaders) == 1 and None not in leaders:
        return True, leaders.pop(), ""
    return False, None, f"nodes name leaders {sorted(map(str, leaders))}"


def _wait_until_ready(nodes: list[NodeProcess], timeout_s: float, stop: "_StopRequests",
                      tls: ssl.SSLContext | None) -> str | None:
    deadline = time.monotonic() + timeout_s
    while True:
        for node in nodes:
            if node.exit_code is not None:
                raise DevError(f"{node.plan.id} exited with code {node.exit_code} while starting; "
                               f"last lines of {node.plan.log_path}:\n{node.log_tail()}")
        ready, leader, awaited = _readiness(nodes, len(nodes) > 1, tls)
        if ready:
            return leader
        if time.monotonic() >= deadline:
            raise DevError(f"the cluster was not ready after {timeout_s:g}s: {awaited}"
                           f"{_log_tail_of(nodes, awaited)}")
        if stop.wait(READY_POLL_INTERVAL_S):
            raise _Interrupted


def _log_tail_of(nodes: list[NodeProcess], awaited: str) -> str:
    for node in nodes:
        if awaited.startswith(f"{node.plan.id} "):
            return f"; last lines of {node.plan.log_path}:\n{node.log_tail()}"
    return ""


# -- cluster.json and messages ---------------------------------------------------

# Per-node settings: everything else a node of this cluster was given, another node is given too.
PER_NODE_VARIABLES = frozenset({"NODE_ID", "SERVER_HOST", "SERVER_PORT", "METRICS_PORT", "ADVERTISE_URL", "PEERS",
                                "SEEDS", "DATA_DIR", "TLS_CERT_FILE", "TLS_KEY_FILE"})


def shared_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The jobnode settings the nodes share (CLUSTER_SECRET among them): what `add-node` needs."""
    names = {variable.name for variable in VARIABLES} - PER_NODE_VARIABLES
    return {name: value for name, value in env.items() if name in names}


def _write_cluster_file(path: Path, algorithm: str, backends: Backends, nodes: list[NodeProcess],
                        admin: dict[str, str] | None = None, ca_file: Path | None = None,
                        shared_env: dict[str, str] | None = None) -> None:
    document: dict[str, Any] = {
        "algorithm": algorithm,
        "redis_url": backends.redis_url,
        "mongodb_uri": backends.mongodb_uri,
        # The data servers this command started (None for ones given in the environment).
        "redis_pid": backends.redis.pid if backends.redis else None,
        "mongodb_pid": backends.mongo.pid if backends.mongo else None,
        "admin": admin,
        "ca_file": str(ca_file) if ca_file else None,
        "nodes": [
            {"id": n.plan.id, "url": n.plan.url, "metrics_url": n.plan.metrics_url, "pid": n.process.pid}
            for n in nodes
        ],
    }
    if admin is not None:  # flat names too, for shell scripts: jq -r .admin_token cluster.json
        document |= {f"admin_{key}": value for key, value in admin.items()}
    if shared_env is not None:
        # What `jobnode dev add-node` gives a new node; the secrets in it are why the file is 0600.
        document["cluster_secret"] = shared_env.get("CLUSTER_SECRET")
        document["node_environment"] = shared_env
    write_cluster_document(path, document)


def write_cluster_document(path: Path, document: dict[str, Any]) -> None:
    """Replace cluster.json atomically, readable by its owner only."""
    # Readers poll for this file: they must never see half of it. It may hold
    # credentials, hence owner-only.
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _admin_login(url: str, credentials: Credentials, tls: ssl.SSLContext | None) -> dict[str, str]:
    """Log the generated admin in on one node; the token goes to cluster.json for scripts and tests."""
    body = json.dumps({"username": credentials.admin_username, "password": credentials.admin_password}).encode()
    request = urllib.request.Request(f"{url}/auth/login", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S * 5, context=tls) as response:
            token = json.loads(response.read())["access_token"]
    except (OSError, ValueError, KeyError) as error:
        raise DevError(f"the nodes started, but logging the generated admin in at {url} failed: {error}") from None
    return {"username": credentials.admin_username, "password": credentials.admin_password, "token": token}


def _say(message: str) -> None:
    print(f"jobnode dev: {message}", flush=True)


def _redact(uri: str) -> str:
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", uri)


def _print_ready(args: argparse.Namespace, nodes: list[NodeProcess], leader: str | None,
                 backends: Backends, data_dir: Path, admin: dict[str, str] | None = None,
                 ca_file: Path | None = None) -> None:
    print(flush=True)
    if leader:
        agreement = f", leader {leader}"
    elif len(nodes) > 1:
        agreement = " (leader agreement not checked: the nodes have no /api/v1/leader route)"
    else:
        agreement = ""
    print(f"jobnode dev cluster ready: {len(nodes)} node(s), algorithm {args.algorithm}{agreement}")
    for node in nodes:
        print(f"  {node.plan.id}  {node.plan.url}  metrics {node.plan.metrics_url}  "
              f"pid {node.process.pid}  log {node.plan.log_path}")
    print(f"  redis    {_redact(backends.redis_url)}")
    print(f"  mongodb  {_redact(backends.mongodb_uri)}")
    print(f"  data dir {data_dir}  (cluster file {data_dir / 'cluster.json'})")
    auth = ""
    if admin is not None:
        # A dev cluster's own throwaway credentials: printing them is the point of --secure.
        print(f"  auth     on: admin user {admin['username']}  password {admin['password']}")
        print(f"  admin token (expires per JWT_TTL): {admin['token']}")
        auth = f"-H 'Authorization: Bearer {admin['token']}' "
    ca_option = ""
    if ca_file is not None:
        print(f"  tls      on: CA {ca_file} (clients verify the nodes with it; peers use mutual TLS)")
        auth = f"--cacert {ca_file} {auth}"
        ca_option = f" --ca-file {ca_file}"
    print(f"Try: curl -s -X POST {nodes[0].plan.url}/api/v1/jobs -H 'Content-Type: application/json' {auth}"
          """-d '{"type": "echo", "payload": {"hello": "world"}}'""")
    if admin is not None:
        # The login keeps the token for every node of the cluster, so later commands need only --url.
        print(f"  or: echo '{admin['password']}' | jobnode login --url {nodes[0].plan.url}{ca_option}"
              f" --username {admin['username']} --password-stdin")
    elif ca_file is not None:
        print(f"  or: jobnode status --url {nodes[0].plan.url}{ca_option}")
    print("Ctrl-C to stop", flush=True)


# -- signals and the main loop ---------------------------------------------------

class _StopRequests:
    """Counts SIGINT/SIGTERM while installed; the first asks to stop, a second to hurry."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.count += 1

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to timeout_s; True as soon as a stop was requested."""
        deadline = time.monotonic() + timeout_s
        while self.count == 0 and time.monotonic() < deadline:
            # A signal interrupts the sleep, so a stop is seen at once.
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.count > 0


def _watch(nodes: list[NodeProcess], stop: _StopRequests) -> None:
    """Until a stop is requested, report nodes that exit (someone may be demonstrating a failover)."""
    while not stop.wait(WATCH_INTERVAL_S):
        for node in nodes:
            code = node.exit_code
            if code is not None and not node.exit_reported:
                node.exit_reported = True
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                _say(f"{node.plan.id} (pid {node.process.pid}) {how}; the other nodes keep running "
                     f"(log {node.plan.log_path})")


def _lock_data_dir(data_dir: Path) -> IO[str]:
    lock = open(data_dir / ".dev.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise DevError(f"another `jobnode dev` is using {data_dir}; "
                       "stop it or pass another --data-dir") from None
    return lock


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run `jobnode dev` until Ctrl-C/SIGTERM; returns the process exit code."""
    environ = os.environ if environ is None else environ
    data_dir = Path(args.data_dir).resolve()
    try:
        plans = _plan_nodes(args, data_dir)
    except DevError as error:
        print(f"jobnode dev: {error}", file=sys.stderr)
        return EXIT_USAGE
    stop = _StopRequests()
    stop.install()
    try:
        return _run_cluster(args, plans, data_dir, environ, stop)
    except DevError as error:
        print(f"jobnode dev: {error}", file=sys.stderr)
        return EXIT_FAILED
    except _Interrupted:
        print("jobnode dev: interrupted before the cluster was ready", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop.restore()


def _run_cluster(args: argparse.Namespace, plans: list[NodePlan], data_dir: Path,
                 environ: Mapping[str, str], stop: _StopRequests) -> int:
    make_private_dir(data_dir)
    lock = _lock_data_dir(data_dir)
    cluster_file = data_dir / "cluster.json"
    try:
        cluster_file.unlink(missing_ok=True)  # a stale file would send scripts to dead nodes
        _check_ports_free(plans)
        backends = _start_backends(data_dir, environ, secure=getattr(args, "secure", False))
        try:
            return _run_nodes(args, plans, backends, cluster_file, environ, stop)
        finally:
            backends.stop()
            _say("stopped")
    finally:
        cluster_file.unlink(missing_ok=True)
        lock.close()


def _run_nodes(args: argparse.Namespace, plans: list[NodePlan], backends: Backends, cluster_file: Path,
               environ: Mapping[str, str], stop: _StopRequests) -> int:
    cluster_secret = environ.get("CLUSTER_SECRET") or secrets.token_urlsafe(32)
    secure = getattr(args, "secure", False)
    credentials = Credentials.generate() if secure else None
    certs = write_dev_certs(cluster_file.parent / "tls", [plan.id for plan in plans]) if secure else None
    tls = ssl.create_default_context(cafile=str(certs.ca_file)) if certs else None
    ca_file = certs.ca_file if certs else None
    nodes: list[NodeProcess] = []
    try:
        for plan in plans:
            env = _node_environment(plan, plans, backends, args, cluster_secret, environ, credentials, certs)
            nodes.append(_start_node(plan, env))
        leader = _wait_until_ready(nodes, args.startup_timeout_s, stop, tls)
        admin = _admin_login(nodes[0].plan.url, credentials, tls) if credentials else None
        shared = shared_environment(_node_environment(plans[0], plans, backends, args, cluster_secret, environ,
                                                      credentials, certs))
        _write_cluster_file(cluster_file, args.algorithm, backends, nodes, admin, ca_file, shared)
        _print_ready(args, nodes, leader, backends, cluster_file.parent, admin, ca_file)
        _watch(nodes, stop)
        return EXIT_OK
    finally:
        _stop_added_nodes(cluster_file, {node.process.pid for node in nodes}, stop)
        _stop_nodes(nodes, stop)
