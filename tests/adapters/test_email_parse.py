"""Bounded parsing of untrusted e-mail: limits, From rules, threading headers, arbitrary bytes."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.email.parse import MalformedEmail, ParseLimits, normalise_address, parse_message

DATA = Path(__file__).resolve().parents[1] / "data" / "email"


def _message(**headers: str) -> bytes:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("hello")
    return msg.as_bytes()


def _reason(raw: bytes, limits: ParseLimits | None = None) -> str:
    with pytest.raises(MalformedEmail) as info:
        parse_message(raw, limits)
    return info.value.reason


def test_facts_from_headers() -> None:
    parsed = parse_message((DATA / "outlook_reply.eml").read_bytes())
    assert parsed.from_address == "patient@example.org"
    assert parsed.from_domain == "example.org"
    assert parsed.display_name == "Patient One"
    assert parsed.subject == "Re: Next session"
    assert parsed.message_id == "<outlook-1@example.org>"
    assert parsed.in_reply_to == "<earlier@in.example.net>"
    assert parsed.references == ("<first@in.example.net>", "<earlier@in.example.net>")


def test_encoded_subject_is_decoded_and_cleaned() -> None:
    raw = _message(From="a@example.org", Subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=\u202e")
    assert parse_message(raw).subject == "Grüße"


def test_from_is_normalised() -> None:
    raw = _message(From='"Ann" <Ann.Smith@Example.ORG>')
    parsed = parse_message(raw)
    assert parsed.from_address == "ann.smith@example.org"
    assert parsed.display_name == "Ann"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"To: x@example.org\r\n\r\nbody", "no_from"),
        (b"From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody", "multiple_from"),
        (b"From: a@example.org, b@evil.example\r\n\r\nbody", "multiple_from"),
        (b"From: not an address\r\n\r\nbody", "bad_from"),
        (b"From: <a@localhost>\r\n\r\nbody", "bad_from"),
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
    ],
)
def test_from_rules(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


def test_header_block_is_bounded() -> None:
    huge = b"X-Filler: " + b"a" * 70_000 + b"\r\nFrom: a@example.org\r\n\r\nbody"
    assert _reason(huge) == "header_too_large"
    no_body = b"From: a@example.org\r\n" + b"X-Filler: aaaaaaaaaa\r\n" * 8000
    assert _reason(no_body) == "header_too_large"


def test_header_field_count_is_bounded() -> None:
    raw = b"From: a@example.org\r\n" + b"X-A: b\r\n" * 50 + b"\r\nbody"
    assert _reason(raw, ParseLimits(max_header_fields=20)) == "too_many_header_fields"


def _nested(depth: int) -> bytes:
    head = b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        boundary = f"b{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + body + b"--" + boundary + b"--\r\n"
        )
    return head + body


def test_nesting_within_the_limit_parses() -> None:
    assert parse_message(_nested(5)).depth == 5


@pytest.mark.parametrize("depth", [20, 3000])
def test_deep_nesting_is_refused(depth: int) -> None:
    # A high part limit lets the deepest case reach the parser's own recursion.
    assert _reason(_nested(depth), ParseLimits(max_parts=100_000)) == "too_deep"


def test_part_count_is_bounded() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content("x")
    for i in range(30):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{i}")
    assert _reason(msg.as_bytes(), ParseLimits(max_parts=10)) == "too_many_parts"


def test_odd_charsets_and_bad_base64_still_parse() -> None:
    parsed = parse_message((DATA / "odd_charsets.eml").read_bytes())
    assert parsed.part_count == 4


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Ann@Example.org", "ann@example.org"),
        ("<ann@example.org.>", "ann@example.org"),
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
    ],
)
def test_normalise_address(address: str, expected: str) -> None:
    assert normalise_address(address) == expected


@pytest.mark.parametrize(
    "address", ["", "ann", "@example.org", "ann@", "a b@example.org", "a@-x.org"]
)
def test_normalise_address_refuses(address: str) -> None:
    with pytest.raises(ValueError):
        normalise_address(address)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_parse_or_raise_typed_error(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except MalformedEmail as exc:
        assert exc.reason
    else:
        assert "@" in parsed.from_address
        assert parsed.from_address == parsed.from_address.lower()


_header_names = st.sampled_from(
    ["From", "To", "Subject", "Message-ID", "References", "Content-Type",
     "Content-Transfer-Encoding", "MIME-Version", "X-Other"]
)  # fmt: skip
_header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "a@example.org",
            '"x" <a@example.org>',
            "=?utf-8?b?w6k=?= <a@example.org>",
            "=?x-unknown?q?=FF?=",
            "multipart/mixed; boundary=zz",
            "multipart/alternative; boundary=",
            "text/plain; charset=zlib_codec",
            "base64",
            "quoted-printable",
            "<a@b> <c@d",
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(_header_names, _header_values), max_size=12),
    st.binary(max_size=600),
)
def test_header_soup_parses_or_raises_typed_error(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    raw = head.encode("utf-8", "surrogateescape") + b"\r\n" + body
    try:
        parse_message(raw)
    except MalformedEmail as exc:
        assert exc.reason


_MULTIPART_HEAD = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"


@pytest.mark.parametrize("separator", [b"; ", b";\r\n "])
def test_mime_header_with_countless_parameters_is_refused(separator: bytes) -> None:
    # The stdlib's parameter parser is quadratic; this input would take minutes.
    params = separator.join(b"p%d=v" % i for i in range(100_000))
    raw = (
        _MULTIPART_HEAD
        + b"Content-Type: text/plain"
        + separator
        + params
        + b"\r\n\r\nx\r\n--b--\r\n"
    )
    assert _reason(raw) == "header_too_large"


def test_countless_tiny_parts_are_refused_before_parsing() -> None:
    raw = _MULTIPART_HEAD + b"\r\nx\r\n--b\r\n" * 200_000 + b"\r\nx\r\n--b--\r\n"
    assert _reason(raw) == "too_many_parts"


def test_oversized_headers_inside_a_part_are_refused() -> None:
    raw = _MULTIPART_HEAD + b"X-Filler: a\r\n" * 10_000 + b"\r\nx\r\n--b--\r\n"
    assert _reason(raw) == "header_too_large"


def test_oversized_subject_is_refused() -> None:
    raw = b"From: a@example.org\r\nSubject: " + b"=?utf-8?q?a?= " * 1000 + b"\r\n\r\nx"
    assert _reason(raw) == "header_too_large"
