"""Consent on first contact, wired into the service: the pair hook and the `!accept` facts.

When a patient first joins a pair room whose consent is pending, the bot posts the
practice's consent text and tells the therapist's desk; `!accept` records acceptance
(with the SHA-256 of the exact text) and flips the pair's consent state in the same
transaction as the command. Reply-time clocks read `pairs.consent_state` and stay shut
while it is pending.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bridge import hooks
from bridge.adapters.render import Renderer
from bridge.config import Config
from bridge.core import consent as core
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.language_commands import chosen_language
from bridge.core.model import Effect, Pair, Role, RoomEvent
from bridge.provision import display_name
from bridge.store import languages, pairs
from bridge.store.base import Executor
from bridge.store.pairs import PairStatus

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.service import Service

log = logging.getLogger(__name__)


def _human_days(days: int) -> str:
    if days % 365 == 0:
        years = days // 365
        return f"{years} year" + ("s" if years != 1 else "")
    return f"{days} day" + ("s" if days != 1 else "")


class ConsentRuntime:
    """Renders the consent text of a pair and applies consent decisions in the service."""

    def __init__(self, service: Service, cfg: Config, renderer: Renderer) -> None:
        from bridge.parts import practice_facts

        self.service = service
        self.renderer = renderer
        self._facts = practice_facts(cfg, service.bot_user_id)
        facts = self._facts
        retention = cfg.practice.retention
        self._base: dict[str, Any] = {
            "practice_name": cfg.practice.name,
            "crisis_line": cfg.practice.crisis_line,
            "email_enabled": facts.inbound_domain is not None,
            "video_enabled": cfg.jitsi.domain is not None,
            "retention": _human_days(retention.days) if retention is not None else None,
            "retention_days": retention.days if retention is not None else None,
        }
        self.practice_language = cfg.practice.language
        self.reconsent = cfg.practice.reconsent_on_language_change

    def context(self, pair: Pair) -> dict[str, Any]:
        """What the consent template of this pair is rendered with: its own policy's window."""
        window = self._facts.window_of(pair.policy)
        return {
            **self._base,
            "reply_window": window.text,
            "reply_window_seconds": window.seconds,
            "working_time": window.working_time,
            "therapist_name": display_name(pair.therapist_id),
        }

    def text_and_digest(self, pair: Pair, language: str) -> tuple[dict[str, Any], str]:
        """The template context and the SHA-256 of the exact text it renders to in
        `language`: each language's text has its own digest."""
        context = self.context(pair)
        text = self.renderer.text(core.CONSENT_TEMPLATE, context, language)
        return context, core.text_digest(text)

    async def patient_language(self, tx: Executor, pair: Pair) -> str:
        """The language the patient reads the pair room in."""
        own = await languages.of_user(tx, pair.patient_id)
        return self.renderer.language_of(own or self.practice_language)

    async def _ask_again(self, tx: Executor, pair: Pair, ev: RoomEvent, state: str) -> list[Effect]:
        """`!language CODE` from the patient: ask again in that language when the practice
        says so and she had accepted the text in another one."""
        chosen = chosen_language(ev.command) if ev.role is Role.PATIENT else None
        if chosen is None or not self.reconsent or state != core.ACCEPTED:
            return []
        if chosen == await self.patient_language(tx, pair):
            return []
        await pairs.set_consent(tx, pair.pair_id, core.PENDING)
        context, digest = self.text_and_digest(pair, chosen)
        log.info("consent asked again", extra={"pair_id": pair.pair_id, "language": chosen})
        return core.ask_again_in(pair, ev, chosen, consent_context=context, consent_sha256=digest)

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        """Ask on the patient's first join; flip the state when they `!accept`."""
        if pair.status != PairStatus.ACTIVE:
            return []
        joined = core.is_patient_join(pair, ev)
        accepting = core.is_accept(ev)
        relanguage = chosen_language(ev.command) is not None
        if not joined and not accepting and not relanguage:
            return []
        record = await pairs.get(tx, pair.pair_id)
        if record is None:
            return []
        state = record.consent_state
        if relanguage:
            return await self._ask_again(tx, pair, ev, state)
        if accepting:
            if core.accept_applies(state, ev):
                await pairs.set_consent(tx, pair.pair_id, core.ACCEPTED)
                log.info("consent accepted", extra={"pair_id": pair.pair_id})
            return []
        language = await self.patient_language(tx, pair)
        context, digest = self.text_and_digest(pair, language)
        return core.on_patient_join(
            pair,
            ev,
            state,
            desk_room_id=self.service.desk_of(pair.therapist_id),
            consent_context=context,
            consent_sha256=digest,
            language=language,
        )

    @hooks.facts
    async def facts(self, tx: Executor, ctx: CommandContext) -> core.ConsentFacts | None:
        """The pair's consent state and text digest, for `!accept`."""
        if ctx.room_kind != PAIR_ROOM or ctx.pair is None:
            return None
        record = await pairs.get(tx, ctx.pair.pair_id)
        if record is None:
            return None
        _, digest = self.text_and_digest(ctx.pair, await self.patient_language(tx, ctx.pair))
        return core.ConsentFacts(record.consent_state, digest)


async def install_consent(app: Host) -> None:
    """Register the consent hook and the facts `!accept` needs."""
    app.service.install(ConsentRuntime(app.service, app.cfg, app.parts.renderer))
