"""Inbound e-mail end to end: real smtplib sessions into the running bridge, read by the
patient's E2EE client through the real Synapse; crashes, redeliveries and a homeserver
that cannot be reached."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import wave
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import dkim
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nio import (
    DownloadResponse,
    Event,
    RoomEncryptedAudio,
    RoomEncryptedFile,
    RoomEncryptedImage,
    RoomMessageText,
)
from nio.crypto.attachments import decrypt_attachment

from bridge.adapters.matrix.rest import MatrixRest
from bridge.adapters.render import Renderer
from bridge.app import App, default_features, make_sealer, utcnow
from bridge.audit.log import AuditLog
from bridge.config import Config, load_config, minimal_config_dict
from bridge.email import inbox
from bridge.email.authcheck import StaticResolver
from bridge.features.email import EmailFeature, attach_email, build_email, install_email
from bridge.features.email.relay import attachment_txn_id
from bridge.service import Service
from bridge.store import clocks, languages, open_database
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app
from tests.support.nio_user import NioUser

pytestmark = pytest.mark.integration

PATIENT = "pat@example.org"
DOMAIN = "in.example.net"
AUTHSERV = "mx.practice.test"
SMTP = {
    "enabled": True,
    "inbound_domain": DOMAIN,
    "sender_auth": "behind_mta",
    "authserv_id": AUTHSERV,
}
#: What the practice's MTA writes for a message it authenticated.
PASSED = (
    f"{AUTHSERV}; dkim=pass header.d=example.org; spf=pass smtp.mailfrom={PATIENT};"
    " dmarc=pass header.from=example.org"
)


# ------------------------------------------------------------------ helpers


def email_features(**options: Any) -> tuple[list[Any], dict[str, EmailFeature]]:
    """The bridge's features with inbound e-mail installed once, and a handle on it."""
    holder: dict[str, EmailFeature] = {}

    async def install(app: App) -> None:
        feature = await attach_email(app, **options)
        assert feature is not None
        holder["email"] = feature

    return [*(f for f in default_features() if f is not install_email), install], holder


def message(
    address: str,
    *,
    message_id: str,
    body: str = "",
    subject: str = "Thursday",
    html: str | None = None,
    sender: str = f"Pat <{PATIENT}>",
    authenticated: bool = True,
    in_reply_to: str | None = None,
    attachments: Sequence[tuple[bytes, str, str, str]] = (),
) -> bytes:
    """A message as the practice's MTA hands it on; attachments are (data, main, sub, name)."""
    msg = EmailMessage()
    # The MTA's own Received tops every message it hands on, its milters' results below it.
    msg["Received"] = f"from mail.example.org (mail.example.org [192.0.2.7]) by {AUTHSERV}"
    if authenticated:
        msg["Authentication-Results"] = PASSED
    msg["From"] = sender
    msg["To"] = address
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    if html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    for data, maintype, subtype, filename in attachments:
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def deliver(port: int, address: str, raw: bytes, mail_from: str = PATIENT) -> None:
    """One real SMTP session; raises smtplib's exception when the message is refused."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(mail_from, [address], raw)


async def send_mail(port: int, address: str, raw: bytes) -> None:
    await asyncio.to_thread(deliver, port, address, raw)


def posts_with(patient: NioUser, room_id: str, text: str) -> list[RoomMessageText]:
    return [
        e
        for e in patient.timeline.get(room_id, [])
        if isinstance(e, RoomMessageText) and text in e.body
    ]


def post_with(text: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, RoomMessageText) and text in e.body


async def download(patient: NioUser, event: Any) -> bytes:
    resp = await patient.client.download(mxc=event.url)
    assert isinstance(resp, DownloadResponse)
    return bytes(decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv))


def wav_bytes(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def new_pair(app: App, make_nio_user: Any) -> tuple[NioUser, Any, str]:
    """A pair with the patient's e-mail address; returns (patient, record, pair address)."""
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock(), patient_email=PATIENT
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    return patient, record, f"pair-{record.email_token}@{DOMAIN}"


async def audit_rows(app_db: Any, pair_id: str, action: str) -> list[dict[str, Any]]:
    return await app_db.fetch(
        "SELECT seq, details, outcome FROM audit_entries WHERE pair_id = ? AND action = ? "
        "ORDER BY seq",
        pair_id,
        action,
    )


