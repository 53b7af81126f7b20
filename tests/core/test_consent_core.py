"""Consent on first contact, pure part: who is asked when, and what `!accept` records."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.core import consent
from bridge.core.command_set import build_commands
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.consent import ConsentFacts
from bridge.core.model import AppendAudit, Kind, Pair, Role, RoomEvent, SendMessage

COMMANDS = build_commands()

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
PAIR = Pair("p1", "@alice:hs", "@theo:hs", "!room:hs", label="7F3A")
DIGEST = "ab" * 32


def event(**kw: Any) -> RoomEvent:
    base = RoomEvent(
        pair_id="p1",
        room_id="!room:hs",
        event_id="$e1",
        sender="@alice:hs",
        role=Role.PATIENT,
        kind=Kind.MEMBERSHIP,
        origin_ts=NOW,
        seen_at=NOW,
        content_sha256="00",
        membership="join",
        state_key="@alice:hs",
    )
    return replace(base, **kw)


def join_effects(ev: RoomEvent, state: str = consent.PENDING, desk: str | None = "!desk:hs"):
    return consent.on_patient_join(
        PAIR, ev, state, desk_room_id=desk, consent_context={"x": 1}, consent_sha256=DIGEST
    )


def test_patient_join_with_pending_consent_posts_text_tells_desk_and_audits() -> None:
    effects = join_effects(event())
    messages = [e for e in effects if isinstance(e, SendMessage)]
    assert [(m.room_id, m.template, m.txn_id) for m in messages] == [
        ("!room:hs", "consent", "consent.p1"),
        ("!desk:hs", "consent_pending", "consent-pending.p1"),
    ]
    assert messages[0].context == {"x": 1}
    assert "alice" not in str(messages[1].context)  # the desk notice carries no patient id
    (audit,) = [e for e in effects if isinstance(e, AppendAudit)]
    assert (audit.action, audit.details, audit.event_id) == (
        "consent.requested",
        {"consent_sha256": DIGEST},
        "$e1",
    )


def test_joining_again_gives_the_same_txn_ids() -> None:
    first = [e.txn_id for e in join_effects(event()) if isinstance(e, SendMessage)]
    again = [e.txn_id for e in join_effects(event(event_id="$e9")) if isinstance(e, SendMessage)]
    assert first == again


def test_no_desk_room_still_asks_the_patient() -> None:
    effects = join_effects(event(), desk=None)
    assert [e.template for e in effects if isinstance(e, SendMessage)] == ["consent"]


@pytest.mark.parametrize(
    ("ev", "state"),
    [
        (event(), consent.ACCEPTED),
        (event(), consent.NOT_REQUIRED),
        (event(membership="leave"), consent.PENDING),
        (event(membership="invite", sender="@bot:hs", role=Role.BOT), consent.PENDING),
        (event(sender="@theo:hs", state_key="@theo:hs", role=Role.THERAPIST), consent.PENDING),
        (event(kind=Kind.TEXT, membership=None, state_key=None), consent.PENDING),
    ],
)
def test_nothing_asked_otherwise(ev: RoomEvent, state: str) -> None:
    assert join_effects(ev, state) == []


@pytest.mark.parametrize(
    ("command", "role", "state", "applies"),
    [
        ("!accept", Role.PATIENT, consent.PENDING, True),
        ("!ACCEPT please", Role.PATIENT, consent.PENDING, True),
        ("!accept", Role.PATIENT, consent.ACCEPTED, False),
        ("!accept", Role.PATIENT, consent.NOT_REQUIRED, False),
        ("!accept", Role.THERAPIST, consent.PENDING, False),
        ("!acceptable", Role.PATIENT, consent.PENDING, False),
        ("!help", Role.PATIENT, consent.PENDING, False),
    ],
)
def test_accept_applies(command: str, role: Role, state: str, applies: bool) -> None:
    ev = event(kind=Kind.TEXT, membership=None, state_key=None, command=command, role=role)
    assert consent.accept_applies(state, ev) is applies


def ctx(
    role: Role = Role.PATIENT, consent_state: str | None = None, consent_sha256: str = ""
) -> CommandContext:
    facts = () if consent_state is None else (ConsentFacts(consent_state, consent_sha256),)
    return CommandContext(
        room_kind=PAIR_ROOM,
        room_id="!room:hs",
        sender="@alice:hs" if role is Role.PATIENT else "@theo:hs",
        role=role,
        event_id="$cmd",
        now=NOW,
        pair=PAIR,
        facts=facts,
    )


def test_accept_command_records_the_digest_and_confirms() -> None:
    effects = COMMANDS.dispatch(ctx(consent_state="pending", consent_sha256=DIGEST), "!accept")
    audits = [e for e in effects if isinstance(e, AppendAudit)]
    assert [a.action for a in audits] == ["command", "consent.accepted"]
    assert audits[1].details == {"consent_sha256": DIGEST}
    assert (audits[1].actor, audits[1].event_id) == ("@alice:hs", "$cmd")
    (msg,) = [e for e in effects if isinstance(e, SendMessage)]
    assert (msg.template, msg.room_id) == ("consent_accepted", "!room:hs")


@pytest.mark.parametrize(("state", "accepted"), [("accepted", True), ("not_required", False)])
def test_accept_when_nothing_is_pending(state: str, accepted: bool) -> None:
    effects = COMMANDS.dispatch(ctx(consent_state=state), "!accept")
    assert "consent.accepted" not in [e.action for e in effects if isinstance(e, AppendAudit)]
    (msg,) = [e for e in effects if isinstance(e, SendMessage)]
    assert (msg.template, msg.context) == ("consent_not_pending", {"accepted": accepted})


def test_therapist_cannot_accept_for_the_patient() -> None:
    effects = COMMANDS.dispatch(ctx(Role.THERAPIST, consent_state="pending"), "!accept")
    assert [e.template for e in effects if isinstance(e, SendMessage)] == ["command_refused"]
    assert "consent.accepted" not in [e.action for e in effects if isinstance(e, AppendAudit)]


def test_accept_is_listed_for_patients_only() -> None:
    assert "accept" in [c.name for c in COMMANDS.available(PAIR_ROOM, Role.PATIENT)]
    assert "accept" not in [c.name for c in COMMANDS.available(PAIR_ROOM, Role.THERAPIST)]


def test_text_digest_is_sha256_of_utf8() -> None:
    text = "Before you start: Kühn & Co"
    assert consent.text_digest(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
