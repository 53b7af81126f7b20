"""Answers by e-mail end to end: the therapist writes in the E2EE pair room on the real
Synapse, the patient's mailbox (an aiosmtpd sink standing in for the practice's relay)
gets it threaded, signed and only with her consent; her reply comes back to the same pair;
a mail queued while the relay is down leaves once after a restart, and never twice."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import subprocess
from email import message_from_bytes, policy
from email.encoders import encode_7or8bit
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from pathlib import Path
from typing import Any

import aiohttp
import dkim
import pysequoia
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from nio import UploadResponse

from bridge.app import App
from bridge.cli import main
from bridge.config import hash_token
from bridge.core import email_out
from bridge.email import inbox
from bridge.features.email import EmailFeature
from bridge.features.http import http_installer, install_http
from bridge.store import clocks, open_database
from bridge.web.server import HttpServer
from tests.adapters.test_mailer import Sink, SinkFactory, body_of, outbound
from tests.adapters.test_mailer import smtp_sink as smtp_sink  # the fixture
from tests.features.test_email_bridge import (
    AUTHSERV,
    DOMAIN,
    PASSED,
    PATIENT,
    SMTP,
    email_features,
    free_port,
    load_config_dict,
    message,
    post_with,
    send_mail,
    start_bridge_process,
    tail,
    wait_listening,
)
from tests.features.test_pair_rooms import wait_until
from tests.support.bridge_app import bridge_config_dict, notice_containing, start_app
from tests.support.nio_user import NioUser

pytestmark = pytest.mark.integration

SELECTOR = "conf1"


def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    """A DKIM key file and the TXT record that publishes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def config(
    homeserver: Any, bot: Any, tmp_path: Path, relay_port: int, key: Path | None = None
) -> Any:
    replies: dict[str, Any] = {"enabled": True}
    if key is not None:
        replies |= {"dkim_selector": SELECTOR, "dkim_key": str(key)}
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "replies": replies},
        outbound_email=outbound(relay_port),
    )
    return load_config_dict(overrides, tmp_path)


async def send_file(
    sender: NioUser, room: str, data: bytes, mimetype: str, name: str, *, m_type: str
) -> str:
    """Post `data` as an encrypted attachment, as a client does (a voice message for audio)."""
    upload, keys = await sender.client.upload(
        lambda *_: io.BytesIO(data), encrypt=True, filesize=len(data)
    )
    assert isinstance(upload, UploadResponse) and keys is not None, upload
    content: dict[str, Any] = {
        "msgtype": m_type,
        "body": name,
        "info": {"mimetype": mimetype, "size": len(data)},
        "file": {**keys, "url": upload.content_uri},
    }
    if m_type == "m.audio":
        content["org.matrix.msc3245.voice"] = {}
    else:
        content["filename"] = name
    return await sender.send(room, "m.room.message", content)


async def email_pair(app: App, make_nio_user: Any) -> tuple[NioUser, NioUser, Any, str]:
    """A pair with the patient's address on file, both members in the room."""
    patient = await make_nio_user("patient")
    therapist = await make_nio_user("therapist")
    record, _ = await app.parts.pairs.add_pair(
        patient.user_id, therapist.user_id, app.service.clock(), patient_email=PATIENT
    )
    await patient.wait_for(record.room_id, notice_containing("Welcome"), timeout=30)
    await therapist.wait_joined(record.room_id, patient.user_id, timeout=20)
    return patient, therapist, record, f"pair-{record.email_token}@{DOMAIN}"


async def sent_entries(app: App, pair_id: str, action: str) -> list[dict[str, Any]]:
    rows = await app.parts.db.fetch(
        "SELECT seq, details, event_id, outcome FROM audit_entries "
        "WHERE pair_id = ? AND action = ? ORDER BY seq",
        pair_id,
        action,
    )
    return [{**row, "details": json.loads(row["details"])} for row in rows]


def mails_with(sink: Sink, text: str) -> list[EmailMessage]:
    return [m for m in sink.messages if text in m.as_string()]


async def settle(app: App, feature: EmailFeature) -> None:
    """Let the worker look at the queue once more (a mail that should not go stays out)."""
    assert feature.outbound is not None
    await feature.outbound.worker.drain()


