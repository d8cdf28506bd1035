"""Password hashing with scrypt, in PHC string form: `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`.

The string carries its own cost parameters, so hashes made with another cost keep
verifying after the default changes. Hashing takes tens of milliseconds of CPU by design:
`PasswordHasher` runs it in threads, a few at a time, so it never blocks the event loop
and a flood of logins cannot take every thread the loop has.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets

DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P = 15, 8, 1  # 32 MiB of memory per hash
SALT_BYTES, HASH_BYTES = 16, 32
# Bounds on what a stored hash may ask for: a typo in a users file must not allocate gigabytes.
LOG2_N_RANGE, R_RANGE, P_RANGE = range(10, 21), range(1, 33), range(1, 17)
MAX_PASSWORD_BYTES = 1024
_PHC = re.compile(r"\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)")


class PasswordHashError(ValueError):
    """A stored password hash that is not a scrypt PHC string this module accepts."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int, size: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=size,
                          maxmem=2 * 128 * r * n * p + (1 << 20))


def hash_password(password: str, *, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """A new salted scrypt hash of `password` (blocking: call it through PasswordHasher in a server)."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, log2_n, r, p, HASH_BYTES)
    return f"$scrypt$ln={log2_n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def check_hash_format(encoded: str) -> None:
    """Raise PasswordHashError unless `encoded` is a scrypt PHC string within the accepted bounds."""
    _parse(encoded)


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    match = _PHC.fullmatch(encoded)
    if not match:
        raise PasswordHashError("not a $scrypt$ln=..,r=..,p=..$salt$hash string")
    log2_n, r, p = (int(v) for v in match.group(1, 2, 3))
    if log2_n not in LOG2_N_RANGE or r not in R_RANGE or p not in P_RANGE:
        raise PasswordHashError("scrypt parameters out of the accepted range")
    try:
        salt, digest = _unb64(match[4]), _unb64(match[5])
    except ValueError:
        raise PasswordHashError("salt or hash is not base64") from None
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("salt or hash too short")
    return log2_n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the stored hash; compares in constant time."""
    log2_n, r, p, salt, digest = _parse(encoded)
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p, len(digest)), digest)


class PasswordHasher:
    """Hash and verify in worker threads, at most `concurrency` at once."""

    def __init__(self, concurrency: int = 2) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        # Verified when the user does not exist, so "no such user" costs as much as "wrong password".
        # Built by `prepare()` at start: built lazily, the first unknown name would take twice as long.
        self._decoy: str | None = None

    async def prepare(self) -> None:
        """Build the decoy hash now (the node calls this before it serves logins)."""
        if self._decoy is None:
            async with self._slots:
                self._decoy = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(hash_password, password)

    async def verify(self, password: str, encoded: str | None) -> bool:
        async with self._slots:
            if encoded is None:
                if self._decoy is None:  # only when prepare() was skipped (a hasher used on its own)
                    self._decoy = await asyncio.to_thread(hash_password, secrets.token_urlsafe(16))
                await asyncio.to_thread(verify_password, password, self._decoy)
                return False
            return await asyncio.to_thread(verify_password, password, encoded)
