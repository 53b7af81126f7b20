"""`!language`: each person chooses the language the bot writes to them in.

The choice is stored per person (`bridge.store.languages`), audited (`language.changed`, with
the code only) and confirmed in the new language; from then on the outbox writes every text
to a room in its reader's language. Re-asking consent in the new language belongs to the
consent feature, which sees the same command in the pair room.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from bridge import hooks
from bridge.core.commands import CommandContext
from bridge.core.language import NATIVE_NAMES, parse_language
from bridge.core.language_commands import SET_OPERATION, LanguageFacts
from bridge.core.model import AppendAudit, Effect, Invoke, SendMessage
from bridge.store import languages
from bridge.store.base import Executor, to_ms

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.parts import Parts
    from bridge.store.pairs import PairRecord

log = logging.getLogger(__name__)


class LanguageChoice:
    """Stores what `!language CODE` chose and answers in that language."""

    def __init__(self, app: Host) -> None:
        self.app = app
        self.practice_language = app.cfg.practice.language

    @hooks.facts
    async def facts(self, tx: Executor, ctx: CommandContext) -> LanguageFacts:
        own = await languages.of_user(tx, ctx.sender)
        return LanguageFacts(own or self.practice_language, own is not None)

    @hooks.on_invoke(SET_OPERATION)
    async def set_language(self, effect: Invoke) -> None:
        params = effect.params
        code = parse_language(str(params["language"]))
        if code is None:
            return
        user, event_id = str(params["user"]), str(params["event_id"])
        service = self.app.service
        now = service.clock()
        effects: list[Effect] = [
            AppendAudit(
                effect.pair_id,
                "language.changed",
                user,
                {"language": code, "role": str(params["role"])},
                event_id=event_id,
            ),
            SendMessage(
                effect.room_id,
                "language_set",
                {"language": code, "name": NATIVE_NAMES[code]},
                txn_id=f"reply.language_set.{event_id}",
                pair_id=effect.pair_id,
                # Only the room's reader's choice changes the room's language; whoever
                # chose reads the confirmation in the language chosen.
                language=code,
            ),
        ]
        async with self.app.parts.db.transaction() as tx:
            await languages.set_language(tx, user, code, now=to_ms(now))
            await service.apply_durable(tx, effects, now)
        await service.apply_after(effects)
        log.info("language changed", extra={"language": code, "pair_id": effect.pair_id})


async def set_language_of(
    parts: Parts,
    user_id: str,
    language: str | None,
    *,
    actor: str,
    now: datetime,
    pair_id: str | None = None,
) -> str:
    """Set (or, with None, clear) a person's language from the CLI or the admin API, audited;
    the language their texts are now written in."""
    async with parts.db.transaction() as tx:
        await languages.set_language(tx, user_id, language, now=to_ms(now))
        details = {"language": language or "practice", "user": user_id}
        await parts.audit.append(tx, AppendAudit(pair_id, "language.changed", actor, details), now)
    return language or parts.cfg.practice.language


async def set_patient_language(
    parts: Parts, pair: PairRecord, language: str | None, *, actor: str, now: datetime
) -> str:
    """The language of a pair's patient (hers in every pair she is in)."""
    return await set_language_of(
        parts, pair.patient_id, language, actor=actor, now=now, pair_id=pair.pair_id
    )


async def language_of(parts: Parts, user_id: str) -> tuple[str, bool]:
    """A person's language and whether it is their own (else the practice's)."""
    own = await languages.of_user(parts.db, user_id)
    return (own or parts.cfg.practice.language), own is not None


async def install_language(app: Host) -> None:
    """`!language` and the facts it needs."""
    app.service.install(LanguageChoice(app))
