"""Tokens die with their user: a removed user, or a changed role or password, is refused at the next request."""

from __future__ import annotations

import time

from jobnode.auth.passwords import hash_password
from jobnode.auth.users import User, read_users_file, write_user
from tests.auth_fixtures import (
    ADMIN_NAME,
    ADMIN_PASSWORD,
    FAST_LOG2_N,
    USERS,
    auth_env,
    bearer,
    forged,
    write_users_file,
)
from tests.harness import start_node  # noqa: F401  (fixture)


async def token_of(client, username: str, password: str) -> str:
    answer = await client.post("/auth/login", json={"username": username, "password": password})
    assert answer.status == 200
    return (await answer.json())["access_token"]


def write_only(path, users: dict[str, User]) -> None:
    path.unlink()
    for user in users.values():
        write_user(path, user)


async def test_a_removed_user_s_token_is_refused_at_the_next_request(start_node, tmp_path):
    users_file = tmp_path / "u.json"
    client = await start_node(WORKER_COUNT="0", **auth_env(write_users_file(users_file)))
    alice, bob = await token_of(client, "alice", USERS["alice"][1]), await token_of(client, "bob", USERS["bob"][1])
    assert (await client.get("/api/v1/jobs", headers=bearer(alice))).status == 200
    remaining = {name: user for name, user in read_users_file(users_file).items() if name != "alice"}
    write_only(users_file, remaining)
    refused = await client.get("/api/v1/jobs", headers=bearer(alice))
    assert refused.status == 401 and "removed or changed" in (await refused.json())["error"]["message"]
    assert (await client.get("/api/v1/jobs", headers=bearer(bob))).status == 200


async def test_a_changed_password_or_role_cuts_off_old_tokens(start_node, tmp_path):
    users_file = tmp_path / "u.json"
    client = await start_node(WORKER_COUNT="0", **auth_env(write_users_file(users_file)))
    old = await token_of(client, "bob", USERS["bob"][1])
    write_user(users_file, User("bob", "user", hash_password("bob-new-pass-1234", log2_n=FAST_LOG2_N)))
    assert (await client.get("/api/v1/jobs", headers=bearer(old))).status == 401
    new = await token_of(client, "bob", "bob-new-pass-1234")
    assert (await client.get("/api/v1/jobs", headers=bearer(new))).status == 200
    current = read_users_file(users_file)["bob"]
    write_user(users_file, User("bob", "worker", current.password_hash))
    assert (await client.get("/api/v1/stats", headers=bearer(new))).status == 401


async def test_a_user_removed_from_mongodb_is_refused(start_node, mongo_client, mongo_db_name):
    client = await start_node(WORKER_COUNT="0", **auth_env())
    token = await token_of(client, ADMIN_NAME, ADMIN_PASSWORD)
    assert (await client.get("/api/v1/nodes", headers=bearer(token))).status == 200
    await mongo_client[mongo_db_name]["users"].delete_one({"_id": ADMIN_NAME})
    assert (await client.get("/api/v1/nodes", headers=bearer(token))).status == 401


async def test_a_token_that_lives_longer_than_a_day_is_refused(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env())
    now = int(time.time())
    long_lived = forged(sub="root", role="admin", iat=now, nbf=now, exp=now + 2 * 86400)
    refused = await client.get("/api/v1/nodes", headers=bearer(long_lived))
    assert refused.status == 401 and "longer than" in (await refused.json())["error"]["message"]
