"""Making a node's authenticator at start: load the users, bootstrap the admin, refuse to run without users."""

from __future__ import annotations

import structlog
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from jobnode.auth.login import Authenticator
from jobnode.auth.passwords import PasswordHasher
from jobnode.auth.throttle import LoginThrottle
from jobnode.auth.tokens import TokenSigner
from jobnode.auth.users import UserCollection, UserDirectory, UsersFile, UsersFileError
from jobnode.core.errors import JobnodeError
from jobnode.core.settings import Settings

log = structlog.get_logger(__name__)


class AuthSetupError(JobnodeError):
    """Auth is on but its users cannot be loaded; the node must not start."""


async def build_authenticator(settings: Settings, redis: Redis, database: AsyncDatabase) -> Authenticator:
    """The authenticator of a node with AUTH_ENABLED; AuthSetupError when nobody could log in."""
    authenticator = await make_authenticator(settings, redis, database)
    await prepare_users(settings, authenticator)
    return authenticator


async def make_authenticator(settings: Settings, redis: Redis, database: AsyncDatabase) -> Authenticator:
    """The authenticator, without touching Redis or MongoDB; AuthSetupError for a USERS_FILE that does not load."""
    assert settings.jwt_secret is not None  # Settings refuses AUTH_ENABLED without a good one
    hasher = PasswordHasher()
    await hasher.prepare()
    users_file = UsersFile(settings.users_file) if settings.users_file else None
    collection = UserCollection(database)
    try:
        if users_file is not None:
            users_file.load()
    except UsersFileError as exc:
        raise AuthSetupError(f"USERS_FILE: {exc.message}") from None
    return Authenticator(
        signer=TokenSigner(settings.jwt_secret, settings.jwt_ttl_s),
        users=UserDirectory(users_file, collection),
        throttle=LoginThrottle(redis, settings.redis_key_prefix),
        hasher=hasher,
    )


async def prepare_users(settings: Settings, authenticator: Authenticator) -> None:
    """Bootstrap the admin, or make sure somebody can log in (MongoDB: Unavailable while it is down)."""
    users = authenticator.users
    if settings.admin_username and settings.admin_password:
        outcome = await users.collection.bootstrap_admin(settings.admin_username, settings.admin_password,
                                                         authenticator.hasher)
        log.info("auth.admin_bootstrap", username=settings.admin_username, outcome=outcome)
    elif users.users_file is None and not await users.collection.any():
        raise AuthSetupError("AUTH_ENABLED=true but nobody could log in: set USERS_FILE (see `jobnode user add`) "
                             "or ADMIN_USERNAME and ADMIN_PASSWORD")