async def test_consent_then_threaded_replies_both_ways_then_revoked(
    homeserver,
    make_user,
    make_nio_user,
    smtp_sink: SinkFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    bot = make_user("bot")
    relay = await smtp_sink()
    key, record_txt = dkim_key(tmp_path)
    features, holder = email_features(port=0)
    app = await start_app(config(homeserver, bot, tmp_path, relay.port, key), features=features)
    try:
        feature = holder["email"]
        assert feature.outbound is not None
        patient, therapist, record, address = await email_pair(app, make_nio_user)
        room, port = record.room_id, feature.listener.port

        # 1. No consent: the therapist's message stays in the room.
        await therapist.send_text(room, "canary-before-consent")
        await patient.wait_for(room, post_with("canary-before-consent"), timeout=20)
        await settle(app, feature)
        assert relay.messages == []

        # 2. The therapist asks by e-mail: the practice's text, no clinical content.
        await therapist.send_text(room, "!email ask")
        await therapist.wait_for(room, notice_containing("sent to the patient's address"), 20)
        (ask,) = await relay.wait(1, timeout=20)
        assert relay.envelopes[0].rcpt_tos == [PATIENT]
        # Bounces come back to the mail's own return path, tied to its row by the token.
        return_path = relay.envelopes[0].mail_from
        token = inbox.bounce_token(return_path, DOMAIN)
        assert token is not None and return_path == inbox.bounce_address(token, DOMAIN)
        [ask_row] = await app.parts.db.fetch(
            "SELECT bounce_token FROM outbound_emails WHERE kind = 'consent'"
        )
        assert ask_row["bounce_token"] == token
        assert ask["From"].addresses[0].addr_spec == address
        assert ask["Auto-Submitted"] == "auto-generated"
        assert "reply to this e-mail with the single word YES" in body_of(ask)
        assert "canary" not in ask.as_string()

        # 3. She answers YES by e-mail: consent is given, for the text the e-mail carried.
        yes = message(
            address,
            message_id="<yes-1@example.org>",
            body="YES\n\nOn Monday the practice wrote:\n> ...",
            subject="Re: " + str(ask["Subject"]),
            in_reply_to=str(ask["Message-ID"]),
        )
        await send_mail(port, address, yes)

        async def given() -> list[dict[str, Any]]:
            return await sent_entries(app, record.pair_id, email_out.CONSENT_GIVEN_ACTION)

        [agreed] = await wait_until(given, what="consent given by e-mail")
        [asked] = await sent_entries(app, record.pair_id, email_out.CONSENT_ASKED_ACTION)
        assert agreed["details"]["via"] == "email"
        assert agreed["details"]["consent_sha256"] == asked["details"]["consent_sha256"]
        assert agreed["details"]["recipient_sha256"] == email_out.address_digest(PATIENT)

        # 4. The therapist answers in the room: it reaches her mailbox, threaded and signed.
        reply_id = await therapist.send(
            room,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "canary-reply-1 see you Tuesday",
                "format": "org.matrix.custom.html",
                "formatted_body": "canary-reply-1 see you <b>Tuesday</b><script>x()</script>",
            },
        )
        await relay.wait(2, timeout=30)
        [reply] = mails_with(relay, "canary-reply-1")
        raw = relay.envelopes[1].original_content
        assert dkim.verify(
            raw,
            dnsfunc=lambda name, timeout=5: (
                record_txt if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else b""
            ),
        )
        assert reply["In-Reply-To"] == "<yes-1@example.org>"
        assert str(ask["Message-ID"]) in reply["References"].split()
        assert reply["Subject"] == yes_subject(ask)
        assert reply["From"].addresses[0].addr_spec == address
        html = reply.get_body(("html",))
        assert html is not None and "<b>Tuesday</b>" in html.get_content()
        assert "script" not in html.get_content()
        assert "canary-reply-1 see you Tuesday" in body_of(reply)

        async def audited() -> list[dict[str, Any]]:
            entries = await sent_entries(app, record.pair_id, email_out.SENT_ACTION)
            return [e for e in entries if e["event_id"] == reply_id]

        # The relay's 250 comes first, the commit that audits it right after.
        [sent] = await wait_until(audited, what="the reply audited")
        assert sent["details"]["message_id"] == reply["Message-ID"]
        assert sent["details"]["recipient_sha256"] == email_out.address_digest(PATIENT)
        assert sent["details"]["bytes"] == len(raw)
        assert PATIENT not in json.dumps(sent) and "canary" not in json.dumps(sent)
        kept = json.loads(await app.parts.audit.load_content(app.parts.db, sent["seq"]))
        assert kept["body"] == "canary-reply-1 see you Tuesday"
        assert await app.parts.audit.load_media(app.parts.db, kept["media_ref"]) == raw

        # 5. An edit goes as a correction of that mail.
        await therapist.send(
            room,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "* canary-fix-1 see you Wednesday",
                "m.new_content": {"msgtype": "m.text", "body": "canary-fix-1 see you Wednesday"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": reply_id},
            },
        )
        await relay.wait(3, timeout=30)
        [fix] = mails_with(relay, "canary-fix-1")
        assert fix["In-Reply-To"] == reply["Message-ID"]
        assert body_of(fix).startswith("Correction to an earlier message:")

        # 6. Her answer to the mail comes back to the same pair's room, as a reply thread.
        back = message(
            address,
            message_id="<back-1@example.org>",
            body="canary-back-1 Wednesday is fine",
            subject=str(reply["Subject"]),
            in_reply_to=str(reply["Message-ID"]),
        )
        await send_mail(port, address, back)
        await patient.wait_for(room, post_with("canary-back-1"), timeout=30)
        await therapist.send_text(room, "canary-reply-2 good")
        await relay.wait(4, timeout=30)
        [second] = mails_with(relay, "canary-reply-2")
        assert second["In-Reply-To"] == "<back-1@example.org>"
        assert {"<yes-1@example.org>", str(reply["Message-ID"])} <= set(
            second["References"].split()
        )

        # 7. A file and a voice message go as attachments, byte for byte.
        report = b"%PDF-1.4 canary-file " + os.urandom(2048)
        voice = b"OggS" + os.urandom(4096)
        await send_file(therapist, room, report, "application/pdf", "plan.pdf", m_type="m.file")
        await relay.wait(5, timeout=30)
        await send_file(therapist, room, voice, "audio/ogg", "Voice message", m_type="m.audio")
        await relay.wait(6, timeout=30)
        file_mail, voice_mail = relay.messages[4], relay.messages[5]
        [pdf] = list(file_mail.iter_attachments())
        assert pdf.get_filename() == "plan.pdf" and pdf.get_content() == report
        assert "A file from your therapist is attached: plan.pdf" in body_of(file_mail)
        [ogg] = list(voice_mail.iter_attachments())
        assert ogg.get_content_type() == "audio/ogg" and ogg.get_content() == voice
        assert "voice message" in body_of(voice_mail)
        assert voice_mail["In-Reply-To"] == "<back-1@example.org>"

        # 8. She stops it in the room: nothing more leaves, and the stop is audited.
        await patient.send_text(room, "!email off")
        await patient.wait_for(room, notice_containing("E-mail is off"), timeout=20)
        await therapist.send_text(room, "canary-after-off")
        await therapist.wait_for(room, post_with("canary-after-off"), timeout=20)
        await settle(app, feature)
        [revoked] = await sent_entries(app, record.pair_id, email_out.CONSENT_REVOKED_ACTION)
        assert revoked["details"] == {"via": "room"}
        assert mails_with(relay, "canary-after-off") == []
        assert mails_with(relay, "canary-before-consent") == []
        # The ask, two replies, the correction, the file and the voice message.
        assert len(relay.messages) == 6

        # No content and no address in the logs.
        logged = "\n".join(str(r.__dict__) for r in caplog.records)
        assert "canary" not in logged and PATIENT not in logged
    finally:
        await app.stop()


