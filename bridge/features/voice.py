"""Voice and attachments in pair rooms: media kept for the audit, and queued voice messages.

Two jobs:

- Capture: a voice note, audio, image, video or file posted by the patient or the therapist
  is downloaded and decrypted after the event's transaction, sealed in the audit media
  store and recorded as a `media.stored` entry whose sealed content names the media by its
  SHA-256 (`media_ref`). Exports find media through `media_ref` in an entry's content, so
  the transcript carries the recording next to the room event it belongs to.
- Relay: `confidant voice send` converts audio and queues it (`voice_jobs`, the Ogg sealed
  in the audit media store), because only the running bridge holds the E2EE device. The
  bridge polls the queue, uploads each Ogg encrypted and posts it through the outbox as
  Element posts voice messages, audited `relay.voice`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bridge import hooks
from bridge.adapters.voice import (
    VOICE_FILENAME,
    VOICE_MIMETYPE,
    AudioError,
    VoiceClip,
    VoiceLimits,
    convert_to_voice_async,
    describe_audio,
    voice_message_content,
)
from bridge.core import media
from bridge.core.model import Effect, Invoke, Kind, Pair, Role, RoomEvent
from bridge.ports import QueuedVoice
from bridge.store import audit as audit_store
from bridge.store import pairs, voice_jobs
from bridge.store.base import Executor, to_ms
from bridge.store.voice_jobs import VoiceJob, VoiceJobStatus

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.parts import Parts
    from bridge.service import Service

log = logging.getLogger(__name__)

#: The operation the pair hook asks for after the event's commit.
CAPTURE_OPERATION = "media.capture"
#: Event kinds whose attachment is kept for the audit.
CAPTURED_KINDS = frozenset({Kind.VOICE, Kind.AUDIO, Kind.IMAGE, Kind.FILE, Kind.VIDEO})
#: Attachments larger than this are recorded without their bytes.
MAX_CAPTURE_BYTES = 100 * 1024 * 1024
#: Bounds for audio converted by `confidant voice send`.
VOICE_LIMITS = VoiceLimits(max_input_bytes=50 * 1024 * 1024, max_seconds=15 * 60)
#: At start, media events this recent whose capture was cut off are captured again.
RECOVER_WINDOW = timedelta(days=7)
#: How often the bridge looks for queued voice messages.
POLL_SECONDS = 1.0


# ---------------------------------------------------------------- capture


def _attachment(content: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The encrypted `file` object or the plain `url` of a message content."""
    file_obj = content.get("file")
    if isinstance(file_obj, dict) and isinstance(file_obj.get("url"), str):
        return file_obj, None
    url = content.get("url")
    return None, url if isinstance(url, str) and url.startswith("mxc://") else None


