"""Bounded parsing of untrusted e-mail bytes into a message and its addressing facts.

Everything here treats the input as hostile: the header block, the MIME tree's depth and
width are bounded before anything else looks at the message, header parsing errors fall
back to the raw text, and every failure that makes the message unusable is one typed
error, `MalformedEmail`, whose `reason` is a short code safe to log.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

__all__ = [
    "MalformedEmail",
    "ParseLimits",
    "ParsedEmail",
    "normalise_address",
    "parse_message",
]

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MSG_ID = re.compile(r"<[^<>\s]{1,500}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAX_SUBJECT = 300
#: A Content-* header with its continuation lines, anywhere in the message.
_MIME_HEADER = re.compile(rb"(?im)^content-[a-z-]{1,40}[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
#: Headers the converter reads through the stdlib's structured parsers.
_STRUCTURED = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding", "content-id",
     "mime-version", "from", "subject"}
)  # fmt: skip
_MAX_REFERENCES = 50


class MalformedEmail(Exception):
    """The message cannot be used; `reason` is a short code that carries no content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds applied before a message is looked at any further."""

    #: Size of the top-level header block (everything before the first empty line).
    max_header_bytes: int = 64 * 1024
    #: Number of header fields in the top-level header block.
    max_header_fields: int = 1000
    #: Depth of nested multiparts and attached messages (the top level is depth 0).
    max_depth: int = 12
    #: Number of MIME parts in the whole tree, containers included.
    max_parts: int = 250
    #: Size of one MIME header (Content-Type, Content-Disposition...) or of From/Subject.
    #: The stdlib's structured header parser is quadratic in some inputs (a thousand
    #: parameters take minutes), so these stay small; real ones are well under 1 KiB.
    max_structured_header_bytes: int = 4096


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """A parsed message plus the facts the listener and converter need from its headers."""

    message: EmailMessage
    from_address: str
    from_domain: str
    display_name: str
    subject: str
    #: The Message-ID with its angle brackets, or None when absent or unusable.
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    part_count: int
    depth: int


def normalise_address(address: str) -> str:
    """Return `local@domain` lower-cased with an ASCII (IDNA) domain; ValueError if invalid."""
    text = unicodedata.normalize("NFC", address.strip())
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain or len(text) > 320:
        raise ValueError("not an address")
    if any(c.isspace() or c in "<>\x00" for c in text) or _CONTROL.search(text):
        raise ValueError("not an address")
    domain = domain.rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError as exc:
        raise ValueError("domain is not a valid IDN") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError("not a domain name")
    return f"{local.lower()}@{ascii_domain}"


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedEmail:
    """Parse `raw` within `limits`; raise `MalformedEmail` when the message is unusable."""
    limits = limits or ParseLimits()
    if not raw.strip():
        raise MalformedEmail("empty")
    _check_header_block(raw, limits)
    # Every MIME part starts with a "--boundary" line. Counting those lines first keeps a
    # message made of countless tiny parts from costing the full parse (seconds per MB).
    if raw.count(b"\n--") > 4 * limits.max_parts:
        raise MalformedEmail("too_many_parts")
    # The parser itself reads every part's Content-Type parameters (for boundaries), so
    # oversized MIME headers must be refused before it runs, wherever they are.
    for match in _MIME_HEADER.finditer(raw):
        if match.end() - match.start() > limits.max_structured_header_bytes:
            raise MalformedEmail("header_too_large")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except RecursionError as exc:
        raise MalformedEmail("too_deep") from exc
    except Exception as exc:  # the stdlib parser is lenient; anything it raises is malformed
        raise MalformedEmail("unparseable") from exc
    assert isinstance(message, EmailMessage)
    part_count, depth = _measure_tree(message, limits)
    from_address, display_name = _sender(message)
    return ParsedEmail(
        message=message,
        from_address=from_address,
        from_domain=from_address.rpartition("@")[2],
        display_name=display_name,
        subject=_subject(message),
        message_id=_first_msg_id(_raw_header(message, "Message-ID")),
        in_reply_to=_first_msg_id(_raw_header(message, "In-Reply-To")),
        references=tuple(_MSG_ID.findall(_raw_header(message, "References")))[-_MAX_REFERENCES:],
        part_count=part_count,
        depth=depth,
    )


def _check_header_block(raw: bytes, limits: ParseLimits) -> None:
    # Look only as far as the limit allows, so a header-only flood costs one bounded scan.
    window = raw[: limits.max_header_bytes + 4]
    end = _HEADER_END.search(window)
    header_block = window[: end.start()] if end else window
    if end is None and len(raw) > limits.max_header_bytes:
        raise MalformedEmail("header_too_large")
    if len(header_block) > limits.max_header_bytes:
        raise MalformedEmail("header_too_large")
    fields = sum(1 for line in header_block.splitlines() if line and line[:1] not in (b" ", b"\t"))
    if fields > limits.max_header_fields:
        raise MalformedEmail("too_many_header_fields")


def _measure_tree(message: Message, limits: ParseLimits) -> tuple[int, int]:
    """Count parts and depth without recursion; raise when either bound is exceeded."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    count = 0
    deepest = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        deepest = max(deepest, depth)
        if count > limits.max_parts:
            raise MalformedEmail("too_many_parts")
        if depth > limits.max_depth:
            raise MalformedEmail("too_deep")
        _check_part_headers(part, limits)
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in children if isinstance(child, Message))
    return count, deepest


