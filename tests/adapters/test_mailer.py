"""Outbound e-mail against a real SMTP server (aiosmtpd on loopback, started in the test):
plain, STARTTLS with AUTH, implicit TLS, refused credentials, and `install_mailer`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bridge.adapters.mailer import Mailer, MailError
from bridge.adapters.render import Renderer
from bridge.config import minimal_config
from bridge.core.model import SendEmail
from bridge.features.mailer import install_mailer
from tests.support.tls import self_signed_cert

pytestmark = pytest.mark.integration

FROM = "care@harbour.example.org"


@dataclass
class Sink:
    """An SMTP server that keeps what it is given."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        self.envelopes.append(envelope)
        self.messages.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
        self.arrived.set()
        return "250 2.0.0 OK"

    async def wait(self, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        async def enough() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.messages


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


SinkFactory = Callable[..., Awaitable[Sink]]


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SinkFactory]:
    """Factory: start an aiosmtpd server on 127.0.0.1, port 0; all closed after the test."""
    servers: list[asyncio.base_events.Server] = []

    async def start(
        *,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        users: dict[str, str] | None = None,
    ) -> Sink:
        sink = Sink()

        def authenticator(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth: Any
        ) -> AuthResult:
            ok = (
                isinstance(auth, LoginPassword)
                and users is not None
                and users.get(auth.login.decode()) == auth.password.decode()
            )
            if ok:
                sink.logins.append(auth.login.decode())
            return AuthResult(success=ok, handled=False)

        def protocol() -> SMTP:
            return SMTP(
                sink,
                hostname="localhost",
                tls_context=None if implicit_tls else tls,
                require_starttls=tls is not None and not implicit_tls,
                authenticator=authenticator if users is not None else None,
                auth_require_tls=not implicit_tls,
                auth_required=users is not None,
            )

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            protocol, "127.0.0.1", 0, ssl=tls if implicit_tls else None
        )
        servers.append(server)
        sink.port = server.sockets[0].getsockname()[1]
        return sink

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    cert_file, key_file = self_signed_cert(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def outbound(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": FROM,
        **extra,
    }


def mailer_for(port: int, client_tls: ssl.SSLContext | None = None, **extra: Any) -> Mailer:
    cfg = minimal_config(
        outbound_email=outbound(port, **extra), practice={"name": "Harbour Therapy"}
    )
    return Mailer(
        cfg.outbound_email, Renderer(), practice_name=cfg.practice.name, tls_context=client_tls
    )


INVITATION = {
    "name": "Alice B.",
    "web_client_url": "https://chat.harbour.example.org",
    "server_name": "harbour.example.org",
    "code": "ABCD-EFGH-JKLM-NPQR",
    "expires_at": "05 December 2026, 10:00 (Europe/London)",
    "crisis_line": "+44 800 000 000",
    "reminder": False,
}


async def test_plain_relay_gets_the_rendered_invitation(smtp_sink: SinkFactory) -> None:
    sink = await smtp_sink()
    mailer = mailer_for(sink.port)
    await mailer.send(SendEmail("alice@example.org", "invitation", INVITATION))
    (msg,) = await sink.wait()
    assert sink.envelopes[0].mail_from == FROM
    assert sink.envelopes[0].rcpt_tos == ["alice@example.org"]
    assert msg["To"] == "alice@example.org"
    assert msg["From"] == f"Harbour Therapy <{FROM}>"
    assert msg["Subject"] == "Your invitation to Harbour Therapy's secure messaging"
    assert msg["Message-ID"].endswith("@harbour.example.org>")
    body = body_of(msg)
    for expected in ("Dear Alice B.", "ABCD-EFGH-JKLM-NPQR", "harbour.example.org", "Element X"):
        assert expected in body
    assert "https://chat.harbour.example.org" in body and "+44 800 000 000" in body


async def test_starttls_with_auth(smtp_sink: SinkFactory, tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path)
    sink = await smtp_sink(tls=server_tls, users={"relay-user": "relay-pass"})
    mailer = mailer_for(
        sink.port, client_tls, security="starttls", username="relay-user", password="relay-pass"
    )
    await mailer.send(SendEmail("t@example.org", "sla_reminder_email", _reminder()))
    (msg,) = await sink.wait()
    assert sink.logins == ["relay-user"]
    assert msg["Subject"] == "Harbour Therapy: a conversation is waiting for a reply"
    assert "Pair 7F3A is waiting for a reply" in body_of(msg)


async def test_implicit_tls(smtp_sink: SinkFactory, tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path)
    sink = await smtp_sink(tls=server_tls, implicit_tls=True)
    mailer = mailer_for(sink.port, client_tls, security="tls")
    await mailer.send(SendEmail("t@example.org", "sla_heads_up_email", _reminder()))
    (msg,) = await sink.wait()
    assert msg["Subject"] == "Harbour Therapy: a reply is due soon"


async def test_wrong_password_and_untrusted_certificate_raise(
    smtp_sink: SinkFactory, tmp_path: Path
) -> None:
    server_tls, client_tls = tls_pair(tmp_path)
    sink = await smtp_sink(tls=server_tls, users={"relay-user": "relay-pass"})
    wrong = mailer_for(
        sink.port, client_tls, security="starttls", username="relay-user", password="nope-nope"
    )
    with pytest.raises(MailError):
        await wrong.send(SendEmail("t@example.org", "sla_reminder_email", _reminder()))
    # The system's CAs do not know the test certificate: refused, never sent in clear.
    untrusted = mailer_for(
        sink.port, None, security="starttls", username="relay-user", password="relay-pass"
    )
    with pytest.raises(MailError):
        await untrusted.send(SendEmail("t@example.org", "sla_reminder_email", _reminder()))
    assert sink.messages == []


async def test_install_mailer_only_when_enabled(smtp_sink: SinkFactory) -> None:
    sink = await smtp_sink()

    def fake_app(**cfg: Any) -> Any:
        return SimpleNamespace(
            cfg=minimal_config(**cfg),
            service=SimpleNamespace(mailer=None),
            parts=SimpleNamespace(renderer=Renderer()),
        )

    off = fake_app()
    await install_mailer(off)
    assert off.service.mailer is None
    on = fake_app(outbound_email=outbound(sink.port))
    await install_mailer(on)
    assert isinstance(on.service.mailer, Mailer)
    await on.service.mailer.send(SendEmail("t@example.org", "sla_escalation_email", _reminder()))
    (msg,) = await sink.wait()
    assert msg["Subject"] == "Our practice: a reply is overdue"


def _reminder() -> dict[str, Any]:
    return {
        "pair_label": "7F3A",
        "room_link": "https://matrix.to/#/!room:example.org",
        "due_at": "2026-11-28T10:00:00+00:00",
        "due_at_local": "2026-11-28T10:00:00+00:00",
        "timezone": "UTC",
        "step": "due",
    }