def yes_subject(ask: EmailMessage) -> str:
    subject = " ".join(str(ask["Subject"]).split())
    return f"Re: {subject}"


async def test_stop_by_email_and_queued_mail_leaves_once_after_restart(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
):
    bot = make_user("bot")
    closed = free_port()  # nothing listens: the relay is down
    features, holder = email_features(port=0)
    app = await start_app(config(homeserver, bot, tmp_path, closed), features=features)
    try:
        patient, therapist, record, address = await email_pair(app, make_nio_user)
        room = record.room_id
        await patient.send_text(room, "!email on")
        await patient.wait_for(room, notice_containing("agreement is recorded"), timeout=20)
        event_id = await therapist.send_text(room, "canary-queued-1")

        async def tried() -> bool:
            row = await app.parts.db.fetchrow(
                "SELECT status, attempts FROM outbound_emails WHERE event_id = ?", event_id
            )
            return row is not None and row["status"] == "pending" and row["attempts"] >= 1

        await wait_until(tried, what="a failed attempt")
    finally:
        await app.stop()

    relay = await smtp_sink()
    cfg = config(homeserver, bot, tmp_path, relay.port)
    for _ in range(2):  # the second start finds it sent and sends nothing
        features, holder = email_features(port=0)
        app = await start_app(cfg, features=features)
        try:
            await relay.wait(1, timeout=30)
            await settle(app, holder["email"])
            assert len(mails_with(relay, "canary-queued-1")) == 1
            row = await app.parts.db.fetchrow(
                "SELECT status FROM outbound_emails WHERE event_id = ?", event_id
            )
            assert row is not None and row["status"] == "sent"
        finally:
            await app.stop()
    assert len(relay.messages) == 1

    # STOP in any reply takes consent back; what is queued then is withheld, audited.
    features, holder = email_features(port=0)
    app = await start_app(cfg, features=features)
    try:
        feature = holder["email"]
        port = feature.listener.port
        stop = message(address, message_id="<stop-1@example.org>", body="STOP")
        await send_mail(port, address, stop)

        async def revoked() -> list[dict[str, Any]]:
            return await sent_entries(app, record.pair_id, email_out.CONSENT_REVOKED_ACTION)

        [entry] = await wait_until(revoked, what="consent revoked by e-mail")
        assert entry["details"] == {"via": "email"}
        await therapist.send_text(room, "canary-after-stop")
        await therapist.wait_for(room, post_with("canary-after-stop"), timeout=20)
        await settle(app, feature)
        assert len(relay.messages) == 1
    finally:
        await app.stop()


