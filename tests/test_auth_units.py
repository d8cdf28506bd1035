"""The auth building blocks without a node: passwords, tokens, the users file and the login throttle."""

from __future__ import annotations

import json
import stat
import time

import jwt
import pytest

from jobnode.auth.passwords import PasswordHasher, PasswordHashError, check_hash_format, hash_password, verify_password
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS, PUBLIC, USER_ACCESS
from jobnode.auth.throttle import FailureCounts, LoginThrottle, ThrottleLimits, over_limits
from jobnode.auth.tokens import InvalidToken, TokenSigner, key_id
from jobnode.auth.users import User, UsersFile, UsersFileError, parse_users, read_users_file, write_user
from jobnode.core.errors import RateLimited
from tests.auth_fixtures import FAST_LOG2_N, JWT_SECRET, forged

# --- passwords ---------------------------------------------------------------------------------


def test_a_hash_verifies_its_password_only_and_is_salted():
    first, second = (hash_password("Tr0ub4dor&3", log2_n=FAST_LOG2_N) for _ in range(2))
    assert first != second  # a fresh salt each time
    assert verify_password("Tr0ub4dor&3", first) and verify_password("Tr0ub4dor&3", second)
    assert not verify_password("Tr0ub4dor&4", first) and not verify_password("", first)
    assert first.startswith(f"$scrypt$ln={FAST_LOG2_N},r=8,p=1$") and "Tr0ub4dor" not in first


@pytest.mark.parametrize("encoded", [
    "", "plaintext", "$2b$12$abcdefghijklmnopqrstuv", "$scrypt$ln=15,r=8,p=1$c2FsdA$",
    "$scrypt$ln=40,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # would need terabytes
    "$scrypt$ln=15,r=8,p=1$c2E$aGFzaGhhc2hoYXNoaGFzaGhhc2g",  # salt too short
])
def test_unusable_stored_hashes_are_refused_by_name(encoded):
    with pytest.raises(PasswordHashError):
        check_hash_format(encoded)


def test_an_overlong_password_never_matches_and_cannot_be_hashed():
    encoded = hash_password("x", log2_n=FAST_LOG2_N)
    assert not verify_password("x" * 5000, encoded)
    with pytest.raises(ValueError):
        hash_password("x" * 5000)


async def test_the_hasher_verifies_in_threads_and_checks_a_decoy_for_unknown_users():
    hasher = PasswordHasher()
    encoded = await hasher.hash("correct horse")
    assert await hasher.verify("correct horse", encoded)
    assert not await hasher.verify("correct horse", None)  # unknown user: decoy hash, still False


# --- tokens ------------------------------------------------------------------------------------


def test_issued_tokens_verify_to_their_subject_and_role():
    signer = TokenSigner(JWT_SECRET, 60)
    issued = signer.issue("alice", "user")
    principal = signer.verify(issued.token)
    assert (principal.subject, principal.role, issued.expires_in_s) == ("alice", "user", 60)
    claims = jwt.decode(issued.token, JWT_SECRET, algorithms=["HS256"], issuer="jobnode")
    assert set(claims) == {"sub", "role", "iat", "nbf", "exp", "iss", "jti"}
    assert abs(claims["iat"] - time.time()) < 5


def test_the_key_id_names_the_secret_without_revealing_it():
    assert key_id(JWT_SECRET) == key_id(JWT_SECRET) != key_id(JWT_SECRET + "x")
    signer = TokenSigner(JWT_SECRET, 60)
    assert JWT_SECRET not in repr(signer) and JWT_SECRET not in repr(vars(signer).get("key_id"))


@pytest.mark.parametrize("token", [
    forged(algorithm="none"), forged(exp=1_000_000), forged(nbf=4_000_000_000), forged(sub=None), forged(sub=""),
    forged(role="root"), forged(iss=None), forged(exp=None), forged(kid="0" * 16), "x" * 5000, "a.b.c", "",
    forged(exp="tomorrow"), forged(nbf=True), forged(iat=int(time.time()) + 3600),
])
def test_bad_tokens_raise_invalid_token(token):
    with pytest.raises(InvalidToken):
        TokenSigner(JWT_SECRET, 60).verify(token)


def test_small_clock_skew_between_nodes_is_tolerated():
    now = int(time.time())
    assert TokenSigner(JWT_SECRET, 60).verify(forged(iat=now + 2, nbf=now + 2)).role == "admin"


# --- access levels -----------------------------------------------------------------------------


def test_admin_includes_user_and_worker_is_separate():
    assert USER_ACCESS.allows("admin") and USER_ACCESS.allows("user") and not USER_ACCESS.allows("worker")
    assert ADMIN_ACCESS.allows("admin") and not ADMIN_ACCESS.allows("user")
    assert MONITOR_ACCESS.allows("worker") and PUBLIC.is_public


