"""Delivery status notifications (RFC 3464): what a bounce says about a mail we sent.

A DSN is a `multipart/report` (RFC 6522) with `report-type=delivery-status`. Its
`message/delivery-status` part holds one block of fields about the message and one block
per recipient (`Action`, `Status`, `Final-Recipient`, `Diagnostic-Code`); a last part may
return the message or its headers. The standard library's `email` package parses the
delivery-status part into those blocks; `read_report` reads them.

Which of our mails a report is about is never taken from its body, which anyone can write:
the return path it was sent to says (`bridge.email.inbox.bounce_token`). The body is only
cross-checked: a report that returns the headers of some other message is not believed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser

__all__ = [
    "DELAYED",
    "FAILED",
    "DeliveryReport",
    "MalformedReport",
    "RecipientReport",
    "read_report",
]

#: The `Action` values of RFC 3464 section 2.3.3 that matter here.
FAILED = "failed"
DELAYED = "delayed"
_ACTIONS = frozenset({FAILED, DELAYED, "delivered", "relayed", "expanded"})
#: How bad each action is: the report of a mail to one recipient says its worst.
_SEVERITY = {FAILED: 3, DELAYED: 2}

#: An RFC 3463 status code, perhaps followed by a comment ("5.1.1 (bad mailbox)").
_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
#: The parts that carry the fields: RFC 3464's, and RFC 6533's for SMTPUTF8 addresses.
#: A Diagnostic-Code that quotes an SMTP reply with its enhanced code ("smtp; 552 5.2.2 ...").
_QUOTED_STATUS = re.compile(r"\s*smtp\s*;\s*\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})(?!\d)", re.I)
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
#: A report with more MIME parts than this is not read (its size is bounded by the
#: listener's limit already; this bounds the walk).
MAX_PARTS = 64


class MalformedReport(ValueError):
    """The message says it is a delivery report but cannot be read as one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        #: A short code for the audit and the logs ("no_status", ...), never content.
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One per-recipient block. `final_recipient` and `diagnostic` name the patient and
    quote her server: they may be sealed, never logged or stored in clear."""

    action: str
    #: The RFC 3463 code, normalised ("5.1.1").
    status: str
    final_recipient: str = field(default="", repr=False)
    diagnostic: str = field(default="", repr=False)

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5.")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A readable DSN: its recipient blocks and the Message-ID of what it returned."""

    recipients: tuple[RecipientReport, ...]
    #: The Message-ID of the returned message or headers, when it returned them.
    message_id: str | None = None

    @property
    def worst(self) -> RecipientReport:
        """The block that says most: a failure over a delay over anything else."""
        return max(self.recipients, key=lambda r: _SEVERITY.get(r.action, 0))


def read_report(raw: bytes) -> DeliveryReport | None:
    """The delivery report in `raw`, or None when it is not one (an auto-reply, a person's
    mail, an abuse report). Raises `MalformedReport` when it says it is a delivery report
    (RFC 6522's report-type, or a `message/delivery-status` part) and is not readable."""
    msg = message_from_bytes(raw, policy=policy.compat32)
    if msg.get_content_type() != "multipart/report":
        return None
    parts = _parts(msg)
    status_parts = [p for p in parts if p.get_content_type() in _STATUS_TYPES]
    report_type = str(msg.get_param("report-type", "") or "").strip().lower()
    if not status_parts:
        if report_type == "delivery-status":
            raise MalformedReport("no_delivery_status")
        return None
    blocks = _blocks(status_parts[0])
    # The first block is about the message (Reporting-MTA, Arrival-Date), the others are
    # one per recipient; a block that has an Action is a recipient's whatever its place.
    recipients = tuple(_recipient(b) for b in blocks if b.get("Action") is not None)
    if not recipients:
        raise MalformedReport("no_recipient")
    return DeliveryReport(recipients, _returned_message_id(parts))


def _parts(msg: Message) -> list[Message]:
    """The MIME parts under `msg`, depth first, no more than MAX_PARTS."""
    found: list[Message] = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        found.append(part)
        if len(found) > MAX_PARTS:
            raise MalformedReport("too_many_parts")
        # Only multiparts are walked into: a returned message/rfc822 has parts that are not
        # the report's, and message/delivery-status "parts" are its field blocks.
        if part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = [p for p in payload if isinstance(p, Message)]
    return found


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status part."""
    payload = part.get_payload()
    if part.get("Content-Transfer-Encoding", "").strip().lower() in ("base64", "quoted-printable"):
        # The body is 7-bit text (RFC 3464 section 2.1); the parser would split an encoded
        # one at its encoded lines.
        raise MalformedReport("encoded_delivery_status")
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        # The parser split it at its blank lines, one header block each.
        return [b for b in payload if isinstance(b, Message)]
    # message/global-delivery-status (RFC 6533, UTF-8) is parsed as one message: its first
    # block the headers, the rest the body. Read it again as text.
    if isinstance(payload, list):
        # As bytes: the generator gives back the 8-bit text the parser kept escaped.
        data = b"".join(m.as_bytes() for m in payload if isinstance(m, Message))
    elif isinstance(payload, str):
        data = payload.encode("utf-8", "surrogateescape")
    else:
        raise MalformedReport("unreadable_delivery_status")
    text = data.decode("utf-8", "replace")
    parser = HeaderParser(policy=policy.compat32)
    chunks = _BLANK_LINE.split(text.strip())
    return [parser.parsestr(chunk) for chunk in chunks if chunk.strip()]


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return "" if value is None else " ".join(str(value).split())


def _recipient(block: Message) -> RecipientReport:
    action = _field(block, "Action").lower()
    # Action may carry a comment ("failed (bad mailbox)") in the wild.
    action = action.split("(")[0].strip()
    if action not in _ACTIONS:
        raise MalformedReport("unknown_action")
    match = _STATUS.match(_field(block, "Status"))
    if match is None:
        raise MalformedReport("no_status")
    status = ".".join(str(int(g)) for g in match.groups())
    diagnostic = _field(block, "Diagnostic-Code")
    if status.endswith(".0.0"):
        # Exim reports "5.0.0" for any SMTP refusal; the refusal it quotes is more precise.
        quoted = _QUOTED_STATUS.match(diagnostic)
        if quoted is not None and quoted.group(1) == status[0]:
            status = ".".join(str(int(g)) for g in quoted.groups())
    final = _field(block, "Final-Recipient") or _field(block, "Original-Recipient")
    _, _, address = final.partition(";")
    return RecipientReport(
        action=action,
        status=status,
        final_recipient=address.strip().strip("<>").lower(),
        diagnostic=diagnostic,
    )


def _returned_message_id(parts: list[Message]) -> str | None:
    """The Message-ID of the returned message (message/rfc822) or headers (RFC 6522's
    text/rfc822-headers), when the report returned either."""
    for part in parts:
        kind = part.get_content_type()
        headers: Message | None = None
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                headers = payload[0]
        elif kind == "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                headers = HeaderParser(policy=policy.compat32).parsestr(
                    body.decode("utf-8", "replace")
                )
        if headers is not None:
            value = _field(headers, "Message-ID")
            return value or None
    return None