async def test_email_pair_from_welcome_to_five_mails_each_way(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
):
    bot = make_user("bot")
    relay = await smtp_sink()
    features, holder = email_features(port=0)
    app = await start_app(config(homeserver, bot, tmp_path, relay.port), features=features)
    try:
        port = holder["email"].listener.port
        therapist = await make_nio_user("therapist")
        record, created = await app.parts.pairs.add_pair(
            None, therapist.user_id, app.service.clock(), patient_email=PATIENT
        )
        assert created and email_out.is_email_patient(record.patient_id)
        assert PATIENT not in record.patient_id  # the pair names her by a digest
        room, address = record.room_id, f"pair-{record.email_token}@{DOMAIN}"
        await therapist.wait_room(room, timeout=20)
        members = await app.parts.rest.request(
            "GET", f"/_matrix/client/v3/rooms/{room}/joined_members"
        )
        assert set(members["joined"]) == {bot.user_id, therapist.user_id}

        # The welcome goes by e-mail, asking for consent to the channel.
        (welcome,) = await relay.wait(1, timeout=30)
        assert relay.envelopes[0].rcpt_tos == [PATIENT]
        assert welcome["From"].addresses[0].addr_spec == address
        assert "Harbour Therapy" in str(welcome["Subject"])
        assert "reply to this e-mail with the single word YES" in body_of(welcome)

        last = str(welcome["Message-ID"])
        subject = f"Re: {' '.join(str(welcome['Subject']).split())}"
        for n in range(1, 6):
            body = "YES\n\nthank you" if n == 1 else f"canary-in-{n} how are you"
            mine = f"<in-{n}@example.org>"
            await send_mail(
                port,
                address,
                message(address, message_id=mine, body=body, subject=subject, in_reply_to=last),
            )
            await therapist.wait_for(room, post_with("thank you" if n == 1 else f"canary-in-{n}"))
            await therapist.send_text(room, f"canary-out-{n} noted")
            await relay.wait(1 + n, timeout=30)
            [answer] = mails_with(relay, f"canary-out-{n}")
            assert answer["In-Reply-To"] == mine
            assert last in answer["References"].split()
            assert answer["Subject"] == subject
            last = str(answer["Message-ID"])
        [agreed] = await sent_entries(app, record.pair_id, email_out.CONSENT_GIVEN_ACTION)
        assert agreed["details"]["via"] == "email"
        assert await clocks.get_open(app.parts.db, record.pair_id) is None  # all answered

        # Her out-of-office answer is shown, but it is not her writing: no clock, no answer.
        ooo = message(
            address,
            message_id="<ooo-1@example.org>",
            body="canary-ooo I am away until Monday",
            subject=f"Auto: {subject}",
            in_reply_to=last,
        ).replace(b"\r\nMessage-ID:", b"\r\nAuto-Submitted: auto-replied\r\nMessage-ID:", 1)
        await send_mail(port, address, ooo)
        await therapist.wait_for(room, post_with("canary-ooo"))
        relayed = await sent_entries(app, record.pair_id, "relay.email")
        assert [e["details"]["automatic"] for e in relayed] == [False] * 5 + [True]
        assert relayed[-1]["details"]["kind"] == "other"
        await settle(app, holder["email"])
        assert await clocks.get_open(app.parts.db, record.pair_id) is None
        assert len(relay.messages) == 6
    finally:
        await app.stop()


