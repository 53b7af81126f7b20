"""The test homeserver itself: Synapse answers, registers users and carries E2EE traffic."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from nio import RoomMessageText

from dev.devhs import DevHomeserver
from tests.support.nio_user import NioUser, text_is

pytestmark = pytest.mark.integration


def test_synapse_answers_client_versions(homeserver: DevHomeserver) -> None:
    status, body = homeserver.request("GET", "/_matrix/client/versions")
    assert status == 200
    assert "v1.1" in body["versions"]


def test_federation_is_not_served(homeserver: DevHomeserver) -> None:
    status, _ = homeserver.request("GET", "/_matrix/federation/v1/version")
    assert status == 404


def test_open_registration_requires_a_token(homeserver: DevHomeserver) -> None:
    status, body = homeserver.request("POST", "/_matrix/client/v3/register", {})
    assert status == 401
    flows = [flow["stages"] for flow in body["flows"]]
    assert flows
    assert all("m.login.registration_token" in stages for stages in flows)


def test_shared_secret_registration_gives_a_working_token(homeserver: DevHomeserver) -> None:
    user_id, token = homeserver.register_user("reg-check", "pw-1", displayname="Reg Check")
    assert user_id == f"@reg-check:{homeserver.server_name}"
    status, body = homeserver.request("GET", "/_matrix/client/v3/account/whoami", token=token)
    assert status == 200
    assert body["user_id"] == user_id


def test_registering_an_existing_user_logs_in(homeserver: DevHomeserver) -> None:
    first_id, first_token = homeserver.register_user("twice", "pw-2")
    again_id, again_token = homeserver.register_user("twice", "pw-2")
    assert again_id == first_id
    assert again_token != first_token
    status, body = homeserver.request("GET", "/_matrix/client/v3/account/whoami", token=again_token)
    assert status == 200
    assert body["user_id"] == first_id


def test_admin_flag_reaches_synapse(homeserver: DevHomeserver) -> None:
    _, admin_token = homeserver.register_user("hs-admin", "pw-3", admin=True)
    _, plain_token = homeserver.register_user("hs-plain", "pw-4")
    path = "/_synapse/admin/v1/registration_tokens/new"
    status, body = homeserver.request("POST", path, {"uses_allowed": 1}, token=admin_token)
    assert status == 200, body
    assert body["uses_allowed"] == 1
    status, _ = homeserver.request("POST", path, {"uses_allowed": 1}, token=plain_token)
    assert status == 403


async def test_two_clients_exchange_encrypted_messages(
    make_nio_user: Callable[..., Awaitable[NioUser]],
) -> None:
    alice = await make_nio_user("alice")
    bob = await make_nio_user("bob")
    room_id = await alice.create_room(invite=[bob.user_id])
    await alice.wait_joined(room_id, bob.user_id)
    assert alice.client.rooms[room_id].encrypted

    to_bob = [f"from alice {i}" for i in range(3)]
    to_alice = [f"from bob {i}" for i in range(3)]
    for body in to_bob:
        await alice.send_text(room_id, body)
    for body in to_alice:
        await bob.send_text(room_id, body)
    # Each side waits for all six, its own echoes included (they may arrive in a later sync).
    for reader in (alice, bob):
        for body in to_bob + to_alice:
            await reader.wait_for(room_id, text_is(body))

    # Both sides read everything, every message came in encrypted, none stayed unreadable.
    for reader in (alice, bob):
        texts = [e for e in reader.timeline[room_id] if isinstance(e, RoomMessageText)]
        assert [e.body for e in texts if e.sender == alice.user_id] == to_bob
        assert [e.body for e in texts if e.sender == bob.user_id] == to_alice
        assert all(e.decrypted for e in texts)
        assert reader.undecrypted[room_id] == []
