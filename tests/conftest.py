"""Fixtures for the whole suite: one real Synapse per test session and its users."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dev.devhs import DevHomeserver
from tests.support.nio_user import NioUser

#: The database fixtures (db, db_url, pg_url) for every layer that needs a store.
pytest_plugins = ["tests.support.databases"]


@dataclass(frozen=True)
class TestUser:
    """A user registered on the test homeserver (one device, from registration)."""

    __test__ = False  # not a test class, despite the name

    localpart: str
    user_id: str
    password: str
    access_token: str


@pytest.fixture(scope="session")
def homeserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHomeserver]:
    """One real Synapse for the whole session, on loopback; fails loudly if it cannot start."""
    hs = DevHomeserver(tmp_path_factory.mktemp("synapse"))
    hs.start()
    try:
        yield hs
    finally:
        hs.stop()


_user_counter = itertools.count(1)


@pytest.fixture
def make_user(homeserver: DevHomeserver) -> Callable[..., TestUser]:
    """Factory: register a fresh user (unique localpart per call) on the session homeserver."""

    def _make(
        prefix: str = "user", *, admin: bool = False, displayname: str | None = None
    ) -> TestUser:
        localpart = f"{prefix}{next(_user_counter)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        user_id, token = homeserver.register_user(
            localpart, password, admin=admin, displayname=displayname
        )
        return TestUser(localpart, user_id, password, token)

    return _make


@pytest.fixture
def store_dir(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: a fresh directory under this test's tmp_path, e.g. a client's crypto store."""

    def _make(name: str) -> Path:
        path = tmp_path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    return _make


@pytest.fixture
async def make_nio_user(
    homeserver: DevHomeserver,
    make_user: Callable[..., TestUser],
    store_dir: Callable[[str], Path],
) -> AsyncIterator[Callable[..., Awaitable[NioUser]]]:
    """Factory: a fresh user with an E2EE nio client already syncing; closed after the test."""
    clients: list[NioUser] = []

    async def _make(prefix: str = "user", *, auto_join: bool = True) -> NioUser:
        user = make_user(prefix)
        client = await NioUser.create(
            homeserver.url,
            user.user_id,
            user.password,
            store_dir(user.localpart),
            auto_join=auto_join,
        )
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.close()
