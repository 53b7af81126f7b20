"""`!video` in pair rooms: a Jitsi meeting, its links, and Element's widget.

Starting a call draws an unguessable meeting name, records the call and posts a plain link
(Element X shows no widgets), then puts Element's Jitsi widget and its layout into the room
state. With a token-authenticated Jitsi every member joins with a personal JWT link, and no
one's personal link is posted where the other member reads it: the pair room gets the
meeting and says where the links went; the therapist's moderator link goes to their desk
room; the patient's link goes to the patient's e-mail address (the pair room is shared with
the therapist, and the bot has no room with the patient alone), or, without an address or
outbound e-mail, nowhere, and the pair room says so. The widget carries no token: a shared
room's state is the same for everyone, so it cannot hold a personal one. `!video end`
removes the widget. Start and end are audited.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bridge import hooks
from bridge.adapters.video import (
    LAYOUT_EVENT_TYPE,
    WIDGET_EVENT_TYPE,
    JitsiUser,
    jitsi_jwt,
    layout_state_content,
    meeting_link,
    new_room_name,
    remove_widget_content,
    widget_state_content,
)
from bridge.config import Config
from bridge.core import video_commands
from bridge.core.commands import PAIR_ROOM, CommandContext
from bridge.core.model import Effect, Invoke, Pair, Role, SendEmail, SendMessage
from bridge.ports import MeetingLinks
from bridge.store import pairs, sessions, therapists
from bridge.store.base import Executor, to_ms

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)


def _user(user_id: str) -> JitsiUser:
    # The Matrix id, not a display name: the Jitsi server gets no patient names from us.
    return {"id": user_id, "name": user_id.lstrip("@").split(":", 1)[0]}


def meeting_links(cfg: Config, meeting: str, pair: Pair, now: datetime) -> MeetingLinks:
    """The plain link and, with `jitsi.jwt`, each member's personal link (therapist moderates)."""
    jitsi = cfg.jitsi
    assert jitsi.domain is not None
    plain = meeting_link(jitsi.domain, meeting)
    if jitsi.jwt is None:
        return MeetingLinks(plain)
    token = jitsi.jwt

    def personal(user_id: str, moderator: bool) -> str:
        signed = jitsi_jwt(
            token.app_id,
            token.secret.get_secret_value(),
            token.audience,
            jitsi.domain or "",
            meeting,
            _user(user_id),
            moderator,
            now,
            token.lifetime,
        )
        return meeting_link(jitsi.domain or "", meeting, signed)

    return MeetingLinks(
        plain, patient=personal(pair.patient_id, False), therapist=personal(pair.therapist_id, True)
    )


#: The e-mail that carries a patient's personal link (templates/email/video_link.*).
PATIENT_LINK_EMAIL = "video_link"
#: Sends the patient's personal link of a meeting (for other features' meetings: sessions).
PATIENT_LINK_OPERATION = video_commands.PATIENT_LINK_OPERATION


def _valid_until(cfg: Config, now: datetime) -> str:
    tz = ZoneInfo(cfg.practice.timezone)
    lifetime = cfg.jitsi.jwt.lifetime if cfg.jitsi.jwt is not None else timedelta(0)
    until = (now + lifetime).astimezone(tz)
    return f"{until:%d %B %Y, %H:%M} ({cfg.practice.timezone})"


def patient_link_email(
    cfg: Config, links: MeetingLinks, patient_email: str | None, now: datetime
) -> SendEmail | None:
    """The e-mail with the patient's own link, or None when there is no private way to them."""
    if links.patient is None or patient_email is None:
        return None
    return SendEmail(
        patient_email,
        PATIENT_LINK_EMAIL,
        {
            "practice_name": cfg.practice.name,
            "link": links.patient,
            "valid_until": _valid_until(cfg, now),
        },
    )


def link_messages(
    cfg: Config,
    links: MeetingLinks,
    pair: Pair,
    desk_room_id: str | None,
    template: str,
    txn_id: str,
    context: dict[str, Any],
    *,
    patient_email: SendEmail | None = None,
) -> list[Effect]:
    """The pair-room notice, the therapist's own link in their desk, and the patient's own
    link by e-mail (`patient_email`); a personal link never goes into the pair room."""
    if links.patient is None:
        notice = SendMessage(
            pair.room_id,
            template,
            {**context, "link": links.plain, "patient_link": None},
            txn_id=txn_id,
            pair_id=pair.pair_id,
        )
    else:
        notice = SendMessage(
            pair.room_id,
            f"{template}_private",
            {
                "patient_mailed_before": False,
                **context,
                "link": links.plain,
                "patient_emailed": patient_email is not None,
            },
            txn_id=txn_id,
            pair_id=pair.pair_id,
        )
    out: list[Effect] = [notice]
    if links.therapist is not None and desk_room_id is not None:
        out.append(
            SendMessage(
                desk_room_id,
                "video_moderator_link",
                {"pair_label": pair.label, "link": links.therapist, "room_id": pair.room_id},
                txn_id=f"{txn_id}.desk",
                pair_id=pair.pair_id,
            )
        )
    if patient_email is not None:
        out.append(patient_email)
    return out


