"""Turn a parsed e-mail into what the pair room shows: text, safe HTML and attachments.

Plain text is preferred; a message with only HTML is sanitised to Matrix's subset and
also rendered as plain text. Quoted history and signatures are trimmed from the post
(the sealed original stays in the inbox for the audit). Decoded sizes are bounded and
nothing is ever decompressed: an archive attached to an e-mail stays an opaque file.
"""

from __future__ import annotations

import codecs
import html as html_lib
import mimetypes
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from html.parser import HTMLParser
from typing import Any, Literal

from markupsafe import Markup

from bridge.email.parse import ParsedEmail, ParseLimits, parse_message
from bridge.email.sanitize import MAX_NESTING, sanitize_html

__all__ = [
    "AttachmentKind",
    "ConvertLimits",
    "ConvertedEmail",
    "EmailAttachment",
    "convert_email",
    "convert_parsed",
    "decode_text",
    "email_post_content",
    "html_to_text",
    "plain_to_html",
    "trim_html",
    "trim_text",
]

AttachmentKind = Literal["image", "audio", "file"]

_UNSAFE_CODECS = frozenset(
    {"idna", "punycode", "unicode_escape", "raw_unicode_escape", "undefined", "mbcs", "oem"}
)
_FILENAME_BAD = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_MIMETYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+\-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+\-]{0,126}$")
_BLANK_RUN = re.compile(r"\n{3,}")
#: Re-serialise forwarded messages with their headers as received (no refolding, which
#: would run every long header through the structured parsers).
_VERBATIM = policy.default.clone(refold_source="none", linesep="\r\n")


@dataclass(frozen=True, slots=True)
class ConvertLimits:
    """Bounds on what one e-mail may put into the room."""

    parse: ParseLimits = field(default_factory=ParseLimits)
    #: Largest single attachment that is posted; larger ones are counted as dropped.
    max_attachment_bytes: int = 25 * 1024 * 1024
    #: All decoded parts together (bodies and attachments).
    max_decoded_bytes: int = 60 * 1024 * 1024
    max_attachments: int = 20
    #: Characters of text in the post; longer text is cut and attached in full as a file.
    max_post_chars: int = 12_000
    #: Characters of sanitised HTML in the post; longer HTML is replaced by the plain text.
    max_html_chars: int = 24_000


@dataclass(frozen=True, slots=True)
class EmailAttachment:
    """One file carried by the e-mail, to be uploaded encrypted by the relay."""

    filename: str
    mimetype: str
    data: bytes
    kind: AttachmentKind
    #: Content-ID without brackets, for inline images referenced from the HTML.
    content_id: str | None = None

    @property
    def msgtype(self) -> str:
        """The Matrix msgtype this attachment is posted as (audio goes to the voice module)."""
        return {"image": "m.image", "audio": "m.audio", "file": "m.file"}[self.kind]

    @property
    def is_voice_candidate(self) -> bool:
        """True when the voice module should turn this into a voice message."""
        return self.kind == "audio"


@dataclass(frozen=True, slots=True)
class ConvertedEmail:
    """An e-mail ready to post: sender, subject, trimmed bodies, attachments, threading ids."""

    from_address: str
    display_name: str
    subject: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text_body: str
    html_body: str | None
    attachments: tuple[EmailAttachment, ...]
    trimmed: bool
    #: The post text was cut at `max_post_chars`; the full text is among the attachments.
    truncated: bool = False
    #: Attachments left out because of the size or count limits.
    dropped_attachments: int = 0


# ------------------------------------------------------------------ public entry points


def convert_email(raw: bytes, limits: ConvertLimits | None = None) -> ConvertedEmail:
    """Parse and convert raw message bytes; raises `MalformedEmail` like `parse_message`."""
    limits = limits or ConvertLimits()
    return convert_parsed(parse_message(raw, limits.parse), limits)