@pytest.fixture
async def email_bridge(homeserver, make_user, make_nio_user, tmp_path: Path):
    bot = make_user("bot")
    overrides = bridge_config_dict(
        homeserver, bot.user_id, bot.password, tmp_path / "data", smtp=SMTP
    )
    cfg = load_config_dict(overrides, tmp_path)
    features, holder = email_features(port=0)
    app = await start_app(cfg, features=features)
    try:
        patient, record, address = await new_pair(app, make_nio_user)
        yield app, holder["email"], patient, record, address
    finally:
        await app.stop()


def load_config_dict(overrides: dict[str, Any], tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal_config_dict(**overrides)))
    return load_config(path)


# ------------------------------------------------------------------ in the running bridge


async def test_text_html_reply_redelivery_and_refusals(email_bridge):
    app, feature, patient, record, address = email_bridge
    port, room = feature.listener.port, record.room_id
    first = message(
        address,
        message_id="<m1@example.org>",
        body="canary-plain-1 see you Thursday\n\nOn Mon, 1 Jan 2026, Doc wrote:\n> old words\n",
    )
    # The sending server never saw our 250 and delivers again: accepted both times.
    await send_mail(port, address, first)
    await send_mail(port, address, first)

    post = await patient.wait_for(room, post_with("canary-plain-1"), timeout=30)
    assert post.body.startswith(f"E-mail from Pat <{PATIENT}>")
    assert "Subject: Thursday" in post.body
    assert "old words" not in post.body  # quoted history trimmed in the post
    [row] = await app.parts.db.fetch("SELECT id, status, relay_txn_id FROM inbound_emails")
    assert row["relay_txn_id"] == inbox.relay_txn_id(row["id"])

    async def first_sent() -> Any:
        return await app.parts.db.fetchval(
            "SELECT event_id FROM outbox WHERE txn_id = ?", row["relay_txn_id"]
        )

    assert await wait_until(first_sent, what="first post sent") == post.event_id

    reply = message(
        address,
        message_id="<m2@example.org>",
        in_reply_to="<m1@example.org>",
        subject="Re: Thursday",
        html=(
            "<p>canary-html-2 <b>bold</b><script>alert(1)</script>"
            '<a href="javascript:alert(1)">click</a></p>'
        ),
    )
    await send_mail(port, address, reply)
    html_post = await patient.wait_for(room, post_with("canary-html-2"), timeout=30)
    content = html_post.source["content"]
    assert content["m.relates_to"]["m.in_reply_to"]["event_id"] == post.event_id
    formatted = content["formatted_body"]
    assert "<b>bold</b>" in formatted or "<strong>bold</strong>" in formatted
    assert "script" not in formatted and "javascript:" not in formatted
    assert "alert(1)" not in html_post.body
    # The redelivered message was posted once (the later e-mail is in, the first still single).
    assert len(posts_with(patient, room, "canary-plain-1")) == 1

    # Refusals: a forged patient address without our MTA's results, another sender,
    # an address that belongs to no pair.
    forged = message(address, message_id="<f1@x>", body="forged", authenticated=False)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await send_mail(port, address, forged)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.")
    stranger = message(address, message_id="<f2@x>", body="hello", sender="Eve <eve@example.org>")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await send_mail(port, address, stranger)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")
    nobody = f"pair-doesnotexist@{DOMAIN}"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
        await send_mail(port, nobody, message(nobody, message_id="<u@x>", body="hi"))
    [(code, text)] = unknown.value.recipients.values()
    assert code == 550 and text.startswith(b"5.1.1")

    pair_id = record.pair_id
    rejected = await audit_rows(app.parts.db, pair_id, "email.rejected")
    reasons = [json.loads(r["details"])["reason"] for r in rejected]
    assert reasons == ["no_trusted_results", "sender_not_allowed"]
    assert {r["outcome"] for r in rejected} == {"refused"}
    relayed = await audit_rows(app.parts.db, pair_id, "relay.email")
    assert len(relayed) == 2
    sealed = await app.parts.audit.load_content(app.parts.db, relayed[0]["seq"])
    kept = json.loads(sealed)
    assert kept["msgtype"] == "email" and kept["subject"] == "Thursday"
    original = await app.parts.audit.load_media(app.parts.db, kept["media_ref"])
    assert original == first  # the full original, quoted history included
    assert await clocks.get_open(app.parts.db, pair_id) is not None  # counts for the SLA
    assert await app.parts.db.fetchval("SELECT COUNT(*) FROM inbound_emails") == 2


