"""Shared material for the auth tests: secrets, users with cheap hashes, tokens minted directly."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from jobnode.auth.passwords import hash_password
from jobnode.auth.tokens import ALGORITHM, ISSUER, TokenSigner, key_id
from jobnode.auth.users import User, write_user

JWT_SECRET = "k9Vq2Xw7Lm4Rt8Zp1Yc6Hb3Nf5Gd0Sj-test-only"
ADMIN_NAME, ADMIN_PASSWORD = "root", "Adm1n-boot-pass-77"
# name -> (role, password). Hashed with a low scrypt cost so the tests stay quick.
USERS = {
    "alice": ("user", "alice-pass-4417"),
    "bob": ("user", "bob-pass-9021"),
    "robot": ("worker", "robot-pass-3388"),
    "ops": ("admin", "ops-pass-5562"),
}
FAST_LOG2_N = 10


def write_users_file(path: Path, users: dict[str, tuple[str, str]] = USERS) -> Path:
    for name, (role, password) in users.items():
        write_user(path, User(name, role, hash_password(password, log2_n=FAST_LOG2_N)))
    return path


def auth_env(users_file: Path | None = None, **more: str) -> dict[str, str]:
    env = {"AUTH_ENABLED": "true", "JWT_SECRET": JWT_SECRET, "ADMIN_USERNAME": ADMIN_NAME,
           "ADMIN_PASSWORD": ADMIN_PASSWORD, **more}
    if users_file is not None:
        env["USERS_FILE"] = str(users_file)
    return env


def token_for(role: str, subject: str | None = None) -> str:
    return TokenSigner(JWT_SECRET, 3600).issue(subject or f"the-{role}", role).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forged(secret: str = JWT_SECRET, *, algorithm: str = ALGORITHM, kid: str | None = None, **claims: object) -> str:
    """A token built by hand: the tests' way to make expired, premature, unsigned or foreign ones."""
    now = int(time.time())
    body = {"sub": "mallory", "role": "admin", "iat": now, "nbf": now, "exp": now + 600, "iss": ISSUER, **claims}
    body = {key: value for key, value in body.items() if value is not None}
    headers = {"kid": kid if kid is not None else key_id(secret)}
    return jwt.encode(body, secret if algorithm != "none" else None, algorithm=algorithm, headers=headers)
