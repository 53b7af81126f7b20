"""Direct mode against real DNS answers: a DNS server on loopback, real SMTP sessions.

The bridge's own resolver (dnspython, pointed at the loopback server) fetches the DKIM
key, the SPF and the DMARC records over UDP, exactly as it would from the internet.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.adapters.smtp import InboundFacts, InboundHandler, SmtpListener, SmtpSettings
from bridge.email.authcheck import AuthPolicy, DnsPythonResolver
from tests.support.dns_server import LoopbackDns

pytestmark = pytest.mark.integration

PAIR_ADDRESS = "pair-tok123@in.example.net"
SENDERS = [
    "pat@example.org",
    "pat@spf-only.example",
    "pat@wrong-ip.example",
    "pat@slow.example",
]


def _key() -> tuple[bytes, str]:
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


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[bytes, str]]:
    return {"example.org": _key(), "other.example": _key()}


@pytest.fixture(scope="module")
def dns(keys: dict[str, tuple[bytes, str]]) -> Iterator[LoopbackDns]:
    records = {
        ("s1._domainkey.example.org", "TXT"): [f"v=DKIM1; k=rsa; p={keys['example.org'][1]}"],
        ("s1._domainkey.other.example", "TXT"): [f"v=DKIM1; k=rsa; p={keys['other.example'][1]}"],
        # The patient's provider sends from 192.0.2.0/24, never from our loopback client.
        ("example.org", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
        ("_dmarc.example.org", "TXT"): ["v=DMARC1; p=reject; rua=mailto:d@example.org"],
        ("spf-only.example", "TXT"): ["v=spf1 ip4:127.0.0.0/8 -all"],
        ("wrong-ip.example", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
    }
    server = LoopbackDns(records, silent=["slow.example"])
    yield server
    server.close()


class Recorder:
    def __init__(self) -> None:
        self.accepted: list[InboundFacts] = []

    async def __call__(self, pair_id: str, raw: bytes, facts: InboundFacts) -> None:
        self.accepted.append(facts)


async def _resolve(address: str) -> str | None:
    return "pair-1" if address == PAIR_ADDRESS else None


async def _allowed(pair_id: str) -> list[str]:
    return SENDERS


@pytest.fixture
async def bridge(dns: LoopbackDns) -> AsyncIterator[tuple[int, Recorder]]:
    recorder = Recorder()
    handler = InboundHandler(
        resolve_recipient=_resolve,
        allowed_senders=_allowed,
        accept=recorder,
        policy=AuthPolicy(),
        resolver=DnsPythonResolver(1.0, nameservers=["127.0.0.1"], port=dns.port),
    )
    listener = SmtpListener(SmtpSettings(host="127.0.0.1", port=0), handler)
    await listener.start()
    yield listener.port, recorder
    await listener.stop()


def _raw(sender: str, body: str = "See you on Thursday at ten.") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Pat <{sender}>"
    msg["To"] = PAIR_ADDRESS
    msg["Subject"] = "Appointment"
    msg["Message-ID"] = f"<m-{sender}@example.org>"
    msg.set_content(body)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _signed(raw: bytes, key: tuple[bytes, str], domain: str) -> bytes:
    signature = dkim.sign(
        raw, b"s1", domain.encode(), key[0], include_headers=[b"from", b"to", b"subject"]
    )
    return bytes(signature) + raw


def _send_sync(port: int, raw: bytes, mail_from: str) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="mx.example.org", timeout=30) as client:
        client.ehlo()
        client.mail(mail_from)
        client.rcpt(PAIR_ADDRESS)
        code, text = client.data(raw)
        return code, text.decode()


async def send(port: int, raw: bytes, mail_from: str) -> tuple[int, str]:
    return await asyncio.to_thread(_send_sync, port, raw, mail_from)


async def test_correctly_signed_mail_passes_with_keys_from_dns(
    bridge: tuple[int, Recorder], dns: LoopbackDns, keys: dict[str, tuple[bytes, str]]
) -> None:
    port, recorder = bridge
    raw = _signed(_raw("pat@example.org"), keys["example.org"], "example.org")
    code, _ = await send(port, raw, "pat@example.org")
    assert code == 250
    facts = recorder.accepted[-1]
    assert (facts.auth.method, facts.auth.dkim_pass_domains) == ("dkim", ("example.org",))
    assert facts.auth.spf_result == "fail" and facts.auth.dmarc_policy == "reject"
    assert ("s1._domainkey.example.org", "TXT") in dns.queries
    assert ("_dmarc.example.org", "TXT") in dns.queries


async def test_body_changed_after_signing_is_refused_by_dmarc(
    bridge: tuple[int, Recorder], keys: dict[str, tuple[bytes, str]]
) -> None:
    port, recorder = bridge
    raw = _signed(_raw("pat@example.org"), keys["example.org"], "example.org")
    raw = raw.replace(b"Thursday at ten", b"Friday at nine.")
    code, text = await send(port, raw, "pat@example.org")
    assert (code, text.split()[0]) == (550, "5.7.26")
    assert recorder.accepted == []


async def test_signature_of_an_unaligned_domain_is_refused(
    bridge: tuple[int, Recorder], keys: dict[str, tuple[bytes, str]]
) -> None:
    port, recorder = bridge
    # A valid signature, but by other.example for mail whose From is example.org.
    raw = _signed(_raw("pat@example.org"), keys["other.example"], "other.example")
    code, text = await send(port, raw, "pat@example.org")
    assert (code, text.split()[0]) == (550, "5.7.26")
    assert recorder.accepted == []


async def test_spf_pass_from_the_published_address_passes(
    bridge: tuple[int, Recorder],
) -> None:
    port, recorder = bridge
    code, _ = await send(port, _raw("pat@spf-only.example"), "pat@spf-only.example")
    assert code == 250
    assert recorder.accepted[-1].auth.method == "spf"


async def test_spf_fail_from_a_wrong_address_is_refused(bridge: tuple[int, Recorder]) -> None:
    port, recorder = bridge
    code, text = await send(port, _raw("pat@wrong-ip.example"), "pat@wrong-ip.example")
    assert (code, text.split()[0]) == (550, "5.7.23")
    assert recorder.accepted == []


async def test_unsigned_mail_under_p_reject_is_refused(bridge: tuple[int, Recorder]) -> None:
    port, recorder = bridge
    code, text = await send(port, _raw("pat@example.org"), "pat@example.org")
    assert (code, text.split()[0]) == (550, "5.7.26")
    assert recorder.accepted == []


async def test_dns_timeout_defers_with_451_not_a_refusal(
    bridge: tuple[int, Recorder], dns: LoopbackDns
) -> None:
    port, recorder = bridge
    code, text = await send(port, _raw("pat@slow.example"), "pat@slow.example")
    assert (code, text.split()[0]) == (451, "4.4.3")
    assert recorder.accepted == []
    assert any(name.endswith("slow.example") for name, _ in dns.queries)


def test_nameserver_setting_is_parsed() -> None:
    for text, expected in [
        ("127.0.0.1", (["127.0.0.1"], 53)),
        ("127.0.0.1:5353", (["127.0.0.1"], 5353)),
        ("[::1]:5300", (["::1"], 5300)),
        ("::1", (["::1"], 53)),
    ]:
        resolver = DnsPythonResolver.for_nameserver(text)
        inner = resolver._resolver
        assert (list(inner.nameservers), inner.port) == expected
    for bad in ("", ":53", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError):
            DnsPythonResolver.for_nameserver(bad)
