"""Real SMTP sessions (smtplib over loopback) against the listener in the test's event loop."""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.adapters.smtp import InboundFacts, InboundHandler, SmtpListener, SmtpSettings
from bridge.email.authcheck import AuthMode, AuthPolicy, StaticResolver
from bridge.email.convert import convert_email
from tests.support.tls import self_signed_cert

pytestmark = pytest.mark.integration

PAIR_ADDRESS = "pair-tok123@in.example.net"
PATIENT = "pat@example.org"
SPF_OK = {("example.org", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"]}


@dataclass
class Recorder:
    """An `accept` that keeps what it was given, or raises when told to."""

    accepted: list[tuple[str, bytes, InboundFacts]] = field(default_factory=list)
    fail_with: Exception | None = None

    async def __call__(self, pair_id: str, raw: bytes, facts: InboundFacts) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.accepted.append((pair_id, raw, facts))


async def _resolve(address: str) -> str | None:
    return {PAIR_ADDRESS: "pair-1", "pair-other@in.example.net": "pair-2"}.get(address)


async def _allowed(pair_id: str) -> list[str]:
    return [PATIENT]


Factory = Callable[..., Awaitable[SmtpListener]]


@pytest.fixture
async def listen() -> AsyncIterator[Factory]:
    """Start listeners on 127.0.0.1 with a free port; all are stopped after the test."""
    started: list[SmtpListener] = []

    async def factory(
        accept: Any,
        *,
        records: dict[Any, Any] | None = None,
        policy: AuthPolicy | None = None,
        **settings: Any,
    ) -> SmtpListener:
        config = SmtpSettings(host="127.0.0.1", port=0, **settings)
        handler = InboundHandler(
            resolve_recipient=_resolve,
            allowed_senders=_allowed,
            accept=accept,
            policy=policy or config.auth,
            resolver=StaticResolver(SPF_OK if records is None else records),
        )
        listener = SmtpListener(config, handler)
        await listener.start()
        started.append(listener)
        return listener

    yield factory
    for listener in started:
        await listener.stop()


def _message(
    body: str = "Hello, see you Thursday.",
    *,
    sender: str = f"Pat <{PATIENT}>",
    message_id: str = "<msg-1@example.org>",
    html: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers:
        msg[name] = value
    msg["From"] = sender
    msg["To"] = PAIR_ADDRESS
    msg["Subject"] = "Appointment"
    msg["Message-ID"] = message_id
    if html is None:
        msg.set_content(body)
    else:
        msg.set_content(html, subtype="html")
    return msg


def _send(
    port: int,
    msg: EmailMessage | bytes,
    *,
    rcpt: Sequence[str] = (PAIR_ADDRESS,),
    mail_from: str = PATIENT,
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
) -> tuple[int, str]:
    """One SMTP transaction with smtplib; returns the final reply (code, text)."""
    raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.example.org", timeout=30) as client:
        client.ehlo()
        if tls is not None:
            client.starttls(context=tls)
            client.ehlo()
        if login is not None:
            client.login(*login)
        code, text = client.mail(mail_from)
        if code != 250:
            return code, text.decode()
        for address in rcpt:
            code, text = client.rcpt(address)
            if code not in (250, 251):
                return code, text.decode()
        code, text = client.data(raw)
        return code, text.decode()


async def send(port: int, msg: EmailMessage | bytes, **kw: Any) -> tuple[int, str]:
    return await asyncio.to_thread(_send, port, msg, **kw)


# ------------------------------------------------------------------ the happy paths


async def test_plain_message_is_accepted_after_accept_returns(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder)
    code, text = await send(listener.port, _message())
    assert (code, text) == (250, "2.0.0 Ok: queued")
    [(pair_id, raw, facts)] = recorder.accepted
    assert pair_id == "pair-1"
    assert facts.from_address == PATIENT
    assert facts.message_id == "<msg-1@example.org>"
    assert facts.auth.ok and facts.auth.method == "spf"
    assert facts.client_ip == "127.0.0.1"
    assert facts.rcpt_to == (PAIR_ADDRESS,)
    assert not facts.tls
    converted = convert_email(raw)
    assert converted.text_body == "Hello, see you Thursday."
    assert converted.subject == "Appointment"


async def test_html_message_is_sanitised(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder)
    html = (
        '<p>Hi <b>there</b> <a href="javascript:alert(document.cookie)">click</a>'
        '<script>alert(1)</script><a href="https://example.org/x">ok</a></p>'
    )
    assert (await send(listener.port, _message(html=html)))[0] == 250
    converted = convert_email(recorder.accepted[0][1])
    assert converted.html_body == (
        '<p>Hi <b>there</b> <a>click</a><a href="https://example.org/x">ok</a></p>'
    )
    assert "alert" not in converted.text_body


async def test_attachments_and_audio_flag(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder)
    msg = _message("Recording attached")
    msg.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf", filename="x.pdf")
    msg.add_attachment(b"RIFF\0\0\0\0WAVEfmt ", maintype="audio", subtype="wav", filename="v.wav")
    assert (await send(listener.port, msg))[0] == 250
    converted = convert_email(recorder.accepted[0][1])
    assert [(a.filename, a.msgtype, a.is_voice_candidate) for a in converted.attachments] == [
        ("x.pdf", "m.file", False),
        ("v.wav", "m.audio", True),
    ]
    assert converted.attachments[0].data == b"%PDF-1.4 test"


def _rsa_key() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(der).decode("ascii")


async def test_dkim_signed_message_passes_without_spf(listen: Factory) -> None:
    pem, public = _rsa_key()
    records = {("sel._domainkey.example.org", "TXT"): [f"v=DKIM1; k=rsa; p={public}"]}
    recorder = Recorder()
    listener = await listen(recorder, records=records)
    msg = _message()
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    signature = dkim.sign(raw, b"sel", b"example.org", pem, include_headers=[b"from", b"subject"])
    code, _ = await send(listener.port, bytes(signature) + raw, mail_from="bounce@mailer.example")
    assert code == 250
    facts = recorder.accepted[0][2]
    assert facts.auth.method == "dkim"
    assert facts.auth.dkim_pass_domains == ("example.org",)


# ------------------------------------------------------------------ refusals


async def test_spoofed_from_is_refused(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder)
    code, text = await send(listener.port, _message(sender="Pat <pat@example.org.evil.example>"))
    assert code == 550 and text.startswith("5.7.1 ")
    # Right address, wrong origin: no DKIM, SPF of example.org does not cover the sender.
    records = {("example.org", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"]}
    listener2 = await listen(recorder, records=records)
    code, text = await send(listener2.port, _message())
    assert code == 550 and text.startswith("5.7.23 ")
    assert recorder.accepted == []


async def test_unknown_recipient_gets_550_5_1_1(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder)
    code, text = await send(listener.port, _message(), rcpt=["pair-nope@in.example.net"])
    assert (code, text) == (550, "5.1.1 Recipient address rejected: no such mailbox")


async def test_second_pair_in_one_transaction_is_deferred(listen: Factory) -> None:
    listener = await listen(Recorder())
    code, text = await send(
        listener.port, _message(), rcpt=[PAIR_ADDRESS, "pair-other@in.example.net"]
    )
    assert code == 452 and text.startswith("4.5.3 ")


async def test_oversize_message_gets_552(listen: Factory) -> None:
    recorder = Recorder()
    listener = await listen(recorder, data_size_limit=4096)
    big = _message(("x" * 70 + "\n") * 300)
    code, _ = await send(listener.port, big)  # smtplib declares SIZE: refused at MAIL
    assert code == 552

    def without_size_declaration() -> tuple[int, bytes | str]:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            client.ehlo()
            client.mail(PATIENT)
            client.rcpt(PAIR_ADDRESS)
            try:
                return client.data(big.as_bytes(policy=big.policy.clone(linesep="\r\n")))
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error

    code, _ = await asyncio.to_thread(without_size_declaration)
    assert code == 552
    assert recorder.accepted == []


async def test_malformed_message_gets_554(listen: Factory) -> None:
    listener = await listen(Recorder())
    raw = b"From: a@example.org\r\nFrom: pat@example.org\r\nSubject: two froms\r\n\r\nbody\r\n"
    code, text = await send(listener.port, raw)
    assert code == 554 and text.startswith("5.6.0 ")


async def test_storage_failure_gets_451_and_the_listener_keeps_going(listen: Factory) -> None:
    recorder = Recorder(fail_with=OSError("disk full"))
    listener = await listen(recorder)
    code, text = await send(listener.port, _message())
    assert (code, text) == (451, "4.3.0 Temporary failure storing the message, try again later")
    recorder.fail_with = None
    assert (await send(listener.port, _message()))[0] == 250
    assert len(recorder.accepted) == 1


async def test_broken_recipient_lookup_gets_451(listen: Factory) -> None:
    async def broken(address: str) -> str | None:
        raise RuntimeError("database gone")

    settings = SmtpSettings(host="127.0.0.1", port=0)
    handler = InboundHandler(
        resolve_recipient=broken, allowed_senders=_allowed, accept=Recorder(), policy=AuthPolicy()
    )
    listener = SmtpListener(settings, handler)
    await listener.start()
    try:
        code, text = await send(listener.port, _message())
    finally:
        await listener.stop()
    assert code == 451 and text.startswith("4.3.0 ")


# ------------------------------------------------------------------ behind the practice's MTA


async def test_behind_mta_ignores_forged_authentication_results(listen: Factory) -> None:
    recorder = Recorder()
    policy = AuthPolicy(AuthMode.BEHIND_MTA, "mx.practice.example")
    listener = await listen(recorder, records={}, policy=policy)
    forged = ("Authentication-Results", "evil.example; dmarc=pass header.from=example.org")
    ours_fail = ("Authentication-Results", "mx.practice.example; dkim=none; dmarc=fail"
                 " header.from=example.org")  # fmt: skip
    received = ("Received", "from evil.example by mx.practice.example")
    code, text = await send(listener.port, _message(headers=[ours_fail, received, forged]))
    assert code == 550 and text.startswith("5.7.26 ")
    code, _ = await send(listener.port, _message(headers=[forged]))
    assert code == 550

    ours_pass = ("Authentication-Results", "mx.practice.example; dmarc=pass"
                 " header.from=example.org")  # fmt: skip
    code, _ = await send(listener.port, _message(headers=[ours_pass, received, forged]))
    assert code == 250
    assert recorder.accepted[0][2].auth.method == "mta"


MTA_RECEIVED = (
    "Received",
    "from mail.example.org (mail.example.org [192.0.2.10]) by mx.practice.example"
    " (Postfix) with ESMTPS id 4F2A",
)
SENDER_RECEIVED = ("Received", "from laptop by mail.example.org with ESMTPSA id 77")
FORGED_PASS = (
    "Authentication-Results",
    "mx.practice.example; dkim=pass header.d=example.org; dmarc=pass header.from=example.org",
)


async def test_forged_pass_next_to_the_mtas_fail_is_refused_and_reported(
    listen: Factory,
) -> None:
    refusals: list[tuple[str, str, str]] = []

    async def on_rejected(pair_id: str, reason: str, digest: str) -> None:
        refusals.append((pair_id, reason, digest))

    recorder = Recorder()
    handler = InboundHandler(
        resolve_recipient=_resolve,
        allowed_senders=_allowed,
        accept=recorder,
        policy=AuthPolicy(AuthMode.BEHIND_MTA, "mx.practice.example"),
        resolver=StaticResolver({}),
        on_rejected=on_rejected,
    )
    listener = SmtpListener(SmtpSettings(host="127.0.0.1", port=0), handler)
    await listener.start()
    try:
        mta_fail = ("Authentication-Results", "mx.practice.example; dkim=none;"
                    " dmarc=fail header.from=example.org")  # fmt: skip
        headers = [MTA_RECEIVED, mta_fail, FORGED_PASS, SENDER_RECEIVED]
        code, text = await send(listener.port, _message(headers=headers))
        assert code == 550 and text.startswith("5.7.26 ")
        # The MTA wrote none; the sender's forgery sits below its own Received.
        code, text = await send(listener.port, _message(headers=[MTA_RECEIVED, SENDER_RECEIVED,
                                                                  FORGED_PASS]))  # fmt: skip
        assert code == 550 and text.startswith("5.7.1 ")
        # Handed to the bridge with no MTA at all: topmost, but nothing vouches for it.
        code, text = await send(listener.port, _message(headers=[FORGED_PASS]))
        assert code == 550 and text.startswith("5.7.1 ")
    finally:
        await listener.stop()
    assert recorder.accepted == []
    assert [(pair, reason) for pair, reason, _ in refusals] == [
        ("pair-1", "dmarc_fail"),
        ("pair-1", "untrusted_results"),
        ("pair-1", "untrusted_results"),
    ]


async def test_the_mtas_own_results_below_its_received_pass(listen: Factory) -> None:
    recorder = Recorder()
    policy = AuthPolicy(AuthMode.BEHIND_MTA, "mx.practice.example")
    listener = await listen(recorder, records={}, policy=policy)
    dmarc = ("Authentication-Results", "mx.practice.example; dmarc=pass header.from=example.org")
    spf = ("Authentication-Results", "mx.practice.example; spf=pass smtp.mailfrom=example.org")
    code, _ = await send(listener.port, _message(headers=[MTA_RECEIVED, dmarc, spf,
                                                           SENDER_RECEIVED]))  # fmt: skip
    assert code == 250
    assert recorder.accepted[0][2].auth.method == "mta"


# ------------------------------------------------------------------ TLS and AUTH


def _self_signed(directory: Path) -> tuple[Path, Path]:
    return self_signed_cert(directory, "smtp")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, ssl.SSLContext]:
    cert, key = _self_signed(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    return cert, key, client


async def test_starttls_required(
    listen: Factory, tls_files: tuple[Path, Path, ssl.SSLContext]
) -> None:
    cert, key, client = tls_files
    recorder = Recorder()
    listener = await listen(recorder, tls_cert=cert, tls_key=key, require_starttls=True)
    code, _ = await send(listener.port, _message())
    assert code == 530
    assert (await send(listener.port, _message(), tls=client))[0] == 250
    assert recorder.accepted[0][2].tls


async def test_auth_for_the_upstream_mta(
    listen: Factory, tls_files: tuple[Path, Path, ssl.SSLContext]
) -> None:
    cert, key, client = tls_files
    recorder = Recorder()
    listener = await listen(recorder, tls_cert=cert, tls_key=key, auth_users={"mta": "s3cret"})
    code, _ = await send(listener.port, _message(), tls=client)
    assert code == 530  # authentication required
    with pytest.raises(smtplib.SMTPAuthenticationError):
        await send(listener.port, _message(), tls=client, login=("mta", "wrong"))
    code, _ = await send(listener.port, _message(), tls=client, login=("mta", "s3cret"))
    assert code == 250
    assert recorder.accepted[0][2].authenticated_client


def test_auth_without_tls_is_a_configuration_error() -> None:
    settings = replace(SmtpSettings(), auth_users={"mta": "x"})
    handler = InboundHandler(
        resolve_recipient=_resolve, allowed_senders=_allowed, accept=Recorder(), policy=AuthPolicy()
    )
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpListener(settings, handler)


def test_settings_from_the_config_section() -> None:
    from pydantic import SecretStr

    from bridge.config import InboundSmtp

    section = InboundSmtp(
        port=2525,
        auth_users={"mta": SecretStr("pw")},
        sender_auth="behind_mta",
        authserv_id="mx.practice.example",
        max_message_bytes=4096,
    )
    settings = SmtpSettings.from_config(section)
    assert (settings.port, settings.data_size_limit, dict(settings.auth_users)) == (
        2525,
        4096,
        {"mta": "pw"},
    )
    assert settings.auth == AuthPolicy(AuthMode.BEHIND_MTA, "mx.practice.example")


async def test_logs_carry_no_addresses_subjects_or_content(
    listen: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    listener = await listen(recorder)
    await send(listener.port, _message("very private words"))
    await send(listener.port, _message(sender="Mallory <mallory@evil.example>"))
    await send(listener.port, _message(), rcpt=["pair-nope@in.example.net"])
    assert len(recorder.accepted) == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "smtp: accepted pair=pair-1" in logged
    for secret in ("pat@", "mallory", "Appointment", "private words", "pair-nope", "tok123"):
        assert secret not in logged