def convert_parsed(parsed: ParsedEmail, limits: ConvertLimits | None = None) -> ConvertedEmail:
    """Convert an already parsed message."""
    limits = limits or ConvertLimits()
    walker = _Walker(limits)
    walker.visit(parsed.message)

    plain = [text for kind, text in walker.bodies if kind == "plain"]
    htmls = [text for kind, text in walker.bodies if kind == "html"]
    html_body: str | None = None
    if plain:
        full_text = "\n\n".join(
            text if kind == "plain" else html_to_text(text) for kind, text in walker.bodies
        )
        text_body, trimmed = trim_text(full_text)
    elif htmls:
        joined_html = "\n".join(htmls)
        full_text = html_to_text(joined_html)
        trimmed_html, html_trimmed = trim_html(joined_html)
        text_body, text_trimmed = trim_text(html_to_text(trimmed_html))
        trimmed = html_trimmed or text_trimmed
        # Headroom below the spec's nesting limit for the post template's own wrapper.
        sanitised = sanitize_html(trimmed_html, max_nesting=MAX_NESTING - 5)
        if sanitised is not None and len(sanitised) <= limits.max_html_chars:
            html_body = sanitised.strip() or None
    else:
        full_text, text_body, trimmed = "", "", False

    text_body = _tidy(text_body)
    attachments = list(walker.attachments)
    truncated = False
    if len(text_body) > limits.max_post_chars:
        truncated = True
        text_body = text_body[: limits.max_post_chars].rstrip() + " …"
        html_body = None
        attachments.insert(
            0,
            EmailAttachment(
                filename="e-mail.txt",
                mimetype="text/plain; charset=utf-8",
                data=_tidy(full_text).encode("utf-8"),
                kind="file",
            ),
        )
    return ConvertedEmail(
        from_address=parsed.from_address,
        display_name=parsed.display_name,
        subject=parsed.subject,
        message_id=parsed.message_id,
        in_reply_to=parsed.in_reply_to,
        references=parsed.references,
        text_body=text_body,
        html_body=html_body,
        attachments=tuple(attachments),
        trimmed=trimmed,
        truncated=truncated,
        dropped_attachments=walker.dropped,
    )


def email_post_content(
    converted: ConvertedEmail,
    template_env: Any | None = None,
    *,
    reply_to_event_id: str | None = None,
) -> dict[str, Any]:
    """Render the m.room.message content announcing the e-mail ("E-mail from …").

    `template_env` is a jinja2 Environment that can load `messages/email_post.txt.j2` and
    `messages/email_post.html.j2` (`Renderer.env` does); by default the repository's
    `templates/` directory is used.
    The rendered HTML is sanitised again, so a template can never widen what is sent.
    """
    if template_env is None:
        template_env = _default_env()
    context = {
        "email": converted,
        "sender_name": converted.display_name,
        "sender_address": converted.from_address,
        "subject": converted.subject,
        "text_body": converted.text_body,
        "html_body": converted.html_body,
        "attachment_count": len(converted.attachments),
        "dropped_attachments": converted.dropped_attachments,
        "trimmed": converted.trimmed,
        "truncated": converted.truncated,
        "text_body_html": Markup(plain_to_html(converted.text_body)),
        "html_body_safe": Markup(converted.html_body) if converted.html_body else None,
    }
    body = template_env.get_template("messages/email_post.txt.j2").render(**context).strip()
    formatted = template_env.get_template("messages/email_post.html.j2").render(**context)
    formatted = formatted.strip()
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    safe = sanitize_html(formatted)
    if safe:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = safe
    if reply_to_event_id:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to_event_id}}
    return content


def _default_env() -> Any:
    # The shipped templates, wherever the package is installed (a wheel or a checkout), with
    # the translations their `{% trans %}` blocks need (in the practice's default language).
    from bridge.adapters.render import Renderer

    return Renderer().env


# ------------------------------------------------------------------ walking the MIME tree


