"""`!email` in the pair room: the patient's consent to the e-mail channel (pure).

`!email` shows the practice's text on what e-mail does and does not protect; `!email on`
(the patient) agrees to it for her address on file, `!email off` (the patient or the
therapist) stops it, `!email ask` (the therapist) sends her that text by e-mail, to be
answered with YES. The feature applies the same `transition` to the stored state in the
command's transaction, so what the reply says and what is stored cannot differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.core import email_out
from bridge.core.commands import PAIR_ROOM, CommandContext, command, reply
from bridge.core.model import Effect, Role

NAME = "email"
#: The practice's text on the channel (its digest is audited with her agreement), shown in
#: the room (`CONSENT_TEMPLATE`, with where she stands) and in the consent e-mail.
TERMS_TEMPLATE = "email_terms"
CONSENT_TEMPLATE = "email_consent"


def terms_context(practice_name: str) -> dict[str, Any]:
    """What the practice's text on e-mail is rendered with (its digest depends on it)."""
    return {"practice_name": practice_name}


@dataclass(frozen=True, slots=True)
class EmailChannelFacts:
    """What `!email` needs: the stored consent, the address and the text's digest."""

    state: str | None
    #: The patient's address on file, for the consent's digest (never shown in a reply).
    address: str | None
    text_sha256: str
    #: The pair's inbound domain, for the consent e-mail's Message-ID.
    domain: str
    #: What the consent text is rendered with.
    context: dict[str, Any] = field(default_factory=dict)
    #: The fingerprint of her OpenPGP key on file, shown so she can compare it with hers.
    key_fingerprint: str | None = None


def spaced(fingerprint: str | None) -> str:
    """A fingerprint in groups of four capitals, as people compare them ("" for none)."""
    if not fingerprint:
        return ""
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def action_of(args: list[str]) -> str:
    return args[0].lower() if args else "status"


def transition(role: Role, action: str, facts: EmailChannelFacts) -> str | None:
    """The consent state `action` by `role` leads to, or None when it changes nothing."""
    if action == "on" and role is Role.PATIENT and facts.address and facts.state != email_out.GIVEN:
        return email_out.GIVEN
    if action == "off" and facts.state in (email_out.GIVEN, email_out.ASKED):
        return email_out.REVOKED
    if (
        action == "ask"
        and role is Role.THERAPIST
        and facts.address
        and facts.state != email_out.GIVEN
    ):
        return email_out.ASKED
    return None


@command(
    NAME,
    "Answers by e-mail: show what e-mail protects; on or off (patient), ask (therapist)",
    usage="[on|off|ask]",
    roles=(Role.PATIENT, Role.THERAPIST),
    rooms=(PAIR_ROOM,),
)
def email_command(ctx: CommandContext, args: list[str]) -> list[Effect]:
    facts = ctx.fact(EmailChannelFacts)
    if facts is None:
        return [reply(ctx, "email_unavailable", {"reason": "off"})]
    action = action_of(args)
    if action not in ("status", "on", "off", "ask"):
        return [reply(ctx, "email_usage")]
    state = facts.state
    if action == "status":
        return [
            reply(
                ctx,
                CONSENT_TEMPLATE,
                {
                    **facts.context,
                    "state": state or "",
                    "has_address": bool(facts.address),
                    "key_fingerprint": spaced(facts.key_fingerprint),
                },
            )
        ]
    new = transition(ctx.role, action, facts)
    pair_id = ctx.pair.pair_id if ctx.pair else None
    if new is None or pair_id is None:
        reason = "no_address" if not facts.address and action in ("on", "ask") else "unchanged"
        if action == "on" and ctx.role is not Role.PATIENT:
            reason = "patient_only"
        if action == "ask" and ctx.role is not Role.THERAPIST:
            reason = "therapist_only"
        return [reply(ctx, "email_unavailable", {"reason": reason, "state": state or ""})]
    if new == email_out.GIVEN:
        assert facts.address is not None
        entry = email_out.consent_given(
            pair_id,
            ctx.sender,
            via="room",
            text_sha256=facts.text_sha256,
            address=facts.address,
            event_id=ctx.event_id,
        )
        return [entry, reply(ctx, "email_on")]
    if new == email_out.REVOKED:
        entry = email_out.consent_revoked(pair_id, ctx.sender, via="room", event_id=ctx.event_id)
        return [entry, reply(ctx, "email_off")]
    entry = email_out.consent_asked(
        pair_id,
        ctx.sender,
        text_sha256=facts.text_sha256,
        message_id=email_out.message_id_for(ctx.event_id, facts.domain),
        event_id=ctx.event_id,
    )
    return [entry, reply(ctx, "email_asked")]


#: The commands of this module, for `bridge.core.command_set`.
COMMANDS = (email_command,)