# --- users file --------------------------------------------------------------------------------


def test_write_user_adds_and_replaces_owner_only(tmp_path):
    path = tmp_path / "users.json"
    assert write_user(path, User("alice", "user", hash_password("a-password", log2_n=FAST_LOG2_N))) is False
    assert write_user(path, User("alice", "admin", hash_password("b-password", log2_n=FAST_LOG2_N))) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = read_users_file(path)
    assert list(users) == ["alice"] and users["alice"].role == "admin"
    assert "password" not in repr(users["alice"]) and "$scrypt" not in repr(users["alice"])
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]  # no temporary file left behind


GOOD_HASH = hash_password("pw-for-parsing", log2_n=FAST_LOG2_N)


@pytest.mark.parametrize("document, problem", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    (json.dumps({"users": {"a b": {"role": "user", "password": GOOD_HASH}}}), "user name"),
    (json.dumps({"users": {"alice": {"role": "root", "password": GOOD_HASH}}}), "needs a role"),
    (json.dumps({"users": {"alice": {"role": "user", "password": "hunter2"}}}), "unusable password hash"),
])
def test_a_broken_users_file_is_refused_with_the_reason(document, problem):
    with pytest.raises(UsersFileError, match=problem) as caught:
        parse_users(document, "users.json")
    assert "hunter2" not in caught.value.message


def test_a_users_file_that_breaks_after_start_keeps_the_last_good_copy(tmp_path):
    path = tmp_path / "users.json"
    write_user(path, User("alice", "user", GOOD_HASH))
    users = UsersFile(path)
    users.load()
    path.write_text("{ half written")
    assert users.find("alice") is not None
    write_user(tmp_path / "other.json", User("bob", "user", GOOD_HASH))
    (tmp_path / "other.json").replace(path)
    assert users.find("bob") is not None and users.find("alice") is None


# --- throttle ----------------------------------------------------------------------------------


async def test_the_throttle_counts_per_client_and_per_user(redis_client, key_prefix):
    throttle = LoginThrottle(redis_client, key_prefix, ThrottleLimits(per_client=2, per_user=3, window_s=60))
    for _ in range(2):
        await throttle.check("alice", "10.0.0.1")
        await throttle.failed("alice", "10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        await throttle.check("alice", "10.0.0.1")
    assert 0 < caught.value.retry_after_s <= 60
    await throttle.check("alice", "10.0.0.2")  # another client still may, until the per-user limit
    await throttle.failed("alice", "10.0.0.2")
    with pytest.raises(RateLimited):
        await throttle.check("alice", "10.0.0.2")  # the name is closed to addresses that failed on it
    await throttle.check("alice", "10.0.0.3")  # ...but not to one that did not: the real user gets in
    await throttle.failed("alice", "10.0.0.3")
    with pytest.raises(RateLimited):
        await throttle.check("alice", "10.0.0.3")  # a distributed guesser pays an address per guess
    await throttle.check("bob", "10.0.0.1")
    keys = [key async for key in redis_client.scan_iter(match=f"{key_prefix}*")]
    assert keys and all(b"alice" not in key and b"10.0.0" not in key for key in keys)
    ttls = [await redis_client.ttl(key) for key in keys]
    assert all(0 < ttl <= 120 for ttl in ttls)


async def test_the_throttle_stops_one_address_spraying_many_names(redis_client, key_prefix):
    throttle = LoginThrottle(redis_client, key_prefix, ThrottleLimits(per_address=4, window_s=60))
    for name in ("u1", "u2", "u3", "u4"):
        await throttle.check(name, "10.0.0.9")
        await throttle.failed(name, "10.0.0.9")
    with pytest.raises(RateLimited):
        await throttle.check("u5", "10.0.0.9")
    await throttle.check("u5", "10.0.0.8")


def test_the_per_user_limit_closes_a_name_only_to_addresses_that_failed_on_it():
    limits = ThrottleLimits(per_client=5, per_address=20, per_user=50)
    assert over_limits(FailureCounts(client=0, address=0, user=500), limits) == []
    assert over_limits(FailureCounts(client=1, address=1, user=50), limits) == ["user"]
    assert over_limits(FailureCounts(client=5, address=20, user=0), limits) == ["client", "address"]


def test_a_remembered_token_still_expires(monkeypatch):
    signer = TokenSigner(JWT_SECRET, 60)
    token = signer.issue("alice", "user").token
    assert signer.verify(token).subject == "alice"
    assert signer.verify(token).subject == "alice"  # from the cache
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        signer.verify(token)
