"""Conversion of e-mail for the pair room: body choice, trimming, attachments, the post."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.adapters.render import Renderer
from bridge.email.convert import (
    ConvertLimits,
    convert_email,
    email_post_content,
    html_to_text,
    trim_html,
    trim_text,
)
from bridge.email.parse import MalformedEmail

DATA = Path(__file__).resolve().parents[1] / "data" / "email"


def _base(subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Pat <pat@example.org>"
    msg["To"] = "pair-x@in.example.net"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@example.org>"
    return msg


def test_plain_text_is_preferred_over_html() -> None:
    msg = _base()
    msg.set_content("plain words")
    msg.add_alternative("<p>html <b>words</b></p>", subtype="html")
    converted = convert_email(msg.as_bytes())
    assert converted.text_body == "plain words"
    assert converted.html_body is None
    assert converted.attachments == ()
    assert converted.from_address == "pat@example.org"
    assert converted.display_name == "Pat"
    assert converted.subject == "Hello"
    assert converted.message_id == "<m1@example.org>"


def test_html_only_is_sanitised_trimmed_and_rendered_as_text() -> None:
    converted = convert_email((DATA / "gmail_html_reply.eml").read_bytes())
    assert converted.subject == "Grüße"
    assert converted.html_body is not None
    assert "script" not in converted.html_body
    assert "javascript" not in converted.html_body
    assert "tracker" not in converted.html_body
    assert '<a href="https://example.org/a">this</a>' in converted.html_body
    assert "Earlier text" not in converted.html_body
    assert "Earlier text" not in converted.text_body
    assert converted.trimmed
    assert converted.text_body.startswith("Hello doctor, see this")
    assert "alert" not in converted.text_body


def test_outlook_reply_is_trimmed_and_charset_decoded() -> None:
    converted = convert_email((DATA / "outlook_reply.eml").read_bytes())
    assert converted.text_body == "Thursday works for me. I’ll bring the worksheet.\n\nBest,\nP."
    assert converted.trimmed
    assert converted.in_reply_to == "<earlier@in.example.net>"


def test_unknown_and_non_text_charsets_fall_back_to_utf8() -> None:
    converted = convert_email((DATA / "odd_charsets.eml").read_bytes())
    assert converted.text_body.startswith("café text")
    # zlib_codec is never run: the compressed bytes come out as replacement noise, not "hello".
    assert "hellohello" not in converted.text_body
    names = [a.filename for a in converted.attachments]
    assert names == ["data.bin"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.\n\nOn Mon, 3 Mar 2025, Dr X <x@y> wrote:\n> old", "Yes."),
        ("Yes.\n\nOn Mon, 3 Mar 2025 at 10:00, Dr X\n<x@y> wrote:\n> old", "Yes."),
        ("Ja.\n\nAm 3. März 2025 schrieb Dr X <x@y>:\n> alt", "Ja."),
        ("Yes.\n-----Original Message-----\nFrom: x", "Yes."),
        ("Yes.\n\n-- \nPat\n07700 900000", "Yes."),
        (
            "> question?\nanswer\n> other?\nanswer 2\n> trailing\n> quote",
            "> …\nanswer\n> …\nanswer 2",
        ),
    ],
)
def test_trim_text(text: str, expected: str) -> None:
    assert trim_text(text) == (expected, True)


def test_trim_text_keeps_a_message_that_is_all_quote() -> None:
    assert trim_text("> only a quote") == ("> only a quote", False)
    assert trim_text("no quotes here\n") == ("no quotes here", False)


def test_trim_html_cuts_at_quote_markers() -> None:
    html = '<p>New</p><blockquote type="cite">old</blockquote>'
    assert trim_html(html) == ("<p>New</p>", True)
    assert trim_html('<div class="gmail_quote">only quote</div>') == (
        '<div class="gmail_quote">only quote</div>',
        False,
    )


def test_html_to_text_keeps_structure_and_links() -> None:
    text = html_to_text(
        "<h1>T</h1><p>a <a href='https://e.org'>link</a></p><ul><li>one</li><li>two</li></ul>"
        "<style>p{color:red}</style><script>x()</script>"
    )
    assert text == "T\n\na link <https://e.org>\n\n- one\n- two"


def test_attachments_are_classified_and_named_safely() -> None:
    msg = _base()
    msg.set_content("see attached")
    msg.add_attachment(b"OggS" + b"\0" * 20, maintype="audio", subtype="ogg", filename="voice.ogg")
    msg.add_attachment(b"\x89PNG\r\n", maintype="image", subtype="png", filename="../../etc/p.png")
    msg.add_attachment(b"PK\x03\x04", maintype="application", subtype="zip", filename="a\x07b.zip")
    msg.add_attachment(b"%PDF", maintype="application", subtype="pdf")
    converted = convert_email(msg.as_bytes())
    got = [(a.filename, a.mimetype, a.kind, a.msgtype) for a in converted.attachments]
    assert got == [
        ("voice.ogg", "audio/ogg", "audio", "m.audio"),
        ("p.png", "image/png", "image", "m.image"),
        ("a_b.zip", "application/zip", "file", "m.file"),
        ("attachment-4.pdf", "application/pdf", "file", "m.file"),
    ]
    assert converted.attachments[0].is_voice_candidate
    assert converted.attachments[2].data == b"PK\x03\x04"  # archives are never opened


def test_forwarded_message_becomes_an_eml_file() -> None:
    inner = _base("inner")
    inner.set_content("forwarded body")
    msg = _base()
    msg.set_content("FYI")
    msg.add_attachment(inner)
    converted = convert_email(msg.as_bytes())
    assert converted.text_body == "FYI"
    assert [a.mimetype for a in converted.attachments] == ["message/rfc822"]
    assert b"forwarded body" in converted.attachments[0].data


def test_size_and_count_limits_drop_attachments() -> None:
    msg = _base()
    msg.set_content("files")
    msg.add_attachment(b"x" * 5000, maintype="application", subtype="octet-stream", filename="big")
    for i in range(3):
        msg.add_attachment(b"y", maintype="application", subtype="octet-stream", filename=f"s{i}")
    converted = convert_email(
        msg.as_bytes(), ConvertLimits(max_attachment_bytes=1000, max_attachments=2)
    )
    assert [a.filename for a in converted.attachments] == ["s0", "s1"]
    assert converted.dropped_attachments == 2


def test_long_text_is_truncated_and_attached_in_full() -> None:
    msg = _base()
    msg.set_content("word " * 5000)
    converted = convert_email(msg.as_bytes(), ConvertLimits(max_post_chars=100))
    assert converted.truncated
    assert len(converted.text_body) <= 102
    assert converted.attachments[0].filename == "e-mail.txt"
    assert converted.attachments[0].data.count(b"word") == 5000


def test_apple_style_mixed_text_parts_are_joined() -> None:
    msg = _base()
    msg.make_mixed()
    for part in ("first", "second"):
        sub = EmailMessage()
        sub.set_content(part)
        msg.attach(sub)
    converted = convert_email(msg.as_bytes())
    assert converted.text_body == "first\n\nsecond"


def test_post_content_is_attributed_and_threaded() -> None:
    msg = _base("Re: <b>plan</b>")
    msg.set_content("See you <Thursday> & bring notes\n\n-- \nPat")
    msg.add_attachment(b"x", maintype="image", subtype="png", filename="p.png")
    converted = convert_email(msg.as_bytes())
    content = email_post_content(converted, reply_to_event_id="$prev")
    assert content["msgtype"] == "m.text"
    assert content["body"].startswith("E-mail from Pat <pat@example.org>\nSubject: Re: <b>plan</b>")
    assert "See you <Thursday> & bring notes" in content["body"]
    assert "Attachments: 1" in content["body"]
    assert content["format"] == "org.matrix.custom.html"
    html = content["formatted_body"]
    assert "E-mail from Pat &lt;pat@example.org&gt;" in html
    assert "Re: &lt;b&gt;plan&lt;/b&gt;" in html
    assert "See you &lt;Thursday&gt; &amp; bring notes" in html
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$prev"}}


def test_post_content_renders_with_the_renderer_env() -> None:
    converted = convert_email((DATA / "gmail_html_reply.eml").read_bytes())
    content = email_post_content(converted, Renderer().env)
    assert content["body"].startswith("E-mail from patient@example.org")
    assert '<a href="https://example.org/a">this</a>' in content["formatted_body"]
    assert "m.relates_to" not in content


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_convert_never_raises_untyped(raw: bytes) -> None:
    try:
        converted = convert_email(b"From: a@example.org\r\nContent-Type: multipart/mixed; "
                                  b"boundary=b\r\n\r\n--b\r\n" + raw)  # fmt: skip
    except MalformedEmail:
        return
    assert isinstance(converted.text_body, str)
    email_post_content(converted)


def test_tracking_images_never_reach_the_room_post() -> None:
    msg = _base()
    msg.set_content(
        '<p>See you Thursday.<img src="mxc://tracker.example/pixel" width="1" height="1">'
        '<img src="https://tracker.example/open.gif"><img src="mxc://example.org/AbC"></p>',
        subtype="html",
    )
    converted = convert_email(msg.as_bytes())
    assert converted.html_body is not None and "See you Thursday." in converted.html_body
    assert "<img" not in converted.html_body
    post = email_post_content(converted)
    assert "<img" not in post.get("formatted_body", "")
    assert "tracker.example" not in str(post)
