"""HTML reduced to the subset Matrix clients accept in `formatted_body`.

The tag and attribute lists follow the client-server spec's list for `m.room.message`
(without the deprecated `font` and `mx-reply`). Links keep only the spec's schemes.
Images keep only `mxc://` sources on the media servers the caller names (the practice's
homeserver), so an e-mail can never make a client fetch an external image (a tracking
pixel): not over http(s), and not as `mxc://` media of another server, which the
homeserver would fetch over federation and so tell that server when the mail was read.
With no media server named, every image goes. Output nested deeper than the spec's limit
is refused (`None`) and the caller falls back to plain text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from html.parser import HTMLParser

import nh3

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "LINK_SCHEMES",
    "MAX_NESTING",
    "nesting_depth",
    "sanitize_html",
]

ALLOWED_TAGS = frozenset(
    {
        "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol",
        "sup", "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div",
        "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "img",
        "details", "summary",
    }
)  # fmt: skip

ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "target"}),
    "img": frozenset({"width", "height", "alt", "title", "src"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
    "span": frozenset({"data-mx-bg-color", "data-mx-color", "data-mx-spoiler"}),
}

LINK_SCHEMES = frozenset({"http", "https", "ftp", "mailto", "magnet"})
MAX_NESTING = 100

#: Elements dropped together with everything inside them.
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "head", "title", "template", "noscript", "iframe", "object",
     "embed", "svg", "math", "textarea", "select", "button", "form"}
)  # fmt: skip

_VOID = frozenset({"br", "hr", "img", "wbr", "area", "base", "col", "input", "link", "meta"})
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_MXC = re.compile(r"^mxc://([A-Za-z0-9.\-:\[\]]{1,255})/[A-Za-z0-9_\-]{1,255}$")
_IMG_WITHOUT_SRC = re.compile(r"<img\b(?![^>]*\ssrc=)[^>]*>")
_DIGITS = re.compile(r"^[0-9]{1,6}$")
_LANGUAGE_CLASS = re.compile(r"^language-[A-Za-z0-9_+\-]{1,40}$")


def _filter_attribute(
    media_servers: frozenset[str], tag: str, attribute: str, value: str
) -> str | None:
    """Keep an attribute only when its value is one the spec (and our media rule) allows."""
    value = value.strip()
    if attribute == "href":
        match = _SCHEME.match(value)
        return value if match and match.group(1).lower() in LINK_SCHEMES else None
    if attribute == "src":
        match = _MXC.match(value)
        return value if match and match.group(1).lower() in media_servers else None
    if attribute in ("alt", "title"):
        # No angle brackets inside img attributes, so `_IMG_WITHOUT_SRC` can scan the output.
        return value.replace("<", "\u2039").replace(">", "\u203a")[:500]
    if attribute == "target":
        return "_blank" if value == "_blank" else None
    if attribute in ("data-mx-color", "data-mx-bg-color"):
        return value if _COLOUR.match(value) else None
    if attribute in ("width", "height", "start"):
        return value if _DIGITS.match(value) else None
    if attribute == "class":
        kept = [name for name in value.split() if _LANGUAGE_CLASS.match(name)]
        return " ".join(kept[:1]) or None
    if attribute == "data-mx-spoiler":
        return value[:200]
    return value


def sanitize_html(
    html: str, max_nesting: int = MAX_NESTING, *, media_servers: Collection[str] = ()
) -> str | None:
    """Return `html` reduced to Matrix's allowed subset, or None when nested too deeply.

    Images stay only with an `mxc://` source on one of `media_servers` (server names).
    """
    servers = frozenset(name.lower() for name in media_servers)
    keep: Callable[[str, str, str], str | None] = functools.partial(_filter_attribute, servers)
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=keep,
        strip_comments=True,
        link_rel=None,
        url_schemes=set(LINK_SCHEMES | {"mxc"}),
    )
    # An image whose source was refused would show as a broken frame: drop it entirely.
    cleaned = _IMG_WITHOUT_SRC.sub("", cleaned)
    if nesting_depth(cleaned) > max_nesting:
        return None
    return cleaned


class _DepthCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.deepest = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID:
            self.depth = max(0, self.depth - 1)


def nesting_depth(html: str) -> int:
    """Return the deepest element nesting of well-formed (serialised) HTML."""
    counter = _DepthCounter()
    counter.feed(html)
    counter.close()
    return counter.deepest
