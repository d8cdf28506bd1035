"""The node's configuration: one validated, immutable Settings object built from the environment.

Reading order: the error type, the public value parsers, the rules that turn a variable's text into a
value, the Settings object itself, the table that maps each environment variable onto a field, the
checks that span several fields, and the `.env` file reader.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from jobnode.core.job import DURABILITIES, STORE
from jobnode.core.errors import JobnodeError
from jobnode.core.flow_limits import format_flow_limits, parse_flow_limits
from jobnode.core.retention import DEFAULT_RETENTION_S, FINISHED, parse_pairs
from jobnode.core.queues import QUEUE_NAME_RULE, parse_queues
from jobnode.core.submission import MAX_RETRIES_LIMIT, MAX_TIMEOUT_S, JobDefaults

SECRET_MASK = "***"

ELECTION_ALGORITHMS = ("bully", "raft", "gossip")
LOAD_BALANCER_STRATEGIES = ("round_robin", "least_loaded", "random", "priority")
RETRY_POLICIES = ("fixed", "exponential")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")

# Fields whose values must never be printed. URLs are not listed: only their password part is hidden.
SECRET_FIELDS = frozenset(
    {"cluster_secret", "redis_password", "jwt_secret", "admin_password", "smtp_password"}
)

MIN_JWT_SECRET_BYTES = 32
MIN_ADMIN_PASSWORD_CHARS = 8
# Values found in tutorials, sample configs and framework defaults: an attacker tries these first.
WELL_KNOWN_SECRETS = frozenset(
    {
        "secret", "changeme", "change-me", "change_me", "changeit", "password", "default", "jwt-secret",
        "jwt_secret", "jwtsecret", "secret-key", "secret_key", "secretkey", "mysecret", "supersecret",
        "your-secret-key", "your_secret_key", "your-256-bit-secret", "your-jwt-secret", "jobnode",
        "test", "dev", "development", "admin", "123456", "12345678", "qwerty", "letmein",
        "your-secret-key-change-in-production", "your-super-secret-jwt-key-change-this-in-production",
        "change-this-secret", "change-this-in-production", "please-change-me",
    }
)
_PLACEHOLDER_MARKERS = ("changeme", "change-me", "change_me", "change-this", "change_this", "your-", "your_")


class ConfigError(JobnodeError):
    """A configuration value that stops the node at start; str() is one line an operator can act on."""

    def __init__(
        self,
        variable: str,
        value: str | None,
        allowed: str,
        *,
        reason: str | None = None,
        secret: bool = False,
    ) -> None:
        self.variable = variable
        # Keep only the shown form, so a secret cannot leak through the exception object either.
        self.value = SECRET_MASK if secret and value is not None else value
        self.allowed = allowed
        self.reason = reason
        if value is None:
            head = f"{variable} is not set"
        else:
            head = f"{variable}={self.value if secret else _short_repr(value)} is not valid"
        if reason:
            head += f" ({reason})"
        super().__init__(f"{head}: expected {allowed}")


ENV_LINE_FORMS = "KEY=value, export KEY=value, a # comment or a blank line"

# Settings that may hold a secret may also be read from a file named by NAME_FILE (Docker and
# Kubernetes secrets are files), so the secret need not sit in the process environment.
FILE_VARIABLES = frozenset({"CLUSTER_SECRET", "REDIS_PASSWORD", "JWT_SECRET", "ADMIN_PASSWORD", "SMTP_PASSWORD",
                            "MONGODB_URI", "REDIS_ADDR"})
MAX_SECRET_FILE_BYTES = 64 * 1024


class EnvFileError(ConfigError):
    """A `.env` file that cannot be read, or one of its lines that is not `KEY=value`."""

    def __init__(self, path: Path, line: int | None, problem: str, *, key: str | None = None) -> None:
        self.path = path
        self.line = line
        where = f"{path} line {line}" if line is not None else str(path)
        if key:
            where += f" ({key})"
        JobnodeError.__init__(self, f"{where}: {problem}")
        self.variable, self.value, self.allowed, self.reason = key or str(path), None, ENV_LINE_FORMS, problem


def _short_repr(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


# --- public parsers: text in, value out, ValueError (with a reason when one helps) for bad text ---

_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|s|m|h)")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(rf"({_NUMBER})(b|kb|kib|mb|mib|gb|gib)?")
_SIZE_UNITS = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}
_BOOLS = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}
NODE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
# How a TLS certificate names the node it belongs to: a URI subject alternative name.
NODE_ID_URI_PREFIX = "urn:jobnode:node:"


def parse_duration_s(text: str) -> float:
    """Read `500ms`, `10s`, `1.5s`, `1m`, `1h`, `1m30s` or a plain number of seconds."""
    compact = "".join(text.split()).lower()
    if re.fullmatch(_NUMBER, compact):
        seconds = float(compact)
    elif compact and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", compact):
        seconds = sum(float(n) * _DURATION_UNITS_S[unit] for n, unit in _DURATION_PART.findall(compact))
    else:
        raise ValueError()
    if not math.isfinite(seconds):
        raise ValueError()
    return seconds


def parse_size_bytes(text: str) -> int:
    """Read `1048576`, `512KiB`, `1MiB`, `1MB` (powers of ten) and the like as a byte count."""
    match = _SIZE.fullmatch("".join(text.split()).lower())
    if not match:
        raise ValueError()
    number, unit = match.groups()
    size = float(number) * _SIZE_UNITS[unit or "b"]
    if not math.isfinite(size):
        raise ValueError()
    return int(size)


def parse_bool(text: str) -> bool:
    """Read true/false, 1/0, yes/no or on/off, in any case."""
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError() from None


def parse_module_names(text: str) -> tuple[str, ...]:
    """Read `pkg.mod,other` into module names to import; each part must be a dotted identifier."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not all(piece.isidentifier() for piece in name.split(".")):
            raise ValueError(f"{name!r} is not a module name")
    return names


