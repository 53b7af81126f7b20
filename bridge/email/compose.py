"""Building outbound mail to a patient: a Matrix message as plain text plus sanitised HTML,
threaded, and DKIM-signed when the practice has a key.

Pure apart from the signature's maths: what goes in is a message's content and the
headers decided by the caller; what comes out is the exact bytes the relay is handed.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

import dkim

from bridge.email.convert import plain_to_html
from bridge.email.sanitize import sanitize_html

__all__ = [
    "MailAttachment",
    "MatrixText",
    "OutgoingMail",
    "compose",
    "dkim_sign",
    "footer_html",
    "mail_bytes",
    "matrix_text",
]

#: The headers a DKIM signature covers (those present; From is required by RFC 6376).
SIGNED_HEADERS = (
    b"From", b"To", b"Subject", b"Date", b"Message-ID", b"In-Reply-To", b"References",
    b"MIME-Version", b"Content-Type",
)  # fmt: skip
_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)
_REPLY_FALLBACK = re.compile(r"\A(?:> ?[^\n]*\n)+\n?")


@dataclass(frozen=True, slots=True)
class MatrixText:
    """A room message as text: plain always, HTML when the sender formatted it."""

    text: str
    html: str | None


def matrix_text(content: dict[str, Any]) -> MatrixText:
    """The text of an `m.room.message` content (an edit's new content when it is an edit),
    without the reply fallback a client quotes above a reply."""
    new = content.get("m.new_content")
    source = new if isinstance(new, dict) else content
    body = str(source.get("body", ""))
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and "m.in_reply_to" in relates:
        body = _REPLY_FALLBACK.sub("", body, count=1)
    formatted: str | None = None
    if source.get("format") == "org.matrix.custom.html" and isinstance(
        source.get("formatted_body"), str
    ):
        # No media server is trusted: an image in a mail would be fetched from outside.
        formatted = sanitize_html(_MX_REPLY.sub("", str(source["formatted_body"])))
    return MatrixText(body.strip(), formatted.strip() if formatted else None)


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """A file sent with the mail, as it was posted in the room."""

    filename: str
    mimetype: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """Everything one mail says, decided by the caller."""

    from_name: str
    from_address: str
    to: str
    subject: str
    message_id: str
    text: str
    html: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    #: Set on mail no person wrote (the consent e-mail): auto-responders leave it alone.
    auto_submitted: bool = False
    attachments: Sequence[MailAttachment] = ()


def compose(mail: OutgoingMail) -> EmailMessage:
    """The message: plain text, and an HTML alternative (escaped text when none was given)."""
    msg = EmailMessage()
    msg["From"] = formataddr((mail.from_name, mail.from_address))
    msg["To"] = mail.to
    # One line: a stray newline from a template or a subject must not break the header.
    msg["Subject"] = " ".join(mail.subject.split())
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
    references = [ref for ref in mail.references if ref]
    if mail.in_reply_to and mail.in_reply_to not in references:
        references.append(mail.in_reply_to)
    if references:
        msg["References"] = " ".join(references)
    if mail.auto_submitted:
        msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(mail.text.rstrip("\n") + "\n")
    body_html = mail.html if mail.html is not None else plain_to_html(mail.text)
    document = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
        f"{body_html}\n</body></html>\n"
    )
    msg.add_alternative(document, subtype="html")
    for attachment in mail.attachments:
        maintype, _, subtype = attachment.mimetype.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return msg


def footer_html(text: str) -> str:
    """A footer line under the HTML part, escaped."""
    return f'<hr>\n<p style="color:#555">{html_lib.escape(text)}</p>'


def mail_bytes(msg: EmailMessage) -> bytes:
    """The message as SMTP carries it (CRLF line ends)."""
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def dkim_sign(raw: bytes, *, selector: str, domain: str, private_key: bytes) -> bytes:
    """`raw` with a DKIM-Signature (rsa-sha256, relaxed/relaxed) on top."""
    signature = dkim.sign(
        raw,
        selector.encode("ascii"),
        domain.encode("ascii"),
        private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(SIGNED_HEADERS),
    )
    return bytes(signature) + raw
