"""Outbound e-mail through the practice's SMTP relay (invitations, reminders, notices, and
the therapist's messages to a patient who agreed to e-mail, built by `bridge.email.compose`).

Every e-mail is rendered from templates: `email/NAME.subject.txt.j2` for the subject and
`email/NAME.txt.j2` for the body (a body template may also live in `messages/`, as the
SLA reminder bodies do), with an optional `email/NAME.html.j2` alternative. Templated
mail carries no clinical content; `send_raw` sends a message built elsewhere as it is.
Nothing is logged but the kind and the outcome: never an address or a subject.
"""

from __future__ import annotations

import logging
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any

import aiosmtplib
import jinja2

from bridge.adapters.render import Renderer
from bridge.config import Config, OutboundEmail
from bridge.core.model import SendEmail

log = logging.getLogger(__name__)

#: Subject used when a template has no subject of its own.
DEFAULT_SUBJECT = "default"


class MailError(Exception):
    """The relay could not take the message (connection, TLS, authentication or refusal).

    `permanent` when the relay refused it with a 5xx answer: sending it again will not help.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Mailer:
    """Sends `SendEmail` effects through the configured relay with aiosmtplib."""

    def __init__(
        self,
        settings: OutboundEmail,
        renderer: Renderer,
        *,
        practice_name: str,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not settings.host or not settings.from_address:
            raise ValueError("outbound_email needs host and from_address")
        self.settings = settings
        self.renderer = renderer
        self.practice_name = practice_name
        #: The TLS context for `starttls`/`tls` (None: the system's trusted CAs).
        self.tls_context = tls_context
        self.timeout = timeout

    # ------------------------------------------------------------ rendering

    def _render(
        self, names: list[str], context: dict[str, Any], language: str | None
    ) -> str | None:
        for name in names:
            try:
                return self.renderer.page(name, context, language).strip()
            except jinja2.TemplateNotFound:
                continue
        return None

    def compose(self, effect: SendEmail) -> EmailMessage:
        """The complete message for `effect`: headers, plain body and optional HTML, in
        `effect.language` (the service fills in the recipient's), else the practice's."""
        context = {"practice_name": self.practice_name, **effect.context}
        name = effect.template
        language = effect.language
        body = self._render([f"email/{name}.txt.j2", f"messages/{name}.txt.j2"], context, language)
        if body is None:
            raise LookupError(f"no e-mail template {name!r}")
        subject = self._render(
            [f"email/{name}.subject.txt.j2", f"email/{DEFAULT_SUBJECT}.subject.txt.j2"],
            context,
            language,
        )
        html_body = self._render([f"email/{name}.html.j2"], context, language)
        assert self.settings.from_address is not None
        # from_address may carry its own display name ("Practice <care@example.org>").
        from_name, from_addr = parseaddr(self.settings.from_address)
        msg = EmailMessage()
        msg["From"] = formataddr((from_name or self.practice_name, from_addr))
        msg["To"] = effect.to
        # One line: a template's stray newline must not break the header.
        msg["Subject"] = " ".join((subject or self.practice_name).split())
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = from_addr.rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body + "\n")
        if html_body is not None:
            msg.add_alternative(html_body + "\n", subtype="html")
        return msg

    # ------------------------------------------------------------ sending

    async def send(self, effect: SendEmail) -> None:
        """Render and send one e-mail; raises MailError when the relay does not take it."""
        msg = self.compose(effect)
        await self.send_message(msg, effect.template)

    async def send_message(self, msg: EmailMessage, kind: str = "message") -> None:
        await self._send(msg, kind)

    async def send_raw(self, raw: bytes, *, sender: str, recipients: list[str], kind: str) -> None:
        """Send `raw` exactly as it is (a signed message must not be re-serialised), with
        `sender` as the envelope's MAIL FROM, where bounces go. Raises MailError."""
        await self._send(raw, kind, sender=sender, recipients=recipients)

    async def _send(
        self,
        msg: EmailMessage | bytes,
        kind: str,
        *,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> None:
        s = self.settings
        password = s.password.get_secret_value() if s.password is not None else None
        try:
            await aiosmtplib.send(
                msg,
                sender=sender,
                recipients=recipients,
                hostname=s.host,
                port=s.effective_port,
                username=s.username,
                password=password,
                use_tls=s.security == "tls",
                start_tls=s.security == "starttls",
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("e-mail not sent", extra={"template": kind, "error": type(exc).__name__})
            code = getattr(exc, "code", None)
            permanent = isinstance(code, int) and 500 <= code < 600
            raise MailError(
                f"the mail relay did not take the message: {exc}", permanent=permanent
            ) from exc
        log.info("e-mail sent", extra={"template": kind})


def build_mailer(cfg: Config, renderer: Renderer) -> Mailer | None:
    """The mailer for a configuration, or None when outbound e-mail is off."""
    if not cfg.outbound_email.enabled:
        return None
    return Mailer(cfg.outbound_email, renderer, practice_name=cfg.practice.name)
