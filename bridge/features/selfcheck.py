"""The self-check: every post the bridge makes must be read by its witness, or is repaired.

For each post the outbox sends (`on_sent`), the witness device (`WitnessDevice`, a second
device of the bot account) must decrypt that event within `bot.witness.deadline`. While it
waits, the post's content stays sealed in its outbox row. Read: the content goes. Not read,
although the witness has synced since the post was sent (so its room key, sent before the
post, had every chance to arrive): the post is unreadable, and is repaired once:

1. the room's outbound Megolm session is dropped on the main device, so the next post
   starts a fresh one that is shared (and checked) anew;
2. the same content is queued again with its own txn id (`{txn}.repost`);
3. an audit entry links the two (the original's event id, the repost's txn id; no content).

When the repost is read too, a second entry records the repair with the repost's event id.
A repost that is unreadable itself is not posted a third time: it is audited as not
repaired, and /health stays degraded for an hour. A post whose key was never meant for
the witness (sent before the main device knew it) cannot prove anything either way and is
recorded as unchecked; so is one the witness could not look at within `GIVE_UP_AFTER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bridge.adapters.matrix.crosssign import shared_keys
from bridge.adapters.matrix.rest import HomeserverUnavailable, MatrixError
from bridge.adapters.matrix.witness import Reading, WitnessDevice
from bridge.audit.log import AuditLog
from bridge.core import selfcheck as core
from bridge.ports import SelfCheckFigures
from bridge.store import outbox as outbox_store
from bridge.store import witness as checks
from bridge.store.base import ContentSealer, Database, Executor, to_ms
from bridge.store.witness import CheckState, WitnessCheck

if TYPE_CHECKING:
    from bridge.host import Host

log = logging.getLogger(__name__)

#: A check the witness could not look at for this long (it was down) ends unchecked.
GIVE_UP_AFTER = timedelta(hours=1)
#: How long the witness may take to come up, or go without a sync, before /health says so.
HEALTH_GRACE_S = 90.0
#: The waits between bring-up attempts: 1 s doubling to 60 s.
BACKOFF_START_S, BACKOFF_MAX_S = 1.0, 60.0
#: How often waiting checks are looked at without a new post or a witness sync.
TICK_S = 1.0


class Bot(Protocol):
    """What the self-check needs of the bot's main device (`MatrixBot`)."""

    def key_meant_for(self, room_id: str, device_id: str) -> bool: ...
    async def rotate_room_key(self, room_id: str, session_id: str) -> bool: ...


class Witness(Protocol):
    """What the self-check needs of the witness (`WitnessDevice`)."""

    device_id: str | None
    synced_from: float
    last_sync_ok_at: float
    on_synced: Callable[[], None] | None

    def start(self) -> None: ...
    async def stop(self) -> None: ...
    def synced_since(self, moment: float) -> bool: ...
    async def read(self, room_id: str, event_id: str) -> Reading: ...
    def forget(self, event_id: str) -> None: ...


class Outbox(Protocol):
    def kick(self) -> None: ...


#: The counters /metrics shows (defined with the face /health and /metrics read).
Figures = SelfCheckFigures


@dataclass
class _Look:
    """What this process knows of a waiting check between looks."""

    #: `WitnessDevice.synced_from` at the last failed reading (no new keys since: skip).
    tried_at_sync: float = -1.0
    session_id: str | None = None