def _check_part_headers(part: Message, limits: ParseLimits) -> None:
    total = 0
    for name, value in part.raw_items():
        size = len(name) + len(value)
        total += size
        if size > limits.max_structured_header_bytes and name.lower() in _STRUCTURED:
            raise MalformedEmail("header_too_large")
    if total > limits.max_header_bytes:
        raise MalformedEmail("header_too_large")


def _raw_header(message: Message, name: str) -> str:
    """Return the first raw value of a header without running the structured parsers."""
    if not isinstance(message, EmailMessage):
        value = message.get(name)
        return str(value) if value is not None else ""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return ""


def _first_msg_id(value: str) -> str | None:
    match = _MSG_ID.search(value)
    return match.group(0) if match else None


def _clean_text(text: str, limit: int) -> str:
    text = _CONTROL.sub("", text.replace("\r", " ").replace("\n", " ").replace("\t", " "))
    text = re.sub(r" {2,}", " ", text).strip()
    return text[:limit]


def _subject(message: EmailMessage) -> str:
    try:
        value = message.get("Subject")
        text = str(value) if value is not None else ""
    except Exception:  # a broken encoded-word; show what was sent rather than nothing
        text = _raw_header(message, "Subject")
    return _clean_text(text, _MAX_SUBJECT)


def _sender(message: EmailMessage) -> tuple[str, str]:
    """Return the one From address (normalised) and its display name, or raise."""
    raw_values = [value for key, value in message.raw_items() if key.lower() == "from"]
    if not raw_values:
        raise MalformedEmail("no_from")
    if len(raw_values) > 1:
        raise MalformedEmail("multiple_from")
    try:
        header = message["From"]
        addresses = header.addresses
        defects = header.defects
    except Exception as exc:
        raise MalformedEmail("bad_from") from exc
    if len(addresses) != 1:
        raise MalformedEmail("multiple_from" if len(addresses) > 1 else "bad_from")
    if defects:
        # Parsers that disagree about a broken From are how spoofed senders slip past checks.
        raise MalformedEmail("bad_from")
    address = addresses[0]
    if not address.username or not address.domain:
        raise MalformedEmail("bad_from")
    try:
        normalised = normalise_address(f"{address.username}@{address.domain}")
    except ValueError as exc:
        raise MalformedEmail("bad_from") from exc
    return normalised, _clean_text(address.display_name or "", 200)