class _Walker:
    """Collects body texts and attachments in document order, within the limits."""

    def __init__(self, limits: ConvertLimits) -> None:
        self.limits = limits
        self.bodies: list[tuple[str, str]] = []
        self.attachments: list[EmailAttachment] = []
        self.dropped = 0
        self.decoded = 0

    def visit(self, part: Message) -> None:
        ctype = part.get_content_type()
        if ctype == "message/rfc822" or ctype == "message/global":
            self._attach_message(part)
        elif part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if ctype == "multipart/alternative":
                self._visit_alternative(children)
            elif ctype == "multipart/related" and children:
                self.visit(children[0])
                for child in children[1:]:
                    self._attach(child)
            else:
                for child in children:
                    self.visit(child)
        elif self._is_body(part):
            text = self._text_of(part)
            if text is not None:
                self.bodies.append(("html" if ctype == "text/html" else "plain", text))
        else:
            self._attach(part)

    def _visit_alternative(self, children: list[Message]) -> None:
        # Prefer the alternative that yields plain text; otherwise the last (richest) one.
        best: _Walker | None = None
        for child in children:
            trial = _Walker(self.limits)
            trial.decoded = self.decoded
            trial.visit(child)
            if any(kind == "plain" for kind, _ in trial.bodies):
                best = trial
                break
            if trial.bodies:
                best = trial
        if best is None:
            return
        self.bodies.extend(best.bodies)
        for attachment in best.attachments:
            self._keep(attachment)
        self.dropped += best.dropped
        self.decoded = best.decoded

    @staticmethod
    def _is_body(part: Message) -> bool:
        if part.get_content_type() not in ("text/plain", "text/html"):
            return False
        if part.get_content_disposition() == "attachment":
            return False
        return _filename(part) is None

    def _payload(self, part: Message) -> bytes | None:
        try:
            data = part.get_payload(decode=True)
        except Exception:  # a broken transfer encoding: the part is unreadable, not fatal
            return None
        if not isinstance(data, bytes):
            return None
        self.decoded += len(data)
        if self.decoded > self.limits.max_decoded_bytes:
            return None
        return data

    def _text_of(self, part: Message) -> str | None:
        data = self._payload(part)
        if data is None:
            return None
        return decode_text(data, _charset(part))

    def _attach(self, part: Message) -> None:
        data = self._payload(part)
        if data is None:
            self.dropped += 1
            return
        mimetype = _mimetype(part)
        self._keep(
            EmailAttachment(
                filename=_safe_filename(_filename(part), mimetype, len(self.attachments) + 1),
                mimetype=mimetype,
                data=data,
                kind=_kind(mimetype),
                content_id=_content_id(part),
            )
        )

    def _attach_message(self, part: Message) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        try:
            data = inner.as_bytes(policy=_VERBATIM) if isinstance(inner, Message) else b""
        except Exception:  # re-serialising a broken forwarded message; keep what we can
            data = b""
        self.decoded += len(data)
        if not data or self.decoded > self.limits.max_decoded_bytes:
            self.dropped += 1
            return
        name = _filename(part) or "forwarded-message.eml"
        self._keep(
            EmailAttachment(
                filename=_safe_filename(name, "message/rfc822", len(self.attachments) + 1),
                mimetype="message/rfc822",
                data=data,
                kind="file",
            )
        )

    def _keep(self, attachment: EmailAttachment) -> None:
        if (
            len(attachment.data) > self.limits.max_attachment_bytes
            or len(self.attachments) >= self.limits.max_attachments
        ):
            self.dropped += 1
            return
        self.attachments.append(attachment)


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:  # a malformed parameter list; decode as UTF-8
        return None


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # a malformed RFC 2231 parameter; treat as unnamed
        return None
    return str(name) if name else None


def _content_id(part: Message) -> str | None:
    value = str(part.get("Content-ID", "") or "").strip().strip("<>").strip()
    return value[:200] or None


def _mimetype(part: Message) -> str:
    ctype = part.get_content_type().lower()
    return ctype if _MIMETYPE.match(ctype) else "application/octet-stream"


def _kind(mimetype: str) -> AttachmentKind:
    main = mimetype.split("/", 1)[0]
    if main == "image":
        return "image"
    if main == "audio":
        return "audio"
    return "file"


def _safe_filename(name: str | None, mimetype: str, index: int) -> str:
    """A display-safe basename: no path, no control characters, bounded length."""
    if name:
        base = re.split(r"[/\\]", name)[-1]
        base = _FILENAME_BAD.sub("_", base).strip(" .")
        if base:
            stem, dot, ext = base.rpartition(".")
            if dot and len(ext) <= 10:
                return f"{stem[:120]}.{ext}"
            return base[:130]
    ext = mimetypes.guess_extension(mimetype.split(";")[0]) or ".bin"
    return f"attachment-{index}{ext}"


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode a text part with its declared charset, falling back to UTF-8 with replacement."""
    if charset:
        try:
            info = codecs.lookup(charset)
        except (LookupError, ValueError):
            info = None
        if info is not None and info.name not in _UNSAFE_CODECS and _is_text_codec(info):
            try:
                return data.decode(info.name, errors="replace")
            except Exception:  # a codec that fails despite errors="replace"
                pass
    return data.decode("utf-8", errors="replace")


def _is_text_codec(info: codecs.CodecInfo) -> bool:
    # Bytes-to-bytes codecs (zlib, bz2, base64...) must never run on untrusted data.
    return bool(getattr(info, "_is_text_encoding", True))


# ------------------------------------------------------------------ text and HTML


_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "tr", "li", "ul", "ol", "table", "blockquote", "pre", "hr",
     "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer",
     "details", "summary", "dl", "dt", "dd", "address", "center"}
)  # fmt: skip
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "math"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
            return
        if tag == "li":
            self.out.append("\n- ")
        elif tag in _BLOCK_TAGS:
            self.out.append("\n")
        elif tag == "td" or tag == "th":
            self.out.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and not self.skip:
                self.out.append(f"[{alt}]")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))
            self.link_text.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.href:
            href = self.href.pop()
            text = self.link_text.pop().strip()
            if href and re.match(r"^(https?|ftp|mailto):", href.strip(), re.I):
                target = href.strip()
                shown = target.removeprefix("mailto:")
                if text and shown not in text:
                    self.out.append(f" <{target}>")
        elif tag in _BLOCK_TAGS and tag not in ("br", "li"):
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data)
        self.out.append(text)
        if self.link_text:
            self.link_text[-1] += text


def html_to_text(html: str) -> str:
    """Render HTML as readable plain text (links kept as `<url>`, scripts and styles dropped)."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; on the odd failure keep what was read
        pass
    text = "".join(parser.out)
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


