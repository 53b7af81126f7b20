"""`!export` in a desk room: the transcript zip, uploaded encrypted into that room."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.audit.export import export_pair
from bridge.core.model import Invoke, SendMessage
from bridge.outbox import enqueue_content, enqueue_message
from bridge.provision import PairError

if TYPE_CHECKING:
    from bridge.host import Host


async def install_export(app: Host) -> None:
    """Answer the desk's `!export` (the "export" operation) with the transcript zip."""
    assert app.service is not None and app.parts is not None and app.bot is not None
    service, parts, bot, clock = app.service, app.parts, app.bot, app.service.clock

    async def export_to_desk(effect: Invoke) -> None:
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
            if service.outbox:
                service.outbox.kick()
            return
        with tempfile.TemporaryDirectory(prefix="confidant-export-") as tmp:
            out = Path(tmp) / f"transcript-{record.label}.zip"
            await export_pair(
                parts.db,
                parts.sealer,
                parts.cfg.audit.signing_key.get_secret_value(),
                record.pair_id,
                None,
                None,
                out,
                parts.renderer.templates_dir,
                now=now,
                actor=str(params["requested_by"]),
                tz=parts.cfg.practice.timezone,
                audit_log=parts.audit,
            )
            data = await asyncio.to_thread(out.read_bytes)
        file_obj = await bot.upload_encrypted(data, "application/zip", out.name)
        content = {
            "msgtype": "m.file",
            "body": out.name,
            "filename": out.name,
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
        if service.outbox:
            service.outbox.kick()

    service.invoke_handlers["export"] = export_to_desk