def parse_peers(text: str) -> dict[str, str]:
    """Read `id=url,id=url` into {node id: base URL}; an empty text means no peers."""
    peers: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        node_id, sep, url = (s.strip() for s in entry.partition("="))
        if not sep:
            raise ValueError(f"entry {entry!r} has no '='")
        if not NODE_ID_PATTERN.fullmatch(node_id):
            raise ValueError(f"{node_id!r} is not a valid node id")
        if node_id in peers:
            raise ValueError(f"node id {node_id!r} appears twice")
        peers[node_id] = _parse_http_url(url, f"the url of {node_id!r}")
    return peers


def parse_seeds(text: str) -> tuple[str, ...]:
    """Read `url,url` into base URLs of existing members; an empty text means none."""
    seeds: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        url = _parse_http_url(entry, f"the seed {entry!r}")
        if url in seeds:
            raise ValueError(f"the seed {url!r} appears twice")
        seeds.append(url)
    return tuple(seeds)


def parse_cidrs(text: str) -> tuple[str, ...] | None:
    """Read `10.0.0.0/8,fd00::/8,192.0.2.7` into normalised CIDR texts; an empty text means none."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks) or None


_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def parse_domains(text: str) -> tuple[str, ...] | None:
    """Read `example.com,mail.example.com` into lower-case domain names; an empty text means none."""
    domains = []
    for entry in (part.strip().lower() for part in text.split(",")):
        if not entry:
            continue
        if not _DOMAIN.fullmatch(entry):
            raise ValueError(f"{entry!r} is not a domain name")
        domains.append(entry)
    return tuple(domains) or None


JOB_TYPE_ROLE_CHOICES = ("admin", "user")


def parse_job_type_roles(text: str) -> dict[str, str]:
    """Read `http=admin,email=user` into {job type: least role that may submit it}."""
    roles: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        type_name, sep, role = (s.strip() for s in entry.partition("="))
        if not sep or not type_name or any(ch.isspace() for ch in type_name):
            raise ValueError(f"entry {entry!r} is not type=role")
        if role not in JOB_TYPE_ROLE_CHOICES:
            raise ValueError(f"the role of {type_name!r} must be admin or user, not {role!r}")
        if type_name in roles:
            raise ValueError(f"job type {type_name!r} appears twice")
        roles[type_name] = role
    return roles


def format_duration(seconds: float) -> str:
    """Write a duration the way an operator would type it (the inverse of parse_duration_s)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """Write a byte count in the largest binary unit that divides it exactly."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")


def mask_url_password(text: str) -> str:
    """Replace the password of every `scheme://user:password@` in text with ***."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{SECRET_MASK}@", text)


def _parse_http_url(text: str, what: str = "the url") -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must start with http:// or https:// and name a host")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f"{what} has an invalid port") from None
    return text.rstrip("/")


def _parse_redis_addr(text: str) -> str:
    parts = urlsplit(text if "://" in text else f"redis://{text}")
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError()
    try:
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError("invalid port") from None
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError("the path of a redis URL is the database number")
    return text


