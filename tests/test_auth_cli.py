"""`jobnode user add` and `jobnode login` against a real node with auth on; the Python client with a token."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import sys

import pytest

from jobnode.cli.main import main
from jobnode.auth.passwords import verify_password
from jobnode.auth.users import read_users_file
from jobnode.client import AsyncClient, AuthError, PermissionDenied
from tests.auth_fixtures import USERS, auth_env, write_users_file
from tests.harness import start_node, without_node_logs  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def isolated_client_env(monkeypatch, tmp_path):
    for name in ("JOBNODE_URL", "JOBNODE_TOKEN", "JOBNODE_CA_FILE", "JOBNODE_TOKEN_FILE", "USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def run_with_stdin(monkeypatch, capsys, text: str, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, without_node_logs(out), err


def test_user_add_writes_a_private_scrypt_hash(monkeypatch, capsys, tmp_path):
    users_file = tmp_path / "etc" / "users.json"
    code, out, _ = run_with_stdin(monkeypatch, capsys, "Carol-secret-991\n", "user", "add", "carol", "--role", "admin",
                                  "--users-file", str(users_file), "--password-stdin")
    assert code == 0 and "added carol" in out
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    text = users_file.read_text()
    assert "Carol-secret-991" not in text
    carol = read_users_file(users_file)["carol"]
    assert carol.role == "admin" and carol.password_hash.startswith("$scrypt$ln=15,r=8,p=1$")
    assert verify_password("Carol-secret-991", carol.password_hash)
    assert not verify_password("Carol-secret-992", carol.password_hash)

    monkeypatch.setenv("USERS_FILE", str(users_file))  # the node's own variable names the file too
    code, out, _ = run_with_stdin(monkeypatch, capsys, "Dave-secret-1234\n", "user", "add", "dave", "--role", "worker",
                                  "--password-stdin")
    assert code == 0 and set(read_users_file(users_file)) == {"carol", "dave"}


@pytest.mark.parametrize("argv, stdin, message", [
    (["user", "add", "carol", "--role", "user", "--password-stdin"], "Long-enough-1\n", "--users-file"),
    (["user", "add", "carol", "--role", "user", "--password-stdin", "--users-file", "F"], "short\n", "fewer than 8"),
    (["user", "add", "carol", "--role", "user", "--password-stdin", "--users-file", "F"], "password\n", "well-known"),
    (["user", "add", "bad name", "--role", "user", "--password-stdin", "--users-file", "F"], "Long-enough-1\n",
     "user name"),
])
def test_user_add_refuses_bad_input(monkeypatch, capsys, tmp_path, argv, stdin, message):
    argv = [str(tmp_path / "u.json") if arg == "F" else arg for arg in argv]
    code, _, err = run_with_stdin(monkeypatch, capsys, stdin, *argv)
    assert code == 2 and message in err
    assert not (tmp_path / "u.json").exists()


def test_user_add_refuses_an_unknown_role(monkeypatch, capsys, tmp_path):
    code, _, err = run_with_stdin(monkeypatch, capsys, "Long-enough-1\n", "user", "add", "x", "--role", "root",
                                  "--users-file", str(tmp_path / "u.json"), "--password-stdin")
    assert code == 2 and "invalid choice" in err


async def test_login_then_later_commands_use_the_stored_token(start_node, monkeypatch, capsys, tmp_path):
    client = await start_node(WORKER_COUNT="0", **auth_env(write_users_file(tmp_path / "u.json")))
    url = str(client.make_url("")).rstrip("/")
    token_file = tmp_path / "tokens" / "mine.json"
    # The CLI runs its own event loop: give it a thread of its own.
    code, _, err = await asyncio.to_thread(run_with_stdin, monkeypatch, capsys, "", "--url", url, "jobs")
    assert code == 1 and "unauthorized" in err
    code, out, _ = await asyncio.to_thread(
        run_with_stdin, monkeypatch, capsys, USERS["alice"][1] + "\n",
        "--url", url, "--token-file", str(token_file), "login", "--username", "alice", "--password-stdin")
    assert code == 0 and "role user" in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    stored = json.loads(token_file.read_text())["tokens"][url]
    assert stored["username"] == "alice" and stored["access_token"] not in out
    code, out, _ = await asyncio.to_thread(
        run_with_stdin, monkeypatch, capsys, "", "--url", url, "--token-file", str(token_file), "--json", "submit", "echo")
    assert code == 0 and json.loads(out)["submitted_by"] == "alice"
    monkeypatch.setenv("JOBNODE_TOKEN_FILE", str(token_file))
    code, out, _ = await asyncio.to_thread(run_with_stdin, monkeypatch, capsys, "", "--url", url, "--json", "jobs")
    assert code == 0 and len(json.loads(out)["jobs"]) == 1


async def test_login_with_a_wrong_password_stores_nothing(start_node, monkeypatch, capsys, tmp_path):
    client = await start_node(WORKER_COUNT="0", **auth_env(write_users_file(tmp_path / "u.json")))
    url = str(client.make_url("")).rstrip("/")
    code, _, err = await asyncio.to_thread(
        run_with_stdin, monkeypatch, capsys, "wrong-password\n", "--url", url, "login", "--username", "alice",
        "--password-stdin")
    assert code == 1 and "wrong username or password" in err
    assert not (tmp_path / "config" / "jobnode" / "token.json").exists()


async def test_the_python_client_takes_a_token_or_logs_in(start_node, tmp_path):
    node = await start_node(WORKER_COUNT="0", **auth_env(write_users_file(tmp_path / "u.json")))
    url = str(node.make_url("")).rstrip("/")
    async with AsyncClient(url) as anonymous:
        with pytest.raises(AuthError):
            await anonymous.list()
        answer = await anonymous.login("robot", USERS["robot"][1])
        assert answer["role"] == "worker"
        assert (await anonymous.stats())["node"]["id"] == "node-1"  # workers may read stats
        with pytest.raises(PermissionDenied):
            await anonymous.list()
    async with AsyncClient(url, token=answer["access_token"]) as given:
        assert "queue" in await given.stats()


async def test_a_login_to_one_node_serves_the_cluster_s_other_nodes(start_node, monkeypatch, capsys, tmp_path):
    from jobnode.cli.tokens import load_token
    from jobnode.dev.embedded import free_port

    # node-2 need not be up: its address comes from node-1's view of its cluster.
    other = f"http://127.0.0.1:{free_port()}"
    client = await start_node(WORKER_COUNT="0", PEERS=f"node-2={other}", CLUSTER_SECRET="0123456789abcdef" * 4,
                              **auth_env(write_users_file(tmp_path / "u.json")))
    url = str(client.make_url("")).rstrip("/")
    token_file = tmp_path / "tokens.json"
    code, out, _ = await asyncio.to_thread(
        run_with_stdin, monkeypatch, capsys, USERS["alice"][1] + "\n",
        "--url", url, "--token-file", str(token_file), "login", "--username", "alice", "--password-stdin")
    assert code == 0 and f"also serves the cluster's other nodes: {other}" in out
    assert load_token(other, token_file) == load_token(url, token_file) is not None
    assert load_token("http://127.0.0.1:1", token_file) is None  # never a URL outside the cluster
