"""The SMTP listener: aiosmtpd in the bridge's own event loop, one thin handler.

The protocol object runs the dialogue (STARTTLS, AUTH, SIZE, 552 over the size limit);
`InboundHandler` decides: `RCPT` is routed to a pair or refused with `550 5.1.1`, `DATA`
is parsed, the sender authenticated, and the message handed to `accept`, which must
commit durably. Only then does the client get `250`; if the commit fails it gets
`451 4.3.0` and retries later. A recipient that is the return path of one of our mails
(`resolve_bounce`) takes the delivery reports about it: with the null reverse-path and
read as a report (RFC 3464), the report goes to `on_report`, again `250` only after it is
committed; anything else sent there (her mailbox's auto-reply) is taken as mail to the
pair, with the same checks. Nothing here logs content or addresses: log lines carry
the pair id, a digest of the message, sizes and reason codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bridge.adapters.listen import ListenError
from bridge.email.authcheck import (
    AuthMode,
    AuthPolicy,
    EnvelopeFacts,
    Resolver,
    check_sender,
)
from bridge.email.dsn import DeliveryReport, MalformedReport, read_report
from bridge.email.inbox import InboundFacts, synthetic_message_id
from bridge.email.parse import MalformedEmail, ParseLimits, normalise_address, parse_message

__all__ = [
    "AcceptFn",
    "AllowedSendersFn",
    "BounceRoute",
    "InboundFacts",
    "InboundHandler",
    "RejectedFn",
    "ReportFn",
    "ResolveBounceFn",
    "ResolveRecipientFn",
    "SmtpListener",
    "SmtpSettings",
]

log = logging.getLogger(__name__)

#: Look up the pair an inbound address belongs to (None: no such pair).
ResolveRecipientFn = Callable[[str], Awaitable[str | None]]
#: The e-mail addresses allowed to write to a pair.
AllowedSendersFn = Callable[[str], Awaitable[Collection[str]]]
#: Commit the message durably (raise on failure): (pair_id, raw bytes, facts).
AcceptFn = Callable[[str, bytes, InboundFacts], Awaitable[None]]
#: Told about a refused message of a known pair: (pair_id, reason code, digest); no content.
RejectedFn = Callable[[str, str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BounceRoute:
    """The return path of one mail we sent: its pair and the mail's key in the store."""

    pair_id: str
    mail_id: str


#: The mail whose return path an address is (None: not a return path of a mail of ours).
ResolveBounceFn = Callable[[str], Awaitable[BounceRoute | None]]
#: Commit a delivery report about that mail durably (raise on failure):
#: (route, report, raw bytes, digest).
ReportFn = Callable[[BounceRoute, DeliveryReport, bytes, str], Awaitable[None]]

OK_QUEUED = "250 2.0.0 Ok: queued"
TEMP_STORAGE = "451 4.3.0 Temporary failure storing the message, try again later"
TEMP_LOOKUP = "451 4.3.0 Temporary failure looking up the recipient, try again later"
UNKNOWN_RECIPIENT = "550 5.1.1 Recipient address rejected: no such mailbox"
BAD_RECIPIENT = "553 5.1.3 Recipient address syntax is not valid"
ONE_PAIR = "452 4.5.3 Too many recipients: send to each address in its own transaction"
REPORT_RECORDED = "250 2.0.0 Ok: delivery report recorded"
MALFORMED_REPORT = "554 5.6.0 Delivery report is malformed and cannot be read"