async def test_killed_between_commit_and_send_mails_once_after_restart(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
):
    bot = make_user("bot")
    smtp_port, closed = free_port(), free_port()

    def write_config(relay_port: int) -> Any:
        """The config, also written to tmp_path/config.yaml for the bridge process."""
        overrides = bridge_config_dict(
            homeserver,
            bot.user_id,
            bot.password,
            tmp_path / "data",
            smtp={**SMTP, "port": smtp_port, "replies": {"enabled": True}},
            outbound_email=outbound(relay_port),
        )
        return load_config_dict(overrides, tmp_path)

    cfg = write_config(closed)  # the relay is down
    config_file = tmp_path / "config.yaml"
    features, _ = email_features(port=0)
    app = await start_app(cfg, features=features)
    try:
        patient, therapist, record, _ = await email_pair(app, make_nio_user)
        await patient.send_text(record.room_id, "!email on")
        await patient.wait_for(record.room_id, notice_containing("agreement is recorded"), 20)
    finally:
        await app.stop()

    log_file = tmp_path / "bridge.log"
    proc = start_bridge_process(config_file, "relay", log_file)
    try:
        await wait_listening(smtp_port, proc, log_file)
        event_id = await therapist.send_text(record.room_id, "canary-killed-1")
        db = await open_database(cfg.database_url)
        try:

            async def committed_not_sent() -> bool:
                row = await db.fetchrow(
                    "SELECT status, attempts FROM outbound_emails WHERE event_id = ?", event_id
                )
                return row is not None and row["status"] == "pending" and row["attempts"] >= 1

            await wait_until(committed_not_sent, timeout=60, what="the mail queued, not sent")
        finally:
            await db.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    relay = await smtp_sink()
    write_config(relay.port)
    proc = start_bridge_process(config_file, "relay", log_file)
    try:
        await wait_listening(smtp_port, proc, log_file)
        await relay.wait(1, timeout=60)
        await therapist.send_text(record.room_id, "canary-killed-2")
        await relay.wait(2, timeout=60)
        assert len(mails_with(relay, "canary-killed-1")) == 1
        assert len(mails_with(relay, "canary-killed-2")) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, tail(log_file)
    assert len(relay.messages) == 2


def gpg(
    home: Path, *args: str, data: bytes | None = None, status: list[bytes] | None = None
) -> bytes:
    """GnuPG, an OpenPGP implementation independent of the one under test; its status
    lines go into `status` when given."""
    done = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback",
         "--passphrase", "", "--trust-model", "always", "--status-fd", "2", *args],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    if status is not None:
        status.extend(line for line in done.stderr.splitlines() if line.startswith(b"[GNUPG:]"))
    return done.stdout


