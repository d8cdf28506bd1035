"""Secrets never reach the logs, error messages or /api/v1/* answers.

A node runs with auth on and debug logging captured; the test logs in (right and wrong),
uses good, tampered and expired tokens, reads every route as an admin, then greps the
captured log and every answer for each secret it used.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from jobnode.core.settings import ConfigError, Settings
from jobnode.observability.logs import configure_logging
from tests.auth_fixtures import (
    ADMIN_NAME,
    ADMIN_PASSWORD,
    JWT_SECRET,
    USERS,
    auth_env,
    bearer,
    forged,
    write_users_file,
)
from tests.harness import start_node  # noqa: F401  (fixture)

CLUSTER_SECRET = "uaxaGaduiQFXZiF2s2hXp92_1G0bNBlrxJ4icGgQJYU"
# A wrong password close to a real one: what a user mistypes is as secret as what they meant.
MISTYPED = USERS["alice"][1] + "x"


@pytest.fixture
def captured_log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


async def test_secrets_stay_out_of_logs_and_answers(start_node, captured_log, tmp_path):
    client = await start_node(WORKER_COUNT="1", LOG_LEVEL="debug", LOG_FORMAT="json",
                              CLUSTER_SECRET=CLUSTER_SECRET, **auth_env(write_users_file(tmp_path / "u.json")))
    configure_logging(client.settings, captured_log)
    answers: list[str] = []

    async def call(method: str, path: str, **kwargs) -> str:
        resp = await client.request(method, path, **kwargs)
        text = await resp.text()
        answers.append(f"{method} {path} {resp.status} {dict(resp.headers)} {text}")
        return text

    admin_login = await client.post("/auth/login", json={"username": ADMIN_NAME, "password": ADMIN_PASSWORD})
    admin_token = (await admin_login.json())["access_token"]
    alice_login = await client.post("/auth/login", json={"username": "alice", "password": USERS["alice"][1]})
    alice_token = (await alice_login.json())["access_token"]
    await call("POST", "/auth/login", json={"username": "alice", "password": MISTYPED})
    await call("POST", "/auth/login", json={"username": "nobody", "password": MISTYPED})
    await call("POST", "/auth/login", json={"username": MISTYPED})
    tampered = alice_token[:-4] + ("AAAA" if not alice_token.endswith("AAAA") else "BBBB")
    expired = forged(exp=1_000_000)
    for token in (tampered, expired, admin_token + "x"):
        await call("GET", "/api/v1/jobs", headers=bearer(token))
    job = await call("POST", "/api/v1/jobs", json={"type": "echo", "payload": {"n": 1}}, headers=bearer(alice_token))
    assert '"submitted_by":"alice"' in job.replace(" ", "")
    for path in ("/api/v1/jobs", "/api/v1/stats", "/api/v1/workers", "/api/v1/nodes", "/api/v1/leader",
                 "/api/v1/election", "/api/v1/election/algorithms", "/api/v1/election/algorithms/raft",
                 "/api/v1/cluster", "/api/v1/elections", "/health", "/api/v1/openapi.json"):
        await call("GET", path, headers=bearer(admin_token))
    await call("POST", "/internal/v1/election", data=b"{}", headers=bearer(admin_token))

    log_text = captured_log.getvalue()
    assert "auth.login_failed" in log_text and "auth.login" in log_text  # the log did capture the logins
    secrets = {"JWT_SECRET": JWT_SECRET, "ADMIN_PASSWORD": ADMIN_PASSWORD, "alice's password": USERS["alice"][1],
               "mistyped password": MISTYPED, "CLUSTER_SECRET": CLUSTER_SECRET, "admin token": admin_token,
               "alice's token": alice_token, "tampered token": tampered, "expired token": expired}
    for name, secret in secrets.items():
        assert secret not in log_text, f"{name} appears in the log"
        for answer in answers:
            assert secret not in answer, f"{name} appears in an answer: {answer[:200]}"


@pytest.mark.parametrize("secret", ["short-secret", "changeme", "x" * 40])
def test_a_refused_jwt_secret_is_named_but_not_shown(secret):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AUTH_ENABLED": "true", "JWT_SECRET": secret}, env_file=None)
    assert "JWT_SECRET" in str(caught.value) and secret not in str(caught.value)
    assert secret not in repr(caught.value.__dict__)


def test_settings_never_show_auth_secrets():
    settings = Settings.from_env(auth_env(), env_file=None)
    for shown in (repr(settings), str(settings.redacted())):
        assert JWT_SECRET not in shown and ADMIN_PASSWORD not in shown