class SelfCheck:
    """Runs the witness and decides about each post; `off_reason` set when it is off."""

    def __init__(
        self,
        *,
        db: Database,
        sealer: ContentSealer,
        audit: AuditLog,
        bot: Bot | None,
        outbox: Outbox | None,
        witness: Witness | None,
        bring_up: Callable[[], Awaitable[None]] | None = None,
        deadline: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime],
        off_reason: str | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer
        self.audit = audit
        self.bot = bot
        self.outbox = outbox
        self.witness = witness
        self.deadline = deadline
        self.clock = clock
        self.off_reason = off_reason
        self._bring_up = bring_up
        #: "off", "starting", "up" or "stopped"; `last_error` names why a start is retried.
        self.state = "off" if off_reason else "starting"
        self.last_error: str | None = None
        self._started_at = time.monotonic()
        self._wake = asyncio.Event()
        self._looks: dict[str, _Look] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.off_reason is None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bring the witness up and keep checking, in the background (never blocks)."""
        if not self.enabled or self._task is not None:
            return
        self._started_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="selfcheck")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.witness is not None:
            await self.witness.stop()
        if self.enabled:
            self.state = "stopped"

    async def _run(self) -> None:
        assert self.witness is not None and self._bring_up is not None
        backoff = BACKOFF_START_S
        while True:
            try:
                await self._bring_up()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = type(exc).__name__
                log.warning(
                    "witness not up yet; retrying",
                    extra={"error": self.last_error, "in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.last_error = None
        self.witness.on_synced = self._wake.set
        self.witness.start()
        self.state = "up"
        log.info("witness up", extra={"device_id": self.witness.device_id})
        while True:
            # Cleared before the pass: a post sent or a sync done meanwhile wakes the next.
            self._wake.clear()
            try:
                await self.examine()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("self-check pass failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)

    # ------------------------------------------------------------ posts

    async def on_sent(self, txn_id: str, room_id: str, event_id: str) -> None:
        """The outbox sent a post: start its check (or note that none is possible)."""
        if not self.enabled:
            return
        assert self.bot is not None and self.witness is not None
        device = self.witness.device_id
        meant = device is not None and self.bot.key_meant_for(room_id, device)
        state = CheckState.WAITING if meant else CheckState.UNCHECKED
        try:
            async with self.db.transaction() as tx:
                await checks.record(
                    tx,
                    txn_id=txn_id,
                    room_id=room_id,
                    event_id=event_id,
                    witness_device=device or "",
                    sent_at=to_ms(self.clock()),
                    state=state,
                )
        except Exception as exc:
            # The post is out; at worst it goes unchecked (its content is dropped at start).
            log.warning("self-check not recorded", extra={"error": type(exc).__name__})
            return
        if meant:
            self._wake.set()

    async def examine(self) -> int:
        """Look at every waiting check once; returns how many ended."""
        ended = 0
        for check in await checks.waiting(self.db):
            if await self._examine(check):
                ended += 1
        return ended

    async def _examine(self, check: WitnessCheck) -> bool:
        assert self.witness is not None
        witness = self.witness
        now = self.clock()
        if check.witness_device != witness.device_id:
            # Its key went to another witness (an instance before a takeover, or a device
            # since replaced): this one can prove nothing either way.
            return await self._end(check, CheckState.UNCHECKED, now)
        look = self._looks.setdefault(check.txn_id, _Look())
        now_ms = to_ms(now)
        if witness.synced_from > look.tried_at_sync:
            look.tried_at_sync = witness.synced_from
            try:
                reading = await witness.read(check.room_id, check.event_id)
            except MatrixError as err:
                # The bot left the room, or the event is gone: nobody can read it now.
                log.info("post not visible to the witness", extra={"status": err.status})
                return await self._end(check, CheckState.UNCHECKED, now)
            except (HomeserverUnavailable, OSError, TimeoutError):
                look.tried_at_sync = -1.0  # try again at the next look
                reading = None
            if reading is not None:
                look.session_id = reading.session_id
                if reading.readable:
                    return await self._end(check, CheckState.READABLE, now)
                if reading.gone:
                    return await self._end(check, CheckState.UNCHECKED, now)
        overdue = now_ms >= check.sent_at + int(self.deadline.total_seconds() * 1000)
        if overdue and look.session_id is not None and witness.synced_since(check.sent_at / 1000):
            await self._repair(check, look.session_id, now)
            return True
        if now_ms >= check.sent_at + int(GIVE_UP_AFTER.total_seconds() * 1000):
            return await self._end(check, CheckState.UNCHECKED, now)
        return False

    async def _end(self, check: WitnessCheck, state: CheckState, now: datetime) -> bool:
        assert self.witness is not None
        async with self.db.transaction() as tx:
            if state is CheckState.READABLE:
                done = await checks.mark_readable(tx, check.txn_id, to_ms(now))
                original = await checks.original_of(tx, check.txn_id) if done else None
                if original is not None:
                    pair_id = await _pair_of(tx, check.txn_id)
                    entry = core.post_repaired(
                        pair_id, original.event_id, check.txn_id, check.event_id
                    )
                    await self.audit.append(tx, entry, now)
            else:
                done = await checks.mark_unchecked(tx, check.txn_id, to_ms(now))
        self._forget(check)
        return done

    async def _repair(self, check: WitnessCheck, session_id: str, now: datetime) -> None:
        """Fresh session, the same content once more under its own txn id, audited."""
        assert self.bot is not None and self.outbox is not None
        # Before the repost is queued, so it cannot leave with the session nobody holds.
        rotated = await self.bot.rotate_room_key(check.room_id, session_id)
        async with self.db.transaction() as tx:
            repost = await checks.repost(tx, check.txn_id, to_ms(now), self.sealer)
            if repost is not None:
                entry = core.post_unreadable(
                    repost.pair_id,
                    check.room_id,
                    check.txn_id,
                    repost_txn_id=repost.txn_id,
                    event_id=check.event_id,
                )
                await self.audit.append(tx, entry, now)
        self._forget(check)
        if repost is None:
            return
        log.warning(
            "post unreadable on the witness",
            extra={
                "room_id": check.room_id,
                "event_id": check.event_id,
                "repost_txn_id": repost.txn_id,
                "rotated": rotated,
            },
        )
        if repost.txn_id is not None:
            self.outbox.kick()

    def _forget(self, check: WitnessCheck) -> None:
        self._looks.pop(check.txn_id, None)
        if self.witness is not None:
            self.witness.forget(check.event_id)

    # ------------------------------------------------------------ reporting

    def _witness_fresh(self) -> bool:
        witness = self.witness
        return (
            self.state == "up"
            and witness is not None
            and self.clock().timestamp() - witness.last_sync_ok_at < HEALTH_GRACE_S
        )

    async def health(self) -> tuple[bool, str, dict[str, Any]]:
        """(healthy, one-line detail, the figures /health shows under "witness")."""
        if not self.enabled:
            return True, f"off: {self.off_reason}", {"enabled": False, "reason": self.off_reason}
        since = to_ms(self.clock() - timedelta(hours=1))
        summary = await checks.summary(self.db, since)
        starting = self.state == "starting" and time.monotonic() - self._started_at < HEALTH_GRACE_S
        running = self._witness_fresh() or starting
        ok = running and summary.repairs_pending == 0 and summary.unreadable == 0
        state = self.state if running or self.state != "up" else "not syncing"
        if self.last_error and self.state == "starting":
            state = f"starting ({self.last_error})"
        detail = (
            f"{state}; last hour: {summary.readable} read, "
            f"{summary.unreadable_posts} unreadable, {summary.repairs_pending} repair(s) pending"
        )
        return (
            ok,
            detail,
            {
                "enabled": True,
                "state": self.state,
                "checked_last_hour": summary.readable + summary.unreadable_posts,
                "unreadable_posts": summary.unreadable_posts,
                "not_repaired": summary.unreadable,
                "repairs_pending": summary.repairs_pending,
                "waiting": summary.waiting,
            },
        )

    async def figures(self) -> Figures | None:
        """The counters for /metrics (None when the self-check is off)."""
        if not self.enabled:
            return None
        totals = await checks.totals(self.db)
        return Figures(
            up=self._witness_fresh(),
            checks={
                "readable": totals.get("readable", 0),
                "unreadable": totals.get("reposted", 0) + totals.get("unreadable", 0),
                "unchecked": totals.get("unchecked", 0),
            },
            waiting=totals.get("waiting", 0),
            reposts=totals.get("reposted", 0),
            repairs_pending=await checks.repairs_pending(self.db),
        )


async def _pair_of(ex: Executor, txn_id: str) -> str | None:
    item = await outbox_store.get(ex, txn_id)
    return item.pair_id if item is not None else None


# ---------------------------------------------------------------- installation


def _off_reason(app: Host) -> str | None:
    bot = app.cfg.bot
    if bot.witness_on:
        return None
    if bot.password is None:
        return "the bot logs in with an access token; a witness needs bot.password"
    return "bot.witness.enabled is false"


async def install_selfcheck(app: Host) -> None:
    """Check every post with the witness device (on by default with a password login)."""
    parts, cfg, bot, outbox = app.parts, app.cfg, app.bot, app.outbox
    off_reason = _off_reason(app)
    clock = app.service.clock
    async with parts.db.transaction() as tx:
        if off_reason is None:
            # Sent before a crash let their checks be recorded: nobody will check them.
            await checks.forget_unrecorded(tx)
        else:
            await checks.give_up_waiting(tx, to_ms(clock()))
    if off_reason is not None:
        app.selfcheck = SelfCheck(
            db=parts.db,
            sealer=parts.sealer,
            audit=parts.audit,
            bot=None,
            outbox=None,
            witness=None,
            clock=clock,
            off_reason=off_reason,
        )
        if WitnessDevice.has_device(cfg.data_dir):

            async def retire() -> None:
                try:
                    await WitnessDevice.retire(
                        cfg.homeserver.url, cfg.data_dir, verify_tls=cfg.homeserver.verify_tls
                    )
                except Exception as exc:
                    log.warning("witness device not retired", extra={"error": type(exc).__name__})

            app.on_start(retire)
        log.info("self-check off", extra={"reason": off_reason})
        return
    assert cfg.bot.password is not None
    pickle_key = cfg.bot.pickle_key.get_secret_value()
    deadline = cfg.bot.witness.deadline
    witness = WitnessDevice(
        homeserver_url=cfg.homeserver.url,
        user_id=bot.user_id,
        password=cfg.bot.password.get_secret_value(),
        device_name=cfg.bot.witness.device_name,
        data_dir=cfg.data_dir,
        pickle_key=pickle_key,
        verify_tls=cfg.homeserver.verify_tls,
        # An undelivered key shows only once a sync that began after the post has ended:
        # with nothing arriving, that is one long-poll, so keep it within the deadline.
        sync_timeout_ms=int(min(30.0, max(1.0, deadline.total_seconds() / 2)) * 1000),
    )

    async def bring_up() -> None:
        # The bot's one identity, as the main device was signed with it.
        keys = await shared_keys(parts.db, cfg.data_dir / "cross-signing.sealed", pickle_key)
        await witness.bring_up(keys)
        # The main device must know the witness before a post's key can be meant for it.
        if witness.device_id not in await bot.own_devices():
            raise RuntimeError("the bot's device does not list the witness yet")
        await witness.sync_once()

    check = SelfCheck(
        db=parts.db,
        sealer=parts.sealer,
        audit=parts.audit,
        bot=bot,
        outbox=outbox,
        witness=witness,
        bring_up=bring_up,
        deadline=deadline,
        clock=clock,
    )
    app.selfcheck = check
    outbox.keep_sent_content = True
    previous = outbox.on_sent

    async def on_sent(txn_id: str, room_id: str, event_id: str) -> None:
        if previous is not None:
            await previous(txn_id, room_id, event_id)
        await check.on_sent(txn_id, room_id, event_id)

    outbox.on_sent = on_sent
    app.on_start(check.start)
    app.on_stop(check.stop)