def pgp_mime(address: str, message_id: str, ciphertext: bytes, subject: str) -> bytes:
    """A PGP/MIME message (RFC 3156) as her mail client sends it, through the practice MTA."""
    outer = MIMEMultipart("encrypted", protocol="application/pgp-encrypted")
    outer["From"] = f"Pat <{PATIENT}>"
    outer["To"] = address
    outer["Subject"] = subject
    outer["Message-ID"] = message_id
    outer.attach(MIMEApplication(b"Version: 1\r\n", "pgp-encrypted", _encoder=encode_7or8bit))
    outer.attach(MIMEApplication(ciphertext, "octet-stream", _encoder=encode_7or8bit))
    # The MTA's Received tops the message, its results right below, as it hands mail on.
    top = (
        f"Received: from mail.example.org (mail.example.org [192.0.2.7]) by {AUTHSERV}\r\n"
        f"Authentication-Results: {PASSED}\r\n"
    )
    return top.encode() + outer.as_bytes(policy=policy.SMTP)


async def test_mail_to_a_patient_with_a_key_is_pgp_mime_encrypted_to_it(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path, capsys
):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg(home, "--quick-gen-key", f"Pat <{PATIENT}>", "default", "default", "never")
    public = gpg(home, "--armor", "--export", PATIENT)
    colons = gpg(home, "--with-colons", "--fingerprint", PATIENT).decode()
    fingerprint = next(line.split(":")[9] for line in colons.splitlines() if line.startswith("fpr"))
    key_file = tmp_path / "pat.asc"
    key_file.write_bytes(public)

    # The practice's own key: it signs what leaves and opens what she encrypts to it.
    practice = pysequoia.Tsk.generate(f"Harbour Therapy <care@{DOMAIN}>")
    practice_file = tmp_path / "practice.asc"
    practice_file.write_text(str(practice))
    practice_public = str(practice.extract_certificate()).encode()
    practice_fpr = str(practice.extract_certificate().fingerprint).upper()
    gpg(home, "--import", data=practice_public)

    bot = make_user("bot")
    relay = await smtp_sink()
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "replies": {"enabled": True, "openpgp_key": str(practice_file)}},
        outbound_email=outbound(relay.port),
    )
    features, holder = email_features(port=0)
    app = await start_app(load_config_dict(overrides, tmp_path), features=features)
    try:
        patient, therapist, record, address = await email_pair(app, make_nio_user)
        # The consent e-mail carries the practice's public key, for her client to encrypt to.
        await therapist.send_text(record.room_id, "!email ask")
        (ask,) = await relay.wait(1, timeout=30)
        [attached] = list(ask.iter_attachments())
        assert attached.get_content_type() == "application/pgp-keys"
        assert attached.get_filename() == "practice-openpgp-key.asc"
        listed = gpg(home, "--show-keys", "--with-colons", data=attached.get_content())
        assert practice_fpr.encode() in listed
        await patient.send_text(record.room_id, "!email on")
        await patient.wait_for(record.room_id, notice_containing("agreement is recorded"), 20)

        # The practice puts her key on file and reads the fingerprint out to her.
        config_file = str(tmp_path / "config.yaml")
        refused = await asyncio.to_thread(
            main, ["pair", "key", record.label, str(config_file), "-c", config_file]
        )
        assert refused == 1 and "not an OpenPGP public key" in capsys.readouterr().err
        args = ["pair", "key", record.label, str(key_file), "-c", config_file]
        assert await asyncio.to_thread(main, args) == 0
        shown = capsys.readouterr().out
        assert shown.strip() == "fingerprint: " + " ".join(
            fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4)
        )

        await therapist.send_text(record.room_id, "canary-pgp-1 see you Friday")
        mail = (await relay.wait(2, timeout=30))[1]
        raw = relay.envelopes[1].original_content
        assert b"canary-pgp" not in raw
        assert mail.get_content_type() == "multipart/encrypted"
        assert mail.get_param("protocol") == "application/pgp-encrypted"
        version, body = list(mail.iter_parts())
        assert version.get_content_type() == "application/pgp-encrypted"
        assert b"Version: 1" in version.get_payload(decode=True)
        status: list[bytes] = []
        opened = gpg(home, "--decrypt", data=body.get_payload(decode=True), status=status)
        inner = message_from_bytes(opened, policy=policy.default)
        assert isinstance(inner, EmailMessage)
        assert "canary-pgp-1 see you Friday" in body_of(inner)
        assert mail["In-Reply-To"] is None and mail["Message-ID"]
        # Signed by the practice's key, as GnuPG checks it.
        valid = [line for line in status if line.startswith(b"[GNUPG:] VALIDSIG ")]
        assert valid and all(line.endswith(practice_fpr.encode()) for line in valid), status

        # Her answers, encrypted to the practice and signed with her key, are read in the
        # room. pysequoia 0.1.35 checks no signature inside a compressed message (GnuPG's
        # default): that one is opened, and recorded as unsigned.
        port = holder["email"].listener.port
        for n, (compress, expected) in enumerate(
            [("none", "signed"), ("zlib", "unsigned")], start=1
        ):
            answer = EmailMessage()
            answer.set_content(f"canary-pgp-in-{n} Friday suits me")
            ciphertext = gpg(
                home, "--armor", "--sign", "--local-user", PATIENT, "--encrypt",
                "--compress-algo", compress, "--recipient", practice_fpr,
                data=answer.as_bytes(policy=policy.SMTP),
            )  # fmt: skip
            assert b"canary-pgp-in" not in ciphertext
            subject = f"Re: {mail['Subject']}"
            raw = pgp_mime(address, f"<pgp-in-{n}@example.org>", ciphertext, subject)
            await send_mail(port, address, raw)
            wanted = post_with(f"canary-pgp-in-{n} Friday suits me")
            await therapist.wait_for(record.room_id, wanted, 30)
            relayed = await sent_entries(app, record.pair_id, "relay.email")
            assert relayed[-1]["details"]["openpgp"] == expected
            sealed = await app.parts.audit.load_content(app.parts.db, relayed[-1]["seq"])
            ref = json.loads(sealed)["media_ref"]
            original = await app.parts.audit.load_media(app.parts.db, ref)
            assert original == raw  # kept as it came, encrypted

        async def audited() -> list[dict[str, Any]]:
            entries = await sent_entries(app, record.pair_id, email_out.SENT_ACTION)
            return [e for e in entries if e["details"]["kind"] == email_out.REPLY]

        [sent] = await wait_until(audited, what="the encrypted mail audited")
        assert sent["details"]["encrypted"] is True
        assert sent["details"]["key_fingerprint"] == fingerprint.lower()
        [added] = await sent_entries(app, record.pair_id, email_out.KEY_ADDED_ACTION)
        assert added["details"] == {"fingerprint": fingerprint.lower()}
    finally:
        await app.stop()


