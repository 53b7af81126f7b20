"""The e-mail channel outwards, pure: what goes out, consent transitions, `!email`, and the
mail as built (threading, sanitised HTML, a DKIM signature checked by dkimpy itself)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import dkim
import pysequoia
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.core import email_out
from bridge.core.command_set import build_commands
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.email_commands import EmailChannelFacts, transition
from bridge.core.model import MATRIX, AppendAudit, Kind, Pair, Role, RoomEvent, SendMessage
from bridge.email.autoreply import is_automatic
from bridge.email.compose import OutgoingMail, compose, dkim_sign, mail_bytes, matrix_text
from bridge.email.openpgp import (
    KeyProblem,
    decrypt_mime,
    encrypt_mime,
    is_pgp_mime,
    read_practice_key,
    read_public_key,
)
from bridge.features.email.outbound.keys import looks_like_key
from bridge.provision import PairError, PairManager, PracticeFacts, pair_room_body

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PAIR = Pair("p1", "@pat:hs", "@doc:hs", "!room:hs", label="7F3A")


def event(
    role: Role = Role.THERAPIST,
    kind: Kind = Kind.TEXT,
    *,
    command: str | None = None,
    channel: str = MATRIX,
    relates_to: str | None = None,
) -> RoomEvent:
    return RoomEvent(
        pair_id="p1",
        room_id="!room:hs",
        event_id="$e1",
        sender={Role.THERAPIST: "@doc:hs", Role.PATIENT: "@pat:hs"}.get(role, "@bot:hs"),
        role=role,
        kind=kind,
        origin_ts=NOW,
        seen_at=NOW,
        content_sha256="0" * 64,
        command=command,
        channel=channel,
        relates_to=relates_to,
    )


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        (event(), email_out.REPLY),
        (event(kind=Kind.EMOTE), email_out.REPLY),
        (event(kind=Kind.EDIT, relates_to="$e0"), email_out.CORRECTION),
        (event(kind=Kind.EDIT), None),
        (event(command="!email off"), None),
        (event(kind=Kind.NOTICE), None),
        (event(role=Role.BOT), None),
        (event(role=Role.PATIENT), None),
        (event(channel="email"), None),
        (event(kind=Kind.REACTION), None),
        (event(kind=Kind.FILE), email_out.ATTACHMENT),
        (event(kind=Kind.VOICE), email_out.ATTACHMENT),
        (event(kind=Kind.IMAGE), email_out.ATTACHMENT),
        (event(role=Role.PATIENT, kind=Kind.FILE), None),
    ],
)
def test_only_the_therapists_own_messages_go_out(ev: RoomEvent, expected: str | None) -> None:
    assert email_out.outbound_kind(ev) == expected


def test_consent_must_be_for_the_address_on_file() -> None:
    digest = email_out.address_digest("Pat@Example.org")
    assert email_out.may_send(email_out.GIVEN, digest, "pat@example.org")
    assert not email_out.may_send(email_out.GIVEN, digest, "other@example.org")
    assert not email_out.may_send(email_out.REVOKED, digest, "pat@example.org")
    assert not email_out.may_send(email_out.ASKED, digest, "pat@example.org")
    assert not email_out.may_send(None, None, "pat@example.org")
    assert not email_out.may_send(email_out.GIVEN, digest, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("YES", email_out.GIVEN),
        ("yes.", email_out.GIVEN),
        ("I agree!", email_out.GIVEN),
        ("STOP", email_out.REVOKED),
        ("  stop  ", email_out.REVOKED),
        ("Unsubscribe", email_out.REVOKED),
        ("yes but only on Mondays", None),
        ("please stop the pain", None),
        ("", None),
    ],
)
def test_reply_words(line: str, expected: str | None) -> None:
    assert email_out.reply_word(line) == expected


def test_first_line_skips_blank_lines() -> None:
    assert email_out.first_line("\n\n  YES \nOn Monday you wrote:\n> ...") == "YES"


def test_message_id_is_fixed_per_event_and_hides_it() -> None:
    one = email_out.message_id_for("$abc:hs", "in.example.net")
    assert one == email_out.message_id_for("$abc:hs", "in.example.net")
    assert one != email_out.message_id_for("$abd:hs", "in.example.net")
    assert one.startswith("<out.") and one.endswith("@in.example.net>") and "abc" not in one


def facts(state: str | None, address: str | None = "pat@example.org") -> EmailChannelFacts:
    return EmailChannelFacts(state, address, "d" * 64, "in.example.net", {"practice_name": "H"})


@pytest.mark.parametrize(
    ("role", "action", "state", "address", "expected"),
    [
        (Role.PATIENT, "on", None, "a@b.org", email_out.GIVEN),
        (Role.PATIENT, "on", email_out.REVOKED, "a@b.org", email_out.GIVEN),
        (Role.PATIENT, "on", email_out.GIVEN, "a@b.org", None),
        (Role.PATIENT, "on", None, None, None),
        (Role.THERAPIST, "on", None, "a@b.org", None),
        (Role.PATIENT, "off", email_out.GIVEN, "a@b.org", email_out.REVOKED),
        (Role.THERAPIST, "off", email_out.GIVEN, "a@b.org", email_out.REVOKED),
        (Role.THERAPIST, "off", email_out.ASKED, "a@b.org", email_out.REVOKED),
        (Role.PATIENT, "off", None, "a@b.org", None),
        (Role.THERAPIST, "ask", None, "a@b.org", email_out.ASKED),
        (Role.THERAPIST, "ask", email_out.GIVEN, "a@b.org", None),
        (Role.PATIENT, "ask", None, "a@b.org", None),
        (Role.THERAPIST, "ask", None, None, None),
        (Role.PATIENT, "status", None, "a@b.org", None),
    ],
)
def test_transitions(
    role: Role, action: str, state: str | None, address: str | None, expected: str | None
) -> None:
    assert transition(role, action, facts(state, address)) == expected


def run(text: str, role: Role, found: EmailChannelFacts | None) -> list[object]:
    ctx = CommandContext(
        room_kind=PAIR_ROOM,
        room_id=PAIR.room_id,
        sender=PAIR.patient_id if role is Role.PATIENT else PAIR.therapist_id,
        role=role,
        event_id="$cmd",
        now=NOW,
        pair=PAIR,
        facts=() if found is None else (found,),
    )
    return list(build_commands().dispatch(ctx, text))


def test_email_on_audits_the_texts_digest_and_the_address_digest() -> None:
    _, given, answer = run("!email on", Role.PATIENT, facts(None))
    assert isinstance(given, AppendAudit) and given.action == email_out.CONSENT_GIVEN_ACTION
    assert given.details == {
        "via": "room",
        "consent_sha256": "d" * 64,
        "recipient_sha256": email_out.address_digest("pat@example.org"),
    }
    assert "pat@example.org" not in repr(given)
    assert isinstance(answer, SendMessage) and answer.template == "email_on"


def test_email_ask_audits_the_consent_mails_message_id() -> None:
    _, asked, answer = run("!email ask", Role.THERAPIST, facts(None))
    assert isinstance(asked, AppendAudit) and asked.action == email_out.CONSENT_ASKED_ACTION
    assert asked.details["message_id"] == email_out.message_id_for("$cmd", "in.example.net")
    assert isinstance(answer, SendMessage) and answer.template == "email_asked"


@pytest.mark.parametrize(
    ("text", "role", "found", "reason"),
    [
        ("!email on", Role.PATIENT, None, "off"),
        ("!email on", Role.PATIENT, facts(None, None), "no_address"),
        ("!email on", Role.THERAPIST, facts(None), "patient_only"),
        ("!email ask", Role.PATIENT, facts(None), "therapist_only"),
        ("!email off", Role.PATIENT, facts(None), "unchanged"),
    ],
)
def test_email_refusals_change_nothing(
    text: str, role: Role, found: EmailChannelFacts | None, reason: str
) -> None:
    effects = run(text, role, found)
    assert not [e for e in effects if isinstance(e, AppendAudit) and e.action != "command"]
    [answer] = [e for e in effects if isinstance(e, SendMessage)]
    assert answer.template == "email_unavailable" and answer.context["reason"] == reason


def test_email_status_shows_the_terms() -> None:
    [_, answer] = run("!email", Role.PATIENT, facts(email_out.GIVEN))
    assert isinstance(answer, SendMessage) and answer.template == "email_consent"
    assert answer.context["state"] == email_out.GIVEN and answer.context["has_address"]


# ---------------------------------------------------------------- building the mail


def test_matrix_text_of_a_reply_and_an_edit() -> None:
    reply = {
        "msgtype": "m.text",
        "body": "> <@pat:hs> earlier words\n\nSee you <b>Tuesday</b>",
        "format": "org.matrix.custom.html",
        "formatted_body": (
            "<mx-reply><blockquote>earlier words</blockquote></mx-reply>"
            '<p>See you <b>Tuesday</b><script>x()</script><img src="https://t.example/p.gif"></p>'
        ),
        "m.relates_to": {"m.in_reply_to": {"event_id": "$e0"}},
    }
    said = matrix_text(reply)
    assert said.text == "See you <b>Tuesday</b>"
    assert said.html is not None and "<b>Tuesday</b>" in said.html
    assert "earlier words" not in said.html and "script" not in said.html
    assert "img" not in said.html  # no image is fetched from outside the practice
    edit = {
        "msgtype": "m.text",
        "body": "* Thursday",
        "m.new_content": {"msgtype": "m.text", "body": "Thursday"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"},
    }
    assert matrix_text(edit).text == "Thursday"


def test_compose_threads_and_dkim_verifies() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    mail = OutgoingMail(
        from_name="Harbour Therapy",
        from_address="pair-abc@in.example.net",
        to="pat@example.org",
        subject="Re: Thursday\nInjected: x",
        message_id="<out.1@in.example.net>",
        text="See you Tuesday",
        in_reply_to="<m2@example.org>",
        references=["<m1@example.org>", "<out.0@in.example.net>"],
    )
    raw = mail_bytes(compose(mail))
    signed = dkim_sign(raw, selector="s1", domain="in.example.net", private_key=pem)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"s1._domainkey.in.example.net." else b""

    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Tuesday", b"Friday"), dnsfunc=dns)
    msg = message_from_bytes(signed, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["In-Reply-To"] == "<m2@example.org>"
    assert msg["References"].split() == [
        "<m1@example.org>",
        "<out.0@in.example.net>",
        "<m2@example.org>",
    ]
    assert msg["Subject"] == "Re: Thursday Injected: x" and msg["Injected"] is None
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert "See you Tuesday" in plain.get_content()
    assert "See you Tuesday" in html.get_content()


# ---------------------------------------------------------------- e-mail pairs


def test_an_email_pairs_room_invites_only_the_therapist() -> None:
    patient = email_out.email_patient_id("Pat@Example.org")
    assert email_out.is_email_patient(patient) and "pat" not in patient
    assert patient == email_out.email_patient_id("pat@example.org")
    body = pair_room_body(
        bot="@bot:hs", patient=patient, therapist="@doc:hs", name="n", pair_id="p1", federate=False
    )
    assert body["invite"] == ["@doc:hs"]


@pytest.mark.parametrize(
    ("domain", "replies", "email"),
    [(None, True, "pat@example.org"), ("in.example.net", False, "pat@example.org"),
     ("in.example.net", True, None)],
)  # fmt: skip
async def test_an_email_pair_needs_an_address_and_answers_by_email(
    domain: str | None, replies: bool, email: str | None
) -> None:
    facts = PracticeFacts(
        bot_user_id="@bot:hs",
        practice_name="H",
        crisis_line=None,
        federate=False,
        inbound_domain=domain,
        email_replies=replies,
    )
    # Refused before anything is touched: no database, homeserver or audit is needed.
    manager = PairManager(None, None, None, None, None, facts)  # type: ignore[arg-type]
    with pytest.raises(PairError, match=r"smtp\.replies\.enabled"):
        await manager.add_pair(None, "@doc:hs", NOW, patient_email=email)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated (vacation)", True),
        ("Auto-Submitted: no", False),
        ("Auto-Submitted: No (a person)", False),
        ("X-Autoreply: yes", True),
        ("X-Autorespond: vacation", True),
        ("Precedence: bulk", True),
        ("Precedence: auto_reply", True),
        ("Precedence: first-class", False),
        ("X-Auto-Response-Suppress: All", False),
        ("", False),
    ],
)
def test_automatic_mail_is_recognised(headers: str, expected: bool) -> None:
    raw = (
        "From: Pat <pat@example.org>\r\nTo: pair-x@in.example.net\r\n"
        + (headers + "\r\n" if headers else "")
        + "Subject: hi\r\n\r\nbody\r\n"
    ).encode()
    assert is_automatic(raw) is expected


# ---------------------------------------------------------------- OpenPGP


def test_a_public_key_is_read_and_a_secret_or_broken_one_refused() -> None:
    cert = pysequoia.Cert.generate("Pat <pat@example.org>")
    key = read_public_key(str(cert).encode())
    assert key.fingerprint == str(cert.fingerprint).lower()
    assert key.spaced.replace(" ", "").lower() == key.fingerprint
    with pytest.raises(KeyProblem, match="secret key"):
        read_public_key(str(cert.secrets).encode())
    with pytest.raises(KeyProblem, match="not an OpenPGP public key"):
        read_public_key(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n")


def test_encrypt_mime_hides_the_body_and_keeps_the_routing_headers() -> None:
    cert = pysequoia.Cert.generate("Pat <pat@example.org>")
    mail = OutgoingMail(
        from_name="H",
        from_address="pair-abc@in.example.net",
        to="pat@example.org",
        subject="Re: Thursday",
        message_id="<out.1@in.example.net>",
        text="canary-secret",
        in_reply_to="<m1@example.org>",
    )
    raw = encrypt_mime(compose(mail), read_public_key(str(cert).encode()))
    assert b"canary-secret" not in raw
    outer = message_from_bytes(raw, policy=policy.default)
    assert outer["In-Reply-To"] == "<m1@example.org>" and outer["To"] == "pat@example.org"
    _, body = list(outer.iter_parts())
    plain = pysequoia.decrypt(body.get_payload(decode=True), decryptor=cert.secrets.decryptor())
    inner = message_from_bytes(plain.bytes, policy=policy.default)
    assert isinstance(inner, EmailMessage)
    text = inner.get_body(("plain",))
    assert text is not None and "canary-secret" in text.get_content()


def test_decrypt_mime_opens_her_mail_and_checks_her_signature() -> None:
    practice = read_practice_key(str(pysequoia.Tsk.generate("H <care@d.example>")).encode())
    her = pysequoia.Cert.generate("Pat <pat@example.org>")
    her_key = read_public_key(str(her).encode())
    inner = EmailMessage()
    inner.set_content("canary-inbound")
    plaintext = inner.as_bytes(policy=policy.SMTP)
    outer = (
        b"From: Pat <pat@example.org>\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
        b' boundary="b"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
        b"Version: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n%s\r\n--b--\r\n"
    )
    public = pysequoia.Cert.from_bytes(practice.public.armored)
    signed = outer % pysequoia.encrypt(plaintext, recipients=[public], signer=her.secrets.signer())
    assert is_pgp_mime(signed) and not is_pgp_mime(plaintext)
    opened, status = decrypt_mime(signed, practice, her_key)
    assert status == "signed"
    message = message_from_bytes(opened, policy=policy.default)
    assert isinstance(message, EmailMessage) and message["Subject"] == "Re: x"
    body = message.get_body(("plain",))
    assert body is not None and "canary-inbound" in body.get_content()
    # Without her key on file, or unsigned: opened, not called signed.
    assert decrypt_mime(signed, practice, None)[1] == "unsigned"
    unsigned = outer % pysequoia.encrypt(plaintext, recipients=[public])
    assert decrypt_mime(unsigned, practice, her_key)[1] == "unsigned"
    # Not for the practice's key: left as it came.
    other = pysequoia.Cert.generate("Eve <eve@example.org>")
    foreign = outer % pysequoia.encrypt(plaintext, recipients=[other])
    assert decrypt_mime(foreign, practice, her_key) == (foreign, "undecryptable")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"msgtype": "m.file", "body": "pat.asc"}, True),
        ({"msgtype": "m.file", "body": "x", "filename": "KEY.GPG"}, True),
        ({"msgtype": "m.file", "body": "x", "info": {"mimetype": "application/pgp-keys"}}, True),
        ({"msgtype": "m.file", "body": "plan.pdf", "info": {"mimetype": "application/pdf"}}, False),
        ({"msgtype": "m.image", "body": "pat.asc"}, False),
    ],
)
def test_a_posted_key_file_is_recognised(content: dict[str, object], expected: bool) -> None:
    assert looks_like_key(content) is expected
