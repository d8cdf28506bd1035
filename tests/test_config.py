"""Settings: defaults, every parser, error messages, cross-field checks, the .env file, redaction, docs."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path

import pytest

from jobnode.core.settings import (
    VARIABLES,
    ConfigError,
    EnvFileError,
    Settings,
    format_duration,
    jwt_secret_problem,
    mask_url_password,
    parse_bool,
    parse_duration_s,
    parse_peers,
    parse_size_bytes,
    read_env_file,
)
from jobnode.core.submission import JobDefaults

REPO = Path(__file__).resolve().parents[1]
GOOD_JWT = "Qm7f2Lx9Zr4mW8vK1nB6tY0hJ5dG3cPa"  # 32 bytes, random-looking
AUTH = {"AUTH_ENABLED": "true", "JWT_SECRET": GOOD_JWT}


def load(env: dict[str, str] | None = None, env_file: str | Path | None = None) -> Settings:
    return Settings.from_env(env or {}, env_file=env_file)


def config_error(env: dict[str, str], env_file: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(env, env_file)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return caught.value


# --- defaults ---


def test_defaults_follow_the_contract() -> None:
    s = load()
    assert (s.server_host, s.server_port, s.node_priority, s.peers) == ("0.0.0.0", 8080, 0, {})
    assert (s.worker_count, s.worker_prefetch, s.cluster_secret) == (10, 1, None)
    assert (s.mongodb_uri, s.mongodb_database, s.mongodb_timeout_s) == ("mongodb://localhost:27017", "jobprocessor", 30.0)
    assert (s.redis_addr, s.redis_password, s.redis_db, s.redis_key_prefix) == ("localhost:6379", None, 0, "jobnode")
    assert (s.election_algorithm, s.election_timeout_s, s.election_interval_s) == ("bully", 1.0, 0.25)
    assert (s.load_balancer_strategy, s.low_priority_share) == ("round_robin", 0.1)
    assert (s.retry_policy, s.max_retries, s.retry_base_delay_s, s.retry_max_delay_s) == ("exponential", 3, 1.0, 60.0)
    assert (s.retry_multiplier, s.retry_jitter_factor) == (2.0, 0.1)
    assert (s.job_timeout_s, s.job_lease_ttl_s, s.leader_lease_ttl_s) == (300.0, 10.0, 3.0)
    assert (s.worker_heartbeat_interval_s, s.worker_ttl_s, s.reconcile_interval_s) == (1.0, 5.0, 15.0)
    assert (s.commit_max_batch, s.commit_interval_s, s.shutdown_grace_s) == (500, 0.02, 30.0)
    assert (s.max_body_bytes, s.max_batch_size) == (1048576, 1000)
    assert (s.auth_enabled, s.jwt_secret, s.jwt_ttl_s, s.users_file) == (False, None, 3600.0, None)
    assert (s.admin_username, s.admin_password, s.rate_limit_per_min, s.rate_limit_burst) == (None, None, 0, 0)
    assert (s.tls_enabled, s.tls_cert_file, s.tls_key_file, s.tls_ca_file) == (False, None, None, None)
    assert (s.metrics_enabled, s.metrics_port, s.log_level, s.log_format) == (True, 9464, "info", "json")
    assert s.metrics_host == "127.0.0.1"  # plain HTTP without auth: not on every interface unless asked
    assert (s.smtp_host, s.smtp_port, s.smtp_username, s.smtp_password) == (None, 25, None, None)
    assert (s.smtp_from, s.smtp_starttls, s.dev_mode) == ("jobnode@localhost", False, False)
    assert (s.redis_sentinels, s.redis_sentinel_master, s.mongodb_read_preference) == ((), None, "primary")


def test_derived_defaults() -> None:
    s = load({"NODE_ID": "n1"})
    assert s.advertise_url == "http://127.0.0.1:8080"
    assert s.data_dir == Path("data") / "n1"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.job_defaults == JobDefaults(max_retries=3, timeout_s=300.0)


def test_node_id_defaults_to_a_valid_form_of_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build_box!" + "x" * 80)
    node_id = load().node_id
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", node_id)
    assert node_id.startswith("build_box-")


def test_from_env_equals_the_plain_constructor() -> None:
    assert load({"NODE_ID": "n1"}) == Settings(node_id="n1")


def test_every_field_has_exactly_one_variable() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert sorted(v.field for v in VARIABLES) == sorted(f.name for f in dataclasses.fields(Settings))


def test_empty_values_mean_the_default() -> None:
    assert load({"SERVER_PORT": "", "JWT_SECRET": "  ", "NODE_ID": "n1"}) == load({"NODE_ID": "n1"})


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SERVER_PORT", "9001")
    assert Settings.from_env().server_port == 9001


@pytest.mark.parametrize("text, problem", [
    ("Media", "queue name 'Media'"), ("default,default", "listed twice"), ("media:0", "from 1 to 1000"),
    ("media:x", "worker count of 'media'"), ("a" * 65, "queue name"),
])
def test_bad_queues_are_refused_naming_the_queue(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="QUEUES") as refused:
        load({"QUEUES": text})
    assert problem in str(refused.value)


def test_bad_imports_are_refused() -> None:
    with pytest.raises(ConfigError, match="JOBNODE_IMPORTS.*'my-app' is not a module name"):
        load({"JOBNODE_IMPORTS": "ok.mod,my-app"})


def test_settings_are_frozen_and_replace_revalidates() -> None:
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server_port = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="ELECTION_INTERVAL"):
        dataclasses.replace(s, election_interval_s=5.0)


# --- every variable is read into its field ---


def test_every_variable_is_read(tmp_path: Path) -> None:
    pem = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for path in pem.values():
        path.write_text("pem")
    users = tmp_path / "users.json"
    users.write_text("{}")
    env = {
        "NODE_ID": "node-7", "NODE_PRIORITY": "-5", "SERVER_HOST": "10.1.2.3", "SERVER_PORT": "8443",
        "ADVERTISE_URL": "https://node-7.example:8443/", "PEERS": "node-8=https://10.1.2.4:8443",
        "SEEDS": "https://10.1.2.5:8443/, https://10.1.2.6:8443", "LEAVE_TIMEOUT": "2s", "SEED_RETRY_MAX": "1m",
        "CLUSTER_SECRET": "lqX3vv3Do9mgmmKmlnRQ-GKIOzZte2rdg_iJ3FzyYLY", "DATA_DIR": str(tmp_path / "d"), "WORKER_COUNT": "0",
        "WORKER_PREFETCH": "4", "MONGODB_URI": "mongodb://db1:27017,db2:27017/?replicaSet=rs0",
        "MONGODB_DATABASE": "jobs_test", "MONGODB_TIMEOUT": "2s", "REDIS_ADDR": "redis.internal:6380",
        "REDIS_PASSWORD": "redis-pass-1", "REDIS_DB": "2", "REDIS_KEY_PREFIX": "test:run-1",
        "ELECTION_ALGORITHM": "RAFT", "ELECTION_TIMEOUT": "2s", "ELECTION_INTERVAL": "100ms",
        "LOAD_BALANCER_STRATEGY": "least_loaded", "LOW_PRIORITY_SHARE": "0.25", "LOCAL_START": "off", "RETRY_POLICY": "fixed",
        "MAX_RETRIES": "7", "DURABILITY": "queue", "RETRY_BASE_DELAY": "500ms", "RETRY_MAX_DELAY": "1m30s", "RETRY_MULTIPLIER": "1.5",
        "RETRY_JITTER_FACTOR": "0", "JOB_TIMEOUT": "90", "JOB_LEASE_TTL": "20s", "LEADER_LEASE_TTL": "1.5s",
        "WORKER_HEARTBEAT_INTERVAL": "200ms", "WORKER_TTL": "2s", "RECONCILE_INTERVAL": "1h",
        "RETENTION_SWEEP_INTERVAL": "5m",
        "THROUGHPUT_SAMPLE_INTERVAL": "2s",
        "COMMIT_MAX_BATCH": "50", "COMMIT_INTERVAL": "0", "SHUTDOWN_GRACE": "5s", "MAX_BODY_SIZE": "512KiB",
        "MAX_BATCH_SIZE": "10", "AUTH_ENABLED": "yes", "JWT_SECRET": GOOD_JWT, "JWT_TTL": "15m",
        "USERS_FILE": str(users), "ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "Vx8-long-enough",
        "RATE_LIMIT": "600", "RATE_LIMIT_BURST": "50", "TLS_ENABLED": "on", "TLS_CERT_FILE": str(pem["cert"]),
        "TLS_KEY_FILE": str(pem["key"]), "TLS_CA_FILE": str(pem["ca"]), "METRICS_ENABLED": "off",
        "METRICS_HOST": "10.1.2.3", "METRICS_PORT": "8443",
        "LOG_LEVEL": "WARN", "LOG_FORMAT": "console", "SMTP_HOST": "mail.local",
        "SMTP_PORT": "2525", "SMTP_USERNAME": "mailer", "SMTP_PASSWORD": "smtp-pass-1",
        "SMTP_FROM": "Jobs <jobs@example.com>", "SMTP_STARTTLS": "1", "DEV_MODE": "no",
        "JOB_TYPE_ROLES": "http=user,email=admin", "HTTP_PROCESSOR_ALLOW": "10.9.0.0/16",
        "HTTP_PROCESSOR_DENY": "10.9.9.9,fd00::/8", "SMTP_ALLOWED_FROM": "Example.com, mail.example.org",
        "QUEUES": "default, media:2", "JOBNODE_IMPORTS": "myapp.jobs,other",
        "EVENTS_MAX_ENTRIES": "5000", "EVENTS_RETENTION": "10m", "EVENTS_HEARTBEAT": "5s",
        "EVENTS_SUBSCRIBER_BUFFER": "64", "JOB_PROGRESS_INTERVAL": "250ms", "JOB_LOG_RETENTION": "24h",
        "REDIS_SENTINELS": "s1:26379, [fd00::5]:26380", "REDIS_SENTINEL_MASTER": "jobs-main",
        "MONGODB_READ_PREFERENCE": "secondarypreferred",
        "FLOW_LIMITS": "queue:media  rate=5/sec concurrency=2;user:* concurrency=4",
        "JOB_RETENTION": "completed=2d, cancelled=0", "JOB_RETENTION_BY_TYPE": "report=90d,echo=30m",
    }
    assert sorted(env) == sorted(v.name for v in VARIABLES)
    s = load(env)
    expected = {
        "node_id": "node-7", "node_priority": -5, "server_host": "10.1.2.3", "server_port": 8443,
        "advertise_url": "https://node-7.example:8443", "peers": {"node-8": "https://10.1.2.4:8443"},
        "seeds": ("https://10.1.2.5:8443", "https://10.1.2.6:8443"), "leave_timeout_s": 2.0, "seed_retry_max_s": 60.0,
        "cluster_secret": "lqX3vv3Do9mgmmKmlnRQ-GKIOzZte2rdg_iJ3FzyYLY", "data_dir": tmp_path / "d", "worker_count": 0,
        "queues": {"default": None, "media": 2}, "imports": ("myapp.jobs", "other"),
        "worker_prefetch": 4, "mongodb_uri": env["MONGODB_URI"], "mongodb_database": "jobs_test",
        "mongodb_timeout_s": 2.0, "redis_addr": "redis.internal:6380", "redis_password": "redis-pass-1",
        "redis_db": 2, "redis_key_prefix": "test:run-1", "election_algorithm": "raft", "election_timeout_s": 2.0,
        "election_interval_s": 0.1, "load_balancer_strategy": "least_loaded", "low_priority_share": 0.25, "local_start": False,
        "retry_policy": "fixed", "max_retries": 7, "durability": "queue", "retry_base_delay_s": 0.5, "retry_max_delay_s": 90.0,
        "retry_multiplier": 1.5, "retry_jitter_factor": 0.0, "job_timeout_s": 90.0, "job_lease_ttl_s": 20.0,
        "leader_lease_ttl_s": 1.5, "worker_heartbeat_interval_s": 0.2, "worker_ttl_s": 2.0,
        "reconcile_interval_s": 3600.0, "retention_sweep_interval_s": 300.0, "throughput_sample_interval_s": 2.0, "commit_max_batch": 50, "commit_interval_s": 0.0, "shutdown_grace_s": 5.0,
        "max_body_bytes": 524288, "max_batch_size": 10, "auth_enabled": True, "jwt_secret": GOOD_JWT,
        "jwt_ttl_s": 900.0, "users_file": users, "admin_username": "root", "admin_password": "Vx8-long-enough",
        "rate_limit_per_min": 600, "rate_limit_burst": 50, "tls_enabled": True, "tls_cert_file": pem["cert"],
        "tls_key_file": pem["key"], "tls_ca_file": pem["ca"], "metrics_enabled": False,
        "metrics_host": "10.1.2.3", "metrics_port": 8443,
        "log_level": "warning", "log_format": "console", "smtp_host": "mail.local", "smtp_port": 2525,
        "smtp_username": "mailer", "smtp_password": "smtp-pass-1", "smtp_from": "Jobs <jobs@example.com>",
        "smtp_starttls": True, "dev_mode": False, "job_type_roles": {"http": "user", "email": "admin"},
        "http_processor_allow": ("10.9.0.0/16",), "http_processor_deny": ("10.9.9.9/32", "fd00::/8"),
        "smtp_allowed_from": ("example.com", "mail.example.org"),
        "events_max_entries": 5000, "events_retention_s": 600.0, "events_heartbeat_s": 5.0,
        "events_subscriber_buffer": 64, "job_progress_interval_s": 0.25, "job_log_retention_s": 86400.0,
        "redis_sentinels": (("s1", 26379), ("fd00::5", 26380)), "redis_sentinel_master": "jobs-main",
        "mongodb_read_preference": "secondaryPreferred",
        "flow_limits": "queue:media rate=5/s concurrency=2; user:* concurrency=4",
        "job_retention_s": {"completed": 172800.0, "failed": 2592000.0, "cancelled": 0.0},
        "job_retention_by_type_s": {"report": 7776000.0, "echo": 1800.0},
    }
    assert {f.name: getattr(s, f.name) for f in dataclasses.fields(s)} == expected
    assert s.redis_url == "redis://:redis-pass-1@redis.internal:6380/2"
    assert s.job_defaults == JobDefaults(max_retries=7, timeout_s=90.0)


# --- the public parsers ---


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10.0), ("1.5s", 1.5), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0),
     ("2", 2.0), ("0.25", 0.25), ("0", 0.0), (" 10 S ", 10.0), (".5s", 0.5), ("1h1m1s1ms", 3661.001)],
)
def test_parse_duration_good(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-1s", "1.s", "s", "ms10", "1e3", "inf", "nan", "10 sec", "1d", "9" * 400])
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(text)


@pytest.mark.parametrize("seconds", [0.0, 0.005, 0.25, 1.0, 1.5, 60.0, 90.0, 3600.0, 604800.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration_s(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512KiB", 524288), ("1MiB", 1048576), ("1mib", 1048576), ("2 GiB", 2 * 2**30),
     ("1KB", 1000), ("1MB", 10**6), ("100b", 100), ("1.5KiB", 1536)],
)
def test_parse_size_good(text: str, size: int) -> None:
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1 MiBs", "-1", "1TiB", "ten", "1K", "9" * 400 + "GiB"])
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size_bytes(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True),
     ("false", False), ("0", False), ("no", False), ("OFF", False), (" false ", False)],
)
def test_parse_bool_good(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "2", "y", "enabled", "truee", "null"])
def test_parse_bool_bad(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bool(text)


def test_parse_peers_good() -> None:
    assert parse_peers("") == {}
    assert parse_peers(" n2 = http://10.0.0.2:8080/ , n3=https://n3.example , ") == {
        "n2": "http://10.0.0.2:8080",
        "n3": "https://n3.example",
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [("n2", "has no '='"), ("-x=http://a:1", "not a valid node id"), ("n2=ftp://a", "http:// or https://"),
     ("n2=http://", "http:// or https://"), ("n2=http://a:99999", "invalid port"),
     ("n2=http://a,n2=http://b", "appears twice")],
)
def test_parse_peers_bad(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_peers(text)


# --- errors name the variable, the value and what is allowed ---


def test_error_message_format() -> None:
    error = config_error({"ELECTION_TIMEOUT": "abc"})
    assert str(error) == (
        "ELECTION_TIMEOUT='abc' is not valid: expected a duration from 50ms to 1m, such as 500ms, 10s or 1m"
    )
    assert (error.variable, error.value) == ("ELECTION_TIMEOUT", "abc")


# One bad value for every variable whose text can be wrong, with a phrase of what the error must allow.
BAD = {
    "NODE_ID": ("-leading-dash", "starting with a letter or digit"),
    "NODE_PRIORITY": ("1001", "from -1000 to 1000"),
    "SERVER_HOST": ("two words", "host name or IP address"),
    "SERVER_PORT": ("70000", "from 1 to 65535"),
    "ADVERTISE_URL": ("node1:8080", "http:// or https:// URL"),
    "PEERS": ("n2=ftp://x", "id=url pairs"),
    "SEEDS": ("10.0.0.1:8080", "http:// or https:// URLs"),
    "LEAVE_TIMEOUT": ("11m", "from 0s to 10m"),
    "SEED_RETRY_MAX": ("500ms", "from 1s to 10m"),
    "WORKER_COUNT": ("-1", "from 0 to 1000"),
    "WORKER_PREFETCH": ("many", "from 0 to 100"),
    "QUEUES": ("Media:2", "comma-separated queue names"),
    "JOBNODE_IMPORTS": ("my-app", "Python module names"),
    "MONGODB_URI": ("postgres://db", "mongodb://"),
    "MONGODB_DATABASE": ("my.db", "letters, digits"),
    "MONGODB_TIMEOUT": ("forever", "a duration"),
    "REDIS_ADDR": ("http://redis:6379", "redis://"),
    "REDIS_DB": ("16", "from 0 to 15"),
    "REDIS_KEY_PREFIX": ("has space", "letters, digits"),
    "ELECTION_ALGORITHM": ("paxos", "bully, raft, gossip"),
    "ELECTION_TIMEOUT": ("10ms", "from 50ms to 1m"),
    "ELECTION_INTERVAL": ("11s", "from 10ms to 10s"),
    "LOAD_BALANCER_STRATEGY": ("fastest", "round_robin, least_loaded, random, priority"),
    "LOW_PRIORITY_SHARE": ("0.9", "from 0 to 0.5"),
    "RETRY_POLICY": ("linear", "fixed, exponential"),
    "MAX_RETRIES": ("101", "from 0 to 100"),
    "DURABILITY": ("disk", "store, queue"),
    "RETRY_BASE_DELAY": ("2h", "from 0s to 1h"),
    "RETRY_MAX_DELAY": ("-5s", "a duration"),
    "RETRY_MULTIPLIER": ("0.5", "from 1 to 100"),
    "RETRY_JITTER_FACTOR": ("1.5", "from 0 to 1"),
    "JOB_TIMEOUT": ("0", "from 1ms to 168h"),
    "JOB_LEASE_TTL": ("500ms", "from 1s to 10m"),
    "LEADER_LEASE_TTL": ("2m", "from 100ms to 1m"),
    "WORKER_HEARTBEAT_INTERVAL": ("1ms", "from 10ms to 1m"),
    "WORKER_TTL": ("1h", "from 50ms to 10m"),
    "RECONCILE_INTERVAL": ("soon", "a duration"),
    "RETENTION_SWEEP_INTERVAL": ("500ms", "a duration"),
    "THROUGHPUT_SAMPLE_INTERVAL": ("2m", "a duration from 10ms to 1m"),
    "COMMIT_MAX_BATCH": ("0", "from 1 to 100000"),
    "COMMIT_INTERVAL": ("2s", "from 0s to 1s"),
    "SHUTDOWN_GRACE": ("2h", "from 0s to 1h"),
    "EVENTS_MAX_ENTRIES": ("10", "from 1000 to 10000000"),
    "EVENTS_RETENTION": ("8d", "from 0s to 168h"),
    "EVENTS_HEARTBEAT": ("1h", "from 50ms to 5m"),
    "EVENTS_SUBSCRIBER_BUFFER": ("0", "from 1 to 100000"),
    "JOB_PROGRESS_INTERVAL": ("2m", "from 0s to 1m"),
    "JOB_LOG_RETENTION": ("0", "from 1s to 8760h"),
    "MAX_BODY_SIZE": ("2GiB", "from 1KiB to 1GiB"),
    "MAX_BATCH_SIZE": ("10001", "from 1 to 10000"),
    "AUTH_ENABLED": ("maybe", "true or false"),
    "JWT_TTL": ("25h", "from 1s to 24h"),
    "ADMIN_USERNAME": ("a b", "letters, digits"),
    "RATE_LIMIT": ("-1", "requests per minute"),
    "RATE_LIMIT_BURST": ("x", "from 0 to 1000000"),
    "TLS_ENABLED": ("2", "true or false"),
    "METRICS_ENABLED": ("enabled", "true or false"),
    "METRICS_HOST": ("two words", "host name or IP address"),
    "METRICS_PORT": ("0", "from 1 to 65535"),
    "LOG_LEVEL": ("trace", "debug, info, warning, error"),
    "LOG_FORMAT": ("xml", "json, console"),
    "SMTP_HOST": ("mail host", "host name"),
    "SMTP_PORT": ("25a", "from 1 to 65535"),
    "SMTP_FROM": ("not-an-address", "an email address"),
    "SMTP_STARTTLS": ("sometimes", "true or false"),
    "DEV_MODE": ("dev", "true or false"),
    "LOCAL_START": ("maybe", "true or false"),
    "JOB_TYPE_ROLES": ("http", "type=role pairs"),
    "FLOW_LIMITS": ("queue:media rate=-1/s", "rate=N/s"),
    "JOB_RETENTION": ("running=1d", "status=duration pairs"),
    "JOB_RETENTION_BY_TYPE": ("echo=forever", "type=duration pairs"),
    "HTTP_PROCESSOR_ALLOW": ("10.0.0.0/33", "CIDR networks"),
    "HTTP_PROCESSOR_DENY": ("localhost", "CIDR networks"),
    "SMTP_ALLOWED_FROM": ("@example.com", "mail domains"),
    "REDIS_SENTINELS": ("sentinel-1", "host:port pairs"),
    "REDIS_SENTINEL_MASTER": ("my master", "the name the sentinels monitor"),
    "MONGODB_READ_PREFERENCE": ("secondary-ish", "primary, primaryPreferred, secondary, secondaryPreferred, nearest"),
}
# Free text and paths: any value is readable (paths are checked where they are used, see the TLS tests).
FREE_TEXT = {"CLUSTER_SECRET", "DATA_DIR", "REDIS_PASSWORD", "JWT_SECRET", "USERS_FILE", "ADMIN_PASSWORD",
             "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "SMTP_USERNAME", "SMTP_PASSWORD"}


def test_bad_value_table_covers_every_checked_variable() -> None:
    assert set(BAD) | FREE_TEXT == {v.name for v in VARIABLES}
    assert not set(BAD) & FREE_TEXT


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_names_variable_value_and_allowed(name: str) -> None:
    value, allowed = BAD[name]
    error = config_error({name: value})
    assert error.variable == name
    assert str(error).startswith(f"{name}={value!r} is not valid")
    assert allowed in error.allowed
    assert f"expected {error.allowed}" in str(error)


def test_url_password_is_masked_in_an_error() -> None:
    error = config_error({"MONGODB_URI": "postgres://admin:hunter2secret@db/x"})
    assert "hunter2secret" not in str(error)
    assert "admin:***@db" in str(error)


@pytest.mark.parametrize("name", ["SERVER_PORT", "LOW_PRIORITY_SHARE", "JOB_TIMEOUT", "MAX_BODY_SIZE", "NODE_ID"])
def test_huge_values_give_a_short_error(name: str) -> None:
    message = str(config_error({name: "9" * 5000}))
    assert len(message) < 300
    assert message.startswith(f"{name}='999") and "...' is not valid: expected" in message


# --- cross-field checks ---


def test_election_interval_must_be_below_timeout() -> None:
    error = config_error({"ELECTION_TIMEOUT": "500ms", "ELECTION_INTERVAL": "500ms"})
    assert str(error) == "ELECTION_INTERVAL='500ms' is not valid: expected less than ELECTION_TIMEOUT (500ms)"
    assert load({"ELECTION_TIMEOUT": "500ms", "ELECTION_INTERVAL": "499ms"}).election_interval_s == 0.499


def test_retry_max_delay_must_be_at_least_base() -> None:
    error = config_error({"RETRY_BASE_DELAY": "10s", "RETRY_MAX_DELAY": "5s"})
    assert error.variable == "RETRY_MAX_DELAY" and "at least RETRY_BASE_DELAY (10s)" in str(error)
    assert load({"RETRY_BASE_DELAY": "5s", "RETRY_MAX_DELAY": "5s"}).retry_max_delay_s == 5.0


def test_worker_ttl_must_exceed_heartbeat() -> None:
    error = config_error({"WORKER_HEARTBEAT_INTERVAL": "5s", "WORKER_TTL": "5s", "JOB_LEASE_TTL": "1m"})
    assert error.variable == "WORKER_TTL" and "more than WORKER_HEARTBEAT_INTERVAL (5s)" in str(error)


def test_job_lease_must_outlive_two_missed_heartbeats() -> None:
    error = config_error({"WORKER_HEARTBEAT_INTERVAL": "2s", "JOB_LEASE_TTL": "5s"})
    assert error.variable == "JOB_LEASE_TTL" and "at least 3 x WORKER_HEARTBEAT_INTERVAL (6s)" in str(error)


def test_metrics_port_must_differ_from_server_port_only_when_metrics_on() -> None:
    error = config_error({"SERVER_PORT": "9464"})
    assert error.variable == "METRICS_PORT" and "SERVER_PORT (9464)" in str(error)
    assert load({"SERVER_PORT": "9464", "METRICS_ENABLED": "false"}).server_port == 9464


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE"):
        path = tmp_path / f"{name.lower()}.pem"
        path.write_text("-----BEGIN-----")
        files[name] = str(path)
    return files


def test_tls_needs_existing_cert_and_key(pem_files: dict[str, str], tmp_path: Path) -> None:
    on = {"TLS_ENABLED": "true"}
    assert config_error(on).variable == "TLS_CERT_FILE"
    error = config_error({**on, "TLS_CERT_FILE": pem_files["TLS_CERT_FILE"]})
    assert error.variable == "TLS_KEY_FILE" and "required when TLS_ENABLED=true" in str(error)
    missing = str(tmp_path / "nope.pem")
    error = config_error({**on, **pem_files, "TLS_KEY_FILE": missing})
    assert error.variable == "TLS_KEY_FILE" and missing in str(error) and "no such file" in str(error)
    error = config_error({**on, **pem_files, "TLS_CA_FILE": str(tmp_path)})
    assert error.variable == "TLS_CA_FILE" and "not a regular file" in str(error)


def test_tls_on_gives_an_https_advertise_url(pem_files: dict[str, str]) -> None:
    s = load({"TLS_ENABLED": "true", **pem_files})
    assert s.advertise_url == "https://127.0.0.1:8080"
    error = config_error({"TLS_ENABLED": "true", **pem_files, "ADVERTISE_URL": "http://n1:8080"})
    assert error.variable == "ADVERTISE_URL" and "https" in str(error)


def test_tls_files_are_ignored_while_tls_is_off(tmp_path: Path) -> None:
    assert load({"TLS_CERT_FILE": str(tmp_path / "absent.pem")}).tls_enabled is False


@pytest.mark.parametrize(
    ("host", "url"),
    [("0.0.0.0", "http://127.0.0.1:8080"), ("::", "http://127.0.0.1:8080"), ("10.0.0.5", "http://10.0.0.5:8080"),
     ("::1", "http://[::1]:8080"), ("node-1.local", "http://node-1.local:8080")],
)
def test_advertise_url_is_derived_from_host_and_port(host: str, url: str) -> None:
    assert load({"SERVER_HOST": host}).advertise_url == url


@pytest.mark.parametrize(
    ("secret", "problem"),
    [(None, "required when AUTH_ENABLED=true"), ("changeme", "well-known default"),
     ("secret", "well-known default"), ("your-secret-key", "well-known default"),
     ("your-own-secret-for-this-cluster-xyz", "placeholder"), ("please-changeme-before-deploying-it", "placeholder"),
     ("a" * 40, "repeats a single character"), ("Qm7f2Lx9Zr4mW8vK1nB6tY0hJ5dG3cP", "31 bytes long, fewer than 32")],
)
def test_jwt_secret_problems_are_named(secret: str | None, problem: str) -> None:
    env = {"AUTH_ENABLED": "true"} | ({"JWT_SECRET": secret} if secret else {})
    error = config_error(env)
    assert error.variable == "JWT_SECRET"
    assert problem in str(error)
    assert "at least 32 bytes" in str(error)
    if secret:
        assert repr(secret) not in str(error) and error.value == "***"


def test_jwt_secret_length_counts_bytes() -> None:
    assert jwt_secret_problem("éà" * 8) is None  # 16 characters, 32 bytes of UTF-8
    assert jwt_secret_problem(GOOD_JWT) is None


def test_jwt_secret_is_only_checked_with_auth_on() -> None:
    assert load({"JWT_SECRET": "secret"}).jwt_secret == "secret"
    assert load(AUTH).auth_enabled is True


def test_admin_credentials_go_together_and_must_be_strong(tmp_path: Path) -> None:
    assert config_error({**AUTH, "ADMIN_USERNAME": "root"}).variable == "ADMIN_PASSWORD"
    assert config_error({**AUTH, "ADMIN_PASSWORD": "Vx8-long-enough"}).variable == "ADMIN_USERNAME"
    weak = config_error({**AUTH, "ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "admin"})
    assert "well-known default password" in str(weak) and "'admin'" not in str(weak)
    short = config_error({**AUTH, "ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "k3y!x"})
    assert "5 characters long" in str(short) and "k3y!x" not in str(short)
    missing = config_error({**AUTH, "USERS_FILE": str(tmp_path / "users.json")})
    assert missing.variable == "USERS_FILE" and "no such file" in str(missing)


# --- Redis address forms ---


@pytest.mark.parametrize(
    ("env", "url"),
    [({"REDIS_ADDR": "cache:6380"}, "redis://cache:6380/0"),
     ({"REDIS_ADDR": "cache"}, "redis://cache:6379/0"),
     ({"REDIS_ADDR": "[::1]:7000", "REDIS_DB": "3"}, "redis://[::1]:7000/3"),
     ({"REDIS_ADDR": "rediss://cache:6380", "REDIS_PASSWORD": "p@ss/word"}, "rediss://:p%40ss%2Fword@cache:6380/0"),
     ({"REDIS_ADDR": "redis://app@cache:6379/5", "REDIS_PASSWORD": "pw"}, "redis://app:pw@cache:6379/5"),
     ({"REDIS_ADDR": "redis://:s3cret@cache:6379/4"}, "redis://:s3cret@cache:6379/4")],
)
def test_redis_url(env: dict[str, str], url: str) -> None:
    assert load(env).redis_url == url


@pytest.mark.parametrize(("env", "variable", "reason"), [
    ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINEL_MASTER", "REDIS_SENTINELS is set"),
    ({"REDIS_SENTINEL_MASTER": "jobs"}, "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER is set"),
    ({"REDIS_SENTINELS": "s1:26379,s1:26379", "REDIS_SENTINEL_MASTER": "jobs"}, "REDIS_SENTINELS", "listed twice"),
    ({"REDIS_SENTINELS": "s1:99999", "REDIS_SENTINEL_MASTER": "jobs"}, "REDIS_SENTINELS", "invalid port"),
])
def test_sentinel_settings_go_together(env: dict[str, str], variable: str, reason: str) -> None:
    error = config_error(env)
    assert error.variable == variable
    assert reason in str(error)


def test_redis_url_credentials_move_into_the_fields() -> None:
    s = load({"REDIS_ADDR": "redis://:s3cret@cache:6379/4"})
    assert (s.redis_addr, s.redis_password, s.redis_db) == ("redis://cache:6379/4", "s3cret", 4)


def test_redis_url_that_disagrees_with_the_fields_is_refused() -> None:
    assert config_error({"REDIS_ADDR": "redis://cache/4", "REDIS_DB": "5"}).variable == "REDIS_DB"
    error = config_error({"REDIS_ADDR": "redis://:pw-in-url@cache", "REDIS_PASSWORD": "pw-in-field"})
    assert error.variable == "REDIS_PASSWORD" and "pw-in" not in str(error)


# --- the .env file ---


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_env_file_forms(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        "\ufeff# a comment\n\n"
        "NODE_ID=file-node\n"
        "export SERVER_PORT=9100\n"
        "  WORKER_COUNT = 3   # inline comment\n"
        "SMTP_FROM=Jobs <jobs@example.com>\n"
        "SMTP_HOST='mail.local' # comment\n"
        "SMTP_PASSWORD='pw #1' \n"
        'REDIS_PASSWORD="two\\nlines \\"quoted\\" #x"  # comment\n'
        "SMTP_USERNAME=a#b\n"
        "JWT_SECRET= # nothing but a comment\n"
        "UNRELATED_TOOL_SETTING=ignored\n",
    )
    assert read_env_file(path)["REDIS_PASSWORD"] == 'two\nlines "quoted" #x'
    s = load({}, path)
    assert (s.node_id, s.server_port, s.worker_count) == ("file-node", 9100, 3)
    assert (s.smtp_from, s.smtp_host, s.smtp_password) == ("Jobs <jobs@example.com>", "mail.local", "pw #1")
    assert s.smtp_username == "a#b"
    assert s.jwt_secret is None


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    path = write_env(tmp_path, "SERVER_PORT=9100\nMETRICS_PORT=9200\n")
    s = load({"SERVER_PORT": "9300"}, path)
    assert (s.server_port, s.metrics_port) == (9300, 9200)


def test_env_file_values_are_validated_like_the_environment(tmp_path: Path) -> None:
    error = config_error({}, write_env(tmp_path, "SERVER_PORT=http\n"))
    assert error.variable == "SERVER_PORT" and error.value == "http"


def test_missing_env_file_is_fine(tmp_path: Path) -> None:
    assert load({"NODE_ID": "n1"}, tmp_path / "absent.env") == load({"NODE_ID": "n1"})


def test_default_env_file_is_dot_env_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(tmp_path, "SERVER_PORT=9400\n")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).server_port == 9400
    assert Settings.from_env({}, env_file=None).server_port == 8080


@pytest.mark.parametrize(
    ("line", "problem"),
    [("just words here", "expected KEY=value"), ("1KEY=x", "expected KEY=value"),
     ('JWT_SECRET="unterminated-s3cret', "(JWT_SECRET): unterminated double quote"),
     ("JWT_SECRET='unterminated-s3cret", "(JWT_SECRET): unterminated single quote"),
     ("JWT_SECRET='s3cret' trailing", "(JWT_SECRET): unexpected text after the closing quote")],
)
def test_invalid_env_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = write_env(tmp_path, f"# header\nNODE_ID=n1\n{line}\n")
    error = config_error({}, path)
    assert isinstance(error, EnvFileError)
    assert (error.path, error.line) == (path, 3)
    assert str(error).startswith(f"{path} line 3")
    assert problem in str(error)
    assert "s3cret" not in str(error)


def test_unreadable_env_file_is_a_config_error(tmp_path: Path) -> None:
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"KEY=\xff\xfe\n")
    assert "is not UTF-8 text" in str(config_error({}, binary))
    assert "cannot be read" in str(config_error({}, tmp_path))  # a directory


# --- secrets stay hidden ---

SECRETS = {
    "JWT_SECRET": GOOD_JWT,
    "REDIS_PASSWORD": "redis-pw-0001",
    "CLUSTER_SECRET": "X1vnj_Bvj0IHtw64rJMAxU8ZqHIfEWcRRRHqsXEP4LA",
    "ADMIN_PASSWORD": "admin-pw-0003",
    "SMTP_PASSWORD": "smtp-pw-0004",
}


def secret_settings() -> Settings:
    return load(
        {**SECRETS, "AUTH_ENABLED": "true", "ADMIN_USERNAME": "root",
         "MONGODB_URI": "mongodb://app:mongo-pw-0005@db:27017/jobs",
         "PEERS": "n2=http://peer:peer-pw-0006@10.0.0.2:8080"}
    )


def test_repr_and_redacted_never_show_secrets() -> None:
    s = secret_settings()
    shown = [repr(s), str(s), json.dumps(s.redacted())]
    hidden = [*SECRETS.values(), "mongo-pw-0005", "peer-pw-0006"]
    for text in shown:
        for secret in hidden:
            assert secret not in text
    redacted = s.redacted()
    assert redacted["jwt_secret"] == redacted["admin_password"] == "***"
    assert redacted["mongodb_uri"] == "mongodb://app:***@db:27017/jobs"
    assert redacted["peers"] == {"n2": "http://peer:***@10.0.0.2:8080"}
    assert redacted["smtp_host"] is None and redacted["server_port"] == 8080
    assert set(redacted) == {f.name for f in dataclasses.fields(Settings)}


def test_secret_values_lists_every_secret() -> None:
    assert set(secret_settings().secret_values()) == {*SECRETS.values(), "mongo-pw-0005"}


def test_mask_url_password() -> None:
    assert mask_url_password("see redis://:pw@h:1/0 and mongodb://u:p%40ss@h") == (
        "see redis://:***@h:1/0 and mongodb://u:***@h"
    )
    assert mask_url_password("http://user@host/path") == "http://user@host/path"


# --- .env.example and docs/configuration.md stay in step with the code ---
# VARIABLES in jobnode/core/settings.py is the one list of what a node reads. The reference table in
# docs/configuration.md and .env.example must list exactly those variables (no more, no fewer, each
# once), with the defaults the code really uses, the code's own "allowed" phrase, and one meaning
# that both files share word for word.

# Variables whose default is computed from other settings; their documented default is a phrase.
DERIVED_DEFAULTS = {"NODE_ID", "ADVERTISE_URL", "DATA_DIR"}
VARIABLE_ROW = re.compile(r"\| `([A-Z][A-Z0-9_]*)` \|(.*)\|")


def example_lines() -> dict[str, str]:
    return read_env_file(REPO / ".env.example")


def docs_table() -> list[tuple[str, list[str]]]:
    rows = []
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        match = VARIABLE_ROW.fullmatch(line)
        if match:
            rows.append((match[1], [cell.strip() for cell in match[2].split(" | ")]))
    return rows


def docs_rows() -> dict[str, list[str]]:
    return dict(docs_table())


def code_default(variable) -> object:
    return getattr(load(), variable.field)


def test_docs_table_lists_every_variable_once_and_nothing_else() -> None:
    documented = [name for name, _ in docs_table()]
    assert len(documented) == len(set(documented)), "a variable is documented twice"
    assert sorted(documented) == sorted(v.name for v in VARIABLES)


def test_docs_table_gives_the_code_default_and_allowed_values() -> None:
    rows = docs_rows()
    for variable in VARIABLES:
        default, allowed, meaning = rows[variable.name]
        assert allowed == variable.allowed, variable.name
        assert meaning, variable.name
        if default.startswith("`"):
            assert variable.read(default.strip("`")) == code_default(variable), variable.name
        elif variable.name in DERIVED_DEFAULTS:
            assert default.startswith("*") and default.endswith("*") and default != "*none*", variable.name
        else:
            assert default == "*none*", variable.name
            assert code_default(variable) in (None, {}, ()), f"{variable.name} has a default: document it"


def test_env_example_lists_every_variable_once_and_nothing_else() -> None:
    assigned = re.findall(r"^([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), flags=re.M)
    assert len(assigned) == len(set(assigned)), "a variable is set twice in .env.example"
    assert sorted(assigned) == sorted(v.name for v in VARIABLES)
    assert sorted(example_lines()) == sorted(v.name for v in VARIABLES)


def test_env_example_gives_the_real_defaults() -> None:
    assert load({}, REPO / ".env.example") == load()
    example, rows = example_lines(), docs_rows()
    for variable in VARIABLES:
        if example[variable.name]:
            assert variable.read(example[variable.name]) == code_default(variable), variable.name
            assert rows[variable.name][0] == f"`{example[variable.name]}`", variable.name
        else:  # empty: the default applies, which must be a computed one or none at all
            assert rows[variable.name][0].startswith("*"), variable.name


def test_env_example_comments_every_variable_as_the_docs_do() -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    rows = docs_rows()
    for variable in VARIABLES:
        index = lines.index(f"{variable.name}={example_lines()[variable.name]}")
        _, allowed, meaning = rows[variable.name]
        assert lines[index - 1] == f"# {meaning.replace('`', '')} Allowed: {allowed}.", variable.name


def test_peers_require_a_cluster_secret() -> None:
    error = config_error({"NODE_ID": "node-1", "PEERS": "node-2=http://10.0.0.2:8080"})
    assert error.variable == "CLUSTER_SECRET" and "PEERS names other nodes" in str(error)
    short = config_error({"PEERS": "node-2=http://10.0.0.2:8080", "CLUSTER_SECRET": "tiny"})
    assert "tiny" not in str(short) and "at least 32 random bytes" in str(short)


@pytest.mark.parametrize(("secret", "reason"), [
    ("changeme-changeme", "well-known default or placeholder"),
    ("shared-cluster-secret-1234", "encodes 19 bytes, fewer than 32"),
    ("0123456789abcdef" * 2, "encodes 16 bytes, fewer than 32"),
    ("z" * 64, "too few characters"),
    ("a phrase with spaces that is long enough!", "not hex or base64"),
])
def test_a_weak_cluster_secret_is_refused(secret: str, reason: str) -> None:
    error = config_error({"CLUSTER_SECRET": secret})
    assert error.variable == "CLUSTER_SECRET" and reason in str(error) and secret not in str(error)


@pytest.mark.parametrize("secret", ["0123456789abcdef" * 4, "lqX3vv3Do9mgmmKmlnRQ-GKIOzZte2rdg_iJ3FzyYLY",
                                    "tK9f0m1QvS8cXbR2uW5yZ3aE6hJ4nP7gL0dB+sV/oIk="])
def test_random_cluster_secrets_in_hex_or_base64_are_accepted(secret: str) -> None:
    assert load({"CLUSTER_SECRET": secret}).cluster_secret == secret


# --- secrets from files (NAME_FILE, as Docker and Kubernetes mount them) ---


def test_a_secret_may_come_from_the_file_its_name_file_variable_names(tmp_path: Path) -> None:
    secret_file = tmp_path / "cluster_secret"
    secret_file.write_text("0123456789abcdef" * 4 + "\n")  # the trailing newline is not part of it
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(GOOD_JWT)
    s = load({"CLUSTER_SECRET_FILE": str(secret_file), "JWT_SECRET_FILE": str(jwt_file),
              "AUTH_ENABLED": "true", "ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "Vx8-long-enough"})
    assert s.cluster_secret == "0123456789abcdef" * 4 and s.jwt_secret == GOOD_JWT


@pytest.mark.parametrize("setup, variable, message", [
    (lambda d: {"CLUSTER_SECRET": "x" * 20, "CLUSTER_SECRET_FILE": str(d / "s")}, "CLUSTER_SECRET_FILE",
     "both give the same setting"),
    (lambda d: {"JWT_SECRET_FILE": str(d / "missing")}, "JWT_SECRET_FILE", "No such file or directory"),
    (lambda d: {"REDIS_PASSWORD_FILE": str(d / "empty")}, "REDIS_PASSWORD_FILE", "the file is empty"),
    (lambda d: {"ADMIN_PASSWORD_FILE": str(d)}, "ADMIN_PASSWORD_FILE", "a readable file"),
])
def test_a_bad_secret_file_names_its_variable_and_never_its_content(tmp_path: Path, setup, variable, message):
    (tmp_path / "s").write_text("the-secret-in-the-file")
    (tmp_path / "empty").write_text("\n")
    error = config_error(setup(tmp_path))
    assert error.variable == variable and message in str(error)
    assert "the-secret-in-the-file" not in str(error)


def test_only_settings_that_may_hold_a_secret_are_read_from_files(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    port_file.write_text("9999")
    assert load({"SERVER_PORT_FILE": str(port_file)}).server_port == 8080
