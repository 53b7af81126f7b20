"""The HTML sanitiser keeps only Matrix's allowed tags, attributes and link schemes."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.email.sanitize import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    LINK_SCHEMES,
    MAX_NESTING,
    nesting_depth,
    sanitize_html,
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.elements


def _assert_matrix_safe(html: str) -> None:
    for tag, attrs in _elements(html):
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs.items():
            assert name in ALLOWED_ATTRIBUTES.get(tag, frozenset()), (tag, name)
            if name == "href":
                assert value is not None
                assert value.split(":", 1)[0].lower() in LINK_SCHEMES, value
            if name == "src":
                assert value is not None and value.startswith("mxc://"), value
    assert nesting_depth(html) <= MAX_NESTING


def test_scripts_and_event_handlers_are_removed() -> None:
    out = sanitize_html('<p onclick="steal()">Hi<script>alert(1)</script><style>p{}</style></p>')
    assert out == "<p>Hi</p>"


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "/relative/path",
        "mxc://example.org/abc",
    ],
)
def test_unsafe_links_lose_their_href(href: str) -> None:
    out = sanitize_html(f'<a href="{href}">click</a>')
    assert out == "<a>click</a>"


@pytest.mark.parametrize(
    "href",
    ["https://example.org/x", "http://example.org", "mailto:a@example.org", "ftp://f.example",
     "magnet:?xt=urn:btih:abc"],
)  # fmt: skip
def test_allowed_links_survive_without_rel(href: str) -> None:
    out = sanitize_html(f'<a href="{href}" target="_blank">x</a>')
    assert out is not None
    assert f'href="{href.replace("&", "&amp;")}"' in out
    assert "rel=" not in out


def test_external_images_are_dropped_and_own_mxc_images_kept() -> None:
    out = sanitize_html(
        '<img src="https://tracker.example/p.gif" width="1">'
        '<img src="cid:part1@x" alt="inline">'
        '<img src="mxc://example.org/AbC123" alt="ok" width="10" onerror="x()">',
        media_servers=["example.org"],
    )
    assert out == '<img src="mxc://example.org/AbC123" alt="ok" width="10">'


def test_mxc_images_of_a_foreign_server_are_dropped() -> None:
    # Fetching it makes the homeserver ask tracker.example over federation: a read receipt.
    html = (
        '<p>Hi<img src="mxc://tracker.example/pixel1" width="1" height="1"></p>'
        '<img src="mxc://Practice.Example:8448/Own1">'
        '<img src="mxc://practice.example.evil/x2">'
        '<img src="mxc://practice.example/ok3">'
    )
    out = sanitize_html(html, media_servers=["practice.example", "practice.example:8448"])
    assert out == (
        '<p>Hi</p><img src="mxc://Practice.Example:8448/Own1"><img src="mxc://practice.example/ok3">'
    )


def test_without_a_media_server_every_image_goes() -> None:
    out = sanitize_html('<p>x<img src="mxc://example.org/AbC123" alt="a"></p>')
    assert out == "<p>x</p>"


def test_colours_and_code_classes_are_validated() -> None:
    out = sanitize_html(
        '<span data-mx-color="#00ff00" data-mx-bg-color="red" style="x">a</span>'
        '<code class="language-python evil">b</code><code class="evil">c</code>'
    )
    assert out == (
        '<span data-mx-color="#00ff00">a</span><code class="language-python">b</code><code>c</code>'
    )


def test_unknown_tags_keep_their_text() -> None:
    assert sanitize_html("<center><font color=red>hi</font></center>") == "hi"


def test_too_deep_nesting_is_refused() -> None:
    assert sanitize_html("<div>" * (MAX_NESTING + 5) + "x") is None
    assert sanitize_html("<div>" * 50 + "x") is not None


_tags = st.sampled_from(
    sorted(ALLOWED_TAGS | {"script", "style", "iframe", "svg", "math", "object", "form",
                           "font", "body", "html", "textarea", "noscript", "title"})
)  # fmt: skip
_attr_names = st.sampled_from(
    ["href", "src", "onclick", "onerror", "style", "class", "target", "width", "alt",
     "data-mx-color", "data-mx-spoiler", "start", "id", "rel", "xlink:href", "formaction"]
)  # fmt: skip
_attr_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["javascript:alert(1)", " javascript:x", "https://e.org", "mxc://s/m", "data:x",
         "#ff00ff", "language-js", "_blank", "12", "java\nscript:y", "&#106;avascript:z"]
    ),
)  # fmt: skip


@st.composite
def _html(draw: st.DrawFn, depth: int = 0) -> str:
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 3 if depth < 6 else 1))
        if kind == 0:
            pieces.append(draw(st.text(max_size=20)))
        elif kind == 1:
            pieces.append(
                draw(st.sampled_from(["<", ">", "&", '"', "<!--", "-->", "</", "<![CDATA["]))
            )
        else:
            tag = draw(_tags)
            attrs = draw(st.lists(st.tuples(_attr_names, _attr_values), max_size=3))
            rendered = "".join(f' {n}="{v}"' for n, v in attrs)
            inner = draw(_html(depth + 1))
            close = draw(st.booleans())
            pieces.append(f"<{tag}{rendered}>{inner}" + (f"</{tag}>" if close else ""))
    return "".join(pieces)


@settings(max_examples=500, deadline=None)
@given(_html())
def test_output_only_has_allowed_tags_attributes_and_schemes(html: str) -> None:
    out = sanitize_html(html)
    if out is not None:
        _assert_matrix_safe(out)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_arbitrary_text_never_raises(text: str) -> None:
    out = sanitize_html(text)
    if out is not None:
        _assert_matrix_safe(out)
