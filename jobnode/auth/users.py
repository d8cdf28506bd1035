"""Where users come from: the USERS_FILE and the MongoDB `users` collection.

USERS_FILE is JSON, owned by the operator and written by `jobnode user add`:

    {"users": {"alice": {"role": "user", "password": "$scrypt$ln=15,r=8,p=1$...$..."}}}

The node rereads it when it changes (no restart to add a user). A file that stops parsing
keeps the last good copy in force and logs why, rather than locking everyone out.

ADMIN_USERNAME/ADMIN_PASSWORD bootstrap an admin into the MongoDB `users` collection at
start, so every node of the cluster knows it and it survives removing the variables
from the environment afterwards. While they are set, they are the truth: a changed
ADMIN_PASSWORD replaces the stored hash at the next start. A name in USERS_FILE takes
precedence over the same name in MongoDB.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pymongo import errors as mongo_errors
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.auth.passwords import PasswordHasher, PasswordHashError, check_hash_format
from jobnode.auth.roles import ADMIN, ROLES
from jobnode.core.errors import JobnodeError
from jobnode.storage.mongo.boundary import mongo_boundary

log = structlog.get_logger(__name__)

USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


class UsersFileError(JobnodeError):
    """A users file that cannot be read or does not have the documented shape."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    def __repr__(self) -> str:
        return f"User(name={self.name!r}, role={self.role!r})"


def parse_users(text: str, source: str) -> dict[str, User]:
    """The users in a users file's text; UsersFileError names the first problem."""
    try:
        document = json.loads(text) if text.strip() else {"users": {}}
    except ValueError as exc:
        raise UsersFileError(f"{source} is not valid JSON: {exc}") from None
    entries = document.get("users") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise UsersFileError(f'{source} must be a JSON object {{"users": {{name: {{"role": .., "password": ..}}}}}}')
    users = {}
    for name, entry in entries.items():
        users[name] = _user(name, entry, source)
    return users


def _user(name: str, entry: Any, source: str) -> User:
    if not USERNAME.fullmatch(name):
        raise UsersFileError(f"{source}: user name {name[:70]!r} is not 1-64 letters, digits, '.', '_', '@' or '-'")
    if not isinstance(entry, dict) or entry.get("role") not in ROLES:
        raise UsersFileError(f"{source}: user {name!r} needs a role, one of {', '.join(ROLES)}")
    try:
        check_hash_format(entry.get("password") or "")
    except PasswordHashError as exc:
        raise UsersFileError(f"{source}: user {name!r} has an unusable password hash ({exc})") from None
    return User(name, entry["role"], entry["password"])


def read_users_file(path: Path) -> dict[str, User]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"{path} cannot be read: {exc}") from None
    return parse_users(text, str(path))


def write_user(path: Path, user: User) -> bool:
    """Add or replace one user in the file, atomically and owner-only; True if it replaced one."""
    users = read_users_file(path)
    replaced = user.name in users
    users[user.name] = user
    document = {"users": {u.name: {"role": u.role, "password": u.password_hash} for u in users.values()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return replaced


class UsersFile:
    """USERS_FILE, reread whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def load(self) -> None:
        """Read the file now; raises UsersFileError (at start, a broken file stops the node)."""
        self._stamp = self._current_stamp()
        self._users = read_users_file(self.path)

    def find(self, name: str) -> User | None:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            try:
                self._users, self._stamp = read_users_file(self.path), stamp
                log.info("auth.users_file_reloaded", path=str(self.path), users=len(self._users))
            except UsersFileError as exc:
                self._stamp = stamp  # report once per change, not on every login
                log.error("auth.users_file_unusable", error=exc.message, note="keeping the last good copy")
        return self._users.get(name)

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size


class UserCollection:
    """The MongoDB `users` collection: {_id: name, role, password}."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.users = db.get_collection("users")

    @mongo_boundary
    async def find(self, name: str) -> User | None:
        doc = await self.users.find_one({"_id": name})
        if doc is None or doc.get("role") not in ROLES or not isinstance(doc.get("password"), str):
            return None
        return User(name, doc["role"], doc["password"])

    @mongo_boundary
    async def any(self) -> bool:
        return await self.users.find_one({}, projection={"_id": 1}) is not None

    @mongo_boundary
    async def bootstrap_admin(self, name: str, password: str, hasher: PasswordHasher) -> str:
        """Make sure `name` is an admin with this password; says what it did (created/updated/unchanged)."""
        current = await self.find(name)
        if current is not None and current.role == ADMIN and await hasher.verify(password, current.password_hash):
            return "unchanged"
        encoded = await hasher.hash(password)
        try:
            await self.users.update_one({"_id": name}, {"$set": {"role": ADMIN, "password": encoded}}, upsert=True)
        except mongo_errors.DuplicateKeyError:
            return "created by another node"  # nodes of one cluster start together with the same variables
        return "created" if current is None else "updated"


class UserDirectory:
    """Looks a user up in USERS_FILE first, then in MongoDB."""

    def __init__(self, users_file: UsersFile | None, collection: UserCollection) -> None:
        self.users_file = users_file
        self.collection = collection

    async def find(self, name: str) -> User | None:
        if not USERNAME.fullmatch(name):
            return None
        if self.users_file is not None:
            found = self.users_file.find(name)
            if found is not None:
                return found
        return await self.collection.find(name)
