"""The `jobnode` command: run a node (`serve`, `dev`) and talk to one (`submit`, `jobs`, `status`, `login`).

Exit codes: 0 ok, 1 a request (or a waited-for job) failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from jobnode.client import (
    ApiError,
    AsyncClient,
    AuthError,
    ConnectionFailed,
    NotFoundError,
    PermissionDenied,
    ServiceUnavailable,
    WaitTimeout,
)

DEFAULT_URL = "http://127.0.0.1:8080"
ENV_TOKEN_FILE = "JOBNODE_TOKEN_FILE"
BATCH_CHUNK = 500  # jobs per batch request: well under the server's default MAX_BATCH_SIZE of 1000
# A node makes a batch durable in one group commit, so a few batches in flight keep it busy; more only
# wait in its queue and make each request slower. Single submits are cheap, so more of them overlap.
BATCHES_IN_FLIGHT = 2
SINGLE_SUBMITS_IN_FLIGHT = 8
# A batch of 500 journaled jobs can take seconds on a busy node: wait longer than for other calls.
SUBMIT_TIMEOUT_S = 60.0
JOB_COLUMNS = ("id", "type", "status", "priority", "attempts", "created_at")
JOB_COUNTS = ("pending", "assigned", "running", "retrying", "completed", "failed", "cancelled", "total")
STATUS_TIMEOUT_S = 5.0  # per request of `status`: a dead node must not freeze the screen for 10s
QUEUE_COUNTS = ("pending", "processing", "delayed", "completed", "failed", "dead_letter")


class UsageError(Exception):
    """The command line asks for something impossible (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `jobnode` command and return its exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "dev":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.extra = extra
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"jobnode: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        _print_api_error(exc, args)
        return 1
    except WaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if getattr(args, "watch", None) else 130  # Ctrl-C is how a watch ends


# ---- argument parsing -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobnode", description="Run and use a jobnode cluster.")
    _add_client_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Client options are accepted after the command too; SUPPRESS keeps them from
    # overwriting values given before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_client_options(common, defaults=False)

    serve = commands.add_parser("serve", help="run one node, configured from the environment")
    serve.set_defaults(handler=_cmd_serve)
    # add_help=False: `jobnode dev --help` goes to dev's own parser, built only when needed.
    dev = commands.add_parser("dev", help="run a local cluster with embedded Redis and MongoDB", add_help=False)
    dev.set_defaults(handler=_cmd_dev)

    _add_submit_parser(commands, common)
    _add_jobs_parser(commands, common)

    status = commands.add_parser(
        "status", parents=[common], help="nodes, leader, workers and queue depths",
        description="Show the cluster as one node sees it. --url may list several nodes separated by commas:"
        " the first that answers is asked, so a --watch carries on through that node's death.",
    )
    status.add_argument(
        "--watch", nargs="?", type=_positive_float, const=2.0, metavar="SECONDS", help="refresh every SECONDS (2)"
    )
    status.set_defaults(handler=_client_command(_cmd_status, several_urls=True, timeout_s=STATUS_TIMEOUT_S))

    login = commands.add_parser("login", parents=[common], help="get a token and keep it for later commands")
    login.add_argument("--username", help="asked for on the terminal when not given")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.set_defaults(handler=_client_command(_cmd_login))
    _add_user_parser(commands)

    _add_cert_parser(commands)
    return parser


def _add_user_parser(commands: Any) -> None:
    user = commands.add_parser("user", help="manage the users of USERS_FILE")
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user, or replace one's role and password")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("admin", "user", "worker"))
    add.add_argument("--users-file", type=Path, help="the users file (default: $USERS_FILE)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=_cmd_user_add)


def _add_client_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--url", default=default(None), help=f"node URL (env JOBNODE_URL, else {DEFAULT_URL})")
    parser.add_argument("--token", default=default(None), help="bearer token (env JOBNODE_TOKEN, else `login`)")
    parser.add_argument("--token-file", type=Path, default=default(None),
                        help=f"where `login` keeps tokens (env {ENV_TOKEN_FILE}, else ~/.config/jobnode/token.json)")
    parser.add_argument("--ca-file", default=default(None), help="CA bundle for https (env JOBNODE_CA_FILE)")
    parser.add_argument("--insecure", action="store_true", default=default(False), help="skip TLS verification")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def _add_submit_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    submit = commands.add_parser("submit", parents=[common], help="submit one job or many")
    submit.add_argument("type", help="job type, e.g. echo")
    payload = submit.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="payload as a JSON object")
    payload.add_argument("--payload-file", help="file holding the JSON payload (- for stdin)")
    submit.add_argument("--priority", help="0-10 or low/normal/high")
    submit.add_argument("--max-retries", type=int)
    submit.add_argument("--timeout", type=_positive_float, metavar="SECONDS", help="per-attempt timeout")
    submit.add_argument("--at", metavar="ISO", help="run no earlier than this ISO-8601 time")
    submit.add_argument(
        "--key", help="idempotency key; with --count the prefix of one key per job (KEY-0, KEY-1, ...), made up"
        " when not given, so a timed-out batch is resent without duplicates and a rerun with the same --key"
        " adds only the missing jobs",
    )
    submit.add_argument("--count", type=_positive_int, help="submit N identical jobs")
    submit.add_argument(
        "--concurrency", type=_positive_int, help=f"requests in flight ({BATCHES_IN_FLIGHT} batches, or"
        f" {SINGLE_SUBMITS_IN_FLIGHT} with --no-batch)",
    )
    submit.add_argument("--no-batch", action="store_true", help="with --count: one request per job")
    submit.add_argument("--wait", action="store_true", help="wait until the jobs finish")
    submit.add_argument("--wait-timeout", type=_positive_float, default=300.0, metavar="SECONDS")
    submit.set_defaults(handler=_client_command(_cmd_submit, timeout_s=SUBMIT_TIMEOUT_S))


def _add_jobs_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    jobs = commands.add_parser("jobs", parents=[common], help="list jobs, or act on one")
    _add_list_options(jobs)
    jobs.set_defaults(handler=_client_command(_cmd_jobs_list))
    actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list jobs (the default)")
    _add_list_options(listing)
    for name, help_text in (
        ("get", "show one job"),
        ("cancel", "cancel a job that has not finished"),
        ("retry", "re-run a failed job (admin)"),
        ("delete", "delete a job's record (admin)"),
    ):
        action = actions.add_parser(name, parents=[common], help=help_text)
        action.add_argument("id")
        action.set_defaults(handler=_client_command(_cmd_job_action))


def _add_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", default=argparse.SUPPRESS)
    parser.add_argument("--type", default=argparse.SUPPRESS)
    parser.add_argument("--limit", type=_positive_int, default=argparse.SUPPRESS, help="page size (server: 50)")
    parser.add_argument("--cursor", default=argparse.SUPPRESS, help="continue a previous listing")
    parser.add_argument("--all", action="store_true", default=argparse.SUPPRESS, help="follow every page to the end")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


# ---- running a node -------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here so the client commands work whatever state the server modules are in.
    try:
        from jobnode.core.settings import ConfigError, Settings
    except ModuleNotFoundError as exc:
        raise _unavailable("serve", exc) from None

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"jobnode: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        from jobnode.observability.logs import configure_logging
        from jobnode.node import run_node
    except ModuleNotFoundError as exc:
        raise _unavailable("serve", exc) from None

    configure_logging(settings)
    run_node(settings)
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    try:
        import jobnode.dev.cluster as dev
    except ModuleNotFoundError as exc:
        raise _unavailable("dev", exc) from None

    parser = argparse.ArgumentParser(prog="jobnode dev", description="Run a local cluster for development.")
    dev.add_arguments(parser)
    try:
        dev_args = parser.parse_args(args.extra)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return dev.run(dev_args) or 0


def _unavailable(command: str, exc: ModuleNotFoundError) -> Exception:
    """A missing jobnode module is a broken install (usage error); anything else missing is a real bug."""
    if not (exc.name or "").startswith("jobnode"):
        return exc
    return UsageError(f"`jobnode {command}` is not available in this installation (module {exc.name} is missing)")


# ---- development certificates ---------------------------------------------------------------


def _add_cert_parser(commands: Any) -> None:
    cert = commands.add_parser("cert", help="create a development CA and node certificates for TLS")
    cert.add_argument("--out", required=True, type=Path, help="folder to write into (an existing CA there is reused)")
    cert.add_argument("--nodes", required=True, help="node ids, comma separated: node-1,node-2,node-3")
    cert.add_argument("--hosts", default="", help="more host names or IPs for every certificate, comma separated "
                                                  "(localhost, 127.0.0.1 and ::1 are always in)")
    cert.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the paths as JSON")
    cert.set_defaults(handler=_cmd_cert)


def _cmd_cert(args: argparse.Namespace) -> int:
    from jobnode.dev.certs import write_dev_certs

    nodes = [node.strip() for node in args.nodes.split(",") if node.strip()]
    hosts = [host.strip() for host in args.hosts.split(",") if host.strip()]
    try:
        written = write_dev_certs(args.out, nodes, hosts)
    except (ValueError, OSError) as exc:
        raise UsageError(f"cert: {exc}") from None
    if args.json:
        _print_json({"ca_file": str(written.ca_file), "nodes": {
            node: {"cert_file": str(pair.cert_file), "key_file": str(pair.key_file)}
            for node, pair in written.nodes.items()}}, args)
        return 0
    print(f"CA: {written.ca_file} (its key {written.ca_key_file} signs new nodes; keep it private)")
    for node, pair in written.nodes.items():
        print(f"{node}: TLS_ENABLED=true TLS_CERT_FILE={pair.cert_file} TLS_KEY_FILE={pair.key_file} "
              f"TLS_CA_FILE={written.ca_file}")
    print(f"clients: --ca-file {written.ca_file} (or JOBNODE_CA_FILE)")
    return 0


# ---- talking to a node ----------------------------------------------------------------------

# The CLI reads these few JOBNODE_* variables itself: they configure this client, not a node,
# so they are not part of jobnode.core.settings.Settings.
ENV_URL, ENV_TOKEN, ENV_CA_FILE = "JOBNODE_URL", "JOBNODE_TOKEN", "JOBNODE_CA_FILE"


def _client_command(
    command: Callable[[AsyncClient, argparse.Namespace], Awaitable[int]],
    *,
    several_urls: bool = False,
    **client_options: Any,
) -> Callable[..., int]:
    """Wrap an async command so it runs with a client built from the global options.

    With `several_urls`, --url may list nodes separated by commas (args.urls holds them all);
    the client given to the command talks to the first. `client_options` go to AsyncClient."""

    def run(args: argparse.Namespace) -> int:
        args.urls = _split_urls(args.url or os.environ.get(ENV_URL) or DEFAULT_URL)
        if len(args.urls) > 1 and not several_urls:
            raise UsageError(f"`jobnode {args.command}` talks to one node: give --url a single URL")
        args.url = args.urls[0]
        args.client_options = client_options
        client = client_for(args.url, args, **client_options)

        async def go() -> int:
            async with client:
                return await command(client, args)

        return asyncio.run(go())

    return run


def _split_urls(text: str) -> list[str]:
    urls = [url.strip().rstrip("/") for url in text.split(",") if url.strip()]
    if not urls:
        raise UsageError("--url is empty")
    return urls


def client_for(url: str, args: argparse.Namespace, **options: Any) -> AsyncClient:
    """A client for `url` with the token, CA file and TLS choice of the command line or environment."""
    token = args.token or os.environ.get(ENV_TOKEN) or load_token(url, _token_file(args))
    ca_file = args.ca_file or os.environ.get(ENV_CA_FILE)
    try:
        return AsyncClient(url, token=token, ca_file=ca_file, verify_tls=not args.insecure, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _print_api_error(exc: ApiError, args: argparse.Namespace) -> None:
    if isinstance(exc, ConnectionFailed):
        print(f"error: {exc.message}", file=sys.stderr)
        print(
            f"hint: is a jobnode node running at {', '.join(getattr(args, 'urls', [args.url]))}?"
            f" Point at one with --url URL (or {ENV_URL}).",
            file=sys.stderr,
        )
        return
    print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    if exc.details is not None:
        print(f"  details: {json.dumps(exc.details, sort_keys=True)}", file=sys.stderr)
    if isinstance(exc, AuthError):
        print(f"hint: log in with `jobnode login --url {args.url} --username NAME` or pass --token", file=sys.stderr)


def _print_json(value: Any, args: argparse.Namespace) -> None:
    print(json.dumps(value) if args.json else json.dumps(value, indent=2))


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; number columns right-aligned, missing values as `-`."""
    rows = [list(row) for row in rows]
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    right = [bool(rows) and all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(padded).rstrip()

    return "\n".join([line([header.upper() for header in headers])] + [line(row) for row in cells])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


class Progress:
    """Progress of a long command on stderr: a redrawn bar on a terminal, a line per tenth otherwise."""

    BAR_WIDTH = 30
    REDRAW_INTERVAL_S = 0.1

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._tenths_shown = -1

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            if done >= self.total or now - self._drawn_at >= self.REDRAW_INTERVAL_S:
                self._drawn_at = now
                self.stream.write("\r" + self._bar(done, now))
                self.stream.flush()
            return
        tenths = done * 10 // max(self.total, 1)
        if tenths > self._tenths_shown:  # a log file gets a handful of lines, not a flood
            self._tenths_shown = tenths
            print(f"{self.label}: {done}/{self.total} ({done * 100 // max(self.total, 1)}%)", file=self.stream)

    def _bar(self, done: int, now: float) -> str:
        filled = self.BAR_WIDTH * done // max(self.total, 1)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {done}/{self.total} {done * 100 // max(self.total, 1):3d}% {rate:,.0f}/s"

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---- login and the stored token -------------------------------------------------------------


def token_path(override: Path | None = None) -> Path:
    """Where `jobnode login` keeps tokens: --token-file, else ~/.config/jobnode/token.json (XDG_CONFIG_HOME)."""
    if override is not None:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jobnode" / "token.json"


def _token_file(args: argparse.Namespace) -> Path | None:
    chosen = getattr(args, "token_file", None) or os.environ.get(ENV_TOKEN_FILE)
    return Path(chosen).expanduser() if chosen else None


def load_token(url: str, path: Path | None = None) -> str | None:
    """The stored token for this URL, unless it has expired; tokens are never sent to other URLs."""
    try:
        entry = json.loads(token_path(path).read_text())["tokens"][url]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry.get("expires_at") and entry["expires_at"] <= time.time():
        return None
    return entry.get("access_token")


def save_token(url: str, username: str, answer: dict, path: Path | None = None) -> Path:
    """Store a login answer for this URL in a file only the user can read."""
    path = token_path(path)
    try:
        stored = json.loads(path.read_text())
        stored["tokens"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        stored = {"tokens": {}}
    expires_in = answer.get("expires_in")
    stored["tokens"][url] = {
        "username": username,
        "role": answer.get("role"),
        "access_token": answer["access_token"],
        "expires_at": time.time() + expires_in if isinstance(expires_in, (int, float)) else None,
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Created 0600 from the start, so the token is never readable by others, even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(stored, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def _read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
        if confirm and getpass.getpass("the same password again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("no terminal to ask for the password on; pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    return password


async def _cmd_login(client: AsyncClient, args: argparse.Namespace) -> int:
    if not args.username:
        if args.password_stdin or not sys.stdin.isatty():
            raise UsageError("give --username NAME (there is no terminal to ask on)")
        args.username = input("username: ").strip()
    password = _read_password(args)
    client.token = None  # a stale stored token must not decide how the login goes
    answer = await client.login(args.username, password)
    path = save_token(args.url, args.username, answer, _token_file(args))
    if args.json:
        print(json.dumps({k: answer.get(k) for k in ("token_type", "expires_in", "role")} | {"token_file": str(path)}))
    else:
        print(f"logged in to {args.url} as {args.username} (role {answer.get('role', '-')}); token kept in {path}")
    return 0


def _cmd_user_add(args: argparse.Namespace) -> int:
    """`jobnode user add NAME --role R`: hash the password with scrypt and write the users file (0600)."""
    from jobnode.auth.passwords import hash_password
    from jobnode.auth.users import USERNAME, User, UsersFileError, write_user
    from jobnode.core.settings import weak_password_problem

    path = args.users_file or (Path(os.environ["USERS_FILE"]) if os.environ.get("USERS_FILE") else None)
    if path is None:
        raise UsageError("say which users file to write with --users-file FILE (or set USERS_FILE)")
    if not USERNAME.fullmatch(args.username):
        raise UsageError(f"user name {args.username!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    password = _read_password(args, confirm=True)
    problem = weak_password_problem(password)
    if problem:
        raise UsageError(f"refusing that password: {problem}")
    try:
        replaced = write_user(path.expanduser(), User(args.username, args.role, hash_password(password)))
    except UsersFileError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"{'updated' if replaced else 'added'} {args.username} (role {args.role}) in {path}; "
          "running nodes pick the change up at the next login")
    return 0


# ---- submit ---------------------------------------------------------------------------------


def _job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The submit fields the command line gives (everything but the idempotency key)."""
    priority: Any = args.priority
    if priority is not None and priority.lstrip("-").isdigit():
        priority = int(priority)
    return {
        "type": args.type,
        "payload": _read_payload(args),
        "priority": priority,
        "max_retries": args.max_retries,
        "timeout_seconds": args.timeout,
        "scheduled_at": args.at,
    }


def _read_payload(args: argparse.Namespace) -> dict | None:
    if args.payload is not None:
        text, source = args.payload, "--payload"
    elif args.payload_file is not None:
        source = f"--payload-file {args.payload_file}"
        try:
            text = sys.stdin.read() if args.payload_file == "-" else Path(args.payload_file).read_text()
        except OSError as exc:
            raise UsageError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    else:
        return None
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UsageError(f"{source} must be a JSON object, like '{{\"n\": 1}}'")
    return payload


async def _cmd_submit(client: AsyncClient, args: argparse.Namespace) -> int:
    spec = _job_spec(args)
    if args.count is None:
        job = await client.submit(**spec, idempotency_key=args.key)
        if args.wait:
            job = await client.wait(job["id"], timeout_s=args.wait_timeout)
        _print_json(job, args)
        return 0 if not args.wait or job["status"] == "completed" else 1
    args.key = args.key or f"cli-{uuid.uuid4().hex[:12]}"
    if args.concurrency is None:
        args.concurrency = SINGLE_SUBMITS_IN_FLIGHT if args.no_batch else BATCHES_IN_FLIGHT
    started = time.monotonic()
    ids = await _submit_many(client, spec, args)
    elapsed_s = time.monotonic() - started
    summary: dict[str, Any] = {"submitted": len(ids), "key": args.key, "elapsed_s": round(elapsed_s, 3)}
    summary["jobs_per_s"] = round(len(ids) / max(elapsed_s, 1e-9), 1)
    if not args.json:
        print(f"submitted {len(ids)} jobs in {elapsed_s:.2f}s ({summary['jobs_per_s']:.1f} jobs/s)")
    if not args.wait:
        if args.json:
            print(json.dumps(summary | {"ids": ids}))
        return 0
    return await _wait_and_report(client, ids, started, summary, args)


async def _submit_many(client: AsyncClient, spec: dict, args: argparse.Namespace) -> list[str]:
    """Submit `--count` copies of the job, batched or one by one, `--concurrency` requests at a time.

    Every job carries the key `{args.key}-{index}`: the client resends a keyed request after a timeout
    or a 503, and the node answers a known key with the job it already has instead of a new one."""
    count, size = args.count, (1 if args.no_batch else BATCH_CHUNK)
    ids: list[str] = [""] * count
    progress = Progress("submitting", count)
    submitted = 0

    def keyed(index: int) -> dict:
        return spec | {"idempotency_key": f"{args.key}-{index}"}

    async def send(start: int) -> None:
        nonlocal submitted
        indexes = range(start, min(start + size, count))
        if args.no_batch:
            jobs = [await client.submit(**keyed(start))]
        else:
            jobs = await client.submit_batch([keyed(i) for i in indexes])
        for index, job in zip(indexes, jobs):
            ids[index] = job["id"]
        submitted += len(jobs)
        progress.update(submitted)

    try:
        await _run_pool(range(0, count, size), args.concurrency, send)
    except ApiError:
        progress.finish()
        print(f"submitted {submitted} of {count} jobs before the error; to add the rest without duplicates,"
              f" run the same command with --key {args.key}", file=sys.stderr)
        raise
    progress.finish()
    return ids


async def _run_pool(items: Iterable[Any], concurrency: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """Run `work` on every item, at most `concurrency` at once; the first error stops the rest."""
    shared = iter(items)

    async def worker() -> None:
        for item in shared:  # one iterator for all workers: each item is taken exactly once
            await work(item)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_and_report(
    client: AsyncClient, ids: list[str], started: float, summary: dict, args: argparse.Namespace
) -> int:
    progress = Progress("finishing", len(ids))
    try:
        jobs = await client.wait_many(
            ids,
            timeout_s=args.wait_timeout,
            concurrency=max(16, args.concurrency),
            on_progress=lambda done, _total: progress.update(done),
        )
    finally:
        progress.finish()
    elapsed_s = time.monotonic() - started
    counts = {status: 0 for status in ("completed", "failed", "cancelled")}
    for job in jobs:
        counts[job["status"]] += 1
    rate = len(jobs) / max(elapsed_s, 1e-9)
    if args.json:
        summary |= {"finished_s": round(elapsed_s, 3), "finished_per_s": round(rate, 1), **counts, "ids": ids}
        print(json.dumps(summary))
    else:
        print(
            f"finished {len(jobs)} jobs in {elapsed_s:.2f}s from the first submit ({rate:.1f} jobs/s): "
            + ", ".join(f"{status} {n}" for status, n in counts.items())
        )
    return 0 if counts["completed"] == len(jobs) else 1


# ---- jobs -----------------------------------------------------------------------------------


async def _cmd_jobs_list(client: AsyncClient, args: argparse.Namespace) -> int:
    filters = {"status": getattr(args, "status", None), "type": getattr(args, "type", None),
               "limit": getattr(args, "limit", None)}
    if getattr(args, "all", False):
        if getattr(args, "cursor", None):
            raise UsageError("--all starts from the newest job; it does not take --cursor")
        jobs = [job async for job in client.iter_jobs(**filters)]
        page = {"jobs": jobs, "count": len(jobs), "next_cursor": None}
    else:
        page = await client.list(**filters, cursor=getattr(args, "cursor", None))
    if args.json:
        print(json.dumps(page))
        return 0
    rows = [[job.get(column) for column in JOB_COLUMNS] for job in page["jobs"]]
    print(format_table(JOB_COLUMNS, rows))
    if page.get("next_cursor"):
        print(f"more jobs: add --cursor {page['next_cursor']} (or --all)", file=sys.stderr)
    return 0


async def _cmd_job_action(client: AsyncClient, args: argparse.Namespace) -> int:
    action = {"get": client.get, "cancel": client.cancel, "retry": client.retry, "delete": client.delete}
    answer = await action[args.action](args.id)
    if args.action == "get" or args.json:
        _print_json(answer, args)
    elif args.action == "delete":
        print(f"deleted {args.id}")
    else:
        print(f"{args.id}: {answer.get('status')}")
    return 0


# ---- status ---------------------------------------------------------------------------------

# Answers that mean "ask another node": this one is down or cannot serve right now.
_NODE_UNAVAILABLE = (ConnectionFailed, ServiceUnavailable)


@dataclass
class StatusSnapshot:
    """What `jobnode status` shows, from one node: its stats plus whichever cluster views it may read."""

    url: str
    stats: dict
    leader: dict | None = None  # /api/v1/leader (absent on older nodes)
    nodes: dict | None = None  # /api/v1/nodes (admin)
    workers: dict | None = None  # /api/v1/workers (admin)

    def as_json(self) -> dict:
        return {"url": self.url, "stats": self.stats, "leader": self.leader, "nodes": self.nodes,
                "workers": self.workers}


async def _cmd_status(client: AsyncClient, args: argparse.Namespace) -> int:
    fallbacks = [client_for(url, args, **args.client_options, max_attempts=1) for url in args.urls[1:]]
    if fallbacks:  # with other nodes to ask, asking a silent one again only delays the screen
        client.max_attempts = 1
    try:
        if not args.watch:
            snapshot = await status_snapshot([client, *fallbacks])
            print(json.dumps(snapshot.as_json()) if args.json else render_status(snapshot))
            return 0
        await watch_status(client, args.watch, json_output=args.json, fallbacks=fallbacks)
        return 0
    finally:
        for other in fallbacks:
            await other.close()


async def watch_status(
    client: AsyncClient,
    interval_s: float,
    *,
    json_output: bool = False,
    iterations: int | None = None,
    fallbacks: Sequence[AsyncClient] = (),
) -> None:
    """Redraw the status every `interval_s`; a failing node is shown, not fatal (that is what one watches for).

    With fallbacks, a node that stops answering is replaced by the next one that does, so a watch
    started against the leader keeps going through its failover."""
    clients = [client, *fallbacks]
    clear = sys.stdout.isatty() and not json_output
    shown = 0
    while iterations is None or shown < iterations:
        try:
            snapshot = await status_snapshot(clients)
            url = snapshot.url
            text = json.dumps(snapshot.as_json()) if json_output else render_status(snapshot)
        except ApiError as exc:
            url = ", ".join(c.base_url for c in clients)
            text = json.dumps({"error": {"code": exc.code, "message": exc.message}}) if json_output else (
                f"error: {exc.code}: {exc.message}"
            )
        if clear:
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text if json_output else f"{time.strftime('%H:%M:%S')}  {url}\n\n{text}\n", flush=True)
        shown += 1
        if iterations is None or shown < iterations:
            await asyncio.sleep(interval_s)


async def status_snapshot(clients: list[AsyncClient]) -> StatusSnapshot:
    """Ask the first node that answers; one that answers moves to the front for next time."""
    errors: list[ApiError] = []
    for index, client in enumerate(list(clients)):
        try:
            snapshot = await _snapshot_of(client)
        except _NODE_UNAVAILABLE as exc:
            errors.append(exc)
            continue
        if index:
            clients.insert(0, clients.pop(index))
        return snapshot
    if len(errors) == 1:
        raise errors[0]
    raise ConnectionFailed("no node answered: " + "; ".join(error.message for error in errors))


async def _snapshot_of(client: AsyncClient) -> StatusSnapshot:
    async def optional(fetch: Callable[[], Awaitable[dict]]) -> dict | None:
        try:
            return await fetch()
        except (NotFoundError, PermissionDenied):  # an older node, or a user token: show what we may see
            return None

    stats, leader, nodes, workers = await asyncio.gather(
        client.stats(), optional(client.leader), optional(client.nodes), optional(client.workers)
    )
    return StatusSnapshot(client.base_url, stats, leader, nodes, workers)


def render_status(snapshot: StatusSnapshot) -> str:
    """The status screen: a summary, the node table when readable, then job and queue counts."""
    stats = snapshot.stats
    sections = [_render_summary(snapshot)]
    if snapshot.nodes is not None:
        sections.append(_render_nodes(snapshot.nodes.get("nodes", []), snapshot.workers))
    jobs, queue = stats.get("jobs") or {}, stats.get("queue") or {}
    sections.append(format_table(["jobs", *JOB_COUNTS], [["", *(jobs.get(k) for k in JOB_COUNTS)]]))
    sections.append(format_table(["queue", *QUEUE_COUNTS], [["", *(queue.get(k) for k in QUEUE_COUNTS)]]))
    return "\n\n".join(sections)


def _render_summary(snapshot: StatusSnapshot) -> str:
    stats, leader = snapshot.stats, snapshot.leader or {}
    node, lease = stats.get("node") or {}, stats.get("leader") or {}
    leader_id = leader.get("leader_id") or lease.get("leader_id") or lease.get("id")
    leader_text = " ".join(str(part) for part in (leader_id or "none", leader.get("address")) if part)
    if leader.get("since"):
        leader_text += f" since {leader['since']}"
    summary = [
        ("node", f"{node.get('id', '-')} ({'leader' if node.get('is_leader') else 'follower'})"),
        ("leader", leader_text),
        ("term", leader.get("term", lease.get("term"))),
        ("algorithm", leader.get("algorithm", lease.get("algorithm"))),
        ("nodes", _node_count_text(stats, snapshot.nodes)),
        ("workers", _workers_text(node, snapshot.nodes)),
        ("strategy", node.get("strategy")),
    ]
    throughput = stats.get("throughput")
    if isinstance(throughput, dict) and throughput.get("completed_per_s") is not None:
        window = f" over the last {_cell(throughput['window_s'])}s" if throughput.get("window_s") else ""
        summary.append(("throughput", f"{throughput['completed_per_s']:.1f} jobs/s completed{window}"))
    width = max(len(name) for name, _ in summary)
    return "\n".join(f"{name.ljust(width)}  {_cell(value)}" for name, value in summary)


def _node_count_text(stats: dict, nodes: dict | None) -> Any:
    if nodes is None:
        return stats.get("node_count")
    items = nodes.get("nodes", [])
    healthy = sum(1 for item in items if _node_field(item, "health") in ("healthy", "ok"))
    return f"{len(items)} ({healthy} healthy)"


def _workers_text(node: dict, nodes: dict | None) -> Any:
    """Busy and total workers across the cluster when the node list is readable, else this node's."""
    items = nodes.get("nodes", []) if nodes is not None else [node]
    total = sum(item.get("worker_count") or 0 for item in items)
    if all(item.get("workers_busy") is None for item in items):
        return total if nodes is not None else node.get("worker_count")
    busy = sum(item.get("workers_busy") or 0 for item in items)
    return f"{busy} busy of {total}" + ("" if nodes is not None else " on this node")


NODE_COLUMNS = ("id", "role", "health", "term", "worker_count", "workers_busy", "processed", "failed", "address",
                "last_seen")
NODE_HEADERS = ("node", "role", "health", "term", "workers", "busy", "processed", "failed", "address", "last seen")


def _render_nodes(items: list[dict], workers: dict | None) -> str:
    """One row per node; processed/failed add up its workers' counts when the worker list is readable."""
    done: dict[str, dict[str, int]] = {}
    for worker in (workers or {}).get("workers", []):
        counts = done.setdefault(worker.get("node_id"), {"processed": 0, "failed": 0})
        for key in counts:
            counts[key] += worker.get(key) or 0
    rows = []
    for item in items:
        merged = item | done.get(item.get("id"), {})
        rows.append([_node_field(merged, column) for column in NODE_COLUMNS])
    return format_table(NODE_HEADERS, rows)


def _node_field(item: dict, column: str) -> Any:
    if column == "role":
        return item.get("role") or ("leader" if item.get("is_leader") else "follower")
    value = item.get(column)
    if column == "health" and isinstance(value, dict):  # a health report: show its verdict
        return value.get("status", value)
    return value