_MALFORMED_TEXT = {
    "no_from": "554 5.6.0 Message has no From address",
    "multiple_from": "554 5.6.0 Message must have exactly one From address",
    "bad_from": "554 5.6.0 From address is malformed",
    "header_too_large": "554 5.6.0 Message header is too large",
    "too_many_header_fields": "554 5.6.0 Message has too many header fields",
    "too_deep": "554 5.6.0 MIME structure is nested too deeply",
    "too_many_parts": "554 5.6.0 Message has too many MIME parts",
}
_MALFORMED_DEFAULT = "554 5.6.0 Message is malformed and cannot be read"


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """How the listener runs; `from_config` builds it from the `smtp` config section."""

    host: str = "127.0.0.1"
    port: int = 8025
    #: Name in the greeting and EHLO answer (default: the machine's FQDN).
    hostname: str | None = None
    data_size_limit: int = 25 * 1024 * 1024
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_starttls: bool = False
    #: SMTP AUTH users (name -> password) for the upstream MTA; when set, AUTH is required.
    auth_users: Mapping[str, str] = field(default_factory=dict)
    auth: AuthPolicy = field(default_factory=AuthPolicy)
    parse_limits: ParseLimits = field(default_factory=ParseLimits)
    #: Seconds of client silence before the session is closed.
    timeout: float = 300.0

    @classmethod
    def from_config(cls, section: Any) -> SmtpSettings:
        """Build from `bridge.config.InboundSmtp` (or anything with the same attributes)."""
        users = {
            str(name): (
                secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
            )
            for name, secret in dict(section.auth_users or {}).items()
        }
        return cls(
            host=section.host,
            port=int(section.port),
            data_size_limit=int(section.max_message_bytes),
            tls_cert=Path(section.tls_cert) if section.tls_cert else None,
            tls_key=Path(section.tls_key) if section.tls_key else None,
            require_starttls=bool(section.require_starttls),
            auth_users=users,
            auth=AuthPolicy(AuthMode(section.sender_auth), section.authserv_id),
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The server TLS context for STARTTLS, or None when no certificate is configured."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        return context


class InboundHandler:
    """The aiosmtpd handler: routes recipients, checks senders, hands messages to `accept`."""

    def __init__(
        self,
        *,
        resolve_recipient: ResolveRecipientFn,
        allowed_senders: AllowedSendersFn,
        accept: AcceptFn,
        policy: AuthPolicy,
        resolver: Resolver | None = None,
        parse_limits: ParseLimits | None = None,
        on_rejected: RejectedFn | None = None,
        resolve_bounce: ResolveBounceFn | None = None,
        on_report: ReportFn | None = None,
    ) -> None:
        if (resolve_bounce is None) != (on_report is None):
            raise ValueError("resolve_bounce and on_report go together")
        self._resolve_recipient = resolve_recipient
        self._resolve_bounce = resolve_bounce
        self._on_report = on_report
        self._allowed_senders = allowed_senders
        self._accept = accept
        self._policy = policy
        self._resolver = resolver
        self._limits = parse_limits or ParseLimits()
        self._on_rejected = on_rejected
        # The pair chosen at RCPT time, per transaction; envelopes die with the transaction.
        self._pairs: weakref.WeakKeyDictionary[Envelope, str] = weakref.WeakKeyDictionary()
        # The mail whose return path the recipient is, when it is one.
        self._bounces: weakref.WeakKeyDictionary[Envelope, BounceRoute] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Route the recipient to a pair, or refuse it."""
        try:
            normalised = normalise_address(address)
        except ValueError:
            return BAD_RECIPIENT
        try:
            route = await self._bounce_route(normalised)
            pair_id = (
                route.pair_id if route is not None else await self._resolve_recipient(normalised)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("smtp: recipient lookup failed (%s)", type(exc).__name__)
            return TEMP_LOOKUP
        if pair_id is None:
            # A return path whose token is no mail's (forged, or mistyped) ends here too:
            # refused like any unknown address, so the sender keeps the failure and nothing
            # is stored; a report sent with the null reverse-path gets no report back.
            log.info("smtp: unknown recipient refused")
            return UNKNOWN_RECIPIENT
        current = self._pairs.get(envelope)
        if current is not None and (current != pair_id or route is not None):
            # One pair per transaction keeps the DATA verdict (auth, storage) per pair;
            # the sending MTA delivers the other recipients in another transaction. A
            # return path is alone in its transaction: a report is about one mail.
            return ONE_PAIR
        if envelope in self._bounces:
            return ONE_PAIR
        self._pairs[envelope] = pair_id
        if route is not None:
            self._bounces[envelope] = route
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Parse, authenticate and durably accept the message; never raise."""
        try:
            return await self._data(session, envelope)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("smtp: unexpected failure handling DATA (%s)", type(exc).__name__)
            return TEMP_STORAGE

    async def _data(self, session: Session, envelope: Envelope) -> str:
        pair_id = self._pairs.get(envelope)
        if pair_id is None:
            return "503 5.5.1 No valid recipients"
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = (
                content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
            )
        if not raw:
            return _MALFORMED_DEFAULT
        digest = hashlib.sha256(raw).hexdigest()[:12]
        route = self._bounces.get(envelope)
        if route is not None and _null_sender(envelope.mail_from):
            answer = await self._report(route, raw, digest)
            if answer is not None:
                return answer
            # Not a delivery report: what her mailbox sent to the return path (an
            # auto-reply, RFC 3834 section 4) is mail to the pair, with the same checks.
        try:
            parsed = await asyncio.to_thread(parse_message, raw, self._limits)
        except MalformedEmail as exc:
            log.info("smtp: malformed message refused pair=%s digest=%s reason=%s",
                     pair_id, digest, exc.reason)  # fmt: skip
            await self._rejected(pair_id, f"malformed:{exc.reason}", digest)
            return _MALFORMED_TEXT.get(exc.reason, _MALFORMED_DEFAULT)

        try:
            allowed = await self._allowed_senders(pair_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("smtp: sender lookup failed pair=%s (%s)", pair_id, type(exc).__name__)
            return TEMP_LOOKUP
        envelope_facts = EnvelopeFacts(
            client_ip=_peer_ip(session),
            helo=session.host_name or "",
            mail_from=envelope.mail_from or "",
        )
        verdict = await asyncio.to_thread(
            check_sender, parsed, raw, allowed, envelope_facts, self._policy, self._resolver
        )
        if not verdict.ok:
            log.info("smtp: sender refused pair=%s digest=%s reason=%s",
                     pair_id, digest, verdict.reason)  # fmt: skip
            await self._rejected(pair_id, verdict.reason, digest)
            return verdict.smtp_reply

        facts = InboundFacts(
            from_address=parsed.from_address,
            display_name=parsed.display_name,
            message_id=parsed.message_id or synthetic_message_id(raw),
            message_id_synthetic=parsed.message_id is None,
            subject=parsed.subject,
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            client_ip=envelope_facts.client_ip,
            helo=envelope_facts.helo,
            tls=session.ssl is not None,
            authenticated_client=bool(session.authenticated),
            auth=verdict,
            size=len(raw),
            digest=digest,
        )
        try:
            await self._accept(pair_id, raw, facts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Only the class: driver messages can quote the values that failed to insert.
            log.error("smtp: message not stored pair=%s digest=%s (%s)",
                      pair_id, digest, type(exc).__name__)  # fmt: skip
            return TEMP_STORAGE
        log.info("smtp: accepted pair=%s digest=%s size=%d auth=%s",
                 pair_id, digest, len(raw), verdict.method)  # fmt: skip
        return OK_QUEUED

    async def _bounce_route(self, address: str) -> BounceRoute | None:
        if self._resolve_bounce is None:
            return None
        return await self._resolve_bounce(address)

    async def _report(self, route: BounceRoute, raw: bytes, digest: str) -> str | None:
        """Take a delivery report sent to a mail's return path; None when `raw` is none."""
        assert self._on_report is not None
        try:
            report = await asyncio.to_thread(read_report, raw)
        except MalformedReport as exc:
            log.info("smtp: malformed delivery report refused pair=%s digest=%s reason=%s",
                     route.pair_id, digest, exc.reason)  # fmt: skip
            await self._rejected(route.pair_id, f"malformed:{exc.reason}", digest)
            return MALFORMED_REPORT
        if report is None:
            return None
        try:
            await self._on_report(route, report, raw, digest)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("smtp: delivery report not stored pair=%s digest=%s (%s)",
                      route.pair_id, digest, type(exc).__name__)  # fmt: skip
            return TEMP_STORAGE
        log.info("smtp: delivery report taken pair=%s digest=%s action=%s status=%s",
                 route.pair_id, digest, report.worst.action, report.worst.status)  # fmt: skip
        return REPORT_RECORDED

    async def _rejected(self, pair_id: str, reason: str, digest: str) -> None:
        """Report a refusal; a failing reporter never changes the SMTP answer."""
        if self._on_rejected is None:
            return
        try:
            await self._on_rejected(pair_id, reason, digest)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("smtp: recording a refusal failed pair=%s (%s)",
                        pair_id, type(exc).__name__)  # fmt: skip


def _null_sender(mail_from: str | None) -> bool:
    """The null reverse-path `MAIL FROM:<>` (aiosmtpd keeps it as "<>")."""
    return (mail_from or "").strip() in ("", "<>")


def _peer_ip(session: Session) -> str:
    # Typed as str by aiosmtpd, but it is the socket's (host, port, ...) tuple.
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


class _Authenticator:
    """SMTP AUTH (PLAIN, LOGIN) against the configured users, in constant time."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name.encode(): secret.encode() for name, secret in users.items()}

    def __call__(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self._users.get(bytes(auth_data.login))
        ok = expected is not None and hmac.compare_digest(expected, bytes(auth_data.password))
        if not ok:
            log.warning("smtp: AUTH failed")
        return AuthResult(success=ok, handled=False)


class SmtpListener:
    """Runs the SMTP server on the running event loop; `start()` then `stop()`."""

    def __init__(self, settings: SmtpSettings, handler: InboundHandler) -> None:
        if settings.auth_users and (settings.tls_cert is None or settings.tls_key is None):
            raise ValueError("SMTP AUTH needs STARTTLS: set tls_cert and tls_key")
        self._settings = settings
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tls = settings.tls_context()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); raises before `start`."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the SMTP listener is not running")
        return int(self._server.sockets[0].getsockname()[1])

    def _protocol(self) -> SMTP:
        settings = self._settings
        authenticator = _Authenticator(settings.auth_users) if settings.auth_users else None
        return SMTP(
            self._handler,
            data_size_limit=settings.data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname,
            ident="Confidant ESMTP",
            tls_context=self._tls,
            require_starttls=settings.require_starttls and self._tls is not None,
            timeout=settings.timeout,
            authenticator=authenticator,
            auth_required=authenticator is not None,
            auth_require_tls=True,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        """Bind and serve on the current loop."""
        if self._server is not None:
            return
        # aiosmtpd logs every command line, addresses included, at INFO.
        mail_log = logging.getLogger("mail.log")
        if mail_log.getEffectiveLevel() < logging.WARNING:
            mail_log.setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        host, port = self._settings.host, self._settings.port
        try:
            self._server = await loop.create_server(self._protocol, host=host, port=port)
        except OSError as err:
            raise ListenError("smtp", host, port, err) from err
        log.info("smtp: listening on port %d", self.port)

    async def stop(self) -> None:
        """Stop accepting connections and close the server."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
