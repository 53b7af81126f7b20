"""`!video` in the running bridge against the real Synapse: links with personal JWTs, the
Element widget in the real room state, `!video end`, and a practice without Jitsi."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
import pytest

from bridge.adapters.matrix.rest import MatrixRest
from bridge.adapters.video import is_room_name
from bridge.app import default_features
from bridge.features.video import install_video
from bridge.store import therapists
from tests.adapters.test_mailer import body_of, outbound
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config, notice_containing, start_app

pytestmark = pytest.mark.integration

DOMAIN = "video.harbour-therapy.org"
SECRET = "a-jitsi-secret-of-32-characters!"


async def _running(
    homeserver,
    make_user,
    make_nio_user,
    tmp_path: Path,
    jitsi,
    *,
    patient_email: str | None = None,
    **overrides,
):
    bot = make_user("bot")
    cfg = bridge_config(
        homeserver, bot.user_id, bot.password, tmp_path / "data", jitsi=jitsi, **overrides
    )
    app = await start_app(cfg, features=[*default_features(), install_video])
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock(), patient_email=patient_email
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    return app, patient, therapist, record


JWT = {"domain": DOMAIN, "jwt": {"app_id": "confidant", "secret": SECRET}}
PATIENT_EMAIL = "patient@example.org"


@pytest.fixture
async def with_jwt(homeserver, make_user, make_nio_user, tmp_path: Path, smtp_sink):
    sink = await smtp_sink()
    running = await _running(
        homeserver,
        make_user,
        make_nio_user,
        tmp_path,
        JWT,
        patient_email=PATIENT_EMAIL,
        outbound_email=outbound(sink.port),
    )
    yield (*running, sink)
    await running[0].stop()


def bodies(member, room_id: str) -> list[str]:
    """Every readable message body in the room as the member's client has it (notices too)."""
    return [str(getattr(e, "body", "")) for e in member.timeline.get(room_id, [])]


def _link(body: str, prefix: str) -> str:
    match = re.search(re.escape(prefix) + r"\s*(https://\S+)", body)
    assert match, body
    return match.group(1)


def _claims(link: str, room: str) -> dict:
    url = urlparse(link)
    assert url.netloc == DOMAIN and url.path == f"/{room}"
    token = parse_qs(url.query)["jwt"][0]
    return jwt.decode(token, SECRET, algorithms=["HS256"], audience="jitsi")


