"""Transcript export: the use case the command line, the HTTP API and the desk's `!export`
share, and `!export` itself (the zip uploaded encrypted into the desk room)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import hooks
from bridge.audit.export import ExportResult, export_pair
from bridge.core.desk_commands import EXPORT_OPERATION
from bridge.core.model import Invoke, SendMessage
from bridge.outbox import enqueue_content, enqueue_message
from bridge.provision import PairError
from bridge.store.pairs import PairRecord

if TYPE_CHECKING:
    from bridge.host import Host
    from bridge.parts import Parts


def transcript_name(pair: PairRecord) -> str:
    """The zip's file name, as the HTTP download and the desk room show it."""
    return f"transcript-{pair.label}.zip"


async def export_transcript(
    parts: Parts,
    pair: PairRecord,
    out: Path,
    *,
    actor: str,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> ExportResult:
    """Write the pair's transcript for [start, end) to `out` as a zip, recorded in the audit.

    The export entry and a signed checkpoint go into the chain first, so the zip proves the
    pair's entries up to its own export. `actor` is who asked ("cli", "api", a therapist).
    """
    cfg = parts.cfg
    return await export_pair(
        parts.db,
        parts.sealer,
        cfg.audit.signing_key.get_secret_value(),
        pair.pair_id,
        start,
        end,
        out,
        # The practice's templates_dir overrides the shipped transcript, as for every text.
        parts.renderer,
        now=now,
        actor=actor,
        tz=cfg.practice.timezone,
        audit_log=parts.audit,
        # The transcript is the practice's record: in the practice's language.
        language=cfg.practice.language,
    )


@asynccontextmanager
async def exported_transcript(
    parts: Parts,
    pair: PairRecord,
    *,
    actor: str,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AsyncIterator[ExportResult]:
    """`export_transcript` into a temporary file, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="confidant-export-") as tmp:
        out = Path(tmp) / transcript_name(pair)
        yield await export_transcript(parts, pair, out, actor=actor, now=now, start=start, end=end)


class DeskExport:
    """`!export` in a desk room: the transcript zip, uploaded encrypted into the room."""

    def __init__(self, app: Host) -> None:
        self.app = app

    @hooks.on_invoke(EXPORT_OPERATION)
    async def export_to_desk(self, effect: Invoke) -> None:
        app = self.app
        parts, bot, outbox = app.parts, app.bot, app.outbox
        clock = app.service.clock
        params = effect.params
        event_id = str(params["event_id"])
        now = clock()
        try:
            record = await parts.pairs.resolve(str(params["pair"]))
            if record.therapist_id != params["requested_by"]:
                raise PairError("that conversation is not yours")
        except PairError as err:
            async with parts.db.transaction() as tx:
                await enqueue_message(
                    tx,
                    parts.renderer,
                    parts.sealer,
                    SendMessage(
                        effect.room_id,
                        "export_refused",
                        {"reason": str(err)},
                        txn_id=f"export-refused.{event_id}",
                    ),
                    now,
                )
            outbox.kick()
            return
        async with exported_transcript(
            parts, record, actor=str(params["requested_by"]), now=now
        ) as result:
            data = await asyncio.to_thread(result.path.read_bytes)
        name = result.path.name
        file_obj = await bot.upload_encrypted(data, "application/zip", name)
        content = {
            "msgtype": "m.file",
            "body": name,
            "filename": name,
            "info": {"mimetype": "application/zip", "size": len(data)},
            "file": file_obj,
        }
        async with parts.db.transaction() as tx:
            await enqueue_content(
                tx,
                parts.sealer,
                effect.room_id,
                "m.room.message",
                content,
                f"export.{event_id}",
                "export",
                now,
                pair_id=record.pair_id,
            )
        outbox.kick()


async def install_export(app: Host) -> None:
    """Answer the desk's `!export` (the "export" operation) with the transcript zip."""
    app.service.install(DeskExport(app))
