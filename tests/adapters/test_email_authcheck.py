"""Sender authentication: allowed From, DKIM/SPF/DMARC alignment, trusted MTA results."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.email.authcheck import (
    AuthMode,
    AuthPolicy,
    EnvelopeFacts,
    StaticResolver,
    check_sender,
    organisational_domain,
    sender_allowed,
)
from bridge.email.parse import parse_message

DIRECT = AuthPolicy()
ENVELOPE = EnvelopeFacts(client_ip="192.0.2.10", helo="mx.example.co.uk", mail_from="")


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, str]:
    """A test DKIM key: (PEM private key, the p= value of its DNS record)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode("ascii")


def _raw(sender: str = "Pat <pat@mail.example.co.uk>", extra: Sequence[str] = ()) -> bytes:
    msg = EmailMessage()
    for header in extra:
        name, _, value = header.partition(": ")
        msg[name] = value
    msg["From"] = sender
    msg["To"] = "pair-x@in.example.net"
    msg["Subject"] = "hello"
    msg["Message-ID"] = "<m1@example.co.uk>"
    msg.set_content("body text")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _sign(raw: bytes, key: tuple[bytes, str], domain: str, selector: str = "s1") -> bytes:
    signature = dkim.sign(
        raw,
        selector.encode(),
        domain.encode(),
        key[0],
        include_headers=[b"from", b"to", b"subject", b"message-id"],
    )
    return bytes(signature) + raw


def _dkim_record(key: tuple[bytes, str], domain: str, selector: str = "s1") -> dict[Any, Any]:
    return {(f"{selector}._domainkey.{domain}", "TXT"): [f"v=DKIM1; k=rsa; p={key[1]}"]}


def _check(
    raw: bytes, records: dict[Any, Any], envelope: EnvelopeFacts = ENVELOPE, **kw: Any
) -> Any:
    allowed = kw.pop("allowed", ["PAT@mail.example.co.uk"])
    policy = kw.pop("policy", DIRECT)
    return check_sender(
        parse_message(raw), raw, allowed, envelope, policy, StaticResolver(records, **kw)
    )


def test_organisational_domain_uses_the_public_suffix_list() -> None:
    assert organisational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organisational_domain("mail.example.com") == "example.com"
    assert organisational_domain("co.uk") == "co.uk"


def test_sender_allowed_is_case_insensitive_and_normalised() -> None:
    assert sender_allowed("pat@example.org", ["<Pat@EXAMPLE.org.>"])
    assert not sender_allowed("pat@example.org", ["pat@example.com", "not an address"])


def test_dkim_pass_aligned_by_organisational_domain(rsa_key: tuple[bytes, str]) -> None:
    raw = _sign(_raw(), rsa_key, "example.co.uk")
    result = _check(raw, _dkim_record(rsa_key, "example.co.uk"))
    assert result.ok and result.method == "dkim"
    assert result.dkim_pass_domains == ("example.co.uk",)
    assert result.smtp_reply == "250 2.0.0 Ok"


def test_dkim_from_a_sibling_under_a_public_suffix_is_not_aligned(
    rsa_key: tuple[bytes, str],
) -> None:
    # other.co.uk and example.co.uk share only the public suffix: no alignment.
    raw = _sign(_raw(), rsa_key, "other.co.uk")
    result = _check(raw, _dkim_record(rsa_key, "other.co.uk"))
    assert not result.ok
    assert (result.reason, result.smtp_code, result.smtp_status) == (
        "dkim_unaligned",
        550,
        "5.7.22",
    )


def test_tampered_dkim_message_fails(rsa_key: tuple[bytes, str]) -> None:
    raw = _sign(_raw(), rsa_key, "example.co.uk").replace(b"body text", b"evil text")
    result = _check(raw, _dkim_record(rsa_key, "example.co.uk"))
    assert (result.ok, result.reason, result.smtp_status) == (False, "dkim_none", "5.7.20")


