"""Consent on first contact: what the bot does when a patient joins and when they `!accept`.

Pure policy. The service-side part (bridge.features.consent) reads the pair's consent state,
renders the consent text and writes the new state in the event's transaction; here it is
decided which messages and audit entries follow. The audit holds the SHA-256 of the
exact text the patient was shown, so the record proves what was accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from bridge.core.commands import PAIR_ROOM, CommandContext, command, reply
from bridge.core.model import AppendAudit, Effect, Kind, Pair, Role, RoomEvent, SendMessage

PENDING = "pending"
ACCEPTED = "accepted"
NOT_REQUIRED = "not_required"

ACCEPT_COMMAND = "accept"
#: Template of the consent text posted into the pair room.
CONSENT_TEMPLATE = "consent"


def text_digest(text: str) -> str:
    """The SHA-256 (hex) of the consent text as shown, UTF-8 encoded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_patient_join(pair: Pair, ev: RoomEvent) -> bool:
    """The patient's own join to the pair room."""
    return (
        ev.kind is Kind.MEMBERSHIP
        and ev.membership == "join"
        and ev.state_key == pair.patient_id
        and ev.sender == pair.patient_id
    )


def is_accept(ev: RoomEvent) -> bool:
    """The patient typed `!accept`."""
    if ev.role is not Role.PATIENT or not ev.command:
        return False
    words = ev.command[1:].split()
    return bool(words) and words[0].lower() == ACCEPT_COMMAND


def on_patient_join(
    pair: Pair,
    ev: RoomEvent,
    consent_state: str,
    *,
    desk_room_id: str | None,
    consent_context: dict[str, Any],
    consent_sha256: str,
    language: str | None = None,
) -> list[Effect]:
    """Ask for consent when the patient joins a pair whose consent is pending.

    The txn ids are fixed per pair, so joining again never posts the text twice. The text
    is posted in `language` (the patient's), the one its digest was taken of.
    """
    if consent_state != PENDING or not is_patient_join(pair, ev):
        return []
    effects: list[Effect] = [
        *_ask(pair, ev, consent_context, consent_sha256, language, f"consent.{pair.pair_id}"),
    ]
    if desk_room_id:
        effects.append(
            SendMessage(
                room_id=desk_room_id,
                template="consent_pending",
                context={"pair_label": pair.label, "room_id": pair.room_id},
                txn_id=f"consent-pending.{pair.pair_id}",
                pair_id=pair.pair_id,
                await_member=pair.therapist_id,
            )
        )
    return effects


def _ask(
    pair: Pair,
    ev: RoomEvent,
    context: dict[str, Any],
    sha256: str,
    language: str | None,
    txn_id: str,
    reason: str | None = None,
) -> list[Effect]:
    details: dict[str, Any] = {"consent_sha256": sha256}
    if language is not None:
        details["language"] = language
    if reason is not None:
        details["reason"] = reason
    return [
        SendMessage(
            room_id=pair.room_id,
            template=CONSENT_TEMPLATE,
            context=context,
            txn_id=txn_id,
            pair_id=pair.pair_id,
            await_member=pair.patient_id,
            language=language,
        ),
        AppendAudit(
            pair_id=pair.pair_id,
            action="consent.requested",
            actor=ev.sender,
            details=details,
            event_id=ev.event_id,
        ),
    ]


def ask_again_in(
    pair: Pair,
    ev: RoomEvent,
    language: str,
    *,
    consent_context: dict[str, Any],
    consent_sha256: str,
) -> list[Effect]:
    """The patient chose another language and the practice asks consent again in it
    (`practice.reconsent_on_language_change`): the text in that language, with its own
    digest; the state is pending again until she accepts it."""
    txn_id = f"consent.{pair.pair_id}.{language}.{ev.event_id}"
    return _ask(pair, ev, consent_context, consent_sha256, language, txn_id, "language_changed")


def accept_applies(consent_state: str, ev: RoomEvent) -> bool:
    """Whether this event turns pending consent into accepted consent."""
    return consent_state == PENDING and is_accept(ev)


@dataclass(frozen=True, slots=True)
class ConsentFacts:
    """What `!accept` needs: the pair's consent state and the digest of its consent text."""

    state: str
    #: The digest of the text as the patient was shown it, in her language.
    sha256: str


@command(
    ACCEPT_COMMAND,
    "Accept the practice's terms for messaging (asked once)",
    roles=(Role.PATIENT,),
    rooms=(PAIR_ROOM,),
)
def accept_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    """Record acceptance of the consent text shown (`ConsentFacts`)."""
    facts = ctx.fact(ConsentFacts)
    state = facts.state if facts is not None else None
    if facts is None or state != PENDING:
        return [reply(ctx, "consent_not_pending", {"accepted": state == ACCEPTED})]
    return [
        AppendAudit(
            pair_id=ctx.pair.pair_id if ctx.pair else None,
            action="consent.accepted",
            actor=ctx.sender,
            details={"consent_sha256": facts.sha256},
            event_id=ctx.event_id,
        ),
        reply(ctx, "consent_accepted"),
    ]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (accept_command,)