async def test_the_post_of_a_german_patients_mail_is_written_in_german(email_bridge):
    app, feature, patient, record, address = email_bridge
    await languages.set_language(app.parts.db, patient.user_id, "de", now=0)
    await send_mail(
        feature.listener.port,
        address,
        message(address, message_id="<de1@example.org>", body="canary-de-1 bis Donnerstag"),
    )
    post = await patient.wait_for(record.room_id, post_with("canary-de-1"), timeout=30)
    assert post.body.startswith(f"E-Mail von Pat <{PATIENT}>")
    assert "Betreff: " in post.body


async def test_attachments_image_file_and_voice(email_bridge):
    app, feature, patient, record, address = email_bridge
    port, room = feature.listener.port, record.room_id
    image = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
    report = b"%PDF-1.4 " + os.urandom(1024)
    raw = message(
        address,
        message_id="<att@example.org>",
        body="canary-att see the attachments",
        attachments=[
            (image, "image", "png", "scan.png"),
            (report, "application", "pdf", "report.pdf"),
            (wav_bytes(), "audio", "wav", "voicemail.wav"),
            (b"not audio at all", "audio", "mpeg", "broken.mp3"),
        ],
    )
    await send_mail(port, address, raw)
    await patient.wait_for(room, post_with("canary-att"), timeout=30)
    picture = await patient.wait_for(room, lambda e: isinstance(e, RoomEncryptedImage), timeout=30)
    voice = await patient.wait_for(room, lambda e: isinstance(e, RoomEncryptedAudio), timeout=60)
    files = await wait_until(lambda: _files(patient, room, 2), what="two files posted", timeout=30)
    assert await download(patient, picture) == image
    voice_content = voice.source["content"]
    assert "org.matrix.msc3245.voice" in voice_content
    assert voice_content["info"]["mimetype"] == "audio/ogg"
    assert voice_content["org.matrix.msc1767.audio"]["duration"] == pytest.approx(1000, abs=100)
    by_name = {f.body: f for f in files}
    assert set(by_name) == {"report.pdf", "broken.mp3"}  # audio that will not convert: a file
    assert await download(patient, by_name["report.pdf"]) == report
    [row] = await app.parts.db.fetch("SELECT id FROM inbound_emails")
    txn = inbox.relay_txn_id(row["id"])
    queued = await app.parts.db.fetch(
        "SELECT txn_id FROM outbox WHERE txn_id LIKE ? ORDER BY txn_id", txn + "%"
    )
    assert [q["txn_id"] for q in queued] == [txn] + [
        attachment_txn_id(txn, i) for i in (1, 2, 3, 4)
    ]


async def _files(patient: NioUser, room: str, count: int) -> list[Any]:
    found = [e for e in patient.timeline.get(room, []) if isinstance(e, RoomEncryptedFile)]
    return found if len(found) >= count else []