def test_strict_dkim_alignment_from_dmarc_record(rsa_key: tuple[bytes, str]) -> None:
    raw = _sign(_raw(), rsa_key, "example.co.uk")
    records = _dkim_record(rsa_key, "example.co.uk") | {
        ("_dmarc.example.co.uk", "TXT"): ["v=DMARC1; p=reject; adkim=s"]
    }
    result = _check(raw, records)
    assert (result.ok, result.reason, result.smtp_status) == (False, "dmarc_fail", "5.7.26")
    assert result.dmarc_policy == "reject"


def test_spf_pass_aligned_with_envelope_sender() -> None:
    envelope = EnvelopeFacts("192.0.2.10", "mx.example.co.uk", "bounce@bounces.example.co.uk")
    records = {("bounces.example.co.uk", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"]}
    result = _check(_raw(), records, envelope)
    assert result.ok and result.method == "spf" and result.spf_result == "pass"


def test_spf_pass_for_an_unrelated_domain_does_not_count() -> None:
    envelope = EnvelopeFacts("192.0.2.10", "mx.evil.example", "x@evil.example")
    records = {("evil.example", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"]}
    result = _check(_raw(), records, envelope)
    assert (result.ok, result.reason, result.spf_result) == (False, "dkim_none", "pass")


def test_spf_fail_without_dkim_is_refused() -> None:
    envelope = EnvelopeFacts("198.51.100.1", "mx", "pat@mail.example.co.uk")
    records = {("mail.example.co.uk", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"]}
    result = _check(_raw(), records, envelope)
    assert (result.ok, result.reason, result.smtp_code, result.smtp_status) == (
        False,
        "spf_fail",
        550,
        "5.7.23",
    )


def test_dmarc_record_on_the_organisational_domain_applies() -> None:
    envelope = EnvelopeFacts("198.51.100.1", "mx", "pat@mail.example.co.uk")
    records = {("_dmarc.example.co.uk", "TXT"): ["v=DMARC1; p=quarantine; sp=reject"]}
    result = _check(_raw(), records, envelope)
    assert (result.reason, result.dmarc_policy) == ("dmarc_fail", "reject")


def test_dns_failure_defers_with_451() -> None:
    envelope = EnvelopeFacts("192.0.2.10", "mx", "pat@mail.example.co.uk")
    result = _check(_raw(), {}, envelope, failing=["mail.example.co.uk"])
    assert (result.ok, result.reason, result.smtp_code) == (False, "dns_temperror", 451)


def test_sender_not_in_the_pair_is_refused_first(rsa_key: tuple[bytes, str]) -> None:
    raw = _sign(_raw("Mallory <mallory@example.co.uk>"), rsa_key, "example.co.uk")
    result = _check(raw, _dkim_record(rsa_key, "example.co.uk"))
    assert (result.ok, result.reason, result.smtp_status) == (False, "sender_not_allowed", "5.7.1")
    assert "mallory" not in result.text


# ------------------------------------------------------------------ behind the MTA

MTA = AuthPolicy(AuthMode.BEHIND_MTA, "mx.practice.example")


def _behind(headers: Sequence[str], sender: str = "pat@mail.example.co.uk") -> Any:
    raw = _raw(sender, headers)
    return check_sender(parse_message(raw), raw, [sender], ENVELOPE, MTA, StaticResolver({}))


def test_behind_mta_trusts_its_own_dmarc_pass() -> None:
    result = _behind(
        [
            "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk;"
            " dmarc=pass header.from=mail.example.co.uk",
            "Received: from somewhere",
        ]
    )
    assert result.ok and result.method == "mta"


def test_behind_mta_ignores_results_from_other_authserv_ids() -> None:
    # The sender forged a passing result under another id; our MTA found no signature.
    result = _behind(
        [
            "Authentication-Results: mx.practice.example; dkim=none; spf=fail"
            " smtp.mailfrom=x@evil.example; dmarc=fail header.from=mail.example.co.uk",
            "Received: from evil",
            "Authentication-Results: evil.example; dmarc=pass header.from=mail.example.co.uk",
        ]
    )
    assert (result.ok, result.reason, result.smtp_status) == (False, "dmarc_fail", "5.7.26")


def test_behind_mta_refuses_results_with_our_id_below_a_foreign_received() -> None:
    result = _behind(
        [
            "Authentication-Results: mx.practice.example; dkim=none",
            "Received: from mx.example.co.uk by mx.practice.example",
            "Received: from evil by mx.example.co.uk",
            "Authentication-Results: mx.practice.example; dmarc=pass"
            " header.from=mail.example.co.uk",
        ]
    )
    assert (result.ok, result.reason, result.smtp_code, result.smtp_status) == (
        False,
        "untrusted_results",
        550,
        "5.7.1",
    )


# The cases the issue reported, laid out as Postfix with OpenDKIM/OpenDMARC delivers them:
# the milters' results directly below Postfix's own Received, the sender's headers below.
POSTFIX_RECEIVED = (
    "Received: from mx.example.co.uk (mx.example.co.uk [192.0.2.10])"
    " by mx.practice.example (Postfix) with ESMTPS id 4F2A"
)
SENDER_RECEIVED = "Received: from laptop by mx.example.co.uk with ESMTPSA id 77"
SIGNATURE = "DKIM-Signature: v=1; a=rsa-sha256; d=example.co.uk; s=s1; h=from; bh=x; b=y"
MTA_FAIL = (
    "Authentication-Results: mx.practice.example; dkim=none;"
    " dmarc=fail header.from=mail.example.co.uk"
)
FORGED_PASS = (
    "Authentication-Results: mx.practice.example; dkim=pass header.d=mail.example.co.uk;"
    " dmarc=pass header.from=mail.example.co.uk"
)


def test_forged_dmarc_pass_next_to_the_mtas_dmarc_fail_is_refused() -> None:
    # The sender put the forged header on top of its own; the MTA's lands right above it.
    result = _behind([POSTFIX_RECEIVED, MTA_FAIL, FORGED_PASS, SENDER_RECEIVED])
    assert (result.ok, result.reason, result.smtp_code, result.smtp_status) == (
        False,
        "dmarc_fail",
        550,
        "5.7.26",
    )
    # The same pair with the MTA's results above its Received (milter position 0).
    result = _behind([MTA_FAIL, FORGED_PASS, POSTFIX_RECEIVED, SENDER_RECEIVED])
    assert (result.ok, result.reason) == (False, "dmarc_fail")


def test_forged_header_below_the_senders_received_is_refused_when_the_mta_wrote_none() -> None:
    result = _behind([POSTFIX_RECEIVED, SENDER_RECEIVED, FORGED_PASS])
    assert (result.ok, result.reason, result.smtp_status) == (False, "untrusted_results", "5.7.1")


def test_forged_header_in_a_message_with_no_received_is_refused() -> None:
    # Handed straight to the bridge: nothing came through the MTA, nothing is the MTA's.
    result = _behind([FORGED_PASS])
    assert (result.ok, result.reason, result.smtp_status) == (False, "untrusted_results", "5.7.1")


def test_forged_header_among_the_senders_body_headers_is_refused() -> None:
    raw = _raw("pat@mail.example.co.uk", [POSTFIX_RECEIVED])
    raw = raw.replace(b"Subject: hello\r\n", b"Subject: hello\r\n" + FORGED_PASS.encode() + b"\r\n")
    result = check_sender(
        parse_message(raw), raw, ["pat@mail.example.co.uk"], ENVELOPE, MTA, StaticResolver({})
    )
    assert (result.ok, result.reason) == (False, "untrusted_results")


def test_two_blocks_with_our_id_are_refused() -> None:
    dmarc_pass = (
        "Authentication-Results: mx.practice.example; dmarc=pass header.from=mail.example.co.uk"
    )
    result = _behind([POSTFIX_RECEIVED, dmarc_pass, "X-Spam-Status: No", FORGED_PASS])
    assert (result.ok, result.reason) == (False, "untrusted_results")


def test_trusted_headers_that_contradict_each_other_are_refused() -> None:
    spf = "Authentication-Results: mx.practice.example; spf={} smtp.mailfrom=p@example.co.uk"
    result = _behind([POSTFIX_RECEIVED, spf.format("fail"), spf.format("pass")])
    assert (result.ok, result.reason, result.smtp_status) == (
        False,
        "conflicting_results",
        "5.7.1",
    )
    # The MTA found no signature; a header claiming a passing one contradicts it.
    dkim_none = "Authentication-Results: mx.practice.example; dkim=none"
    dkim_pass = "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk"
    result = _behind([POSTFIX_RECEIVED, dkim_none, dkim_pass, SIGNATURE])
    assert (result.ok, result.reason) == (False, "conflicting_results")


def test_dkim_pass_counts_only_for_a_signature_the_message_carries() -> None:
    dkim_pass = "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk"
    assert not _behind([POSTFIX_RECEIVED, dkim_pass]).ok
    assert _behind([POSTFIX_RECEIVED, dkim_pass, SIGNATURE]).ok


def test_behind_mta_without_its_results_refuses() -> None:
    other = "Authentication-Results: evil.example; dmarc=pass header.from=x"
    result = _behind([POSTFIX_RECEIVED, other])
    assert (result.ok, result.reason, result.smtp_code) == (False, "no_trusted_results", 550)


def test_behind_mta_dmarc_pass_for_another_from_domain_does_not_count() -> None:
    result = _behind(
        [
            "Authentication-Results: mx.practice.example; dmarc=pass header.from=evil.example",
            POSTFIX_RECEIVED,
        ]
    )
    assert not result.ok


def test_behind_mta_accepts_the_postfix_opendkim_opendmarc_layout() -> None:
    # OpenDMARC's dmarc and spf results above OpenDKIM's, all below Postfix's Received.
    result = _behind(
        [
            POSTFIX_RECEIVED,
            "Authentication-Results: mx.practice.example; dmarc=pass"
            " header.from=mail.example.co.uk",
            "Authentication-Results: mx.practice.example; spf=pass"
            " smtp.mailfrom=mail.example.co.uk",
            "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk",
            SENDER_RECEIVED,
            SIGNATURE,
        ]
    )
    assert result.ok and result.method == "mta"


def test_behind_mta_accepts_a_policy_service_result_above_the_received() -> None:
    # policyd-spf's PREPEND lands above Postfix's Received, the milters' results below it.
    result = _behind(
        [
            "Authentication-Results: mx.practice.example; spf=pass"
            " smtp.mailfrom=mail.example.co.uk",
            POSTFIX_RECEIVED,
            "Authentication-Results: mx.practice.example; dmarc=pass"
            " header.from=mail.example.co.uk",
            "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk",
            SENDER_RECEIVED,
            SIGNATURE,
        ]
    )
    assert result.ok and result.method == "mta"
    # The same with the sender's forgery below its own Received is still refused.
    result = _behind([POSTFIX_RECEIVED, MTA_FAIL, SENDER_RECEIVED, FORGED_PASS])
    assert (result.ok, result.reason) == (False, "untrusted_results")


def test_behind_mta_accepts_aligned_dkim_without_dmarc() -> None:
    result = _behind(
        [
            POSTFIX_RECEIVED,
            "Authentication-Results: mx.practice.example; dkim=pass header.d=example.co.uk",
            "Authentication-Results: mx.practice.example; spf=neutral smtp.mailfrom=a@b.example",
            SIGNATURE,
        ]
    )
    assert result.ok


def test_behind_mta_needs_an_authserv_id() -> None:
    with pytest.raises(ValueError):
        AuthPolicy(AuthMode.BEHIND_MTA)