class VoiceFeature:
    """Capture of media from pair rooms and the relay of queued voice messages."""

    def __init__(self, app: Host) -> None:
        self.app = app
        self.parts = app.parts
        self.service = app.service
        self.bot = app.bot
        self._task: asyncio.Task[None] | None = None
        self._captures: set[asyncio.Task[None]] = set()
        self.captured = 0
        self.relayed = 0

    # ------------------------------------------------------------ capture

    @hooks.pair_hook
    async def on_pair_event(self, tx: Executor, pair: Pair, ev: RoomEvent) -> list[Effect]:
        """Ask for the attachment of a member's media event to be kept (after the commit)."""
        if ev.kind not in CAPTURED_KINDS or ev.role not in (Role.PATIENT, Role.THERAPIST):
            return []
        return [
            Invoke(
                CAPTURE_OPERATION,
                pair.room_id,
                {"event_id": ev.event_id, "kind": ev.kind.value, "sender": ev.sender},
                pair_id=pair.pair_id,
            )
        ]

    async def _event_content(self, event_id: str) -> dict[str, Any] | None:
        """The decrypted content of a pair-room event, from its sealed audit entry."""
        seq = await audit_store.first_room_entry(self.parts.db, event_id)
        if seq is None:
            return None
        raw = await self.parts.audit.load_content(self.parts.db, seq)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def missed_captures(self, since_ms: int) -> list[Invoke]:
        """Media events audited since `since_ms` without a `media.stored` entry.

        A capture runs after its event's commit; if the bridge stopped in between, the
        event is processed but its media not kept. These are found again at start.
        """
        actions = [f"room.{kind.value}" for kind in sorted(CAPTURED_KINDS)]
        events = await audit_store.events_without(
            self.parts.db,
            media.STORED_ACTION,
            actions=actions,
            roles=(Role.PATIENT.value, Role.THERAPIST.value),
            since_ms=since_ms,
        )
        found: list[Invoke] = []
        for event in events:
            if event.pair_id is None:
                continue
            record = await pairs.get(self.parts.db, event.pair_id)
            if record is None or record.room_id is None:
                continue
            found.append(
                Invoke(
                    CAPTURE_OPERATION,
                    record.room_id,
                    {
                        "event_id": event.event_id,
                        "kind": event.action.split(".", 1)[1],
                        "sender": event.actor,
                    },
                    pair_id=record.pair_id,
                )
            )
        return found

    async def recover(self) -> int:
        """Capture what a stop cut off (events of the last RECOVER_WINDOW); returns how many."""
        since = to_ms(self.service.clock() - RECOVER_WINDOW)
        missed = await self.missed_captures(since)
        for effect in missed:
            await self.capture_later(effect)
        if missed:
            log.info("media captures resumed", extra={"count": len(missed)})
        return len(missed)

    @hooks.on_invoke(CAPTURE_OPERATION)
    async def capture_later(self, effect: Invoke) -> None:
        """Capture in the background: a large download must not hold up the sync."""
        task = asyncio.create_task(self._capture_logged(effect), name="media-capture")
        self._captures.add(task)
        task.add_done_callback(self._captures.discard)

    async def _capture_logged(self, effect: Invoke) -> None:
        try:
            await self.capture(effect)
        except Exception as exc:
            log.warning("media capture failed", extra={"error": type(exc).__name__})

    async def capture(self, effect: Invoke) -> None:
        """Download, decrypt, seal and record one attachment."""
        params = effect.params
        event_id = str(params["event_id"])
        kind = str(params["kind"])
        content = await self._event_content(event_id)
        if content is None:
            log.warning("media event has no stored content", extra={"event_id": event_id})
            return
        file_obj, url = _attachment(content)
        raw_info = content.get("info")
        declared = raw_info.get("size") if isinstance(raw_info, dict) else None
        data: bytes | None = None
        failure: str | None = None
        if file_obj is None and url is None:
            failure = "no_attachment"
        elif isinstance(declared, int) and declared > MAX_CAPTURE_BYTES:
            failure = "too_big"
        else:
            try:
                data = await self._download(file_obj, url)
            except Exception as exc:
                log.warning(
                    "media download failed",
                    extra={"event_id": event_id, "error": type(exc).__name__},
                )
                failure = "download"
        duration_ms: int | None = None
        codec: str | None = None
        audio_error: str | None = None
        if data is not None and kind in (Kind.VOICE.value, Kind.AUDIO.value):
            try:
                facts = await asyncio.to_thread(describe_audio, data)
                duration_ms, codec = facts.duration_ms, facts.codec
            except AudioError as err:
                audio_error = err.reason
        effects = media.media_stored(
            effect.pair_id,
            str(params["sender"]),
            event_id,
            kind,
            content,
            data,
            failure=failure,
            duration_ms=duration_ms,
            codec=codec,
            audio_error=audio_error,
        )
        now = self.service.clock()
        async with self.parts.db.transaction() as tx:
            if await audit_store.has_entry(tx, event_id, media.STORED_ACTION):
                return  # a resumed capture met one under way
            await self.service.apply_durable(tx, effects, now)
        self.captured += 1
        log.info(
            "media captured",
            extra={
                "pair_id": effect.pair_id,
                "event_id": event_id,
                "kind": kind,
                "ok": data is not None,
            },
        )

    async def _download(self, file_obj: dict[str, Any] | None, url: str | None) -> bytes:
        if file_obj is not None:
            return await self.bot.download_decrypted(file_obj)
        from nio import DownloadResponse

        assert url is not None
        resp = await self.bot.client.download(mxc=url)
        if not isinstance(resp, DownloadResponse):
            raise RuntimeError("download failed")
        return bytes(resp.body)

    # ------------------------------------------------------------ relay

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="voice-relay")

    async def stop(self) -> None:
        if self._captures:
            # Let captures under way finish briefly; a cut-off one is only logged missing.
            _done, late = await asyncio.wait(set(self._captures), timeout=10)
            for task in late:
                task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            try:
                await self.relay_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("voice relay pass failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(POLL_SECONDS)

    async def relay_pending(self) -> int:
        """Upload and post every queued voice message; returns how many were posted."""
        posted = 0
        for job in await voice_jobs.pending(self.parts.db):
            if await self._relay(job):
                posted += 1
        return posted

    async def _relay(self, job: VoiceJob) -> bool:
        job_id = job.job_id
        record = await pairs.get(self.parts.db, job.pair_id)
        ogg = await self.parts.audit.load_media(self.parts.db, job.media_ref)
        now = self.service.clock()
        if record is None or record.room_id is None or ogg is None:
            reason = "no_room" if ogg is not None else "media_missing"
            entry = media.voice_relay_failed(job.pair_id, job.actor, job_id, reason)
            async with self.parts.db.transaction() as tx:
                await voice_jobs.finish(tx, job_id, VoiceJobStatus.FAILED, to_ms(now), reason)
                await self.parts.audit.append(tx, entry, now)
            log.warning("voice job failed", extra={"job_id": job_id, "reason": reason})
            return False
        clip = VoiceClip(
            ogg=ogg,
            duration_ms=job.duration_ms,
            waveform=list(job.waveform),
            size=len(ogg),
            sha256=job.media_ref,
        )
        file_obj = await self.bot.upload_encrypted(ogg, VOICE_MIMETYPE, VOICE_FILENAME)
        content = voice_message_content(clip, file_info=file_obj, url=str(file_obj["url"]))
        effects = media.voice_relayed(
            record.pair_id,
            record.room_id,
            job.actor,
            job_id,
            content,
            media_ref=clip.sha256,
            size=clip.size,
            duration_ms=clip.duration_ms,
            filename=VOICE_FILENAME,
        )
        async with self.parts.db.transaction() as tx:
            if not await voice_jobs.finish(tx, job_id, VoiceJobStatus.SENT, to_ms(now), None):
                return False  # another pass got it first
            await self.service.apply_durable(tx, effects, now)
        await self.service.apply_after(effects)
        self.relayed += 1
        log.info("voice relayed", extra={"pair_id": record.pair_id, "job_id": job_id})
        return True


# ---------------------------------------------------------------- the queue


async def queue_voice(
    tx: Executor, audit: Any, pair_id: str, clip: VoiceClip, actor: str, now: datetime
) -> str:
    """Queue a converted voice message for the running bridge; returns the job id.

    The Ogg is sealed in the audit media store; `audit` is the AuditLog.
    """
    ref = await audit.store_media(tx, clip.ogg, now)
    job_id = secrets.token_hex(8)
    await voice_jobs.add(
        tx,
        job_id=job_id,
        pair_id=pair_id,
        media_ref=ref,
        duration_ms=clip.duration_ms,
        size=clip.size,
        waveform=clip.waveform,
        actor=actor,
        now=to_ms(now),
    )
    entry = media.voice_queued(pair_id, actor, job_id, ref, clip.size, clip.duration_ms)
    await audit.append(tx, entry, now)
    return job_id


#: Who queues voice messages uploaded through the `voice_uploads` port (the HTTP API).
API_ACTOR = "api"


class ApiVoiceUploads:
    """Audio converted to Ogg Opus and queued, sealed, for the voice worker to post."""

    max_bytes = VOICE_LIMITS.max_input_bytes

    def __init__(self, parts: Parts, service: Service) -> None:
        self.parts = parts
        self.service = service

    async def __call__(self, pair_id: str, data: bytes, filename: str | None) -> QueuedVoice:
        clip = await convert_to_voice_async(data, filename_hint=filename, limits=VOICE_LIMITS)
        now = self.service.clock()
        async with self.parts.db.transaction() as tx:
            job_id = await queue_voice(tx, self.parts.audit, pair_id, clip, API_ACTOR, now)
        return QueuedVoice(job_id, clip.duration_ms)


async def install_voice(app: Host) -> None:
    """Keep members' media for the audit, post voice messages queued by the CLI, and take
    uploads for the queue (`voice_uploads` port)."""
    if app.service.handles_invoke(CAPTURE_OPERATION):
        return  # installed already (a second install would capture everything twice)
    feature = VoiceFeature(app)
    app.ports.voice_uploads = ApiVoiceUploads(app.parts, app.service)
    app.service.install(feature)

    async def start() -> None:
        await feature.recover()
        feature.start()

    app.on_start(start)
    app.on_stop(feature.stop)