async def test_required_encryption_sends_nothing_in_clear(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
):
    bot = make_user("bot")
    relay = await smtp_sink()
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "replies": {"enabled": True, "require_encryption": True}},
        outbound_email=outbound(relay.port),
    )
    features, holder = email_features(port=0)
    app = await start_app(load_config_dict(overrides, tmp_path), features=features)
    try:
        patient, therapist, record, _ = await email_pair(app, make_nio_user)
        room = record.room_id
        await patient.send_text(room, "!email on")
        await patient.wait_for(room, notice_containing("agreement is recorded"), 20)
        first = await therapist.send_text(room, "canary-clear-1")
        await therapist.wait_for(room, post_with("canary-clear-1"), timeout=20)

        async def withheld() -> list[dict[str, Any]]:
            return await sent_entries(app, record.pair_id, email_out.WITHHELD_ACTION)

        [entry] = await wait_until(withheld, what="the mail withheld")
        assert entry["event_id"] == first and entry["details"]["reason"] == "no_key"
        assert relay.messages == []

        # She posts her key in the room (a secret key first, by mistake): the public one is
        # put on file and its fingerprint shown to both to compare.
        cert = pysequoia.Cert.generate(f"Pat <{PATIENT}>")
        secret = str(cert.secrets).encode()
        await send_file(patient, room, secret, "application/pgp-keys", "me.asc", m_type="m.file")
        await patient.wait_for(room, notice_containing("Send only your public key"), timeout=30)
        public = str(cert).encode()
        await send_file(
            patient, room, public, "application/octet-stream", "pat.asc", m_type="m.file"
        )
        spaced = " ".join(str(cert.fingerprint).upper()[i : i + 4] for i in range(0, 40, 4))
        await therapist.wait_for(room, notice_containing(spaced), timeout=30)
        [added] = await sent_entries(app, record.pair_id, email_out.KEY_ADDED_ACTION)
        assert added["details"] == {"fingerprint": str(cert.fingerprint).lower()}
        await patient.send_text(room, "!email")
        await patient.wait_for(room, notice_containing(f"fingerprint {spaced}"), timeout=20)
        await therapist.send_text(room, "canary-clear-2")
        (mail,) = await relay.wait(1, timeout=30)
        assert mail.get_content_type() == "multipart/encrypted"
        assert b"canary-clear" not in relay.envelopes[0].original_content
        await settle(app, holder["email"])
        assert len(relay.messages) == 1
    finally:
        await app.stop()


