"""Onboarding against the real Synapse and a real SMTP server: the invitation e-mail, the
registration with its code, the pair the running bridge creates, consent, and the codes
that must stop working (used, expired, revoked)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bridge.app import App, default_features, open_parts
from bridge.config import minimal_config, minimal_config_dict
from bridge.features.consent import install_consent
from bridge.features.mailer import install_mailer
from bridge.features.onboarding import install_onboarding
from bridge.features.onboarding.invitations import Onboarding
from bridge.features.onboarding.synapse_admin import SynapseAdminApi
from bridge.ports import AdminUnavailable
from bridge.sealing import Sealer, generate_key
from bridge.store import invitations, pairs
from bridge.store.invitations import InvitationStatus
from tests.adapters.test_mailer import FROM, SinkFactory, body_of, outbound
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing
from tests.support.nio_user import NioUser

pytestmark = pytest.mark.integration

CODE = re.compile(r"\b[A-Z2-9]{4}(?:-[A-Z2-9]{4}){3}\b")
WEB_CLIENT = "https://chat.harbour.example.org"


async def confidant(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def register(base_url: str, username: str, password: str, token: str) -> tuple[int, Any]:
    """Create an account as a client offering the registration-token field does."""
    url = f"{base_url}/_matrix/client/v3/register"
    body: dict[str, Any] = {"username": username, "password": password}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as resp:
            status, data = resp.status, await resp.json()
        if status != 401:
            return status, data
        session = data["session"]
        (flow,) = [f for f in data["flows"] if "m.login.registration_token" in f["stages"]]
        for stage in flow["stages"]:
            auth: dict[str, Any] = {"type": stage, "session": session}
            if stage == "m.login.registration_token":
                auth["token"] = token
            async with http.post(url, json={**body, "auth": auth}) as resp:
                status, data = resp.status, await resp.json()
            if status != 401 or stage not in data.get("completed", []):
                return status, data
        return status, data


def onboarding_overrides(homeserver, bot, admin, sink_port: int, data_dir: Path) -> dict[str, Any]:
    return bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        data_dir,
        practice={"ask_consent": True, "web_client_url": WEB_CLIENT},
        synapse_admin={"access_token": admin.access_token},
        outbound_email=outbound(sink_port),
    )


async def audit_actions(db, pair_id: str | None = None) -> list[str]:
    if pair_id is None:
        rows = await db.fetch("SELECT action FROM audit_entries ORDER BY seq")
    else:
        rows = await db.fetch(
            "SELECT action FROM audit_entries WHERE pair_id = ? ORDER BY seq", pair_id
        )
    return [r["action"] for r in rows]


async def test_invitation_to_pair_room_end_to_end(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, store_dir, tmp_path: Path
) -> None:
    admin = make_user("admin", admin=True)
    bot = make_user("bot")
    supervisor = make_user("supervisor")
    therapist = await make_nio_user("therapist")
    sink = await smtp_sink()
    overrides = onboarding_overrides(homeserver, bot, admin, sink.port, tmp_path / "data")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    c = ("-c", str(config_file))

    code, out, err = await confidant(
        "therapist", "add", therapist.user_id, "--email", "theo@example.org",
        "--supervisor", supervisor.user_id, *c,
    )  # fmt: skip
    assert code == 0, err
    assert "desk room !" in out and "warning" not in err
    ghost = f"@ghost-{secrets.token_hex(3)}:{homeserver.server_name}"
    code, out, err = await confidant(
        "therapist", "add", supervisor.user_id, "--supervisor", ghost, *c
    )  # fmt: skip
    assert code == 0 and f"warning: {ghost} has no account on the homeserver" in err
    code, out, err = await confidant("therapist", "list", *c)
    assert code == 0 and f"{therapist.user_id}" in out and supervisor.user_id in out

    app = App(
        minimal_config(**overrides),
        features=[
            # The default onboarding polls every 10 s; this test follows up faster.
            *(f for f in default_features() if f is not install_onboarding),
            install_mailer,
            partial(install_onboarding, poll_interval=0.3),
            install_consent,
        ],
    )
    await app.start()
    try:
        code, out, err = await confidant(
            "invite", "--email", "alice@example.org", "--therapist", therapist.user_id,
            "--name", "Alice B.", *c,
        )  # fmt: skip
        assert code == 0, err
        invitation_id = out.split()[0]
        (msg,) = await sink.wait()
        assert sink.envelopes[0].rcpt_tos == ["alice@example.org"]
        assert msg["From"] == f"Harbour Therapy <{FROM}>"
        body = body_of(msg)
        token = CODE.search(body)
        assert token is not None
        for expected in ("Dear Alice B.", WEB_CLIENT, homeserver.server_name, "+44 800 000 000"):
            assert expected in body
        assert "Element X, for phones, does not offer the invitation code field yet" in body
        # No secret, no password, nothing about the therapy itself.
        for secret in (bot.password, admin.access_token, therapist.user_id, "!"):
            assert secret not in body and secret not in str(msg["Subject"])

        alice_password = secrets.token_urlsafe(12)
        status, data = await register(homeserver.url, "alice-b", alice_password, token.group())
        assert status == 200, data
        alice_id = data["user_id"]
        # The code works once.
        status, data = await register(homeserver.url, "mallory", "mallory-pass", token.group())
        assert status != 200 and "user_id" not in data

        async def pair_ready():
            record = await pairs.get_by_users(app.parts.db, alice_id, therapist.user_id)
            return record if record is not None and record.room_id else None

        record = await wait_until(pair_ready, timeout=30, what="the pair of the new account")
        assert pairs.open_patient_email(app.parts.sealer, record) == "alice@example.org"
        assert record.consent_state == "pending"

        async def invitation_used():
            # The pair is committed first, then the invitation is marked used (a crash in
            # between is finished by the next poll): wait for the second step too.
            stored = await invitations.get(app.parts.db, invitation_id)
            return stored if stored is not None and stored.status is InvitationStatus.USED else None

        stored = await wait_until(invitation_used, timeout=30, what="the invitation marked used")
        assert (stored.patient_id, stored.pair_id) == (alice_id, record.pair_id)
        assert (
            await SynapseAdminApi(app.parts.rest, admin.access_token).token_info(token.group())
            is None
        )  # the spent code is removed from the homeserver
        actions = await audit_actions(app.parts.db)
        for action in ("invitation.created", "invitation.sent", "invitation.used"):
            assert action in actions

        # Alice signs in as she would in Element: the pair room waits for her.
        alice = await NioUser.create(
            homeserver.url, alice_id, alice_password, store_dir("alice"), auto_join=False
        )
        try:
            await wait_until(
                lambda: _invited(alice, record.room_id), timeout=20, what="alice's invitation"
            )
            await alice.join(record.room_id)
            await alice.wait_for(record.room_id, notice_containing("reply: !accept"), timeout=30)
            await alice.send_text(record.room_id, "!accept")
            await alice.wait_for(record.room_id, notice_containing("recorded"), timeout=30)
        finally:
            await alice.close()
        accepted = await pairs.get(app.parts.db, record.pair_id)
        assert accepted is not None and accepted.consent_state == "accepted"

        # The therapist cannot be removed while they have this pair.
        code, out, err = await confidant("therapist", "remove", therapist.user_id, *c)
        assert code == 1 and record.label in err
        code, out, err = await confidant("invite", "list", *c)
        assert code == 0 and invitation_id in out and "used" in out
    finally:
        await app.stop()


async def _invited(user: NioUser, room_id: str) -> bool:
    return room_id in user.client.invited_rooms


@pytest.fixture
async def onboarding(homeserver, make_user, smtp_sink: SinkFactory, tmp_path: Path):
    admin = make_user("admin", admin=True)
    bot = make_user("bot")
    therapist = make_user("therapist")
    sink = await smtp_sink()
    overrides = onboarding_overrides(homeserver, bot, admin, sink.port, tmp_path / "data")
    cfg = minimal_config(**overrides)
    parts = await open_parts(cfg)
    from bridge.adapters.mailer import build_mailer

    ob = Onboarding(parts, build_mailer(cfg, parts.renderer))
    await parts.pairs.ensure_therapist(therapist.user_id, ob.clock())
    try:
        yield ob, therapist, sink, admin
    finally:
        await parts.close()


async def test_expired_revoked_and_resent_codes(onboarding, homeserver) -> None:
    ob, therapist, sink, _admin = onboarding
    short = await ob.invite(
        "bob@example.org", therapist.user_id, ob.clock(), valid_for=timedelta(seconds=1)
    )
    assert short.status is InvitationStatus.PENDING and short.sent_count == 1

    # Revoked: the code is deleted on the homeserver and stops working.
    revoked = await ob.invite("carol@example.org", therapist.user_id, ob.clock())
    assert (await ob.revoke(revoked.invitation_id, ob.clock())).status is InvitationStatus.REVOKED
    assert await ob.admin.token_info(revoked.token) is None
    status, _ = await register(homeserver.url, "carol", "carol-password", revoked.token)
    assert status != 200

    # Resent: the same code again, worded as a reminder.
    again = await ob.invite("dan@example.org", therapist.user_id, ob.clock(), name="Dan")
    # (A minute on: one e-mail a minute per invitation.)
    resent = await ob.resend(again.invitation_id, ob.clock() + timedelta(minutes=1))
    assert resent.sent_count == 2
    messages = await sink.wait(4)
    reminder = body_of(messages[3])
    assert "This is a reminder" in reminder and again.token in reminder
    assert messages[3]["To"] == "dan@example.org"

    # Expired: the homeserver refuses the code; the check deletes it and closes the invitation.
    await asyncio.sleep(max(0.0, short.expires_at / 1000 - ob.clock().timestamp()) + 0.2)
    status, _ = await register(homeserver.url, "bob", "bob-password", short.token)
    assert status != 200
    result = await ob.check()
    assert [r.invitation_id for r in result.expired] == [short.invitation_id]
    assert result.matched == [] and result.unmatched == []
    assert await ob.admin.token_info(short.token) is None
    expired = await ob.get(short.invitation_id)
    assert expired.status is InvitationStatus.EXPIRED
    actions = await audit_actions(ob.db)
    assert "invitation.expired" in actions and "invitation.revoked" in actions
    # The one still pending is untouched.
    assert (await ob.get(again.invitation_id)).status is InvitationStatus.PENDING


async def test_two_codes_used_at_once_are_left_to_the_operator(onboarding, homeserver) -> None:
    ob, therapist, _sink, _admin = onboarding
    first = await ob.invite("erin@example.org", therapist.user_id, ob.clock())
    second = await ob.invite("finn@example.org", therapist.user_id, ob.clock())
    status, erin = await register(homeserver.url, "erin", "erin-password-1", first.token)
    assert status == 200
    status, _ = await register(homeserver.url, "finn", "finn-password-1", second.token)
    assert status == 200
    # Both accounts appeared between the same two looks: nothing tells them apart.
    result = await ob.check()
    assert result.matched == []
    assert {r.invitation_id for r in result.unmatched} == {
        first.invitation_id,
        second.invitation_id,
    }
    assert await pairs.get_by_users(ob.db, erin["user_id"], therapist.user_id) is None

    used = await ob.match(first.invitation_id, erin["user_id"], ob.clock())
    assert used.status is InvitationStatus.USED and used.patient_id == erin["user_id"]
    record = await pairs.get_by_users(ob.db, erin["user_id"], therapist.user_id)
    assert record is not None and record.room_id
    assert pairs.open_patient_email(ob.parts.sealer, record) == "erin@example.org"
    assert "invitation.used" in await audit_actions(ob.db, record.pair_id)
    # Nothing left to follow up.
    assert (await ob.check()).matched == []


async def test_one_code_used_between_two_looks_is_matched(onboarding, homeserver) -> None:
    ob, therapist, _sink, _admin = onboarding
    invitation = await ob.invite("gus@example.org", therapist.user_id, ob.clock())
    assert (await ob.check()).matched == []  # seen unused
    status, gus = await register(homeserver.url, "gus", "gus-password-12", invitation.token)
    assert status == 200
    result = await ob.check()
    assert [(r.invitation_id, user) for r, user in result.matched] == [
        (invitation.invitation_id, gus["user_id"])
    ]
    record = await pairs.get_by_users(ob.db, gus["user_id"], therapist.user_id)
    assert record is not None and record.status.value == "active"
    details = await ob.db.fetchval(
        "SELECT details FROM audit_entries WHERE action = 'invitation.used'"
    )
    assert json.loads(details) == {
        "invitation_id": invitation.invitation_id,
        "patient": gus["user_id"],
    }


async def test_without_admin_access_the_message_says_what_to_do(onboarding) -> None:
    ob, therapist, _sink, _admin = onboarding
    ob.admin = SynapseAdminApi(ob.parts.rest, None)
    with pytest.raises(AdminUnavailable, match=r"synapse_admin\.access_token"):
        await ob.invite("hal@example.org", therapist.user_id, ob.clock())
    ob.admin = SynapseAdminApi(ob.parts.rest, "not-an-admin-token")
    with pytest.raises(AdminUnavailable, match="not a valid token of a server admin"):
        await ob.invite("hal@example.org", therapist.user_id, ob.clock())
    assert await invitations.list_invitations(ob.db) == []


async def test_invitation_store_on_both_databases(db) -> None:
    sealer = Sealer({"k1": generate_key()}, "k1")
    created = await invitations.create(
        db,
        sealer=sealer,
        email="ivy@example.org",
        therapist_id="@t:hs",
        token="AAAA-BBBB-CCCC-DDDD",
        now=1_000,
        expires_at=9_000,
        name="Ivy",
        prior_accounts=frozenset({"@old:hs"}),
    )
    assert created.status is InvitationStatus.PENDING and created.sent_count == 0
    assert created.prior_accounts == frozenset({"@old:hs"})
    assert (created.email, created.name, created.token) == (
        "ivy@example.org",
        "Ivy",
        "AAAA-BBBB-CCCC-DDDD",
    )
    assert await invitations.get_by_token(db, "AAAA-BBBB-CCCC-DDDD", sealer) == created
    await invitations.mark_sent(db, created.invitation_id, 2_000)
    await invitations.mark_unused_seen(db, created.invitation_id, 3_000)
    stored = await invitations.get(db, created.invitation_id.upper(), sealer)
    assert stored is not None and stored.token == "AAAA-BBBB-CCCC-DDDD"
    # Without the sealer nothing sealed is opened.
    unopened = await invitations.get(db, created.invitation_id)
    assert unopened is not None
    assert (unopened.email, unopened.name, unopened.token) == (invitations.SEALED, None, None)
    assert (stored.sent_count, stored.last_sent_at, stored.unused_seen_at) == (1, 2_000, 3_000)
    await invitations.set_patient(db, created.invitation_id, "@ivy:hs")
    assert await invitations.claimed_patients(db) == {"@ivy:hs"}
    assert await invitations.mark_used(db, created.invitation_id, "@ivy:hs", "pair1", 4_000)
    # A used invitation can be neither revoked nor used again.
    assert not await invitations.close(db, created.invitation_id, InvitationStatus.REVOKED, 5_000)
    assert not await invitations.mark_used(db, created.invitation_id, "@x:hs", "pair2", 5_000)
    (used,) = await invitations.list_invitations(db, status=InvitationStatus.USED, sealer=sealer)
    assert (used.patient_id, used.pair_id, used.closed_at) == ("@ivy:hs", "pair1", 4_000)
    # A used code is forgotten; its digest still finds the invitation.
    assert used.token is None and used.email == "ivy@example.org"
    assert (await invitations.get_by_token(db, "AAAA-BBBB-CCCC-DDDD")) is not None
    assert await invitations.list_invitations(db, status=InvitationStatus.PENDING) == []