async def test_direct_mode_dkim_signed_and_oversize(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode("ascii")
    dns = StaticResolver({("sel._domainkey.example.org", "TXT"): [f"v=DKIM1; k=rsa; p={public}"]})
    bot = make_user("bot")
    direct = {"enabled": True, "inbound_domain": DOMAIN, "max_message_bytes": 100_000}
    overrides = bridge_config_dict(
        homeserver, bot.user_id, bot.password, tmp_path / "data", smtp=direct
    )
    features, holder = email_features(port=0, resolver=dns)
    app = await start_app(load_config_dict(overrides, tmp_path), features=features)
    try:
        patient, record, address = await new_pair(app, make_nio_user)
        port = holder["email"].listener.port
        raw = message(address, message_id="<s1@x>", body="canary-signed", authenticated=False)
        signature = dkim.sign(
            raw, b"sel", b"example.org", pem, include_headers=[b"from", b"subject"]
        )
        await send_mail(port, address, bytes(signature) + raw)
        await patient.wait_for(record.room_id, post_with("canary-signed"), timeout=30)
        assert await app.parts.db.fetchval("SELECT auth_method FROM inbound_emails") == "dkim"

        unsigned = message(address, message_id="<s2@x>", body="unsigned", authenticated=False)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await send_mail(port, address, unsigned)
        assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.")
        big = message(address, message_id="<s3@x>", body="x" * 150_000, authenticated=False)
        with pytest.raises(smtplib.SMTPException) as too_big:
            await send_mail(port, address, bytes(signature) + big)
        assert "552" in str(too_big.value)
        assert await app.parts.db.fetchval("SELECT COUNT(*) FROM inbound_emails") == 1
    finally:
        await app.stop()


# ------------------------------------------------------------------ crashes and outages

#: Runs the bridge in its own process with inbound e-mail (relay on or off).
BRIDGE_SCRIPT = """
import asyncio, sys
from bridge.app import App, default_features
from bridge.config import load_config
from bridge.features.email import attach_email, install_email
from bridge.logging_setup import setup_logging

cfg = load_config(sys.argv[1])
setup_logging(cfg.logging.level, cfg.logging.format)
relay = sys.argv[2] == "relay"

async def email(app):
    await attach_email(app, run_relay=relay)

features = [f for f in default_features() if f is not install_email] + [email]
asyncio.run(App(cfg, features=features).run_until_signalled())
"""


def tail(log_file: Path) -> str:
    """The end of the bridge process's log, for a failing assertion."""
    return log_file.read_text()[-3000:]


def start_bridge_process(config_file: Path, mode: str, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", BRIDGE_SCRIPT, str(config_file), mode],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_listening(port: int, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    async def up() -> bool:
        assert proc.poll() is None, tail(log_file)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        await writer.wait_closed()
        return True

    await wait_until(up, timeout=60, what="the bridge's SMTP listener")


async def prepared_pair(homeserver, make_user, make_nio_user, tmp_path: Path, port: int):
    """A config file with e-mail on `port`, and a pair made by a bridge that then stopped."""
    bot = make_user("bot")
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "port": port},
    )
    cfg = load_config_dict(overrides, tmp_path)
    app = await start_app(cfg, features=[f for f in default_features() if f is not install_email])
    try:
        patient, record, address = await new_pair(app, make_nio_user)
    finally:
        await app.stop()
    return cfg, tmp_path / "config.yaml", patient, record, address