async def test_the_admin_api_makes_an_email_pair_takes_her_key_and_revokes_consent(
    homeserver, make_user, make_nio_user, smtp_sink: SinkFactory, tmp_path: Path
):
    token = "email-api-" + os.urandom(8).hex()
    bot = make_user("bot")
    relay = await smtp_sink()
    overrides = bridge_config_dict(
        homeserver,
        bot.user_id,
        bot.password,
        tmp_path / "data",
        smtp={**SMTP, "replies": {"enabled": True}},
        outbound_email=outbound(relay.port),
        http={"enabled": True, "admin_tokens": [hash_token(token)]},
    )
    servers: list[HttpServer] = []
    features, holder = email_features(port=0)
    features = [f for f in features if f is not install_http]
    features.append(http_installer(port=0, on_ready=servers.append))
    app = await start_app(load_config_dict(overrides, tmp_path), features=features)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        therapist = await make_nio_user("therapist")
        async with aiohttp.ClientSession(servers[0].base_url) as http:
            body = {"therapist": therapist.user_id, "patient_email": PATIENT}
            async with http.post("/api/v1/pairs", json=body, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                pair = (await resp.json())["pair"]
            record = await app.parts.pairs.resolve(pair["pair_id"])
            assert email_out.is_email_patient(record.patient_id)
            (welcome,) = await relay.wait(1, timeout=30)  # the welcome, by e-mail
            address = f"pair-{record.email_token}@{DOMAIN}"
            yes = message(
                address,
                message_id="<api-yes@example.org>",
                body="YES",
                in_reply_to=str(welcome["Message-ID"]),
            )
            await send_mail(holder["email"].listener.port, address, yes)

            async def given() -> list[dict[str, Any]]:
                return await sent_entries(app, record.pair_id, email_out.CONSENT_GIVEN_ACTION)

            await wait_until(given, what="consent by e-mail")

            url = f"/api/v1/pairs/{record.label}/key"
            secret = str(pysequoia.Cert.generate(f"Pat <{PATIENT}>").secrets)
            async with http.put(url, json={"key": secret}, headers=auth) as resp:
                assert resp.status == 400
                assert "secret key" in (await resp.json())["detail"]
            cert = pysequoia.Cert.generate(f"Pat <{PATIENT}>")
            async with http.put(url, json={"key": str(cert)}, headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                shown = (await resp.json())["fingerprint"]
            assert shown.replace(" ", "").lower() == str(cert.fingerprint).lower()

            await therapist.wait_room(record.room_id, timeout=20)
            await therapist.send_text(record.room_id, "canary-api-1")
            (_, mail) = await relay.wait(2, timeout=30)
            assert mail.get_content_type() == "multipart/encrypted"

            url = f"/api/v1/pairs/{record.label}/email-consent"
            async with http.delete(url, headers=auth) as resp:
                assert resp.status == 200 and (await resp.json())["revoked"] is True
            async with http.delete(url, headers=auth) as resp:
                assert resp.status == 200 and (await resp.json())["revoked"] is False
        [revoked] = await sent_entries(app, record.pair_id, email_out.CONSENT_REVOKED_ACTION)
        assert revoked["details"] == {"via": "api"}
        await therapist.send_text(record.room_id, "canary-api-2")
        await therapist.wait_for(record.room_id, post_with("canary-api-2"), timeout=20)
        await settle(app, holder["email"])
        assert len(relay.messages) == 2
    finally:
        await app.stop()