async def test_video_start_and_end(with_jwt, homeserver):
    app, patient, therapist, record, sink = with_jwt
    room = record.room_id
    await patient.send_text(room, "!video")
    started = await therapist.wait_for(room, notice_containing("Video call started"), timeout=20)
    meeting_url = _link(started.body, "Meeting:")
    meeting = urlparse(meeting_url).path.lstrip("/")
    assert is_room_name(meeting) and "?" not in meeting_url
    # No personal link in the room both members read: it says where each one went.
    assert "jwt" not in started.body and "went to your e-mail address" in started.body

    # The patient's own link, by e-mail only: a token for this meeting, not a moderator.
    (mail,) = await sink.wait(1)
    assert mail["To"] == PATIENT_EMAIL
    assert mail["Subject"] == f"Your video call link from {app.cfg.practice.name}"
    assert therapist.user_id not in body_of(mail)  # no one's name in an e-mail
    patient_claims = _claims(_link(body_of(mail), "personal link:"), meeting)
    assert patient_claims["iss"] == "confidant" and patient_claims["sub"] == DOMAIN
    assert patient_claims["room"] == meeting
    assert patient_claims["context"]["user"]["id"] == patient.user_id
    assert patient_claims["context"]["user"]["moderator"] == "false"
    assert patient_claims["exp"] - patient_claims["nbf"] == 2 * 3600 + 60

    # The therapist's moderator link goes only to their desk room.
    desk = (await therapists.get(app.parts.db, therapist.user_id)).desk_room_id
    moderator = await therapist.wait_for(desk, notice_containing("moderator link"), timeout=20)
    therapist_claims = _claims(_link(moderator.body, f"pair {record.label}:"), meeting)
    assert therapist_claims["context"]["user"]["moderator"] == "true"
    assert therapist_claims["context"]["user"]["id"] == therapist.user_id
    assert "moderator" not in " ".join(patient.texts(room))
    for member in (patient, therapist):
        assert not [b for b in bodies(member, room) if "jwt" in b], member.user_id

    rest = MatrixRest(homeserver.url, patient.client.access_token)
    try:
        widget_id = f"confidant_{meeting.replace('-', '_')}"

        async def widget():
            try:
                return await rest.get_state(room, "im.vector.modular.widgets", widget_id)
            except Exception:
                return None

        content = await wait_until(widget, what="the widget in the room state")
        assert content["type"] == "jitsi"
        assert content["name"] == "Video call"
        assert content["url"].startswith("https://app.element.io/jitsi.html?confId=" + meeting)
        assert content["data"] == {
            "domain": DOMAIN,
            "conferenceId": meeting,
            "roomName": "Video call",
            "isAudioOnly": False,
            "isVideoChannel": False,
        }
        layout = await rest.get_state(room, "io.element.widgets.layout", "")
        assert layout["widgets"][widget_id]["container"] == "top"

        # Asked again during the call: the therapist's `!video` re-posts the room's link and
        # mails nothing; the patient's own sends her link again.
        await therapist.send_text(room, "!video")
        again = await patient.wait_for(room, notice_containing("still on"), timeout=20)
        assert "when the call started; send !video to have it sent again" in again.body
        assert len(sink.messages) == 1
        await patient.send_text(room, "!video")
        (_, mail_again) = await sink.wait(2)
        assert mail_again["To"] == PATIENT_EMAIL
        assert _claims(_link(body_of(mail_again), "personal link:"), meeting)["room"] == meeting

        await therapist.send_text(room, "!video end")
        await patient.wait_for(room, notice_containing("Video call ended"), timeout=20)

        async def removed():
            return await rest.get_state(room, "im.vector.modular.widgets", widget_id) == {}

        await wait_until(removed, what="the widget removed")
    finally:
        await rest.close()

    rows = await app.parts.db.fetch(
        "SELECT action, actor, details FROM audit_entries WHERE pair_id = ?"
        " AND action LIKE 'video.%' ORDER BY seq",
        record.pair_id,
    )
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("video.started", patient.user_id),
        ("video.ended", therapist.user_id),
    ]
    # The meeting name grants entry to an open Jitsi: it stays out of the plain audit details.
    assert all(meeting not in r["details"] for r in rows)
    assert json.loads(rows[0]["details"]) == {
        "personal_links": True,
        "patient_link_sent": True,
        "role": "patient",
    }
    assert len(sink.messages) == 2  # and nothing else went out by e-mail


async def test_without_a_private_way_to_the_patient_no_link_is_posted(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    app, patient, therapist, record = await _running(
        homeserver, make_user, make_nio_user, tmp_path, JWT
    )
    try:
        await patient.send_text(record.room_id, "!video")
        started = await patient.wait_for(
            record.room_id, notice_containing("Video call started"), timeout=20
        )
        assert "could not be sent" in started.body and "jwt" not in started.body
        desk = (await therapists.get(app.parts.db, therapist.user_id)).desk_room_id
        await therapist.wait_for(desk, notice_containing("moderator link"), timeout=20)
        details = await app.parts.db.fetchval(
            "SELECT details FROM audit_entries WHERE action = 'video.started'"
        )
        assert json.loads(details)["patient_link_sent"] is False
    finally:
        await app.stop()


async def test_video_without_jitsi_says_so(homeserver, make_user, make_nio_user, tmp_path: Path):
    app, patient, _therapist, record = await _running(
        homeserver, make_user, make_nio_user, tmp_path, {"domain": None}
    )
    try:
        await patient.send_text(record.room_id, "!video")
        await patient.wait_for(record.room_id, notice_containing("not configured"), timeout=20)
        await patient.send_text(record.room_id, "!video end")
        await patient.send_text(record.room_id, "!help")
        help_notice = await patient.wait_for(
            record.room_id, notice_containing("Start a video call"), timeout=20
        )
        assert "!video" in help_notice.body
        assert await app.parts.db.fetchval("SELECT COUNT(*) FROM video_calls") == 0
    finally:
        await app.stop()