def parse_host_ports(text: str) -> tuple[tuple[str, int], ...]:
    """Read `host:port,host:port` (IPv6 hosts in brackets) into (host, port) pairs; empty means none."""
    found: list[tuple[str, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = urlsplit(f"//{item}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{item!r} has an invalid port") from None
        if not parts.hostname or port is None or parts.path or parts.username:
            raise ValueError(f"{item!r} is not host:port")
        if (parts.hostname, port) in found:
            raise ValueError(f"{item!r} is listed twice")
        found.append((parts.hostname, port))
    return tuple(found)


def _parse_mongodb_uri(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc.rpartition("@")[2]:
        raise ValueError()
    return text


def _parse_email(text: str) -> str:
    address = text[text.find("<") + 1 : text.rfind(">")] if text.endswith(">") else text
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", address):
        raise ValueError()
    return text


# --- rules: how to read one variable, and the words that say what is allowed ---


@dataclass(frozen=True)
class Rule:
    """A parser for a variable's text plus the phrase that completes "expected ..." in errors and docs."""

    parse: Callable[[str], Any]
    allowed: str


def _ranged(parse: Callable[[str], Any], low: float, high: float, allowed: str) -> Rule:
    def parse_in_range(text: str) -> Any:
        value = parse(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError()
        return value

    return Rule(parse_in_range, allowed)


def _int_rule(low: int, high: int, note: str = "") -> Rule:
    def parse_int(text: str) -> int:
        # Bounded length: int() refuses very long digit strings with a message meant for programmers.
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            raise ValueError()
        return int(text)

    return _ranged(parse_int, low, high, f"an integer from {low} to {high}{note}")


def _float_rule(low: float, high: float) -> Rule:
    def parse_float(text: str) -> float:
        if not re.fullmatch(rf"[+-]?{_NUMBER}", text):
            raise ValueError()
        return float(text)

    return _ranged(parse_float, low, high, f"a number from {low:g} to {high:g}")


def _duration_rule(low_s: float, high_s: float) -> Rule:
    span = f"from {format_duration(low_s)} to {format_duration(high_s)}"
    return _ranged(parse_duration_s, low_s, high_s, f"a duration {span}, such as 500ms, 10s or 1m")


def _size_rule(low: int, high: int) -> Rule:
    span = f"from {format_size(low)} to {format_size(high)}"
    return _ranged(parse_size_bytes, low, high, f"a size {span}, such as 1048576, 512KiB or 1MiB")


def _choice_rule(options: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> Rule:
    def parse_choice(text: str) -> str:
        value = text.lower()
        value = (aliases or {}).get(value, value)
        if value not in options:
            raise ValueError()
        return value

    return Rule(parse_choice, "one of " + ", ".join(options))


def _pattern_rule(pattern: str, allowed: str) -> Rule:
    def parse_pattern(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError()
        return text

    return Rule(parse_pattern, allowed)


_TEXT = Rule(str, "any text")
_PATH = Rule(lambda text: Path(text).expanduser(), "a file-system path")
_PORT = _int_rule(1, 65535)
_HOST = _pattern_rule(r"[^\s/]+", "a host name or IP address, such as 0.0.0.0 or 127.0.0.1")
_BOOL = Rule(parse_bool, "true or false (also 1/0, yes/no, on/off)")
_HTTP_URL = Rule(_parse_http_url, "an http:// or https:// URL, such as http://10.0.0.1:8080")
_NODE_ID = _pattern_rule(
    NODE_ID_PATTERN.pattern, "1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
)
_PEERS = Rule(parse_peers, "comma-separated id=url pairs, such as node-2=http://10.0.0.2:8080")
_SEEDS = Rule(parse_seeds, "comma-separated http:// or https:// URLs, such as http://10.0.0.1:8080,http://10.0.0.2:8080")
_MONGODB_URI = Rule(_parse_mongodb_uri, "a mongodb:// or mongodb+srv:// URI")
_MONGODB_DATABASE = _pattern_rule(r"[A-Za-z0-9_-]{1,63}", "1-63 letters, digits, '_' or '-'")
_REDIS_ADDR = Rule(_parse_redis_addr, "host:port, or a redis:// or rediss:// URL")
_HOST_PORTS = Rule(parse_host_ports, "comma-separated host:port pairs, such as 10.0.0.5:26379,10.0.0.6:26379")
# pymongo's read preference modes, spelled as in a MongoDB URI.
MONGODB_READ_PREFERENCES = ("primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest")
_KEY_PREFIX = _pattern_rule(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", "1-64 letters, digits, '.', '_', ':' or '-'")
_USERNAME = _pattern_rule(r"[A-Za-z0-9._@-]{1,64}", "1-64 letters, digits, '.', '_', '@' or '-'")
_CIDRS = Rule(parse_cidrs, "comma-separated IP addresses or CIDR networks, such as 10.0.0.0/8,fd00::/8")
_JOB_TYPE_ROLES = Rule(parse_job_type_roles, "comma-separated type=role pairs (role admin or user), such as http=admin")
_DOMAINS = Rule(parse_domains, "comma-separated mail domains, such as example.com,mail.example.com")
_QUEUES = Rule(parse_queues, f"comma-separated queue names ({QUEUE_NAME_RULE}), each optionally with :N "
                           "workers of its own, such as default,media:2")
_IMPORTS = Rule(parse_module_names, "comma-separated Python module names, such as myapp.jobs,myapp.mail")
_FLOW_LIMITS = Rule(lambda text: format_flow_limits(parse_flow_limits(text)),
                    "';'-separated limits, each scope:name then rate=N/s or rate=N/min, concurrency=N "
                    "and/or paused, such as queue:media rate=5/s concurrency=2; user:* concurrency=4")
_RETENTION = Rule(lambda text: {**DEFAULT_RETENTION_S,
                                **parse_pairs(text, parse_duration_s, keys=FINISHED, what="status")},
                  "comma-separated status=duration pairs for completed, failed and cancelled "
                  "(0 = keep forever), such as completed=7d,failed=30d")
_RETENTION_BY_TYPE = Rule(lambda text: parse_pairs(text, parse_duration_s, keys=None, what="type"),
                          "comma-separated type=duration pairs (0 = keep forever), such as report=90d,echo=1h")
_EMAIL = Rule(_parse_email, "an email address, such as jobnode@example.com or Jobs <jobs@example.com>")


def _default_node_id() -> str:
    # Host names are nearly always valid node ids; bend the odd one into shape rather than refuse to start.
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63]
    return name if NODE_ID_PATTERN.fullmatch(name) else ("node-" + name)[:63].rstrip("-") or "node"


# --- the settings object ---


@dataclass(frozen=True, repr=False)
class Settings:
    """Everything a node is configured with, validated once at start and passed down."""

    # node identity and HTTP
    node_id: str = field(default_factory=_default_node_id)
    node_priority: int = 0
    server_host: str = "0.0.0.0"
    server_port: int = 8080
    advertise_url: str = ""  # "" means derived from the host, port and TLS in __post_init__
    peers: dict[str, str] = field(default_factory=dict)
    seeds: tuple[str, ...] = ()
    cluster_secret: str | None = None
    data_dir: Path = None  # type: ignore[assignment]  # None means ./data/{node_id}, set in __post_init__
    worker_count: int = 10
    worker_prefetch: int = 1
    queues: dict[str, int | None] = field(default_factory=dict)  # {}: default + its processors' queues
    imports: tuple[str, ...] = ()  # modules imported at start, so their processors register
    # storage
    mongodb_uri: str = "mongodb://localhost:27017"
    mongodb_database: str = "jobprocessor"
    mongodb_timeout_s: float = 30.0
    redis_addr: str = "localhost:6379"
    redis_password: str | None = None
    redis_db: int = 0
    redis_key_prefix: str = "jobnode"
    # Sentinel: when set, REDIS_ADDR's host and port are ignored and the primary is asked of these
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    # reads that tolerate staleness (listings, counts); every other read and every write uses the primary
    mongodb_read_preference: str = "primary"
    # election and dispatch
    election_algorithm: str = "bully"
    election_timeout_s: float = 1.0
    election_interval_s: float = 0.25
    load_balancer_strategy: str = "round_robin"
    low_priority_share: float = 0.1
    local_start: bool = True
    # retries and job limits
    retry_policy: str = "exponential"
    max_retries: int = 3
    durability: str = STORE  # a job's acknowledgement waits for the store, or only for Redis (queue)
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 60.0
    retry_multiplier: float = 2.0
    retry_jitter_factor: float = 0.1
    job_timeout_s: float = 300.0
    job_lease_ttl_s: float = 10.0
    # liveness and housekeeping
    leader_lease_ttl_s: float = 3.0
    worker_heartbeat_interval_s: float = 1.0
    worker_ttl_s: float = 5.0
    reconcile_interval_s: float = 15.0
    retention_sweep_interval_s: float = 60.0
    throughput_sample_interval_s: float = 5.0
    commit_max_batch: int = 500
    commit_interval_s: float = 0.02
    shutdown_grace_s: float = 30.0
    leave_timeout_s: float = 5.0
    seed_retry_max_s: float = 30.0
    # the event stream, job progress and job logs
    events_max_entries: int = 100_000
    events_retention_s: float = 3600.0
    events_heartbeat_s: float = 15.0
    events_subscriber_buffer: int = 1000
    job_progress_interval_s: float = 1.0
    job_log_retention_s: float = 7 * 86400.0
    # API limits
    max_body_bytes: int = 1048576
    max_batch_size: int = 1000
    # security
    auth_enabled: bool = False
    jwt_secret: str | None = None
    jwt_ttl_s: float = 3600.0
    users_file: Path | None = None
    admin_username: str | None = None
    admin_password: str | None = None
    rate_limit_per_min: int = 0
    rate_limit_burst: int = 0
    # flow limits as FLOW_LIMITS text (normalised; jobnode.core.flow_limits reads it)
    flow_limits: str | None = None
    # seconds MongoDB keeps a finished job, per final status and per type (0 = forever)
    job_retention_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RETENTION_S))
    job_retention_by_type_s: dict[str, float] = field(default_factory=dict)
    job_type_roles: dict[str, str] = field(default_factory=lambda: {"http": "admin"})
    # the http processor's destination policy (CIDR texts; None: only the built-in refusals)
    http_processor_allow: tuple[str, ...] | None = None
    http_processor_deny: tuple[str, ...] | None = None
    # TLS
    tls_enabled: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    # metrics and logging
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    log_level: str = "info"
    log_format: str = "json"
    # SMTP for the email processor
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "jobnode@localhost"
    smtp_allowed_from: tuple[str, ...] | None = None
    smtp_starttls: bool = False
    dev_mode: bool = False

    def __post_init__(self) -> None:
        if not self.advertise_url:
            object.__setattr__(self, "advertise_url", _default_advertise_url(self))
        if self.data_dir is None:
            object.__setattr__(self, "data_dir", Path("data") / self.node_id)
        _absorb_redis_url_credentials(self)
        _check_sentinels(self)
        _check_timings(self)
        _check_ports_and_urls(self)
        _check_cluster(self)
        _check_tls(self)
        _check_auth(self)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Build settings from the environment (os.environ when None) over an optional .env file.

        An empty value counts as unset, so the default applies. Raises ConfigError on the first bad value.
        """
        merged = read_env_file(env_file) if env_file is not None else {}
        merged.update(os.environ if environ is None else environ)
        values = {}
        for variable in VARIABLES:
            text = merged.get(variable.name, "").strip()
            if variable.name in FILE_VARIABLES:
                text = _value_or_file(variable, text, merged.get(f"{variable.name}_FILE", "").strip())
            if text:
                values[variable.field] = variable.read(text)
        return cls(**values)

    @property
    def redis_url(self) -> str:
        """REDIS_ADDR as a full URL with REDIS_PASSWORD and REDIS_DB folded in, for redis.from_url."""
        parts = urlsplit(self.redis_addr if "://" in self.redis_addr else f"redis://{self.redis_addr}")
        host = parts.hostname or "localhost"
        host_port = f"[{host}]:{parts.port or 6379}" if ":" in host else f"{host}:{parts.port or 6379}"
        user = parts.username or ""
        password = f":{quote(self.redis_password, safe='')}" if self.redis_password else ""
        userinfo = f"{user}{password}@" if user or password else ""
        query = f"?{parts.query}" if parts.query else ""
        return f"{parts.scheme}://{userinfo}{host_port}/{self.redis_db}{query}"

    @property
    def job_defaults(self) -> JobDefaults:
        return JobDefaults(max_retries=self.max_retries, timeout_s=self.job_timeout_s)

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret, including passwords inside URLs: what logs must never show."""
        found = [getattr(self, name) for name in sorted(SECRET_FIELDS)]
        found.append(unquote(urlsplit(self.mongodb_uri).password or ""))
        return tuple(value for value in found if value)

    def redacted(self) -> dict[str, Any]:
        """All fields as JSON-friendly values, with secrets as *** and URL passwords masked."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value is not None:
                value = SECRET_MASK
            elif isinstance(value, str):
                value = mask_url_password(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, dict):
                value = {key: mask_url_password(url) if isinstance(url, str) else url for key, url in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{key}={value!r}" for key, value in self.redacted().items()) + ")"


def _default_advertise_url(s: Settings) -> str:
    host = "127.0.0.1" if s.server_host in ("0.0.0.0", "::", "[::]") else s.server_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if s.tls_enabled else 'http'}://{host}:{s.server_port}"


# --- the environment variables: one row per field; defaults live on Settings ---


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the Settings field it fills, and how its text is read."""

    name: str
    field: str
    rule: Rule

    @property
    def allowed(self) -> str:
        return self.rule.allowed

    @property
    def secret(self) -> bool:
        return self.field in SECRET_FIELDS

    def read(self, text: str) -> Any:
        try:
            return self.rule.parse(text)
        except ValueError as exc:
            shown = text if self.secret else mask_url_password(text)
            reason = str(exc) or None
            raise ConfigError(self.name, shown, self.allowed, reason=reason, secret=self.secret) from None


VARIABLES: tuple[Variable, ...] = (
    Variable("NODE_ID", "node_id", _NODE_ID),
    Variable("NODE_PRIORITY", "node_priority", _int_rule(-1000, 1000)),
    Variable("SERVER_HOST", "server_host", _HOST),
    Variable("SERVER_PORT", "server_port", _PORT),
    Variable("ADVERTISE_URL", "advertise_url", _HTTP_URL),
    Variable("PEERS", "peers", _PEERS),
    Variable("SEEDS", "seeds", _SEEDS),
    Variable("CLUSTER_SECRET", "cluster_secret", _TEXT),
    Variable("DATA_DIR", "data_dir", _PATH),
    Variable("WORKER_COUNT", "worker_count", _int_rule(0, 1000, " (0 = none but those of queues with their own count)")),
    Variable("WORKER_PREFETCH", "worker_prefetch", _int_rule(0, 100)),
    Variable("QUEUES", "queues", _QUEUES),
    Variable("JOBNODE_IMPORTS", "imports", _IMPORTS),
    Variable("MONGODB_URI", "mongodb_uri", _MONGODB_URI),
    Variable("MONGODB_DATABASE", "mongodb_database", _MONGODB_DATABASE),
    Variable("MONGODB_TIMEOUT", "mongodb_timeout_s", _duration_rule(0.1, 600)),
    Variable("REDIS_ADDR", "redis_addr", _REDIS_ADDR),
    Variable("REDIS_PASSWORD", "redis_password", _TEXT),
    Variable("REDIS_DB", "redis_db", _int_rule(0, 15)),
    Variable("REDIS_KEY_PREFIX", "redis_key_prefix", _KEY_PREFIX),
    Variable("REDIS_SENTINELS", "redis_sentinels", _HOST_PORTS),
    Variable("REDIS_SENTINEL_MASTER", "redis_sentinel_master",
             _pattern_rule(r"[A-Za-z0-9._-]{1,64}", "1-64 letters, digits, '.', '_' or '-' (the name the sentinels monitor)")),
    Variable("MONGODB_READ_PREFERENCE", "mongodb_read_preference",
             _choice_rule(MONGODB_READ_PREFERENCES, aliases={m.lower(): m for m in MONGODB_READ_PREFERENCES})),
    Variable("ELECTION_ALGORITHM", "election_algorithm", _choice_rule(ELECTION_ALGORITHMS)),
    Variable("ELECTION_TIMEOUT", "election_timeout_s", _duration_rule(0.05, 60)),
    Variable("ELECTION_INTERVAL", "election_interval_s", _duration_rule(0.01, 10)),
    Variable("LOAD_BALANCER_STRATEGY", "load_balancer_strategy", _choice_rule(LOAD_BALANCER_STRATEGIES)),
    Variable("LOW_PRIORITY_SHARE", "low_priority_share", _float_rule(0, 0.5)),
    Variable("LOCAL_START", "local_start", _BOOL),
    Variable("RETRY_POLICY", "retry_policy", _choice_rule(RETRY_POLICIES)),
    Variable("MAX_RETRIES", "max_retries", _int_rule(0, MAX_RETRIES_LIMIT)),
    Variable("DURABILITY", "durability", _choice_rule(DURABILITIES)),
    Variable("RETRY_BASE_DELAY", "retry_base_delay_s", _duration_rule(0, 3600)),
    Variable("RETRY_MAX_DELAY", "retry_max_delay_s", _duration_rule(0, 86400)),
    Variable("RETRY_MULTIPLIER", "retry_multiplier", _float_rule(1, 100)),
    Variable("RETRY_JITTER_FACTOR", "retry_jitter_factor", _float_rule(0, 1)),
    Variable("JOB_TIMEOUT", "job_timeout_s", _duration_rule(0.001, MAX_TIMEOUT_S)),
    Variable("JOB_LEASE_TTL", "job_lease_ttl_s", _duration_rule(1, 600)),
    Variable("LEADER_LEASE_TTL", "leader_lease_ttl_s", _duration_rule(0.1, 60)),
    Variable("WORKER_HEARTBEAT_INTERVAL", "worker_heartbeat_interval_s", _duration_rule(0.01, 60)),
    Variable("WORKER_TTL", "worker_ttl_s", _duration_rule(0.05, 600)),
    Variable("RECONCILE_INTERVAL", "reconcile_interval_s", _duration_rule(0.01, 86400)),
    Variable("RETENTION_SWEEP_INTERVAL", "retention_sweep_interval_s", _duration_rule(1, 86400)),
    Variable("THROUGHPUT_SAMPLE_INTERVAL", "throughput_sample_interval_s", _duration_rule(0.01, 60)),
    Variable("COMMIT_MAX_BATCH", "commit_max_batch", _int_rule(1, 100000)),
    Variable("COMMIT_INTERVAL", "commit_interval_s", _duration_rule(0, 1)),
    Variable("SHUTDOWN_GRACE", "shutdown_grace_s", _duration_rule(0, 3600)),
    Variable("LEAVE_TIMEOUT", "leave_timeout_s", _duration_rule(0, 600)),
    Variable("SEED_RETRY_MAX", "seed_retry_max_s", _duration_rule(1, 600)),
    Variable("EVENTS_MAX_ENTRIES", "events_max_entries", _int_rule(1000, 10_000_000)),
    Variable("EVENTS_RETENTION", "events_retention_s", _duration_rule(0, 7 * 86400)),
    Variable("EVENTS_HEARTBEAT", "events_heartbeat_s", _duration_rule(0.05, 300)),
    Variable("EVENTS_SUBSCRIBER_BUFFER", "events_subscriber_buffer", _int_rule(1, 100_000)),
    Variable("JOB_PROGRESS_INTERVAL", "job_progress_interval_s", _duration_rule(0, 60)),
    Variable("JOB_LOG_RETENTION", "job_log_retention_s", _duration_rule(1, 365 * 86400)),
    Variable("MAX_BODY_SIZE", "max_body_bytes", _size_rule(2**10, 2**30)),
    Variable("MAX_BATCH_SIZE", "max_batch_size", _int_rule(1, 10000)),
    Variable("AUTH_ENABLED", "auth_enabled", _BOOL),
    Variable("JWT_SECRET", "jwt_secret", _TEXT),
    Variable("JWT_TTL", "jwt_ttl_s", _duration_rule(1, 86400)),
    Variable("USERS_FILE", "users_file", _PATH),
    Variable("ADMIN_USERNAME", "admin_username", _USERNAME),
    Variable("ADMIN_PASSWORD", "admin_password", _TEXT),
    Variable("RATE_LIMIT", "rate_limit_per_min", _int_rule(0, 1_000_000, " requests per minute (0 = off)")),
    Variable("RATE_LIMIT_BURST", "rate_limit_burst", _int_rule(0, 1_000_000, " (0 = same as RATE_LIMIT)")),
    Variable("JOB_TYPE_ROLES", "job_type_roles", _JOB_TYPE_ROLES),
    Variable("FLOW_LIMITS", "flow_limits", _FLOW_LIMITS),
    Variable("JOB_RETENTION", "job_retention_s", _RETENTION),
    Variable("JOB_RETENTION_BY_TYPE", "job_retention_by_type_s", _RETENTION_BY_TYPE),
    Variable("HTTP_PROCESSOR_ALLOW", "http_processor_allow", _CIDRS),
    Variable("HTTP_PROCESSOR_DENY", "http_processor_deny", _CIDRS),
    Variable("TLS_ENABLED", "tls_enabled", _BOOL),
    Variable("TLS_CERT_FILE", "tls_cert_file", _PATH),
    Variable("TLS_KEY_FILE", "tls_key_file", _PATH),
    Variable("TLS_CA_FILE", "tls_ca_file", _PATH),
    Variable("METRICS_ENABLED", "metrics_enabled", _BOOL),
    Variable("METRICS_HOST", "metrics_host", _HOST),
    Variable("METRICS_PORT", "metrics_port", _PORT),
    Variable("LOG_LEVEL", "log_level", _choice_rule(LOG_LEVELS, aliases={"warn": "warning"})),
    Variable("LOG_FORMAT", "log_format", _choice_rule(LOG_FORMATS)),
    Variable("SMTP_HOST", "smtp_host", _HOST),
    Variable("SMTP_PORT", "smtp_port", _PORT),
    Variable("SMTP_USERNAME", "smtp_username", _TEXT),
    Variable("SMTP_PASSWORD", "smtp_password", _TEXT),
    Variable("SMTP_FROM", "smtp_from", _EMAIL),
    Variable("SMTP_ALLOWED_FROM", "smtp_allowed_from", _DOMAINS),
    Variable("SMTP_STARTTLS", "smtp_starttls", _BOOL),
    Variable("DEV_MODE", "dev_mode", _BOOL),
)


# --- checks that involve more than one field (run by Settings.__post_init__) ---


def _absorb_redis_url_credentials(s: Settings) -> None:
    # A redis:// URL may carry its own password and database; fold them into the fields so there is
    # one truth, and refuse a URL that disagrees with REDIS_PASSWORD or REDIS_DB.
    if "://" not in s.redis_addr:
        return
    parts = urlsplit(s.redis_addr)
    db_text = parts.path.strip("/")
    if db_text.isdigit():
        if s.redis_db not in (0, int(db_text)):
            raise ConfigError("REDIS_DB", str(s.redis_db), f"the database number in REDIS_ADDR ({db_text})")
        object.__setattr__(s, "redis_db", int(db_text))
    if parts.password is not None:
        password = unquote(parts.password)
        if s.redis_password not in (None, password):
            raise ConfigError(
                "REDIS_PASSWORD", s.redis_password, "the same password as REDIS_ADDR, or none in REDIS_ADDR",
                reason="REDIS_ADDR carries a different password", secret=True,
            )
        object.__setattr__(s, "redis_password", password)
        without_password = s.redis_addr.replace(f":{parts.password}@", "@", 1)
        object.__setattr__(s, "redis_addr", without_password.replace("://@", "://", 1))


def _check_sentinels(s: Settings) -> None:
    if s.redis_sentinels and not s.redis_sentinel_master:
        raise ConfigError("REDIS_SENTINEL_MASTER", "", "the master name the sentinels monitor (`sentinel monitor NAME ...`)",
                          reason="REDIS_SENTINELS is set")
    if s.redis_sentinel_master and not s.redis_sentinels:
        raise ConfigError("REDIS_SENTINELS", "", _HOST_PORTS.allowed, reason="REDIS_SENTINEL_MASTER is set")


def _check_timings(s: Settings) -> None:
    if s.election_interval_s >= s.election_timeout_s:
        raise ConfigError(
            "ELECTION_INTERVAL", format_duration(s.election_interval_s),
            f"less than ELECTION_TIMEOUT ({format_duration(s.election_timeout_s)})",
        )
    if s.retry_max_delay_s < s.retry_base_delay_s:
        raise ConfigError(
            "RETRY_MAX_DELAY", format_duration(s.retry_max_delay_s),
            f"at least RETRY_BASE_DELAY ({format_duration(s.retry_base_delay_s)})",
        )
    if s.job_lease_ttl_s < 3 * s.worker_heartbeat_interval_s:
        # Heartbeats renew job leases; a lease must outlive two missed heartbeats.
        raise ConfigError(
            "JOB_LEASE_TTL", format_duration(s.job_lease_ttl_s),
            f"at least 3 x WORKER_HEARTBEAT_INTERVAL ({format_duration(3 * s.worker_heartbeat_interval_s)})",
        )
    if s.worker_ttl_s <= s.worker_heartbeat_interval_s:
        raise ConfigError(
            "WORKER_TTL", format_duration(s.worker_ttl_s),
            f"more than WORKER_HEARTBEAT_INTERVAL ({format_duration(s.worker_heartbeat_interval_s)})",
        )


def _check_ports_and_urls(s: Settings) -> None:
    if s.metrics_enabled and s.metrics_port == s.server_port:
        raise ConfigError(
            "METRICS_PORT", str(s.metrics_port), f"a port other than SERVER_PORT ({s.server_port})",
            reason="METRICS_ENABLED=true",
        )
    if s.tls_enabled and not s.advertise_url.startswith("https://"):
        raise ConfigError(
            "ADVERTISE_URL", mask_url_password(s.advertise_url), "an https:// URL",
            reason="TLS_ENABLED=true, so peers must reach this node over https",
        )


MIN_CLUSTER_SECRET_BYTES = 32
CLUSTER_SECRET_ALLOWED = (f"at least {MIN_CLUSTER_SECRET_BYTES} random bytes written as hex or base64 "
                          "(openssl rand -hex 32)")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def _check_cluster(s: Settings) -> None:
    # Peers talk over HTTP; without a shared secret anyone who reaches a node could vote.
    others = [node for node in s.peers if node != s.node_id]
    if others and not s.cluster_secret:
        raise ConfigError("CLUSTER_SECRET", "", CLUSTER_SECRET_ALLOWED, reason="PEERS names other nodes",
                          secret=True)
    if s.seeds and not s.cluster_secret:
        raise ConfigError("CLUSTER_SECRET", "", CLUSTER_SECRET_ALLOWED, reason="SEEDS is set", secret=True)
    problem = cluster_secret_problem(s.cluster_secret) if s.cluster_secret else None
    if problem:
        raise ConfigError("CLUSTER_SECRET", s.cluster_secret, CLUSTER_SECRET_ALLOWED, reason=problem, secret=True)


def cluster_secret_problem(secret: str) -> str | None:
    """Say why a CLUSTER_SECRET is too weak (its holder can vote in elections), or None.

    Its text must encode at least 32 bytes as hex or base64, which is what `openssl rand` and
    `secrets.token_urlsafe` write; a phrase a person made up rarely has that much entropy.
    """
    lowered = secret.strip().lower()
    if lowered in WELL_KNOWN_SECRETS or any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        return "it is a well-known default or placeholder"
    if len(set(secret)) < 8:
        return "it repeats too few characters to be random"
    if _HEX.fullmatch(secret):
        size = len(secret) // 2
    elif _BASE64.fullmatch(secret):
        try:
            size = len(base64.urlsafe_b64decode(secret.replace("+", "-").replace("/", "_").rstrip("=") + "=="))
        except (binascii.Error, ValueError):
            return "it is not hex or base64"
    else:
        return "it is not hex or base64"
    if size < MIN_CLUSTER_SECRET_BYTES:
        return f"it encodes {size} bytes, fewer than {MIN_CLUSTER_SECRET_BYTES}"
    return None


def _check_tls(s: Settings) -> None:
    if not s.tls_enabled:
        return
    plain = sorted(node for node, url in s.peers.items() if node != s.node_id and not url.startswith("https://"))
    if plain:
        raise ConfigError("PEERS", ",".join(f"{node}={s.peers[node]}" for node in plain), "https:// peer URLs",
                          reason="TLS_ENABLED=true, so every peer listens for https only")
    plain_seeds = [url for url in s.seeds if not url.startswith("https://")]
    if plain_seeds:
        raise ConfigError("SEEDS", ",".join(plain_seeds), "https:// seed URLs",
                          reason="TLS_ENABLED=true, so every member listens for https only")
    pem = "the path of an existing PEM file"
    files = {"TLS_CERT_FILE": s.tls_cert_file, "TLS_KEY_FILE": s.tls_key_file, "TLS_CA_FILE": s.tls_ca_file}
    for name, path in files.items():
        if path is None and name != "TLS_CA_FILE":
            raise ConfigError(name, None, pem, reason="required when TLS_ENABLED=true")
        if path is not None and not path.is_file():
            problem = "not a regular file" if path.exists() else "no such file"
            raise ConfigError(name, str(path), pem, reason=problem)


def _check_auth(s: Settings) -> None:
    if not s.auth_enabled:
        return
    problem = jwt_secret_problem(s.jwt_secret)
    if problem:
        raise ConfigError(
            "JWT_SECRET", s.jwt_secret,
            f"a random secret of at least {MIN_JWT_SECRET_BYTES} bytes (e.g. from openssl rand -hex 32)",
            reason=problem, secret=True,
        )
    if s.admin_username is not None and s.admin_password is None:
        raise ConfigError(
            "ADMIN_PASSWORD", None, "the password of ADMIN_USERNAME", reason="ADMIN_USERNAME is set"
        )
    if s.admin_password is not None:
        if s.admin_username is None:
            raise ConfigError("ADMIN_USERNAME", None, "the admin's user name", reason="ADMIN_PASSWORD is set")
        problem = weak_password_problem(s.admin_password)
        if problem:
            allowed = f"at least {MIN_ADMIN_PASSWORD_CHARS} characters, not a well-known default"
            raise ConfigError("ADMIN_PASSWORD", s.admin_password, allowed, reason=problem, secret=True)
    if s.users_file is not None and not s.users_file.is_file():
        problem = "not a regular file" if s.users_file.exists() else "no such file"
        raise ConfigError("USERS_FILE", str(s.users_file), "the path of an existing file", reason=problem)


def jwt_secret_problem(secret: str | None) -> str | None:
    """Say what is wrong with a JWT signing secret, or None when it is acceptable."""
    if secret is None:
        return "required when AUTH_ENABLED=true"
    lowered = secret.strip().lower()
    if lowered in WELL_KNOWN_SECRETS:
        return "it is a well-known default value"
    if any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        return "it is placeholder text from an example, not a random secret"
    if len(set(secret)) == 1:
        return "it repeats a single character"
    size = len(secret.encode("utf-8"))
    if size < MIN_JWT_SECRET_BYTES:
        return f"it is {size} bytes long, fewer than {MIN_JWT_SECRET_BYTES}"
    return None


def weak_password_problem(password: str) -> str | None:
    """Say why a password is too weak to accept (ADMIN_PASSWORD, `jobnode user add`), or None."""
    if password.strip().lower() in WELL_KNOWN_SECRETS:
        return "it is a well-known default password"
    if len(password) < MIN_ADMIN_PASSWORD_CHARS:
        return f"it is {len(password)} characters long, fewer than {MIN_ADMIN_PASSWORD_CHARS}"
    return None


# --- the .env file ---

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_env_file(path: str | Path) -> dict[str, str]:
    """Read `KEY=value` lines from a .env file; a missing file gives {}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError:
        raise EnvFileError(path, None, "is not UTF-8 text") from None
    except OSError as exc:
        raise EnvFileError(path, None, f"cannot be read: {exc.strerror or exc}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(stripped)
        if not match:
            raise EnvFileError(path, number, f"expected {ENV_LINE_FORMS}")
        key, rest = match.groups()
        try:
            values[key] = _env_value(rest)
        except ValueError as exc:
            # The line's text is not echoed: it may hold a secret.
            raise EnvFileError(path, number, str(exc), key=key) from None
    return values


def _env_value(rest: str) -> str:
    if rest[:1] == "'":
        end = rest.find("'", 1)
        if end < 0:
            raise ValueError("unterminated single quote")
        value, tail = rest[1:end], rest[end + 1 :]
    elif rest[:1] == '"':
        value, tail = _double_quoted(rest)
    else:
        # An unquoted value ends at a " #" comment, as in a shell.
        return "" if rest.startswith("#") else re.split(r"\s+#", rest, maxsplit=1)[0].strip()
    if tail.strip() and not tail.strip().startswith("#"):
        raise ValueError("unexpected text after the closing quote")
    return value


def _double_quoted(rest: str) -> tuple[str, str]:
    out: list[str] = []
    i = 1
    while i < len(rest):
        char = rest[i]
        if char == "\\" and i + 1 < len(rest):
            out.append(_ESCAPES.get(rest[i + 1], "\\" + rest[i + 1]))
            i += 2
        elif char == '"':
            return "".join(out), rest[i + 1 :]
        else:
            out.append(char)
            i += 1
    raise ValueError("unterminated double quote")


def _value_or_file(variable: Variable, text: str, file_name: str) -> str:
    """The variable's text, or the content of the file NAME_FILE names (never both)."""
    if not file_name:
        return text
    file_variable = f"{variable.name}_FILE"
    if text:
        raise ConfigError(file_variable, file_name, f"to be unset while {variable.name} is set",
                          reason="both give the same setting")
    path = Path(file_name)
    try:
        with path.open("rb") as source:
            raw = source.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(file_variable, file_name, "a readable file", reason=exc.strerror or str(exc)) from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(file_variable, file_name, f"a file of at most {MAX_SECRET_FILE_BYTES} bytes")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(file_variable, file_name, "a UTF-8 text file") from None
    # A secret file usually ends in a newline that is not part of the secret.
    content = content.strip()
    if not content:
        raise ConfigError(file_variable, file_name, f"a file holding {variable.name}", reason="the file is empty")
    return content