class VideoFeature:
    def __init__(self, app: Host) -> None:
        self.cfg = app.cfg
        self.parts = app.parts
        self.service = app.service

    def links(self, meeting: str, pair: Pair, now: datetime) -> MeetingLinks:
        """The meeting's links for the pair (the `meetings` port other features use).

        Without the patient's personal link: what other features get is posted in the pair
        room, which the therapist reads too. They send the patient's with an `Invoke` of
        PATIENT_LINK_OPERATION (`{"meeting": ...}`), which e-mails it.
        """
        links = meeting_links(self.cfg, meeting, pair, now)
        return MeetingLinks(links.plain, therapist=links.therapist)

    def _mail_on(self) -> bool:
        return self.service.mailer is not None

    @hooks.on_invoke(PATIENT_LINK_OPERATION)
    async def patient_link(self, effect: Invoke) -> None:
        """E-mail the patient their personal link to a meeting of their pair."""
        found = await self._pair(effect)
        if found is None or self.cfg.jitsi.domain is None or not self._mail_on():
            return
        pair, _desk, patient_email = found
        now = self.service.clock()
        links = meeting_links(self.cfg, str(effect.params["meeting"]), pair, now)
        email = patient_link_email(self.cfg, links, patient_email, now)
        if email is not None:
            await self.service.apply_after([email])

    @hooks.facts
    async def facts(self, tx: Executor, ctx: CommandContext) -> video_commands.VideoFacts | None:
        if ctx.room_kind != PAIR_ROOM or ctx.pair is None:
            return None
        return video_commands.VideoFacts(
            on=self.cfg.jitsi.domain is not None,
            call=await sessions.current_call(tx, ctx.pair.pair_id),
        )

    async def _pair(self, effect: Invoke) -> tuple[Pair, str | None, str | None] | None:
        """The pair, its therapist's desk room and the patient's e-mail address."""
        from bridge.service import to_pair

        assert effect.pair_id is not None
        record = await pairs.get(self.parts.db, effect.pair_id)
        if record is None or record.room_id is None:
            return None
        desk = await therapists.get(self.parts.db, record.therapist_id)
        return (
            to_pair(record),
            desk.desk_room_id if desk is not None else None,
            pairs.open_patient_email(self.parts.sealer, record),
        )

    @hooks.on_invoke(video_commands.START_OPERATION)
    async def start(self, effect: Invoke) -> None:
        """Record the call, post the links, then show Element's widget."""
        found = await self._pair(effect)
        if found is None or self.cfg.jitsi.domain is None:
            return
        pair, desk, patient_email = found
        params = effect.params
        event_id = str(params["event_id"])
        now = self.service.clock()
        effects: list[Effect] = []
        async with self.parts.db.transaction() as tx:
            fresh = new_room_name()
            meeting = await sessions.start_call(
                tx, pair.pair_id, fresh, str(params["requested_by"]), to_ms(now)
            )
            links = meeting_links(self.cfg, meeting, pair, now)
            # Her link goes by e-mail when the call starts, and again only when she asks
            # for it: a therapist's `!video` during the call re-posts the room's link alone.
            mail_her = meeting == fresh or str(params["role"]) == Role.PATIENT.value
            email = patient_link_email(
                self.cfg, links, patient_email if self._mail_on() and mail_her else None, now
            )
            effects += link_messages(
                self.cfg,
                links,
                pair,
                desk,
                "video_started",
                f"video.start.{event_id}",
                {
                    "started_by": params["requested_by"],
                    "again": meeting != fresh,
                    "patient_mailed_before": (
                        not mail_her and patient_email is not None and self._mail_on()
                    ),
                },
                patient_email=email,
            )
            if meeting == fresh:
                effects.append(
                    video_commands.call_started(
                        pair.pair_id,
                        str(params["requested_by"]),
                        str(params["role"]),
                        meeting,
                        personal_links=links.patient is not None,
                        patient_link_sent=email is not None,
                        event_id=event_id,
                    )
                )
            await self.service.apply_durable(tx, effects, now)
        await self.service.apply_after(effects)
        name = self.parts.renderer.text("video_widget_name", {})
        widget_id, widget = widget_state_content(self.cfg.jitsi.domain, meeting, name)
        await self.parts.rest.put_state(pair.room_id, WIDGET_EVENT_TYPE, widget_id, widget)
        await self.parts.rest.put_state(
            pair.room_id, LAYOUT_EVENT_TYPE, "", layout_state_content(widget_id)
        )
        log.info("video call started", extra={"pair_id": pair.pair_id, "event_id": event_id})

    @hooks.on_invoke(video_commands.END_OPERATION)
    async def end(self, effect: Invoke) -> None:
        """Forget the call, say so, and remove the widget."""
        found = await self._pair(effect)
        if found is None:
            return
        pair, _desk, _email = found
        params = effect.params
        event_id = str(params["event_id"])
        now = self.service.clock()
        effects: list[Effect] = []
        async with self.parts.db.transaction() as tx:
            meeting = await sessions.end_call(tx, pair.pair_id)
            if meeting is None:
                return
            effects = video_commands.call_ended(
                pair, str(params["requested_by"]), str(params["role"]), event_id
            )
            await self.service.apply_durable(tx, effects, now)
        await self.service.apply_after(effects)
        widget_id, empty = remove_widget_content(meeting)
        await self.parts.rest.put_state(pair.room_id, WIDGET_EVENT_TYPE, widget_id, empty)
        await self.parts.rest.put_state(pair.room_id, LAYOUT_EVENT_TYPE, "", {"widgets": {}})
        log.info("video call ended", extra={"pair_id": pair.pair_id, "event_id": event_id})


async def install_video(app: Host) -> None:
    """Register `!video`'s facts and its start/end operations; offer the meetings' links."""
    if app.service.handles_invoke(video_commands.START_OPERATION):
        return  # installed already
    feature = VideoFeature(app)
    app.ports.meetings = feature.links
    app.service.install(feature)