async def test_killed_between_250_and_relay_posts_once_after_restart(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    port = free_port()
    cfg, config_file, patient, record, address = await prepared_pair(
        homeserver, make_user, make_nio_user, tmp_path, port
    )
    log_file = tmp_path / "bridge.log"
    proc = start_bridge_process(config_file, "accept-only", log_file)
    try:
        await wait_listening(port, proc, log_file)
        await send_mail(port, address, message(address, message_id="<k1@x>", body="canary-kill"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    db = await open_database(cfg.database_url)
    try:
        [row] = await db.fetch("SELECT status FROM inbound_emails")
        assert row["status"] == "accepted"  # 250 was given: it is on disk, not yet posted
    finally:
        await db.close()

    proc = start_bridge_process(config_file, "relay", log_file)
    try:
        await wait_listening(port, proc, log_file)
        room = record.room_id
        await patient.wait_for(room, post_with("canary-kill"), timeout=60)
        await send_mail(port, address, message(address, message_id="<k2@x>", body="canary-next"))
        await patient.wait_for(room, post_with("canary-next"), timeout=60)
        assert len(posts_with(patient, room, "canary-kill")) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, tail(log_file)


class UnreachableHomeserver:
    """Uploads to a homeserver URL where nothing listens: every upload really fails."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.attempts = 0

    async def upload_encrypted(self, data: bytes, mimetype: str, filename: str) -> dict[str, Any]:
        self.attempts += 1
        url = f"{self.url}/_matrix/media/v3/upload"
        async with aiohttp.ClientSession() as session, session.post(url, data=data) as resp:
            return dict(await resp.json())


async def test_mail_accepted_while_homeserver_is_down_arrives_once(
    homeserver, make_user, make_nio_user, tmp_path: Path
):
    cfg, _config_file, patient, record, address = await prepared_pair(
        homeserver, make_user, make_nio_user, tmp_path, free_port()
    )
    # The bridge's database and keys, but the homeserver cannot be reached.
    db = await open_database(cfg.database_url)
    sealer = make_sealer(cfg)
    audit = AuditLog(db, sealer, cfg.audit.signing_key.get_secret_value())
    unreachable = f"http://127.0.0.1:{free_port()}"
    uploader = UnreachableHomeserver(unreachable)
    renderer = Renderer()
    service = Service(
        db=db,
        rest=MatrixRest(unreachable, None),
        renderer=renderer,
        sealer=sealer,
        audit=audit,
        bot_user_id=cfg.bot.user_id,
        clock=utcnow,
    )
    down = build_email(
        cfg,
        db=db,
        sealer=sealer,
        audit=audit,
        template_env=renderer.env,
        uploader=uploader,
        clock=utcnow,
        pipeline=service,
        port=0,
    )
    await down.start()
    try:
        port = down.listener.port
        await send_mail(
            port, address, message(address, message_id="<d1@x>", body="canary-text-only")
        )
        image = os.urandom(512)
        with_image = message(
            address,
            message_id="<d2@x>",
            body="canary-with-image",
            attachments=[(image, "image", "png", "scan.png")],
        )
        await send_mail(port, address, with_image)
        assert down.relay is not None
        await wait_until(lambda: _true(uploader.attempts >= 2), what="uploads retried", timeout=20)
        statuses = {
            r["message_id"]: r["status"]
            for r in await db.fetch("SELECT message_id, status FROM inbound_emails")
        }
        # The text-only e-mail waits in the outbox; the one with an image waits in the inbox.
        assert statuses == {"<d1@x>": "relayed", "<d2@x>": "accepted"}
    finally:
        await down.stop()
        await db.close()

    features, holder = email_features(port=0)
    app = await start_app(cfg, features=features)
    try:
        room = record.room_id
        await patient.wait_for(room, post_with("canary-with-image"), timeout=60)
        await patient.wait_for(room, post_with("canary-text-only"), timeout=30)
        picture = await patient.wait_for(
            room, lambda e: isinstance(e, RoomEncryptedImage), timeout=30
        )
        assert await download(patient, picture) == image
        port = holder["email"].listener.port
        await send_mail(port, address, message(address, message_id="<d3@x>", body="canary-up"))
        await patient.wait_for(room, post_with("canary-up"), timeout=30)
        assert len(posts_with(patient, room, "canary-text-only")) == 1
        assert len(posts_with(patient, room, "canary-with-image")) == 1
        images = [e for e in patient.timeline[room] if isinstance(e, RoomEncryptedImage)]
        assert len(images) == 1
    finally:
        await app.stop()


async def _true(value: bool) -> bool:
    return value


# ------------------------------------------------------------------ command line


def confidant(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120
    )


async def test_status_and_retry_from_the_command_line(tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(minimal_config_dict(data_dir=str(tmp_path / "data"), smtp=SMTP))
    )
    cfg = load_config(config_file)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db = await open_database(cfg.database_url)
    try:
        from bridge.store import pairs

        sealer = make_sealer(cfg)
        pair = await pairs.create(
            db,
            patient_id="@p:hs",
            therapist_id="@t:hs",
            now=0,
            patient_email=PATIENT,
            sealer=sealer,
        )
        waiting, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<a@x>", b"A", 1)
        broken, _ = await inbox.store_inbound(db, sealer, pair.pair_id, PATIENT, "<b@x>", b"B", 2)
        await inbox.mark_failed(db, broken, "pair_inactive")
    finally:
        await db.close()

    shown = confidant("email", "status", "--json", "-c", str(config_file))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["counts"] == {"accepted": 1, "relayed": 0, "failed": 1}
    assert [(f["id"], f["pair"], f["reason"]) for f in data["failed"]] == [
        (broken, pair.label, "pair_inactive")
    ]
    assert PATIENT not in shown.stdout

    retried = confidant("email", "retry", broken, "-c", str(config_file))
    assert retried.returncode == 0, retried.stderr
    again = confidant("email", "retry", broken, "-c", str(config_file))
    assert again.returncode == 1  # no longer failed
    db = await open_database(cfg.database_url)
    try:
        assert [i.id for i in await inbox.pending(db)] == [waiting, broken]
        actions = await db.fetch("SELECT action, details FROM audit_entries")
        assert [a["action"] for a in actions] == ["email.requeued"]
    finally:
        await db.close()
