"""The Element-grade test client (matrix-js-sdk, Rust crypto) against nio, on a real Synapse.

These check the instrument before it is used on the bot: the js client and a nio client
read each other, and the js client shows what Element shows for a device its owner has not
cross-signed (a red shield; in "exclude insecure devices" mode, nothing at all) and for one
that is cross-signed (no shield).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nio import MemoryDownloadResponse, RoomEncryptedFile, UploadResponse
from nio.crypto import decrypt_attachment

from bridge.adapters.matrix.crosssign import USAGES, CrossSigner, SigningKey
from bridge.adapters.matrix.rest import MatrixRest
from dev.devhs import DevHomeserver
from tests.conftest import TestUser
from tests.support.jsclient import Isolation, JsClient
from tests.support.nio_user import NioUser, text_is

pytestmark = pytest.mark.integration

MakeJs = Callable[..., Awaitable[JsClient]]
MakeNio = Callable[..., Awaitable[NioUser]]


@pytest.fixture
async def make_js_client(
    homeserver: DevHomeserver, make_user: Callable[..., TestUser]
) -> AsyncIterator[MakeJs]:
    """Factory: a fresh user logged in with the js client; stopped after the test."""
    clients: list[JsClient] = []

    async def _make(
        isolation: Isolation = "all", prefix: str = "js", *, auto_join: bool = False
    ) -> JsClient:
        user = make_user(prefix)
        client = await JsClient.start(
            homeserver.url, user.user_id, user.password, isolation, auto_join=auto_join
        )
        clients.append(client)
        return client

    yield _make
    for client in clients:
        await client.stop()


async def shared_room(nio: NioUser, js: JsClient) -> str:
    """An encrypted room created by the nio user, with the js user joined."""
    room_id = await nio.create_room(invite=[js.user_id])
    await js.join(room_id)
    await nio.wait_joined(room_id, js.user_id)
    return room_id


async def cross_sign(homeserver: DevHomeserver, nio: NioUser) -> None:
    """Give the nio user a cross-signing identity and sign its device, as the bot does."""
    keys = {usage: SigningKey(os.urandom(32)) for usage in USAGES}
    async with MatrixRest(homeserver.url, nio.client.access_token) as rest:
        await CrossSigner(rest, nio.user_id, nio.device_id, nio.password).ensure(keys)


async def nio_outcome(nio: NioUser, room_id: str, event_id: str) -> str:
    """Wait until nio has synced the event; say whether it decrypted it.

    Room keys travel as to-device messages sent before the event, and nio handles them
    before the timeline of the same sync, so an event still undecrypted once seen got no key.
    """
    async with asyncio.timeout(15):
        while True:
            if any(e.event_id == event_id for e in nio.timeline.get(room_id, [])):
                return "decrypted"
            if any(e.event_id == event_id for e in nio.undecrypted.get(room_id, [])):
                return "undecrypted"
            await asyncio.sleep(0.1)


async def test_js_and_nio_read_each_other(make_js_client: MakeJs, make_nio_user: MakeNio) -> None:
    nio = await make_nio_user("patient")
    js = await make_js_client("all", "therapist")
    assert js.versions["sdk"].startswith("43.")
    room_id = await shared_room(nio, js)

    await nio.send_text(room_id, "hello from nio")
    got = await js.wait(room_id, sender=nio.user_id, contains="hello from nio")
    assert got["encrypted"] and got["decrypted"], got
    assert got["content"] == {"msgtype": "m.text", "body": "hello from nio"}

    event_id = await js.send(room_id, "hello from js")
    seen = await nio.wait_for(room_id, text_is("hello from js"))
    assert seen.event_id == event_id
    assert seen.decrypted

    own = await js.wait(room_id, sender=js.user_id, contains="hello from js")
    assert own["event_id"] == event_id and own["decrypted"]


async def test_encrypted_attachments_cross_both_ways(
    make_js_client: MakeJs, make_nio_user: MakeNio
) -> None:
    nio = await make_nio_user("patient")
    js = await make_js_client("all", "therapist", auto_join=True)
    room_id = await nio.create_room(invite=[js.user_id])
    await nio.wait_joined(room_id, js.user_id)

    from_js = os.urandom(50_000)
    event_id = await js.send_file(room_id, from_js, "from-js.bin")
    received = await nio.wait_for(room_id, lambda e: isinstance(e, RoomEncryptedFile))
    assert received.event_id == event_id
    download = await nio.client.download(mxc=received.url)
    assert isinstance(download, MemoryDownloadResponse), download
    plain = decrypt_attachment(
        download.body, received.key["k"], received.hashes["sha256"], received.iv
    )
    assert plain == from_js

    from_nio = os.urandom(40_000)
    upload, keys = await nio.client.upload(
        io.BytesIO(from_nio), encrypt=True, filesize=len(from_nio)
    )
    assert isinstance(upload, UploadResponse) and keys is not None, upload
    content = {
        "msgtype": "m.file",
        "body": "from-nio.bin",
        "info": {"mimetype": "application/octet-stream", "size": len(from_nio)},
        "file": {**keys, "url": upload.content_uri},
    }
    await nio.send(room_id, "m.room.message", content)
    got = await js.wait(room_id, sender=nio.user_id, contains="from-nio.bin")
    assert got["decrypted"], got
    assert await js.download(got["content"]["file"]) == from_nio


async def test_unsigned_nio_device_is_flagged_in_all_mode(
    make_js_client: MakeJs, make_nio_user: MakeNio
) -> None:
    nio = await make_nio_user("bot")
    js = await make_js_client("all", "therapist")
    room_id = await shared_room(nio, js)

    await nio.send_text(room_id, "unsigned but readable")
    got = await js.wait(room_id, sender=nio.user_id, contains="unsigned but readable")
    assert got["decrypted"], got
    assert got["shield"] == {"colour": "RED", "reason": "UNSIGNED_DEVICE"}


async def test_unsigned_nio_device_is_excluded_in_signed_mode(
    make_js_client: MakeJs, make_nio_user: MakeNio
) -> None:
    nio = await make_nio_user("bot")
    js = await make_js_client("signed", "therapist")
    room_id = await shared_room(nio, js)

    await nio.send_text(room_id, "from an unsigned device")
    got = await js.wait(room_id, sender=nio.user_id)
    assert not got["decrypted"]
    assert got["decryption_error"] == "UNSIGNED_SENDER_DEVICE"

    # The other direction: Element withholds the room key from the unsigned device.
    event_id = await js.send(room_id, "not for unsigned devices")
    assert await nio_outcome(nio, room_id, event_id) == "undecrypted"


async def test_cross_signed_nio_device_is_trusted_in_signed_mode(
    homeserver: DevHomeserver, make_js_client: MakeJs, make_nio_user: MakeNio
) -> None:
    nio = await make_nio_user("bot")
    await cross_sign(homeserver, nio)
    js = await make_js_client("signed", "therapist")
    room_id = await shared_room(nio, js)

    await nio.send_text(room_id, "from a cross-signed device")
    got = await js.wait(room_id, sender=nio.user_id)
    assert got["decrypted"], got
    assert got["content"]["body"] == "from a cross-signed device"
    assert got["shield"] == {"colour": "NONE", "reason": None}

    event_id = await js.send(room_id, "for signed devices")
    assert await nio_outcome(nio, room_id, event_id) == "decrypted"