_ATTRIBUTION = re.compile(
    r"^(On\b.{0,300}\bwrote:|Am\b.{0,300}\bschrieb\b.{0,200}:|Le\b.{0,300}\ba écrit\s?:"
    r"|El\b.{0,300}\bescribió:|Op\b.{0,300}\bschreef\b.{0,200}:)\s*$",
    re.IGNORECASE,
)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine"
    r"|Mensaje original|Oorspronkelijk bericht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")
_OUTLOOK_FROM = re.compile(r"^\s*\**(From|Von|De|Van|Da)\s*:\**\s", re.IGNORECASE)


def _cut_index(lines: list[str]) -> int | None:
    """Index of the first line of quoted history or signature, if any."""
    for i, line in enumerate(lines):
        stripped = line.rstrip()
        if stripped in ("--", "-- "):
            return i
        if _ORIGINAL.match(line):
            return i
        if _OUTLOOK_RULE.match(line) and i + 1 < len(lines) and _OUTLOOK_FROM.match(lines[i + 1]):
            return i
        if _ATTRIBUTION.match(stripped):
            return i
        # Attribution lines are often wrapped: "On Mon, 1 Jan 2024, Someone" / "<a@b> wrote:".
        if (
            stripped.lower().startswith(("on ", "am ", "le "))
            and i + 1 < len(lines)
            and _ATTRIBUTION.match(f"{stripped} {lines[i + 1].strip()}")
        ):
            return i
    return None


def trim_text(text: str) -> tuple[str, bool]:
    """Cut quoted history, signatures and quoted blocks from a plain-text reply.

    Returns the text and whether anything was cut. Never returns an empty text for a
    non-empty input: a message that is all quote is kept whole.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    trimmed = False
    cut = _cut_index(lines)
    if cut is not None and cut > 0:
        lines = lines[:cut]
        trimmed = True
    kept: list[str] = []
    in_quote = False
    for line in lines:
        if line.lstrip().startswith(">"):
            if not in_quote:
                kept.append("> …")
                in_quote = True
            trimmed = True
            continue
        in_quote = False
        kept.append(line)
    # Quoted blocks at the very end are history, not context for an inline answer.
    while kept and (kept[-1].strip() in ("", "> …")):
        if kept[-1].strip() == "> …":
            trimmed = True
        kept.pop()
    result = "\n".join(kept).strip()
    if not result:
        return text.strip(), False
    return result, trimmed


_HTML_CUT = re.compile(
    r"<div[^>]*\bclass=\"?[^\">]*\b(gmail_quote|gmail_signature|moz-cite-prefix|moz-signature"
    r"|yahoo_quoted)\b"
    r"|<blockquote[^>]*\btype=\"?cite"
    r"|<div[^>]*\bid=\"?(divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)\b"
    r"|<hr[^>]*\bid=\"?stopSpelling"
    r"|-{2,}\s*Original Message\s*-{2,}",
    re.IGNORECASE,
)


def trim_html(html: str) -> tuple[str, bool]:
    """Cut an HTML reply at the first marker of quoted history or signature."""
    match = _HTML_CUT.search(html)
    if match is None or match.start() == 0:
        return html, False
    head = html[: match.start()]
    if not html_to_text(head).strip():
        return html, False
    return head, True


def plain_to_html(text: str) -> str:
    """Escape plain text for HTML, keeping line breaks."""
    return html_lib.escape(text).replace("\n", "<br>\n")
